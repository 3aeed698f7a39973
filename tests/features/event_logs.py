"""Synthetic event logs for the realtime-feature tests: ``from tests.features.event_logs import ...``."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transact.data.schema import ActionVocabulary, events_schema

T0 = 1_700_000_000_000
ACTIONS = ActionVocabulary()


def make_events(
    n: int,
    n_users: int = 50,
    n_items: int = 1000,
    seed: int = 0,
    span_ms: int = 3_600_000,
    jitter_ms: int = 0,
    id_prefix: str = "e",
) -> pa.Table:
    """``n`` events in ``events_schema()``, in log order (time ascending, plus optional
    per-event jitter so some arrive out of order), distinct event ids."""
    rng = np.random.default_rng(seed)
    times = T0 + np.sort(rng.integers(0, span_ms, n))
    if jitter_ms:
        times = times - rng.integers(0, jitter_ms + 1, n)
    return pa.table(
        {
            "event_id": [f"{id_prefix}{seed}-{i}" for i in range(n)],
            "user_id": rng.integers(0, n_users, n),
            "item_id": rng.integers(0, n_items, n),
            "action_type": rng.choice(np.array(ACTIONS.names), n),
            "timestamp_ms": times,
            "surface": ["homefeed"] * n,
        },
        schema=events_schema(),
    )


def write_world(path: str, tables: list[pa.Table]) -> str:
    """Write tables as ``path/events/day=.../part-K.parquet`` (one day per table)."""
    for k, t in enumerate(tables):
        d = os.path.join(path, "events", f"day=2023-11-{14 + k:02d}")
        os.makedirs(d, exist_ok=True)
        pq.write_table(t, os.path.join(d, "part-0.parquet"))
    return path


def action_ids(table: pa.Table) -> np.ndarray:
    names = table.column("action_type").to_pylist()
    return np.array([ACTIONS.id(a) for a in names], dtype=np.int64)
