import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from transact.data.schema import PAD_ACTION, PAD_ITEM
from transact.data.sequences import SequenceBuilder, build_sequences, build_sequences_reference


def _random_log(rng: np.random.Generator, n_events: int, n_users: int, t_range: int):
    users = rng.integers(0, n_users, n_events)
    items = rng.integers(0, 50, n_events)
    actions = rng.integers(1, 6, n_events)
    times = rng.integers(1_000, 1_000 + t_range, n_events)  # small range -> many ties
    return users, items, actions, times


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_events=st.integers(0, 300),
    seq_len=st.integers(1, 12),
    t_range=st.sampled_from([5, 50, 10_000]),
    filtered=st.booleans(),
)
def test_fast_path_matches_reference(seed, n_events, seq_len, t_range, filtered):
    rng = np.random.default_rng(seed)
    log = _random_log(rng, n_events, 6, t_range)
    q_users = rng.integers(0, 8, 40)  # users 6, 7 have no events
    q_times = rng.integers(900, 1_100 + t_range, 40)
    include = (2, 4) if filtered else None
    fast = build_sequences(*log, q_users, q_times, seq_len=seq_len, include_actions=include)
    ref = build_sequences_reference(
        *[a.tolist() for a in log], q_users.tolist(), q_times.tolist(), seq_len, include
    )
    for f, r in zip(fast, ref, strict=True):
        assert torch.equal(f, r)


def test_strictly_before_newest_first_and_padded():
    # user 1: times 10, 20, 20, 30; user 2: time 15
    users = [1, 2, 1, 1, 1]
    items = [100, 200, 101, 102, 103]
    actions = [1, 2, 3, 4, 5]
    times = [10, 15, 20, 20, 30]
    seqs = build_sequences(users, items, actions, times, [1, 1, 2, 3], [30, 10, 16, 99], seq_len=4)
    # query (1, 30): events at 30 excluded (strictly before); tie at 20 -> later row first
    assert seqs.action_item_ids[0].tolist() == [102, 101, 100, PAD_ITEM]
    assert seqs.action_types[0].tolist() == [4, 3, 1, PAD_ACTION]
    assert seqs.action_times_ms[0].tolist() == [20, 20, 10, 0]
    # query at the first event's time: nothing strictly before
    assert seqs.action_types[1].tolist() == [0, 0, 0, 0]
    assert seqs.action_item_ids[2].tolist() == [200, PAD_ITEM, PAD_ITEM, PAD_ITEM]
    assert seqs.action_types[3].sum().item() == 0  # unknown user -> all padding
    assert all(t.dtype == torch.int64 for t in seqs)


def test_truncates_to_latest_seq_len():
    n = 250
    seqs = build_sequences(
        np.zeros(n, int), np.arange(n), np.ones(n, int), np.arange(n) * 1000, [0], [10**9]
    )
    assert seqs.action_item_ids.shape == (1, 100)
    assert seqs.action_item_ids[0, 0].item() == n - 1
    assert seqs.action_item_ids[0, -1].item() == n - 100
    assert (seqs.action_times_ms[0, :-1] >= seqs.action_times_ms[0, 1:]).all()


def test_lengths_and_bad_input():
    b = SequenceBuilder([1, 1, 1], [0, 1, 2], [1, 1, 1], [5, 6, 7], seq_len=2)
    assert b.lengths(np.array([1, 1, 1, 9]), np.array([5, 7, 100, 100])).tolist() == [0, 2, 2, 0]
    with pytest.raises(ValueError, match="event_action_types: row 1"):
        SequenceBuilder([1, 1], [0, 1], [1, 0], [5, 6])
    with pytest.raises(ValueError, match="event_item_ids has 1 rows"):
        SequenceBuilder([1, 1], [0], [1, 1], [5, 6])
    with pytest.raises(TypeError, match="event_times_ms"):
        SequenceBuilder([1], [0], [1], [5.5])
