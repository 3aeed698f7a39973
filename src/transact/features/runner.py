"""The processing loop shared by live streaming and backfill: source -> validate -> process -> commit.

Per micro-batch: validate (dead letters out), apply to user states, write the dead
letters (flushed and fsynced), then commit user values and the source offsets in ONE
atomic store write. A crash before the commit leaves the store at the previous batch and
the restart re-reads from the stored offsets, so the store's effect is exactly-once; the
dead-letter file is at-least-once (each record names its ``source`` and ``offset``, so a
reader can drop repeats).

No record can stop the stream (issue 18):

* A record the validator rejects is a dead letter with its reason (:mod:`events`).
* If validating or processing a batch **raises** (a bug that some record triggers), the
  batch is bisected: halves that succeed are committed in order, a single record that
  still raises after ``record_attempts`` tries alone is dead-lettered as
  ``processing_error`` with the exception, and the run goes on. Store failures
  (:class:`StoreUnavailableError`) are not blamed on records: they stop the run, with
  nothing committed, for a supervisor to restart.
* If a record **kills the process** (no exception: a segfault, the OOM killer), every
  restart would die at the same offset. The :class:`~transact.features.crash_journal.
  CrashJournal` notices starts without progress and has that batch processed one record
  at a time; the record the process then dies on is dead-lettered as
  ``processing_crashed`` on the next start.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from transact.features import metrics
from transact.features.crash_journal import CrashJournal
from transact.features.dead_letters import DeadLetterSink
from transact.features.events import (
    PROCESSING_CRASHED,
    PROCESSING_ERROR,
    WRONG_PARTITION,
    DeadLetter,
    ValidationConfig,
    columns_from_arrow,
    columns_from_json,
)
from transact.features.processor import SequenceProcessor
from transact.features.sources import EventSource, RawBatch
from transact.features.store import CommitConflictError, SequenceStore, StoreUnavailableError

INVALID = "invalid"
DEFAULT_RECORD_ATTEMPTS = 3
_MAX_DETAIL_EVENT_CHARS = 2048

log = logging.getLogger("transact.features")


@dataclass
class RunSummary:
    """Totals of a run (also printed as JSON by the CLI)."""

    events: int = 0
    batches: int = 0
    outcomes: Counter = field(default_factory=Counter)
    dead_letters: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "events": self.events,
            "batches": self.batches,
            "outcomes": dict(sorted(self.outcomes.items())),
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events / self.seconds, 1) if self.seconds > 0 else None,
        }


def process_batch(
    batch: RawBatch,
    processor: SequenceProcessor,
    validation: ValidationConfig,
    store: SequenceStore,
) -> tuple[dict[int, bytes], list[DeadLetter], Counter, dict[int, bytes | None]]:
    """Validate and apply one raw batch against ``store`` (no write).

    Returns the new user values, the dead letters, the outcome counts, and the values
    the batch was computed from (for the store's conflict check).
    """
    if batch.table is not None:
        cols, letters = columns_from_arrow(
            batch.table, validation, batch.source, batch.first_offset, batch.server_time_ms
        )
    else:
        cols, letters = columns_from_json(
            batch.messages, validation, batch.sources, batch.offsets, batch.server_times_ms
        )
    accepts = getattr(store, "accepts", None)  # sharded stores: events on their user's partition
    if accepts is not None and len(cols):
        mask = accepts(cols.user_ids, cols.sources)
        for i in np.flatnonzero(~mask).tolist():
            letters.append(
                DeadLetter(
                    WRONG_PARTITION,
                    f"user {int(cols.user_ids[i])}'s events belong to another partition "
                    f"than {cols.sources[i]} (row {int(cols.offsets[i])}); key events by user id",
                    cols.sources[i],
                    int(cols.offsets[i]),
                    f'{{"event_id": "{cols.event_ids[i]}", "user_id": {int(cols.user_ids[i])}}}',
                )
            )
        if not mask.all():
            cols = cols.take(np.flatnonzero(mask))
    read: dict[int, bytes | None] = {}

    # stores shared by several writers read-and-watch in one step (Redis WATCH + MGET)
    get = getattr(store, "read_for_update", store.get_many)

    def load(users: list[int]) -> list[bytes | None]:
        try:
            values = get(users)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # whatever the client raises: the store's fault, not a record's
            raise StoreUnavailableError(f"sequence store read failed: {exc!r}") from exc
        read.update(zip(users, values, strict=True))
        return values

    result = processor.process(cols, load)
    outcomes = result.outcomes
    outcomes[INVALID] += len(letters)
    expected = {u: read[u] for u in result.updates}
    return result.updates, letters + result.dead_letters, outcomes, expected


class _RecordFault(Exception):
    """Validating or processing a batch raised; ``error`` is what it raised."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


def _commit_whole(
    batch: RawBatch,
    processor: SequenceProcessor,
    validation: ValidationConfig,
    store: SequenceStore,
    dead_letters: DeadLetterSink,
    max_attempts: int,
) -> tuple[list[DeadLetter], Counter]:
    """Process and commit ``batch`` as one unit, re-processing it on a write conflict.

    Raises :class:`_RecordFault` when processing raises anything but a store failure;
    dead-letter and commit failures propagate as they are (not the records' fault)."""
    for _attempt in range(max_attempts):
        try:
            updates, letters, outcomes, expected = process_batch(
                batch, processor, validation, store
            )
        except StoreUnavailableError:
            raise
        except Exception as exc:  # RecursionError and MemoryError included: a record's doing
            raise _RecordFault(exc) from exc
        dead_letters.write(letters)
        try:
            store.commit(updates, batch.next_offsets, expected)
        except CommitConflictError:
            metrics.CONFLICTS.inc()
            continue
        return letters, outcomes
    raise CommitConflictError(
        f"batch at offsets {batch.next_offsets} conflicted {max_attempts} times"
    )


def _fault_letter(batch: RawBatch, reason: str, detail: str) -> DeadLetter:
    """The dead letter of the one record of ``batch``."""
    source, offset = batch.keys_and_offsets()[0]
    text = batch.record_text(0)
    if len(text) > _MAX_DETAIL_EVENT_CHARS:
        text = text[:_MAX_DETAIL_EVENT_CHARS] + f"...<truncated, {len(text)} chars>"
    return DeadLetter(reason, f"{detail} (offset {offset})", source, offset, text)


def _bisect(
    batch: RawBatch,
    processor: SequenceProcessor,
    validation: ValidationConfig,
    store: SequenceStore,
    dead_letters: DeadLetterSink,
    max_attempts: int,
    record_attempts: int,
) -> tuple[list[DeadLetter], Counter]:
    """Commit ``batch`` (whose processing raised) in the largest pieces that work, in
    stream order; a single record that raises ``record_attempts`` times is dead-lettered.

    Each piece is committed with its own offsets, so a crash in here resumes correctly,
    and since batch boundaries do not change the processor's result, the store ends as a
    run over the stream without the failing records would leave it."""
    letters: list[DeadLetter] = []
    outcomes: Counter = Counter()
    mid = len(batch) // 2  # the whole batch failed already: start with its halves
    pending = [batch.slice(mid, len(batch)), batch.slice(0, mid)] if mid else [batch]
    while pending:
        piece = pending.pop()
        got: tuple[list[DeadLetter], Counter] | None = None
        if len(piece) > 1:
            try:
                got = _commit_whole(piece, processor, validation, store, dead_letters, max_attempts)
            except _RecordFault:
                mid = len(piece) // 2
                pending += [piece.slice(mid, len(piece)), piece.slice(0, mid)]  # left first
                continue
        else:
            fault: _RecordFault | None = None
            for _try in range(record_attempts):
                try:
                    got = _commit_whole(
                        piece, processor, validation, store, dead_letters, max_attempts
                    )
                    break
                except _RecordFault as exc:
                    fault = exc
            if got is None:
                assert fault is not None
                err = fault.error
                log.error(
                    "record %s failed %d times alone; dead-lettered as %s",
                    piece.keys_and_offsets()[0],
                    record_attempts,
                    PROCESSING_ERROR,
                    exc_info=err,
                )
                letter = _fault_letter(
                    piece,
                    PROCESSING_ERROR,
                    f"{type(err).__name__}: {str(err)[:500]} (raised {record_attempts} times "
                    "on this record alone)",
                )
                dead_letters.write([letter])
                store.commit({}, piece.next_offsets)
                got = ([letter], Counter({INVALID: 1}))
        letters += got[0]
        outcomes.update(got[1])
    return letters, outcomes


def commit_batch(
    batch: RawBatch,
    processor: SequenceProcessor,
    validation: ValidationConfig,
    store: SequenceStore,
    dead_letters: DeadLetterSink,
    max_attempts: int = 20,
    record_attempts: int = DEFAULT_RECORD_ATTEMPTS,
) -> tuple[list[DeadLetter], Counter]:
    """Process and atomically commit one batch, re-processing it on a write conflict.

    Dead letters are written (fsynced) before the commit: at-least-once. If processing
    raises, the batch is bisected and the records that keep raising are dead-lettered
    (module docstring); ``max_attempts`` bounds write-conflict retries per piece.
    """
    try:
        return _commit_whole(batch, processor, validation, store, dead_letters, max_attempts)
    except _RecordFault as fault:
        metrics.PROCESSING_FAULTS.inc()
        log.warning(
            "processing a batch of %d records raised %r; isolating the records at fault",
            len(batch),
            fault.error,
        )
        return _bisect(
            batch, processor, validation, store, dead_letters, max_attempts, record_attempts
        )


def _commit_with_journal(
    batch: RawBatch,
    processor: SequenceProcessor,
    validation: ValidationConfig,
    store: SequenceStore,
    dead_letters: DeadLetterSink,
    journal: CrashJournal,
) -> tuple[list[DeadLetter], Counter]:
    """:func:`commit_batch` under the crash journal: records that killed the process
    before are dead-lettered unprocessed, and a batch that keeps killing it runs one
    record at a time."""
    letters: list[DeadLetter] = []
    outcomes: Counter = Counter()
    condemned = journal.condemned_in(batch)
    if condemned:
        dead = [
            _fault_letter(
                batch.slice(i, i + 1),
                PROCESSING_CRASHED,
                "the process died while processing this record alone, after "
                f"{journal.max_restarts} restarts without progress at its batch",
            )
            for i in sorted(condemned)
        ]
        log.error("dead-lettering %d records that crashed the processor", len(dead))
        dead_letters.write(dead)
        letters += dead
        outcomes[INVALID] += len(dead)
        batch = batch.without(condemned)
    if not journal.begin(batch):
        got = commit_batch(batch, processor, validation, store, dead_letters)
        letters += got[0]
        outcomes.update(got[1])
        return letters, outcomes
    log.warning(
        "batch at %s started %d times without progress: processing it one record at a time",
        journal.first_offsets(batch),
        journal.tries,
    )
    if len(batch) == 0:  # only condemned records: just move the offsets
        store.commit({}, batch.next_offsets)
    for i in range(len(batch)):
        one = batch.slice(i, i + 1)
        journal.careful(*one.keys_and_offsets()[0])
        if i == len(batch) - 1:
            one.next_offsets.update(batch.next_offsets)  # past dropped records as well
        got = commit_batch(one, processor, validation, store, dead_letters)
        letters += got[0]
        outcomes.update(got[1])
    return letters, outcomes


def run_stream(
    source: EventSource,
    store: SequenceStore,
    processor: SequenceProcessor,
    validation: ValidationConfig,
    dead_letters: DeadLetterSink,
    progress_total: int | None = None,
    show_progress: bool = True,
    on_commit: Callable[[RawBatch, int], None] | None = None,
    max_batches: int | None = None,
    journal: CrashJournal | None = None,
) -> RunSummary:
    """Drain ``source`` into ``store`` from its stored offsets; returns totals.

    Args:
        on_commit: called after each commit with the batch and the wall time in ms
            (the freshness benchmark and the crash test hook in here).
        max_batches: stop after this many batches (``None``: until the source ends).
        journal: the crash journal (``transact stream run`` keeps one beside the
            dead-letter file); ``None``: a record that kills the process is not
            detected (exceptions are still isolated).
    """
    from tqdm import tqdm

    summary = RunSummary()
    start = time.perf_counter()
    bar = tqdm(total=progress_total, unit="ev", disable=not show_progress, file=sys.stderr)
    stored = store.offsets()
    dead_letters.resume(stored)
    if journal is not None:
        journal.open(stored)
    try:
        for batch in source.batches(store.offsets):
            t0 = time.perf_counter()
            if journal is None:
                letters, outcomes = commit_batch(batch, processor, validation, store, dead_letters)
            else:
                letters, outcomes = _commit_with_journal(
                    batch, processor, validation, store, dead_letters, journal
                )
            committed_ms = int(time.time() * 1000)
            source.on_committed(batch)
            metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)
            metrics.COMMITS.inc()
            for k, v in outcomes.items():
                if v:
                    metrics.EVENTS.labels(k).inc(v)
            summary.outcomes.update(outcomes)
            summary.dead_letters.update(d.reason for d in letters)
            summary.events += len(batch)
            summary.batches += 1
            bar.update(len(batch))
            if on_commit is not None:
                on_commit(batch, committed_ms)
            if max_batches is not None and summary.batches >= max_batches:
                break
    finally:
        # reached on a clean end AND on an exception: the process did not die on a
        # record, so the next start must not count this one as a crash
        if journal is not None:
            journal.close()
        bar.close()
        summary.seconds = time.perf_counter() - start
    return summary
