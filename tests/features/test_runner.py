import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client import REGISTRY

from tests.features.event_logs import T0, make_events, write_world
from transact.features import events as ev
from transact.features.events import ValidationConfig, event_to_json
from transact.features.processor import ProcessorConfig, SequenceProcessor
from transact.features.runner import DeadLetterSink, run_stream
from transact.features.sources import JsonLinesSource, ParquetReplaySource
from transact.features.store import RocksDBSequenceStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(x) for x in f]


def messy_log(n: int, seed: int) -> pa.Table:
    """A log with out-of-order, late and duplicated (redelivered) events."""
    base = make_events(
        n, n_users=2000, n_items=5000, seed=seed, span_ms=6 * 3_600_000, jitter_ms=400_000
    )
    rng = np.random.default_rng(seed + 1)
    dup = rng.choice(n, n // 50, replace=False)
    order = np.sort(np.concatenate([np.arange(n), dup]), kind="stable")
    return base.take(pa.array(order))


def drain(
    world: str, store_path: str, dlq: str | None, batch: int, cfg: ProcessorConfig | None = None
) -> dict:
    store = RocksDBSequenceStore(store_path)
    sink = DeadLetterSink(dlq)
    try:
        summary = run_stream(
            ParquetReplaySource(world, batch_size=batch),
            store,
            SequenceProcessor(cfg or ProcessorConfig()),
            ValidationConfig(),
            sink,
            show_progress=False,
        )
    finally:
        sink.close()
    dump = list(store.dump())
    store.close()
    return {"summary": summary, "dump": dump}


def test_stdin_source_dead_letters_counters_and_resume(tmp_path):
    lines = []
    for i in range(300):
        lines.append(event_to_json(f"s{i}", i % 7, i, "click", T0 + 1000 * i))
    lines[10] = b'{"event_id": broken'
    lines[20] = event_to_json("s20", 1, 1, "like", T0)
    lines[30] = lines[29]  # duplicate flood
    lines[31] = lines[29]
    lines[40] = b"x" * 10_000
    data = b"\n".join(lines) + b"\n"
    store_path, dlq = str(tmp_path / "s"), str(tmp_path / "dlq.jsonl")
    before = (
        REGISTRY.get_sample_value(
            "transact_stream_dead_letters_total", {"reason": ev.MALFORMED_JSON}
        )
        or 0.0
    )

    def run(max_batches=None):
        store = RocksDBSequenceStore(store_path)
        sink = DeadLetterSink(dlq)
        s = run_stream(
            JsonLinesSource(io.BytesIO(data), batch_size=64),
            store,
            SequenceProcessor(ProcessorConfig()),
            ValidationConfig(),
            sink,
            show_progress=False,
            max_batches=max_batches,
        )
        sink.close()
        out = (s, store.offsets(), list(store.dump()))
        store.close()
        return out

    s1, off1, _ = run(max_batches=2)
    assert off1 == {"stdin": 128}
    s2, off2, dump = run()  # resumes at line 128
    assert off2 == {"stdin": 300} and s1.events + s2.events == 300
    assert s1.outcomes["duplicate_event_id"] + s2.outcomes["duplicate_event_id"] == 2
    letters = read_jsonl(dlq)
    assert {(d["offset"], d["reason"]) for d in letters} == {
        (10, ev.MALFORMED_JSON),
        (20, ev.UNKNOWN_ACTION),
        (40, ev.PAYLOAD_TOO_LARGE),
    }
    after = REGISTRY.get_sample_value(
        "transact_stream_dead_letters_total", {"reason": ev.MALFORMED_JSON}
    )
    assert after - before == 1
    assert len([k for k, _ in dump if k.startswith(b"u/")]) == 7


def test_backfill_is_independent_of_batch_size_and_counts_every_event(tmp_path):
    world = write_world(str(tmp_path / "w"), [messy_log(6000, 1), messy_log(3000, 2)])
    every_action = ProcessorConfig(include_actions=None)
    a = drain(world, str(tmp_path / "a"), None, 500, every_action)
    b = drain(world, str(tmp_path / "b"), None, 9000, every_action)
    assert a["dump"] == b["dump"]
    s = a["summary"]
    assert s.events == 9000 + 9000 // 50
    assert sum(s.outcomes.values()) == s.events  # nothing dropped silently
    # every redelivery is caught, except those of late originals (late again)
    n_dup = 9000 // 50
    assert n_dup - s.outcomes["late"] <= s.outcomes["duplicate_event_id"] <= n_dup
    assert s.outcomes["late"] > 0 and s.outcomes["late"] == s.dead_letters[ev.LATE_EVENT]


@pytest.mark.slow
def test_kill_9_at_random_points_then_restart_gives_the_clean_store_byte_for_byte(tmp_path):
    world = write_world(str(tmp_path / "w"), [messy_log(70_000, 3), messy_log(40_000, 4)])
    clean = drain(world, str(tmp_path / "clean"), str(tmp_path / "clean.dlq"), 5000)
    assert clean["summary"].events >= 110_000
    store, dlq = str(tmp_path / "crashy"), str(tmp_path / "crashy.dlq")
    cmd = [
        sys.executable,
        "-m",
        "transact.features.cli",
        "stream",
        "run",
        "--source",
        f"parquet:{world}",
    ]
    cmd += [
        "--store",
        store,
        "--dead-letters",
        dlq,
        "--batch-size",
        "3000",
        "--print-commits",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.join(REPO, "src")}
    rnd = random.Random(11)
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        wait_commits = rnd.randint(1, 8)
        seen = 0
        for line in proc.stdout:
            if line.startswith(b"commit"):
                seen += 1
                if seen >= wait_commits:
                    break
        # land anywhere: mid-batch, mid-write or just after a commit
        time.sleep(rnd.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
    assert kills == 3
    final = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    check = RocksDBSequenceStore(store)
    crashy_dump = list(check.dump())
    check.close()
    assert crashy_dump == clean["dump"]

    # dead letters are at-least-once: the same set once repeats are dropped
    def key(path: str) -> set:
        return {(d["source"], d["offset"]) for d in read_jsonl(path)}

    assert key(dlq) == key(str(tmp_path / "clean.dlq")) and len(key(dlq)) > 0
