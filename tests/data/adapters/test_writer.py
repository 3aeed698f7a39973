import numpy as np
import pyarrow as pa
import pytest

from transact.data.adapters import (
    ItemRepresentation,
    LogChunk,
    LogWorldWriter,
    RequestConfig,
    log_vocabulary,
)
from transact.data.io import DataError, ItemTable, load_manifest, read_events, read_impressions
from transact.data.schema import MS_PER_DAY

T0 = 1_767_571_200_000  # 2026-01-05 00:00 UTC
MIN = 60_000
LABELS = ("click", "like", "hate")
VOCAB = log_vocabulary(LABELS, negative=("hate",), main_positive="like")


def _random_log(n=4000, users=60, items=50, days=6, seed=0) -> LogChunk:
    """Impressions of ``users`` over ``days``: sessions of consecutive minutes, labels
    drawn independently (several per impression)."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    session = rng.integers(0, days * 3, n)  # 3 sessions a day, 8 h apart
    times = T0 + session * 8 * 3_600_000 + rng.integers(0, 20, n) * MIN
    mask = (
        (rng.random(n) < 0.4).astype(np.int64)
        | ((rng.random(n) < 0.2).astype(np.int64) << 1)
        | ((rng.random(n) < 0.05).astype(np.int64) << 2)
    )
    return LogChunk("impressions", user, pa.array(rng.integers(0, items, n)), times, mask)


def _write(tmp_path, name, chunks, bucket_rows=10**9, **rc):
    expected = sum(c.user_ids.size for c in chunks)
    w = LogWorldWriter(
        tmp_path / name, dataset="hand", actions=VOCAB, labels=LABELS,
        requests=RequestConfig(**rc), seed=3, expected_rows=expected, bucket_rows=bucket_rows,
    )  # fmt: skip
    for c in chunks:
        w.add(c)
    return w.finish(item_repr=ItemRepresentation("genre"), d_item=4)


def _table(out, what):
    reader = read_impressions if what == "impressions" else read_events
    return pa.Table.from_batches(list(reader(out))).to_pydict()


def test_every_label_of_an_impression_is_kept_and_counted_once(tmp_path):
    chunk = _random_log()
    out = _write(tmp_path, "w", [chunk], min_items=1)
    imp = _table(out, "impressions")
    assert len(imp["request_id"]) == chunk.user_ids.size  # one row per impression
    for k, name in enumerate(LABELS):
        assert sum(imp[f"label_{name}"]) == int(((chunk.codes >> k) & 1).sum())
    both = np.array(imp["label_click"]) & np.array(imp["label_like"])
    assert both.sum() == int(((chunk.codes & 3) == 3).sum()) > 0
    ev = _table(out, "events")
    counts = {a: ev["action_type"].count(a) for a in VOCAB.names}
    assert counts["impression"] == chunk.user_ids.size
    for k, name in enumerate(LABELS):
        assert counts[name] == int(((chunk.codes >> k) & 1).sum())
    assert ev["timestamp_ms"] == sorted(ev["timestamp_ms"])  # one time-ordered stream
    assert len(set(ev["event_id"])) == len(ev["event_id"])
    m = load_manifest(out)
    assert m.heads == LABELS and m.actions == VOCAB
    assert m.extra["counts"]["impressions"] == chunk.user_ids.size


def test_the_spill_buckets_do_not_change_the_world(tmp_path):
    """Many small buckets (bounded memory) and one bucket write the same impressions."""
    chunk = _random_log()
    half = chunk.user_ids.size // 2
    parts = [
        LogChunk(
            "impressions", chunk.user_ids[s], chunk.item_keys[s], chunk.times_ms[s], chunk.codes[s]
        )  # fmt: skip
        for s in (slice(0, half), slice(half, None))
    ]
    one = _write(tmp_path, "one", [chunk])
    many = _write(tmp_path, "many", parts, bucket_rows=500)  # 8 buckets
    keys = ("user_id", "request_time_ms", "item_id", "label_click", "label_like", "label_hate",
            "is_core")  # fmt: skip

    def rows(out):
        imp = _table(out, "impressions")
        return sorted(zip(*(imp[k] for k in keys), strict=True))

    assert rows(one) == rows(many)
    assert load_manifest(one).train_end_ms == load_manifest(many).train_end_ms


def test_requests_precede_their_labels_and_core_follows_the_main_positive(tmp_path):
    chunk = _random_log()
    out = _write(tmp_path, "w", [chunk], core_window_ms=10 * 3_600_000)
    imp = _table(out, "impressions")
    ev = _table(out, "events")
    first_like = {}
    for u, a, t in zip(ev["user_id"], ev["action_type"], ev["timestamp_ms"], strict=True):
        if a == "like":
            first_like.setdefault(u, []).append(t)
    for u, t_req, core in zip(imp["user_id"], imp["request_time_ms"], imp["is_core"], strict=True):
        likes = [t for t in first_like.get(u, []) if t_req - 10 * 3_600_000 <= t < t_req]
        assert core == bool(likes)
    assert 0 < np.mean(imp["is_core"]) < 1


def test_history_days_feed_sequences_only(tmp_path):
    out = _write(tmp_path, "w", [_random_log()], history_days=2)
    m = load_manifest(out)
    assert m.train_start_ms == m.start_ms + 2 * MS_PER_DAY
    imp = _table(out, "impressions")
    t = np.array(imp["request_time_ms"])
    assert (t < m.train_start_ms).sum() > 0  # history requests are in the tables
    assert m.train_start_ms < m.train_end_ms == m.eval_start_ms < m.eval_end_ms
    with pytest.raises(DataError, match="history_days 30 covers the whole log"):
        _write(tmp_path, "x", [_random_log()], history_days=30)


def test_item_table_has_end_of_log_statistics_with_the_training_prior(tmp_path):
    chunk = _random_log()
    out = _write(tmp_path, "w", [chunk])
    m = load_manifest(out)
    stats = m.extra["item_statistics"]
    assert stats["mode"] == "point_in_time" and stats["positive_labels"] == ["click", "like"]
    imp = _table(out, "impressions")
    t = np.array(imp["request_time_ms"])
    train = (t >= m.train_start_ms) & (t < m.train_end_ms)
    engaged = np.array(imp["label_click"]) | np.array(imp["label_like"])
    assert stats["prior_rate"] == pytest.approx(engaged[train].mean())
    items = ItemTable.load(out)
    item = np.array(imp["item_id"])
    shown = np.bincount(item, minlength=len(items))
    hits = np.bincount(item, weights=engaged, minlength=len(items))
    want = (hits + 20 * stats["prior_rate"]) / (shown + 20)
    np.testing.assert_allclose(items.quality, want, rtol=1e-5)
    assert items.external_id == [str(i) for i in range(len(items))]


def test_refuses_an_existing_world_and_a_log_without_requests(tmp_path):
    _write(tmp_path, "w", [_random_log()])
    with pytest.raises(FileExistsError, match="manifest.json exists"):
        _write(tmp_path, "w", [_random_log()])
    with pytest.raises(DataError, match="requests after the history"):
        _write(tmp_path, "x", [_random_log(n=30)], min_items=40)
    with pytest.raises(DataError, match="no rows"):
        _write(tmp_path, "y", [])
