"""A small world dir with known long-term interests, in the data stage's layout."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transact.data.io import WorldManifest, save_manifest
from transact.data.schema import MS_PER_DAY, FeatureSpec, events_schema, items_schema

START = dt.date(2026, 1, 1)
EVAL_DAYS = 3


def make_toy_world(
    root: Path, n_users: int = 60, n_items: int = 200, n_days: int = 10, seed: int = 0
) -> dict:
    """Users with 1-2 of 8 interest clusters engage mostly with items of those clusters.

    The manifest holds the last ``EVAL_DAYS`` days out for evaluation (training ends on
    day ``n_days - EVAL_DAYS``: 2026-01-07 for 10 days). Returns the ground truth: ``{"user_interests": {user_id: [cluster, ...]},
    "item_cluster": [n_items]}``.
    """
    rng = np.random.default_rng(seed)
    n_clusters, d = 8, 32
    centers = rng.normal(size=(n_clusters, d)).astype(np.float32)
    item_cluster = rng.integers(0, n_clusters, size=n_items)
    emb = centers[item_cluster] + 0.3 * rng.normal(size=(n_items, d)).astype(np.float32)
    popularity = rng.pareto(1.5, size=n_items) + 1
    pq.write_table(
        pa.table(
            {
                "item_id": np.arange(n_items, dtype=np.int64),
                "external_id": [f"i{i}" for i in range(n_items)],
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(emb.reshape(-1).astype(np.float32)), d
                ),
                "top_interest": item_cluster.astype(np.int32),
                "taxonomy_path": [f"c{c}" for c in item_cluster],
                "category": item_cluster.astype(np.int32),
                "quality": np.ones(n_items, np.float32),
            },
            schema=items_schema(d),
        ),
        root / "items.parquet",
    )
    interests = {
        u: sorted(rng.choice(n_clusters, size=rng.integers(1, 3), replace=False).tolist())
        for u in range(n_users)
    }
    start_day = (START - dt.date(1970, 1, 1)).days
    names = ["closeup", "click", "repin", "hide"]
    event = 0
    for day in range(n_days):
        rows: dict[str, list] = {k: [] for k in events_schema().names}
        for u in range(n_users):
            for _ in range(rng.poisson(4)):
                liked = rng.random() < 0.85
                pool = np.flatnonzero(np.isin(item_cluster, interests[u]) == liked)
                p = popularity[pool] / popularity[pool].sum()
                item = int(rng.choice(pool, p=p))
                action = names[rng.integers(0, 3)] if liked else "hide"
                t = (start_day + day) * MS_PER_DAY + int(rng.integers(0, MS_PER_DAY))
                for a in ("impression", action):
                    rows["event_id"].append(f"e{event}")
                    rows["user_id"].append(u)
                    rows["item_id"].append(item)
                    rows["action_type"].append(a)
                    rows["timestamp_ms"].append(t if a == "impression" else t + 1000)
                    rows["surface"].append("homefeed")
                    event += 1
        date = (START + dt.timedelta(days=day)).isoformat()
        out = root / "events" / f"day={date}"
        out.mkdir(parents=True)
        pq.write_table(pa.table(rows, schema=events_schema()), out / "part-00000.parquet")
    start_ms = start_day * MS_PER_DAY
    eval_start_ms = (start_day + n_days - EVAL_DAYS) * MS_PER_DAY
    end_ms = (start_day + n_days) * MS_PER_DAY
    spec = FeatureSpec(categorical=(), numerical=(), d_item=d, d_user=0, user_weight_features=())
    save_manifest(
        root,
        WorldManifest(
            dataset="toy-interests", seed=seed, preset="", feature_spec=spec,
            start_ms=start_ms, end_ms=end_ms, train_start_ms=start_ms,
            train_end_ms=eval_start_ms, eval_start_ms=eval_start_ms, eval_end_ms=end_ms,
            n_users=n_users, n_items=n_items,
        ),
    )  # fmt: skip
    return {"user_interests": interests, "item_cluster": item_cluster}


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("world")
    truth = make_toy_world(root)
    return root, truth


@pytest.fixture(scope="session")
def tiny_model(toy_world, tmp_path_factory) -> Path:
    """A PinnerFormer checkpoint trained on the toy world with the tiny preset (~1-2 s)."""
    from transact.embeddings.train import preset, train_pinnerformer

    root, _ = toy_world
    out = tmp_path_factory.mktemp("model")
    return train_pinnerformer(root, out, preset("tiny"), progress=False)
