"""Fixtures of the realtime-feature tests: Redis and Kafka servers (event logs: ``event_logs``).

Servers start on 127.0.0.1 on free ports and stop at the end; tests that need one skip
with the reason when its binary is missing or it cannot start.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest


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
