import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transact.data.adapters import (
    ImpressionColumns,
    ItemRepresentation,
    RequestConfig,
    import_impressions,
)
from transact.data.examples import build_split
from transact.data.io import load_manifest, read_impressions
from transact.data.item_stats import (
    ItemStatsConfig,
    point_in_time_item_stats,
    point_in_time_item_stats_reference,
)
from transact.evaluation.metrics import roc_auc

T0 = 1_767_571_200_000
CONFIG = ItemStatsConfig(mode="point_in_time", positive_labels=("click",), prior_rate=0.3,
                         prior_strength=5.0, popularity_window_ms=50)  # fmt: skip


def test_fast_path_matches_the_plain_loop():
    rng = np.random.default_rng(0)
    items = rng.integers(0, 12, 800)
    times = rng.integers(0, 200, 800)  # many ties
    engaged = rng.random(800) < 0.3
    q_items = rng.integers(0, 14, 300)  # items 12, 13 never shown
    q_times = rng.integers(-20, 260, 300)  # before, inside and after the log
    fast = point_in_time_item_stats(items, times, engaged, q_items, q_times, CONFIG)
    ref = point_in_time_item_stats_reference(items, times, engaged, q_items, q_times, CONFIG)
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-6)
    np.testing.assert_array_equal(fast[1], ref[1])


def test_only_impressions_strictly_before_count_and_the_cold_start_is_the_prior():
    items = np.array([1, 1, 1, 2])
    times = np.array([10, 20, 20, 5])
    engaged = np.array([True, True, False, False])
    q, pop = point_in_time_item_stats(
        items, times, engaged, np.array([1, 1, 1, 3]), np.array([10, 20, 21, 99]), CONFIG
    )
    m, p0 = CONFIG.prior_strength, CONFIG.prior_rate
    assert q.tolist() == pytest.approx([p0, (1 + m * p0) / (1 + m), (2 + m * p0) / (3 + m), p0])
    assert pop.tolist() == [1, 2, 4, 1]  # 1 + shown in the 50 ms before
    q, pop = point_in_time_item_stats(items, times, engaged, np.array([1]), np.array([65]), CONFIG)
    assert pop.tolist() == [3]  # the impression at 10 left the window [15, 65)


def _noise_log(tmp_path, n_users=120, n_items=1500, seed=0):
    """An impression table whose labels are coin flips: no feature can predict them."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for day in range(8):
            t = T0 + day * 86_400_000 + u * 60_000
            n = 12
            rows.append(pa.table({
                "user_id": np.full(n, u), "item_id": rng.integers(0, n_items, n),
                "time_ms": t + np.arange(n) * 5_000,
                "is_click": (rng.random(n) < 0.3).astype(np.int8),
            }))  # fmt: skip
    pq.write_table(pa.concat_tables(rows), tmp_path / "noise.parquet")
    return import_impressions(
        tmp_path / "noise.parquet", tmp_path / "w", ImpressionColumns(labels=(("is_click", "click"),), time="time_ms"),
        item_repr=ItemRepresentation("genre"), d_item=4, requests=RequestConfig(min_items=4),
    )  # fmt: skip


def test_point_in_time_quality_does_not_leak_the_label(tmp_path):
    """On labels that are noise, quality must carry no signal, in training or evaluation.
    The former target encoding (training-period rate including each example's own label)
    does carry one on the training split: a model would learn to lean on it."""
    out = _noise_log(tmp_path)
    m = load_manifest(out)
    train = build_split(out, "train", seq_len=4)
    evaluation = build_split(out, "eval", seq_len=4)
    q = [f.name for f in train.feature_spec.numerical].index("quality")
    auc_train = roc_auc(train.labels[:, 0], train.numerical[:, q])
    auc_eval = roc_auc(evaluation.labels[:, 0], evaluation.numerical[:, q])
    assert abs(auc_train - 0.5) < 0.03 and abs(auc_eval - 0.5) < 0.04, (auc_train, auc_eval)
    # the former, leaky encoding on the same training examples
    imp = pa.Table.from_batches(list(read_impressions(out, m.train_start_ms, m.train_end_ms)))
    item = imp.column("item_id").to_numpy()
    click = imp.column("label_click").to_numpy().astype(float)
    seen = np.bincount(item, minlength=m.n_items)
    hits = np.bincount(item, weights=click, minlength=m.n_items)
    leaky = ((hits + 1) / (seen + 4))[train.item_ids]
    assert roc_auc(train.labels[:, 0], leaky) > 0.6
    # cold start: an item's first impression gets exactly the prior (inside the data's range)
    p0 = m.extra["item_statistics"]["prior_rate"]
    assert np.isclose(train.numerical[:, q], p0).any()
    assert train.numerical[:, q].min() <= p0 <= train.numerical[:, q].max()
