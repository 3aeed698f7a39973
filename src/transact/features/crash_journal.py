"""Crash journal: stop a record that kills the stream processor from killing it forever.

An exception raised on a record is handled inside the run (:mod:`runner` bisects the
batch). A record that makes the *process* die (a segfault in a native library, the OOM
killer, ``os._exit``) leaves no exception to catch: the supervisor restarts the
processor, it resumes at the stored offsets, reads the same batch and dies again.

The journal is a small JSON file the runner rewrites before each batch (no fsync: it
only has to survive the death of the process, not of the machine)::

    {"lo": {"<source key>": first offset in the batch, ...}, "tries": k,
     "careful": null | ["<source key>", offset]}

* At a start, a batch that begins where the previous process's last batch began (same
  first offset for a source key) counts one more try; a clean exit or a Python
  exception removes the file, so only deaths count.
* After ``max_restarts`` tries the batch is processed one record at a time, each record
  named in ``careful`` before it is processed and committed alone.
* If the process dies then, the next start finds ``careful`` naming a record that is
  still not committed: that record is dead-lettered (``processing_crashed``) without
  being processed, and the stream goes on.

So a record that kills the processor costs ``max_restarts + 1`` restarts, once. A
``kill -9`` from outside during careful processing would condemn a good record (it is
in the dead-letter file, with its content): careful processing only starts after
``max_restarts`` starts in a row made no progress, which outside kills do not do.
One journal per processor process (`transact stream run` keeps it beside its
dead-letter file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

from transact.features.sources import RawBatch

log = logging.getLogger("transact.features")

DEFAULT_MAX_RESTARTS = 3


class CrashJournal:
    """The journal file of one processor (see the module docstring).

    Args:
        path: the journal file (``<dead-letter file>.inflight`` for ``transact stream run``).
        max_restarts: starts at the same batch without progress before it is processed
            one record at a time.

    Example::

        journal = CrashJournal("runs/stream/dead_letters.jsonl.inflight")
        run_stream(source, store, processor, validation, sink, journal=journal)
    """

    def __init__(self, path: str, max_restarts: int = DEFAULT_MAX_RESTARTS) -> None:
        if max_restarts < 1:
            raise ValueError(f"CrashJournal.max_restarts must be >= 1, got {max_restarts}")
        self.path = path
        self.max_restarts = max_restarts
        self.tries = 0
        self._previous: dict = {}
        self._lo: dict[str, int] = {}
        self._condemned: set[tuple[str, int]] = set()

    def open(self, stored_offsets: dict[str, int]) -> None:
        """Read what the previous process left (nothing after a clean exit) against the
        store's offsets now."""
        self._previous, self._condemned = {}, set()
        try:
            with open(self.path, encoding="utf-8") as f:
                previous = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:  # torn by a death mid-write: start afresh
            log.warning("crash journal %s unreadable (%s); ignoring it", self.path, exc)
            return
        if not isinstance(previous, dict):
            log.warning("crash journal %s holds no object; ignoring it", self.path)
            return
        self._previous = previous
        careful = previous.get("careful")
        if careful:
            key, offset = str(careful[0]), int(careful[1])
            if stored_offsets.get(key, 0) <= offset:  # died on it, never committed
                log.error(
                    "the previous processor died while processing %s offset %d alone; "
                    "it will be dead-lettered",
                    key,
                    offset,
                )
                self._condemned.add((key, offset))

    def condemned_in(self, batch: RawBatch) -> set[int]:
        """Positions in ``batch`` of records that killed the process (dead-letter them)."""
        if not self._condemned:
            return set()
        hits = {i for i, ko in enumerate(batch.keys_and_offsets()) if ko in self._condemned}
        for i in hits:
            self._condemned.discard(batch.keys_and_offsets()[i])
        return hits

    @staticmethod
    def first_offsets(batch: RawBatch) -> dict[str, int]:
        """Each source key's first offset in ``batch``."""
        lo: dict[str, int] = {}
        for key, offset in batch.keys_and_offsets():
            lo.setdefault(key, offset)
        return lo

    def begin(self, batch: RawBatch) -> bool:
        """Note that ``batch`` is being processed; ``True`` when it must be processed one
        record at a time (it began ``max_restarts`` starts in a row that all died)."""
        self._lo = self.first_offsets(batch)
        before = self._previous.get("lo") or {}
        again = any(before.get(k) == v for k, v in self._lo.items())
        self.tries = int(self._previous.get("tries", 0)) + 1 if again else 1
        self._write(None)
        return self.tries > self.max_restarts

    def careful(self, key: str, offset: int) -> None:
        """Record ``(key, offset)`` is about to be processed alone."""
        self._write([key, offset])

    def close(self) -> None:
        """The process ends without dying: remove the journal."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def _write(self, careful: list | None) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump({"lo": self._lo, "tries": self.tries, "careful": careful}, f)
