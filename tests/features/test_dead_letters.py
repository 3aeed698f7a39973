"""The dead-letter file: a torn last line is repaired, and a restart does not repeat the
dead letters of the batch it re-processes (exactly once in the file)."""

from __future__ import annotations

import io
import json

import pytest

from tests.features.event_logs import T0
from transact.features import events as ev
from transact.features.dead_letters import DeadLetterSink
from transact.features.events import DeadLetter, ValidationConfig, event_to_json
from transact.features.processor import ProcessorConfig, SequenceProcessor
from transact.features.runner import run_stream
from transact.features.sources import JsonLinesSource
from transact.features.store import RocksDBSequenceStore


def _letter(offset: int, source: str = "stdin") -> DeadLetter:
    return DeadLetter(ev.MALFORMED_JSON, "bad", source, offset, "x")


def _lines(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_a_torn_last_line_is_cut_before_appending(tmp_path):
    path = str(tmp_path / "dlq.jsonl")
    with open(path, "w") as f:
        f.write(_letter(1).to_json() + "\n" + _letter(2).to_json()[:17])  # died mid-write
    sink = DeadLetterSink(path)
    sink.resume({"stdin": 5})
    sink.write([_letter(6)])
    sink.close()
    assert [d["offset"] for d in _lines(path)] == [1, 6]


def test_letters_already_written_for_an_uncommitted_batch_are_not_repeated(tmp_path):
    path = str(tmp_path / "dlq.jsonl")
    sink = DeadLetterSink(path)
    sink.write([_letter(1), _letter(2, "kafka/t/0")])  # committed
    sink.write([_letter(7), _letter(9), _letter(3, "kafka/t/0")])  # written, then a crash
    sink.close()
    sink = DeadLetterSink(path)
    sink.resume({"stdin": 5, "kafka/t/0": 3})
    sink.write([_letter(7), _letter(8), _letter(9), _letter(3, "kafka/t/0")])  # re-processed
    sink.write([_letter(9)])  # a later batch may dead-letter the same offset again: kept
    sink.close()
    got = [(d["source"], d["offset"]) for d in _lines(path)]
    assert got == [
        ("stdin", 1),
        ("kafka/t/0", 2),
        ("stdin", 7),
        ("stdin", 9),
        ("kafka/t/0", 3),
        ("stdin", 8),
        ("stdin", 9),
    ]


class _Crash(BaseException):
    """Stands for SIGKILL between the dead-letter write and the store commit."""


def test_a_crash_between_dead_letters_and_commit_repeats_nothing(tmp_path, monkeypatch):
    lines = [event_to_json(f"c{i}", i % 5, i, "click", T0 + i) for i in range(200)]
    for i in range(0, 200, 7):
        lines[i] = b"{broken " + str(i).encode()
    data = b"\n".join(lines) + b"\n"
    store_path, dlq = str(tmp_path / "s"), str(tmp_path / "dlq.jsonl")

    def run() -> None:
        store = RocksDBSequenceStore(store_path)
        sink = DeadLetterSink(dlq)
        try:
            run_stream(
                JsonLinesSource(io.BytesIO(data), batch_size=30),
                store,
                SequenceProcessor(ProcessorConfig()),
                ValidationConfig(),
                sink,
                show_progress=False,
            )
        finally:
            sink.close()
            store.close()

    commits = {"n": 0}
    real_commit = RocksDBSequenceStore.commit

    def crashing_commit(self, updates, offsets, expected=None):  # type: ignore[no-untyped-def]
        commits["n"] += 1
        if commits["n"] == 3:
            raise _Crash
        return real_commit(self, updates, offsets, expected)

    monkeypatch.setattr(RocksDBSequenceStore, "commit", crashing_commit)
    with pytest.raises(_Crash):
        run()
    monkeypatch.setattr(RocksDBSequenceStore, "commit", real_commit)
    run()
    offsets = [d["offset"] for d in _lines(dlq)]
    assert offsets == list(range(0, 200, 7))  # each once, in stream order
