"""The PyFlink job (``transact.features.flink_job``) in Flink's local mini-cluster equals
the embedded processor byte for byte.

PyFlink cannot live in the project venv (docs/realtime.md, Flink), so the job runs in
``.venv-flink`` (``make flink-env``) as a subprocess; ``TRANSACT_FLINK_PYTHON`` names
another interpreter. Without one the test skips and says how to build it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time

import pytest

from transact.features.events import DeadLetter, ValidationConfig
from transact.features.flink_output import read_dead_letters, read_upserts
from transact.features.processor import ProcessorConfig, SequenceProcessor
from transact.features.runner import DeadLetterSink, run_stream
from transact.features.sources import JsonLinesSource
from transact.features.store import USER_PREFIX, RocksDBSequenceStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T0 = 1_700_000_000_000
ENGAGEMENTS = ("closeup", "click", "repin", "hide")


def flink_python() -> str:
    """The interpreter with PyFlink: ``$TRANSACT_FLINK_PYTHON`` or ``.venv-flink``."""
    path = os.environ.get("TRANSACT_FLINK_PYTHON") or os.path.join(
        REPO, ".venv-flink", "bin", "python"
    )
    if not os.access(path, os.X_OK):
        pytest.skip(
            f"no PyFlink interpreter at {path}: build it with `make flink-env` "
            "(Java 17 + apache-flink) or set TRANSACT_FLINK_PYTHON"
        )
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: PyFlink's mini-cluster needs Java 17")
    probe = subprocess.run([path, "-c", "import pyflink"], capture_output=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"{path} cannot import pyflink: rebuild it with `make flink-env`")
    return path


def write_events(path: str) -> dict[int, str]:
    """A few hundred JSON lines with redeliveries, content duplicates, out-of-order and
    late events, impressions (filtered) and malformed lines. Returns ``line number ->
    reason`` of every line that must be dead-lettered."""
    rng = random.Random(6)
    lines: list[str] = []
    rejects: dict[int, str] = {}
    accepted: list[dict] = []
    for i in range(300):
        user = rng.randrange(12)
        # 20 s apart, up to 2 min early: out of order, but within the 5 min lateness
        event = {
            "event_id": f"e{i}",
            "user_id": user,
            "item_id": rng.randrange(500),
            "action_type": rng.choice(("impression",) + ENGAGEMENTS),
            "timestamp_ms": T0 + i * 20_000 - rng.randrange(120_000),
            "surface": "homefeed",
        }
        lines.append(json.dumps(event))
        if event["action_type"] == "impression":
            continue
        accepted.append(event)
        if i % 7 == 3:  # redelivery of an earlier event (same id)
            lines.append(json.dumps(rng.choice(accepted[-10:])))
        if i % 11 == 5:  # a second source logging the same action under another id
            lines.append(json.dumps({**rng.choice(accepted[-10:]), "event_id": f"copy{i}"}))
        if i % 13 == 8:  # an hour behind this user's newest action: late
            rejects[len(lines)] = "late_event"
            late = {
                **event,
                "event_id": f"late{i}",
                "timestamp_ms": event["timestamp_ms"] - 3_600_000,
            }
            lines.append(json.dumps(late))
    bad = {
        "malformed_json": "{not json",
        "not_an_object": "[1, 2]",
        "missing_field": json.dumps({"event_id": "m", "user_id": 1, "item_id": 2}),
        "wrong_type": json.dumps(
            {
                "event_id": "w",
                "user_id": "1",
                "item_id": 2,
                "action_type": "click",
                "timestamp_ms": T0,
            }
        ),
        "unknown_action": json.dumps(
            {"event_id": "u", "user_id": 1, "item_id": 2, "action_type": "like", "timestamp_ms": T0}
        ),
        "invalid_id": json.dumps(
            {"event_id": "", "user_id": 1, "item_id": 2, "action_type": "click", "timestamp_ms": T0}
        ),
        "timestamp_too_old": json.dumps(
            {"event_id": "o", "user_id": 1, "item_id": 2, "action_type": "click", "timestamp_ms": 5}
        ),
        "timestamp_in_future": json.dumps(
            {
                "event_id": "f",
                "user_id": 1,
                "item_id": 2,
                "action_type": "click",
                "timestamp_ms": 2**50,
            }
        ),
    }
    for k, (reason, line) in enumerate(bad.items()):
        at = 40 + 37 * k  # spread through the stream
        lines.insert(at, line)
        rejects = {(o + 1 if o >= at else o): r for o, r in rejects.items()}
        rejects[at] = reason
    rejects[len(lines)] = "malformed_json"  # an empty line
    lines.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return rejects


def user_values(store: RocksDBSequenceStore) -> dict[bytes, bytes]:
    return {k: v for k, v in store.dump() if k.startswith(USER_PREFIX)}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_flink_job_in_local_mini_cluster_equals_the_embedded_processor(tmp_path) -> None:
    python = flink_python()
    events = str(tmp_path / "events.jsonl")
    expected_rejects = write_events(events)

    # the embedded path, as `transact stream run --source stdin` runs it (small batches)
    embedded = RocksDBSequenceStore(str(tmp_path / "embedded.rocksdb"))
    sink = DeadLetterSink(str(tmp_path / "embedded_dlq.jsonl"))
    with open(events, "rb") as f:
        summary = run_stream(
            JsonLinesSource(f, batch_size=64, source_key="file"),
            embedded,
            SequenceProcessor(ProcessorConfig()),
            ValidationConfig(),
            sink,
            show_progress=False,
        )
    sink.close()
    # the stream exercises every rule, or the comparison proves little
    for outcome in (
        "accepted",
        "duplicate_event_id",
        "duplicate_content",
        "late",
        "filtered_action",
    ):
        assert summary.outcomes[outcome] > 0, (outcome, summary.outcomes)

    # the Flink job, same events, keyed operator at parallelism 2
    out = tmp_path / "flink"
    env = {**os.environ, "PYTHONPATH": os.path.join(REPO, "src")}
    start = time.perf_counter()
    proc = subprocess.run(
        [python, "-m", "transact.features.flink_job", "--source", f"file:{events}",
         "--output", str(out), "--store", str(tmp_path / "flink.rocksdb"),
         "--parallelism", "2", "--checkpoint-interval-ms", "500"],
        capture_output=True, text=True, timeout=200, env=env, cwd=str(tmp_path),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    job = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"flink job: pyflink {job['pyflink']}, {seconds:.1f} s wall", file=sys.stderr)

    # every user's value, byte for byte: the upsert files and the store loaded from them
    flink_store = RocksDBSequenceStore(str(tmp_path / "flink.rocksdb"))
    try:
        expected = user_values(embedded)
        assert len(expected) == 12
        assert user_values(flink_store) == expected
        assert {
            USER_PREFIX + u.to_bytes(8, "big"): v for u, v in read_upserts(str(out)).items()
        } == expected
    finally:
        flink_store.close()
        embedded.close()

    # dead letters: the same records (reason, detail, source, offset, event) as the
    # embedded run, and each line written as a reject is there with its reason
    with open(tmp_path / "embedded_dlq.jsonl", encoding="utf-8") as f:
        embedded_letters = sorted(
            (DeadLetter(**json.loads(line)) for line in f),
            key=lambda d: (d.source, d.offset, d.reason),
        )
    flink_letters = read_dead_letters(str(out))
    assert flink_letters == embedded_letters
    assert {d.offset: d.reason for d in flink_letters} == expected_rejects
    assert job["dead_letters"] == dict(sorted(summary.dead_letters.items()))


def test_stream_flink_cli_teaches_how_to_get_the_environment(monkeypatch, capsys) -> None:
    from transact.features.cli import main

    monkeypatch.setenv("TRANSACT_FLINK_PYTHON", "/nonexistent/python")
    assert main(["stream", "flink", "--help"]) == 0
    out = capsys.readouterr().out
    assert "make flink-env" in out and "no PyFlink interpreter found" in out
    assert main(["stream", "flink", "--source", "file:x", "--output", "y"]) == 2
    assert "make flink-env" in capsys.readouterr().err
