import numpy as np
import pyarrow as pa
import pytest

from transact.data.adapters import ItemInput, LogInput, RequestConfig, write_log_world
from transact.data.io import DataError, ItemTable, load_manifest, read_events, read_impressions

T0 = 1_700_000_000_000
MIN = 60_000


def _log() -> LogInput:
    """User 1: one session of 10 actions a minute apart. User 2: 3 actions, a 2-hour gap,
    then 2 more. Actions cycle click, (none), repin, hide."""
    t1 = T0 + np.arange(10) * MIN
    t2 = T0 + 1000 + np.array([0, 1, 2, 122, 123]) * MIN
    cycle = np.array(["click", "", "repin", "hide"], dtype=object)
    return LogInput(
        user_ids=np.r_[np.full(10, 1), np.full(5, 2)].astype(np.int64),
        item_index=np.arange(15, dtype=np.int64) % 5,
        actions=cycle[np.arange(15) % 4],
        times_ms=np.r_[t1, t2].astype(np.int64),
        in_request=np.ones(15, bool),
    )


ITEMS = ItemInput(
    external_ids=list("abcde"),
    texts=list("abcde"),
    genres=[["x"], ["y"], ["x", "y"], [], ["y"]],
)


def test_sessions_become_chunked_requests_before_their_actions(tmp_path):
    rc = RequestConfig(session_gap_ms=30 * MIN, max_items=4, min_items=3, eval_fraction=0.25)
    out = write_log_world(tmp_path / "w", _log(), ITEMS, dataset="hand", embeddings="genre",
                          d_item=4, requests=rc, seed=1)  # fmt: skip
    m = load_manifest(out)
    # user 1: chunks of 4, 4, 2 (the 2 make no request); user 2: sessions of 3 and 2
    counts = m.extra["counts"]
    assert counts["requests"] == 3 and counts["impressions"] == 11
    assert counts["skipped_rows_in_small_chunks"] == 4
    imp = pa.Table.from_batches(list(read_impressions(out))).to_pydict()
    # dense request ids in time order, each 1 ms before its first action
    times = dict(zip(imp["request_id"], imp["request_time_ms"], strict=True))
    assert times == {0: T0 - 1, 1: T0 + 999, 2: T0 + 4 * MIN - 1}
    users = dict(zip(imp["request_id"], imp["user_id"], strict=True))
    assert users == {0: 1, 1: 2, 2: 1}
    # the labels of request 0 are user 1's first four actions, whatever the shuffled position
    rows = [i for i, r in enumerate(imp["request_id"]) if r == 0]
    assert sorted(imp["item_id"][i] for i in rows) == [0, 1, 2, 3]
    for i in rows:
        action = ["click", "", "repin", "hide"][imp["item_id"][i]]
        assert imp["label_click"][i] == (action == "click")
        assert imp["label_hide"][i] == (action == "hide")
    assert sorted(imp["position"][i] for i in rows) == [0, 1, 2, 3]
    # split at the 75% request-time quantile: the last request evaluates
    assert m.train_end_ms == m.eval_start_ms == T0 + 4 * MIN - 1
    # events: an impression per request item, then every logged action (skipped ones too)
    ev = pa.Table.from_batches(list(read_events(out))).to_pydict()
    assert ev["action_type"].count("impression") == 11
    assert len(ev["action_type"]) == 11 + int((_log().actions != "").sum())
    assert ev["timestamp_ms"] == sorted(ev["timestamp_ms"])
    # item quality and popularity from the 2 training requests only (7 impressions)
    items = ItemTable.load(out)
    assert items.popularity.sum() == pytest.approx(7 + 5)
    assert items.taxonomy_path == ["x", "y", "x/y", "unknown", "y"]


def test_refuses_an_existing_world_and_a_log_without_requests(tmp_path):
    write_log_world(tmp_path / "w", _log(), ITEMS, dataset="hand", embeddings="genre", d_item=4)
    with pytest.raises(FileExistsError, match="manifest.json exists"):
        write_log_world(tmp_path / "w", _log(), ITEMS, dataset="hand", embeddings="genre")
    with pytest.raises(DataError, match="no request has >= 40 items"):
        write_log_world(tmp_path / "x", _log(), ITEMS, dataset="hand", embeddings="genre",
                        d_item=4, requests=RequestConfig(min_items=40, max_items=50))  # fmt: skip
