"""The dead-letter file: one JSON line per rejected record, written before the store commit.

The runner writes (and fsyncs) a batch's dead letters, then commits the batch's store
effects and offsets. A crash in between leaves dead letters of a batch that the restart
processes again. :meth:`DeadLetterSink.resume` makes that harmless:

* a last line cut by the crash (no newline) is cut off, so the file stays valid JSONL;
* the lines at the end of the file whose records are not committed yet (offset at or
  past the store's offset for their source) are remembered, and the re-processed batch
  does not write them a second time.

So a record is in the file once, as long as re-processing rejects it again with the same
reason: true for every reason but ``timestamp_in_future`` on sources whose server time is
the wall clock at read (stdin), where an event can turn valid between the two reads.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import IO

from transact.features import metrics
from transact.features.events import DeadLetter

log = logging.getLogger("transact.features")

_CHUNK = 1 << 16


def _lines_backwards(f: IO[bytes], end: int) -> Iterator[bytes]:
    """The lines of ``f[:end]`` (which ends in a newline or is empty), last first."""
    pos, carry = end, b""
    while pos > 0:
        step = min(_CHUNK, pos)
        pos -= step
        f.seek(pos)
        parts = (f.read(step) + carry).split(b"\n")
        carry = parts[0] if pos > 0 else b""  # maybe the end of a longer line: read on
        yield from reversed(parts[1:] if pos > 0 else parts)


def _uncommitted_tail(
    path: str, stored_offsets: dict[str, int]
) -> tuple[int, set[tuple[str, int, str]]]:
    """``(size to keep, keys of the uncommitted tail)`` of the dead-letter file.

    The size to keep drops a torn last line (no newline). The tail is read backwards up to
    the first line whose record is committed: everything after it was written for the
    batch in progress at the crash."""
    size = os.path.getsize(path)
    tail: set[tuple[str, int, str]] = set()
    with open(path, "rb") as f:
        keep = size
        if size:
            f.seek(max(0, size - _CHUNK))
            last = f.read()
            if not last.endswith(b"\n"):
                cut = last.rfind(b"\n")
                keep = size - len(last) + cut + 1 if cut >= 0 else size - len(last)
                log.warning(
                    "dead-letter file %s ends in a torn line (%d bytes); cutting it",
                    path,
                    size - keep,
                )
        for raw in _lines_backwards(f, keep):
            if not raw.strip():
                continue
            try:
                d = json.loads(raw)
                key = (str(d["source"]), int(d["offset"]), str(d["reason"]))
            except (ValueError, KeyError, TypeError):
                log.warning("dead-letter file %s: unreadable line %r", path, raw[:80])
                continue
            if key[1] < stored_offsets.get(key[0], 0):
                break  # committed: the tail ends here
            tail.add(key)
    return keep, tail


class DeadLetterSink:
    """Appends dead letters as JSON lines to a file (or discards them when ``path`` is None,
    still counting them).

    Call :meth:`resume` with the store's offsets before the first batch (the runner
    does), so a restart after a crash neither repeats lines nor appends to a torn one.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._f: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self.count = 0
        self._fsync = path is not None and os.path.isfile(path)  # not /dev/null or a pipe
        self._written_before: set[tuple[str, int, str]] = set()

    def resume(self, stored_offsets: dict[str, int]) -> None:
        """Repair a torn last line and remember the uncommitted tail (module docstring)."""
        if self._f is None or not self._fsync or self.path is None:
            return
        keep, self._written_before = _uncommitted_tail(self.path, stored_offsets)
        if keep < os.path.getsize(self.path):
            self._f.flush()
            os.truncate(self.path, keep)
        if self._written_before:
            log.info(
                "%d dead letters of the interrupted batch are already in %s; not repeated",
                len(self._written_before),
                self.path,
            )

    def write(self, letters: list[DeadLetter]) -> None:
        """Count, append and fsync ``letters`` (called before the batch's store commit)."""
        for d in letters:
            metrics.DEAD_LETTERS.labels(d.reason).inc()
        self.count += len(letters)
        if self._written_before:
            fresh = []
            for d in letters:
                key = (d.source, d.offset, d.reason)
                if key in self._written_before:
                    self._written_before.discard(key)  # once: a later repeat is real
                else:
                    fresh.append(d)
            letters = fresh
        if self._f is not None and letters:
            self._f.write("".join(d.to_json() + "\n" for d in letters))
            self._f.flush()
            if self._fsync:
                os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
