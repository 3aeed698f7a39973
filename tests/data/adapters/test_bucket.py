import numpy as np
import pytest

from transact.data.adapters.bucket import POSITION_BITS, event_key, user_time_order

T0 = 1_767_571_200_000


@pytest.mark.parametrize(
    ("user_range", "time_span"),
    [(50, 10 * 86_400_000), (10**15, 86_400_000), (10**15, 10**9 * 86_400_000)],
)
def test_user_time_order_is_the_stable_lexsort(user_range, time_span):
    """Each key path (user offset, user rank, two-key lexsort) orders rows by (user,
    time), ties in row order, exactly as ``np.lexsort``."""
    rng = np.random.default_rng(1)
    users = rng.choice(rng.integers(0, user_range, 40), 5000)
    times = T0 + rng.integers(0, time_span, 5000)
    times[::5] = times[0]  # ties within a user
    assert np.array_equal(user_time_order(users, times), np.lexsort((times, users)))


def test_event_key_keeps_request_and_position_apart():
    request, position = np.array([0, 5, 2**40]), np.array([0, 7, 2**15 - 1])
    key = event_key(request, position)
    assert (key >= 0).all()
    assert np.array_equal(key >> POSITION_BITS, request)
    assert np.array_equal(key & ((1 << POSITION_BITS) - 1), position)
