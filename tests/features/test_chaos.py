"""Chaos test (issue 18): kill -9 the stream processor at random points over a stream
that mixes in poison records, then compare with a clean run.

The stream (JSON lines on stdin, ~12k events over 300 users, with out-of-order, late and
redelivered events) carries three kinds of poison:

* records the decoder rejects: nesting 1,900 levels deep, lone surrogates (escaped and
  as raw CESU-8 bytes), booleans / numeric strings / floats / 2^63 / 3,000-digit numbers as
  ids, random bytes, JSON that is not an object, oversized payloads;
* records the (deliberately bugged, via a hook script) processor raises on;
* one record on which the process dies without an exception (``os._exit``, standing for
  a segfault or the OOM killer).

A supervisor loop restarts ``transact stream run`` after every death and SIGKILLs it at
random points (after a random number of commits plus a random delay). Checked at the
end: the store equals a clean run's byte for byte, with every offset consumed; every
poison record is in the dead-letter file exactly once with its reason; nothing is lost
(every line has exactly one outcome in the clean run, and the two runs agree).

Policy of the supervisor: a run that follows a run that died by itself is not killed
from outside. An outside SIGKILL while the crash journal processes a batch one record at
a time would condemn a good record (documented in ``features/crash_journal.py``).
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.features.event_logs import T0, make_events
from transact.features import events as ev
from transact.features.events import ValidationConfig, event_to_json
from transact.features.processor import ProcessorConfig, SequenceProcessor
from transact.features.runner import DeadLetterSink, run_stream
from transact.features.sources import JsonLinesSource
from transact.features.store import RocksDBSequenceStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAISE_ITEMS = (1_000_001, 1_000_002, 1_000_003)
KILL_ITEM = 2_000_000
DIED = 17

HOOK = f"""
import os, sys
from transact.features import processor
original = processor._UserWork.apply
def bugged(self, id_key, content_key, item, action, t, cfg):
    if item in {RAISE_ITEMS!r}:
        raise ZeroDivisionError(f"bug on item {{item}}")
    if item == {KILL_ITEM}:
        os._exit({DIED})  # no exception, no cleanup: a segfault or the OOM killer
    return original(self, id_key, content_key, item, action, t, cfg)
processor._UserWork.apply = bugged
from transact.features.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _decoder_poison(rng: random.Random) -> tuple[bytes, str]:
    """A record the decoder must dead-letter, and the reason it must give."""
    base = (
        f'"event_id": "z{rng.random()}", "item_id": 5, "action_type": "click", "timestamp_ms": {T0}'
    )
    choices = [
        (
            f'{{{base}, "user_id": 1, "x": '.encode() + b"[" * 1900 + b"]" * 1900 + b"}",
            ev.TOO_DEEPLY_NESTED,
        ),
        (
            f'{{{base}, "user_id": 1, "x": '.encode() + b'{"a":' * 30 + b"1" + b"}" * 30 + b"}",
            ev.TOO_DEEPLY_NESTED,
        ),
        (
            f'{{{base.replace("event_id", "id0")}, "event_id": "\\udc00", "user_id": 1}}'.encode(),
            ev.INVALID_ID,
        ),
        (
            f'{{{base}, "user_id": 1, "surface": "'.encode() + b"\xed\xb0\x80" + b'"}',
            ev.MALFORMED_JSON,
        ),
        (f'{{{base}, "user_id": true}}'.encode(), ev.WRONG_TYPE),
        (f'{{{base}, "user_id": "12"}}'.encode(), ev.WRONG_TYPE),
        (f'{{{base}, "user_id": 12.0}}'.encode(), ev.WRONG_TYPE),
        (f'{{{base}, "user_id": {2**63}}}'.encode(), ev.INVALID_ID),
        (f'{{{base}, "user_id": '.encode() + b"7" * 3000 + b"}", ev.INVALID_ID),
        (bytes(rng.getrandbits(8) | 0x80 for _ in range(40)), ev.MALFORMED_JSON),
        (b"[1, 2, 3]", ev.NOT_AN_OBJECT),
        (f'{{{base}, "user_id": 1, "pad": "{"p" * 5000}"}}'.encode(), ev.PAYLOAD_TOO_LARGE),
    ]
    return rng.choice(choices)


def _stream(seed: int = 5) -> tuple[list[bytes], dict[int, str], dict[int, str]]:
    """(lines, decoder poison offset -> reason, bugged-processor poison offset -> reason)."""
    n = 12_000
    base = make_events(
        n, n_users=300, n_items=5000, seed=seed, span_ms=6 * 3_600_000, jitter_ms=400_000
    )
    rows = base.to_pylist()
    rng = np.random.default_rng(seed)
    for i in rng.choice(n, n // 40, replace=False).tolist():  # redeliveries, a bit later
        rows.insert(min(len(rows), i + int(rng.integers(1, 200))), dict(rows[i]))
    tagged: list[tuple[bytes, str]] = [
        (
            event_to_json(
                r["event_id"], r["user_id"], r["item_id"], r["action_type"], r["timestamp_ms"]
            ),
            "",
        )
        for r in rows
    ]
    pick = random.Random(seed)
    for pos in sorted(pick.sample(range(len(tagged)), 120), reverse=True):
        raw, reason = _decoder_poison(pick)
        tagged.insert(pos, (raw, "decoder:" + reason))
    for frac, item in zip((0.2, 0.21, 0.5), RAISE_ITEMS, strict=True):
        raw = event_to_json(f"r{item}", 7, item, "click", T0 + 3_600_000)
        tagged.insert(int(len(tagged) * frac), (raw, "bugged:" + ev.PROCESSING_ERROR))
    raw = event_to_json("k", 8, KILL_ITEM, "click", T0 + 3_600_000)
    tagged.insert(int(len(tagged) * 0.85), (raw, "bugged:" + ev.PROCESSING_CRASHED))
    decoder = {i: t.split(":")[1] for i, (_, t) in enumerate(tagged) if t.startswith("decoder")}
    bugged = {i: t.split(":")[1] for i, (_, t) in enumerate(tagged) if t.startswith("bugged")}
    assert len(decoder) == 120 and len(bugged) == 4
    return [raw for raw, _ in tagged], decoder, bugged


def _clean_run(lines: list[bytes], bugged: dict[int, str], tmp) -> tuple[list, list[dict], dict]:  # type: ignore[no-untyped-def]
    """The reference: the same lines, the bugged records blanked (a correct processor
    could not have stored them either), no faults, one process."""
    clean = [b"{}" if i in bugged else x for i, x in enumerate(lines)]
    store = RocksDBSequenceStore(str(tmp / "clean"))
    sink = DeadLetterSink(str(tmp / "clean.dlq"))
    summary = run_stream(
        JsonLinesSource(io.BytesIO(b"\n".join(clean) + b"\n"), batch_size=400),
        store,
        SequenceProcessor(ProcessorConfig()),
        ValidationConfig(),
        sink,
        show_progress=False,
    )
    sink.close()
    dump = list(store.dump())
    store.close()
    with open(tmp / "clean.dlq") as f:
        letters = [json.loads(x) for x in f]
    return dump, letters, summary.to_dict()


@pytest.mark.slow
def test_kill_9_over_a_poisoned_stream_gives_the_clean_store_and_each_dead_letter_once(
    tmp_path,
):
    lines, decoder, bugged = _stream()
    clean_dump, clean_letters, clean_summary = _clean_run(lines, bugged, tmp_path)
    assert sum(clean_summary["outcomes"].values()) == len(lines)  # one outcome per line

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    hook = tmp_path / "bugged_cli.py"
    hook.write_text(HOOK)
    store, dlq = str(tmp_path / "chaos"), str(tmp_path / "chaos.dlq")
    cmd = [sys.executable, str(hook), "stream", "run", "--source", "stdin", "--store", store]
    cmd += ["--dead-letters", dlq, "--batch-size", "300", "--print-commits", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.join(REPO, "src")}
    rnd = random.Random(23)
    outside_kills, died, runs = 0, 0, 0
    previous_died = False
    while True:
        runs += 1
        assert runs <= 40, (outside_kills, died)
        with open(events, "rb") as stdin:
            proc = subprocess.Popen(
                cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
            )
        assert proc.stdout is not None
        killed = False
        if not previous_died and outside_kills < 8:
            wait_commits, seen = rnd.randint(1, 4), 0
            for line in proc.stdout:
                if line.startswith(b"commit"):
                    seen += 1
                    if seen >= wait_commits:
                        time.sleep(rnd.uniform(0, 0.03))  # mid-batch, mid-write, after a commit
                        proc.send_signal(signal.SIGKILL)
                        killed = True
                        break
        proc.stdout.read()
        rc = proc.wait()
        if killed and rc == -signal.SIGKILL:
            outside_kills += 1
            previous_died = False
            continue
        if rc == DIED:
            died += 1
            previous_died = True
            continue
        assert rc == 0, rc
        break
    assert outside_kills >= 5, outside_kills  # most land before the killer record
    assert died == 4  # the crash journal's 3 restarts + the one-record-at-a-time run

    check = RocksDBSequenceStore(store)
    chaos_dump = list(check.dump())
    check.close()
    assert chaos_dump == clean_dump  # users AND offsets ({"stdin": every line})

    with open(dlq) as f:
        letters = [json.loads(x) for x in f]
    got = [(d["offset"], d["reason"]) for d in letters]
    assert len(got) == len({o for o, _ in got}), "a record dead-lettered twice"
    expected = {d["offset"]: d["reason"] for d in clean_letters}
    expected.update(bugged)  # the clean run saw '{}' there (missing_field)
    assert dict(got) == expected
    assert {o: expected.get(o) for o in decoder} == decoder  # each with its reason
    late = clean_summary["dead_letters"].get(ev.LATE_EVENT, 0)
    assert late > 0 and len(got) == len(decoder) + len(bugged) + late
