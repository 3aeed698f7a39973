"""Fixtures of the realtime-feature tests: synthetic event logs, Redis and Kafka servers.

Servers start on 127.0.0.1 on free ports and stop at the end; tests that need one skip
with the reason when its binary is missing or it cannot start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (Debian package redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.skip("redis-server did not start within 10 s")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def fresh_redis(redis_url: str) -> str:
    import redis

    redis.Redis.from_url(redis_url).flushall()
    return redis_url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    from transact.features.kafka import KafkaUnavailableError, TansuBroker

    broker = TansuBroker()
    try:
        broker.start()
    except KafkaUnavailableError as exc:
        pytest.skip(f"Kafka-protocol broker unavailable: {exc}")
    yield broker.bootstrap
    broker.stop()
