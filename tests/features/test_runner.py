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


# --- issue 18 item 1: poison records never stop the stream --------------------------------


def _stdin_events(n: int, poison: dict[int, bytes]) -> list[bytes]:
    lines = [event_to_json(f"p{i}", i % 11, i, "click", T0 + 1000 * i) for i in range(n)]
    for i, raw in poison.items():
        lines[i] = raw
    return lines


POISON = {
    5: b'{"event_id": "d", "user_id": 1, "item_id": 2, "action_type": "click", "timestamp_ms": '
    + str(T0).encode()
    + b', "x": '
    + b"[" * 1950
    + b"]" * 1950
    + b"}",
    17: b'{"event_id": "\\ud800", "user_id": 1, "item_id": 2, "action_type": "click", '
    b'"timestamp_ms": ' + str(T0).encode() + b"}",
    18: b'{"event_id": "\xed\xa0\x80", "user_id": 1}',  # a raw (CESU-8) surrogate
}


def test_poison_records_are_dead_lettered_and_the_cli_run_goes_on(tmp_path):
    """Before the fix, `transact stream run` died on line 5 (RecursionError) before the
    batch committed, and every restart died there again."""
    data = b"\n".join(_stdin_events(120, POISON)) + b"\n"
    store, dlq = str(tmp_path / "seq"), str(tmp_path / "dlq.jsonl")
    cmd = [sys.executable, "-m", "transact.features.cli", "stream", "run", "--source", "stdin"]
    cmd += ["--store", store, "--dead-letters", dlq, "--batch-size", "50", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.join(REPO, "src")}
    out = subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    summary = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert summary["events"] == 120 and summary["outcomes"]["accepted"] == 117
    assert {(d["offset"], d["reason"]) for d in read_jsonl(dlq)} == {
        (5, ev.TOO_DEEPLY_NESTED),
        (17, ev.INVALID_ID),
        (18, ev.MALFORMED_JSON),
    }
    s = RocksDBSequenceStore(store)
    assert s.offsets() == {"stdin": 120}
    s.close()


def _run_stdin(lines: list[bytes], store_path: str, dlq: str | None, batch: int, **kw):  # type: ignore[no-untyped-def]
    store = RocksDBSequenceStore(store_path)
    sink = DeadLetterSink(dlq)
    try:
        summary = run_stream(
            JsonLinesSource(io.BytesIO(b"\n".join(lines) + b"\n"), batch_size=batch),
            store,
            SequenceProcessor(ProcessorConfig()),
            ValidationConfig(),
            sink,
            show_progress=False,
            **kw,
        )
    finally:
        sink.close()
    dump = list(store.dump())
    store.close()
    return summary, dump


def test_a_record_the_processor_raises_on_is_retried_then_dead_lettered(tmp_path, monkeypatch):
    """A bug that raises on one record (any exception, here from the per-user update) costs
    that record only: it is tried alone `record_attempts` times, then dead-lettered with the
    exception, and the store equals a clean run over the stream without it."""
    from transact.features import processor as proc_mod

    lines = _stdin_events(400, {})
    poison_items = {37, 38, 250}  # 37 and 38: neighbours, in one batch
    original = proc_mod._UserWork.apply
    calls = {i: 0 for i in poison_items}

    def buggy(self, id_key, content_key, item, action, t, cfg):  # type: ignore[no-untyped-def]
        if item in poison_items:
            calls[item] += 1
            raise KeyError(f"bug on item {item}")
        return original(self, id_key, content_key, item, action, t, cfg)

    monkeypatch.setattr(proc_mod._UserWork, "apply", buggy)
    dlq = str(tmp_path / "dlq.jsonl")
    summary, dump = _run_stdin(lines, str(tmp_path / "a"), dlq, batch=64)
    monkeypatch.setattr(proc_mod._UserWork, "apply", original)
    clean_lines = [x for i, x in enumerate(lines) if i not in poison_items]
    _, clean = _run_stdin(clean_lines, str(tmp_path / "b"), None, batch=64)
    assert [kv for kv in dump if kv[0].startswith(b"u/")] == [
        kv for kv in clean if kv[0].startswith(b"u/")
    ]
    letters = read_jsonl(dlq)
    assert sorted((d["offset"], d["reason"]) for d in letters) == [
        (i, ev.PROCESSING_ERROR) for i in sorted(poison_items)
    ]
    assert all("KeyError" in d["detail"] for d in letters)
    # once per bisection level (64 -> 1: 7 pieces hold it), then 3 times alone
    assert all(3 <= n <= 6 + 3 for n in calls.values()), calls
    assert summary.events == 400 and summary.outcomes["invalid"] == 3
    assert sum(summary.outcomes.values()) == 400


def test_a_store_outage_is_not_blamed_on_records(tmp_path, monkeypatch):
    """Failures of the store are not record faults: the run stops (a supervisor restarts
    it; nothing is committed), instead of dead-lettering good records."""
    from transact.features.store import StoreUnavailableError

    def down(self, users):  # type: ignore[no-untyped-def]
        raise OSError("disk gone")

    monkeypatch.setattr(RocksDBSequenceStore, "get_many", down)
    dlq = str(tmp_path / "dlq.jsonl")
    with pytest.raises(StoreUnavailableError, match="disk gone"):
        _run_stdin(_stdin_events(50, {}), str(tmp_path / "a"), dlq, batch=10)
    assert not os.path.exists(dlq) or read_jsonl(dlq) == []


HOOK = """
import os, sys
from transact.features import processor
original = processor._UserWork.apply
def dying(self, id_key, content_key, item, action, t, cfg):
    if item == int(os.environ["DIE_ON_ITEM"]):
        os._exit(17)  # a hard crash: no exception, no cleanup (think segfault, OOM kill)
    return original(self, id_key, content_key, item, action, t, cfg)
processor._UserWork.apply = dying
from transact.features.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_record_that_kills_the_process_is_dead_lettered_after_bounded_restarts(tmp_path):
    """A record that kills the process (no exception to catch) would make every restart
    die at the same offset. The crash journal notices repeated starts without progress,
    processes that batch one record at a time, and the record that kills it then is
    dead-lettered (`processing_crashed`) on the next start."""
    lines = _stdin_events(300, {})
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    store, dlq = str(tmp_path / "seq"), str(tmp_path / "dlq.jsonl")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.join(REPO, "src")}
    env["DIE_ON_ITEM"] = "123"
    cmd = [sys.executable, str(hook), "stream", "run", "--source", "stdin", "--store", store]
    cmd += ["--dead-letters", dlq, "--batch-size", "50", "--no-progress"]
    codes = []
    for _ in range(10):  # a supervisor restarting it
        with open(src, "rb") as stdin:
            out = subprocess.run(cmd, stdin=stdin, capture_output=True, env=env, timeout=120)
        codes.append(out.returncode)
        if out.returncode == 0:
            break
    assert codes[-1] == 0 and len(codes) <= 5, codes  # max_restarts (3) + 1 careful run
    assert set(codes[:-1]) == {17}
    assert [(d["offset"], d["reason"]) for d in read_jsonl(dlq)] == [(123, ev.PROCESSING_CRASHED)]
    _, clean = _run_stdin(
        [x for i, x in enumerate(lines) if i != 123], str(tmp_path / "c"), None, 50
    )
    check = RocksDBSequenceStore(store)
    users = [kv for kv in check.dump() if kv[0].startswith(b"u/")]
    assert check.offsets() == {"stdin": 300}
    check.close()
    assert users == [kv for kv in clean if kv[0].startswith(b"u/")]
