import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transact.data.adapters.requests import (
    RequestConfig,
    form_requests,
    group_actions,
    group_actions_reference,
)

MIN = 60_000


def test_an_impression_keeps_every_action_within_the_window():
    # user 1, item 5: impression at 0, click at 10 s, like at 20 s -> one impression;
    # a like 40 min later is outside the 30-minute window: an orphan, a new impression
    users = np.array([1, 1, 1, 1])
    items = np.array([5, 5, 5, 5])
    times = np.array([0, 10_000, 20_000, 40 * MIN])
    is_imp = np.array([True, False, False, False])
    imp, opener = group_actions(users, items, times, is_imp, 30 * MIN)
    assert imp.tolist() == [0, 0, 0, 1]
    assert opener.tolist() == [0, 3]


def test_orphan_actions_chain_by_gap_and_impressions_take_priority():
    # no impression rows: a click and a like 5 min apart are one impression; another
    # item's actions are another; a burst 2 h later is a third
    users = np.array([1, 1, 1, 1, 1])
    items = np.array([5, 5, 6, 5, 5])
    times = np.array([0, 5 * MIN, 1 * MIN, 120 * MIN, 121 * MIN])
    imp, opener = group_actions(users, items, times, np.zeros(5, bool), 30 * MIN)
    assert imp.tolist() == [0, 0, 2, 1, 1]
    assert sorted(opener.tolist()) == [0, 2, 3]
    # an impression logged in the same millisecond as the click still owns it
    imp, _ = group_actions(
        np.array([1, 1]), np.array([5, 5]), np.array([7, 7]), np.array([False, True]), 0
    )
    assert imp.tolist() == [0, 0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 40), st.booleans()),
        max_size=40,
    ),
    st.integers(0, 12),
)
def test_group_actions_matches_the_plain_loop(rows, window):
    users = np.array([r[0] for r in rows], np.int64)
    items = np.array([r[1] for r in rows], np.int64)
    times = np.array([r[2] for r in rows], np.int64)
    is_imp = np.array([r[3] for r in rows], bool)
    fast, fast_open = group_actions(users, items, times, is_imp, window)
    ref, ref_open = group_actions_reference(users, items, times, is_imp, window)
    assert fast.tolist() == ref.tolist()
    assert fast_open.tolist() == ref_open.tolist()


def test_sessions_become_chunked_requests_before_their_impressions():
    # user 1: ten impressions a minute apart; user 2: three, a 2-hour gap, then two
    users = np.r_[np.full(10, 1), np.full(5, 2)]
    times = np.r_[np.arange(10) * MIN, 1000 + np.array([0, 1, 2, 122, 123]) * MIN]
    rc = RequestConfig(session_gap_ms=30 * MIN, max_items=4, min_items=3)
    req = form_requests(users, times, rc, np.random.default_rng(0))
    # user 1: chunks of 4, 4, 2 (2 < min_items); user 2: sessions of 3 and 2
    assert req.skipped_rows == 4
    assert req.request_time_ms.tolist() == [-1, 999, 4 * MIN - 1]  # time order, 1 ms before
    assert np.bincount(req.request).tolist() == [4, 3, 4]
    assert sorted(req.rows[req.request == 0].tolist()) == [0, 1, 2, 3]
    for r in range(3):  # positions 0..n-1 within each request
        assert sorted(req.position[req.request == r].tolist()) == list(
            range((req.request == r).sum())
        )
    assert req.first_row.tolist() == [0, 10, 4]


def test_request_ids_and_positions_from_the_log():
    users = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    times = np.array([5, 6, 7, 8, 5, 6, 7, 100 * MIN])
    keys = np.array([10, 10, 10, 10, 10, 10, 10, 10])  # the same id under two users
    positions = np.array([3, 0, 2, 1, 0, 1, 2, 3])
    req = form_requests(
        users, times, RequestConfig(min_items=2), np.random.default_rng(0), keys, positions
    )
    assert np.bincount(req.request).tolist() == [4, 4]  # one request per (user, id)
    assert req.request_time_ms.tolist() == [4, 4]
    first = req.rows[req.request == 0]
    assert first.tolist() == [1, 3, 2, 0]  # ranked by the log's positions
    with pytest.raises(ValueError, match="eval_fraction"):
        RequestConfig(eval_fraction=1.0)
