"""Users to arms by a salted hash: the reference agrees, shares hold, stable, salted."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from transact.online.buckets import (
    REST,
    assign_arms,
    bucket_position,
    bucket_position_reference,
)


@settings(max_examples=40, deadline=None)
@given(
    users=st.lists(st.integers(0, 2**62), min_size=1, max_size=50),
    salt=st.text(max_size=20),
)
def test_vectorized_positions_equal_the_reference(users: list[int], salt: str) -> None:
    ids = np.array(users, dtype=np.int64)
    got = bucket_position(ids, salt)
    assert np.array_equal(got, bucket_position_reference(ids, salt))
    assert ((got >= 0) & (got < 1)).all()


def test_shares_are_respected_within_sampling_error() -> None:
    users = np.arange(200_000)
    shares = {"control": 0.015, "treatment": 0.015, "big": 0.5}
    arm = assign_arms(users, shares, "exp-1")
    for i, share in enumerate(shares.values()):
        n = int((arm == i).sum())
        sd = np.sqrt(users.size * share * (1 - share))
        assert abs(n - users.size * share) < 4 * sd, (i, n)
    rest = (arm == REST).mean()
    assert abs(rest - 0.47) < 0.005


def test_assignment_is_stable_and_depends_only_on_salt_and_user() -> None:
    shares = {"a": 0.5, "b": 0.5}
    first = assign_arms(np.arange(5_000), shares, "s")
    again = assign_arms(np.arange(5_000), shares, "s")
    assert np.array_equal(first, again)
    # a user's arm does not depend on who else is assigned (or in what order)
    some = np.array([4_999, 17, 3])
    assert np.array_equal(assign_arms(some, shares, "s"), first[some])
    assert (first != REST).all()  # shares summing to 1 leave no rest


def test_another_salt_reshuffles_the_users() -> None:
    shares = {"a": 0.5, "b": 0.5}
    a = assign_arms(np.arange(20_000), shares, "salt-1")
    b = assign_arms(np.arange(20_000), shares, "salt-2")
    same = (a == b).mean()
    assert 0.48 < same < 0.52  # independent: half agree by chance
    positions = bucket_position(np.arange(20_000), "salt-1")
    assert abs(np.corrcoef(positions, bucket_position(np.arange(20_000), "salt-2"))[0, 1]) < 0.03
