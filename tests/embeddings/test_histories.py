import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transact.data.io import DataError
from transact.data.schema import PAD_ACTION, PAD_ITEM, ActionVocabulary, events_schema
from transact.embeddings.histories import build_histories, last_actions, load_histories


def test_last_actions_newest_first_strictly_before_cutoff():
    h = build_histories(
        user_ids=np.array([5, 5, 5, 9, 5]),
        item_ids=np.array([0, 1, 2, 3, 4]),
        action_types=np.array([2, 3, 4, 2, 3]),
        times_ms=np.array([10, 30, 20, 15, 40]),
    )
    assert h.user_ids.tolist() == [5, 9]
    types, items, times, lengths = last_actions(h, 40, max_len=2)
    # user 5 before t=40: items 0 (t10), 2 (t20), 1 (t30) -> newest two: 1, 2
    assert items[0].tolist() == [1, 2] and times[0].tolist() == [30, 20]
    assert types[0].tolist() == [3, 4]
    assert items[1].tolist() == [3, PAD_ITEM] and types[1].tolist() == [2, PAD_ACTION]
    assert lengths.tolist() == [2, 1]
    _, items, _, lengths = last_actions(h, np.array([11, 15]), max_len=3)
    assert items[0].tolist() == [0, PAD_ITEM, PAD_ITEM]  # t=10 < 11 only
    assert lengths.tolist() == [1, 0]  # user 9's t=15 is not < 15
    sub = h.select_users(np.array([1]))
    assert sub.user_ids.tolist() == [9] and sub.item_ids.tolist() == [3]


def test_load_histories_filters_impressions_time_and_shard(toy_world):
    root, _ = toy_world
    all_h = load_histories(root)
    vocab = ActionVocabulary()
    assert vocab.id("impression") not in set(all_h.action_types.tolist())
    cut = int(np.median(all_h.times_ms))
    early = load_histories(root, end_time_ms=cut)
    assert early.n_events == int((all_h.times_ms < cut).sum())
    shard = load_histories(root, shard=(1, 3))
    assert np.all(shard.user_ids % 3 == 1)
    assert shard.n_events == int(
        np.isin(all_h.event_user_index(), np.flatnonzero(all_h.user_ids % 3 == 1)).sum()
    )


def test_unknown_action_and_bad_item_raise_with_location(toy_world, tmp_path):
    root, _ = toy_world
    world = tmp_path / "w"
    shutil.copytree(root, world)
    rows = {
        "event_id": ["a", "b"],
        "user_id": [1, 1],
        "item_id": [0, 500],
        "action_type": ["click", "like"],
        "timestamp_ms": [1_767_225_600_000, 1_767_225_600_001],  # 2026-01-01
        "surface": ["h", "h"],
    }
    part = world / "events" / "day=2026-01-01" / "part-00099.parquet"
    pq.write_table(pa.table(rows, schema=events_schema()), part)
    with pytest.raises(DataError, match=r"events, column 'action_type'.*'like' \(batch row \d+\)"):
        load_histories(world)
    rows["action_type"] = ["click", "repin"]
    pq.write_table(pa.table(rows, schema=events_schema()), part)
    with pytest.raises(DataError, match=r"column 'item_id'.*item 500 .*not in the item table"):
        load_histories(world)
