"""A small world in the data stage's on-disk layout, written here until its readers land."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transact.data.schema import MS_PER_DAY, events_schema, items_schema

START = dt.date(2026, 1, 1)


def make_toy_world(
    root: Path, n_users: int = 60, n_items: int = 200, n_days: int = 10, seed: int = 0
) -> dict:
    """Users with 1-2 of 8 interest clusters engage mostly with items of those clusters.

    Returns the ground truth: ``{"user_interests": {user_id: [cluster, ...]},
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
        pq.write_table(pa.table(rows, schema=events_schema()), out / "part-0.parquet")
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
    return train_pinnerformer(root, out, preset("tiny", eval_days=3), progress=False)
