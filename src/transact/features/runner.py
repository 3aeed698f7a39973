"""The processing loop shared by live streaming and backfill: source -> validate -> process -> commit.

Per micro-batch: validate (dead letters out), apply to user states, write the dead
letters (flushed and fsynced), then commit user values and the source offsets in ONE
atomic store write. A crash before the commit leaves the store at the previous batch and
the restart re-reads from the stored offsets, so the store's effect is exactly-once; the
dead-letter file is at-least-once (each record names its ``source`` and ``offset``, so a
reader can drop repeats).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from transact.features import metrics
from transact.features.events import (
    WRONG_PARTITION,
    DeadLetter,
    ValidationConfig,
    columns_from_arrow,
    columns_from_json,
)
from transact.features.processor import SequenceProcessor
from transact.features.sources import EventSource, RawBatch
from transact.features.store import CommitConflictError, SequenceStore

INVALID = "invalid"


class DeadLetterSink:
    """Appends dead letters as JSON lines to a file (or discards them when ``path`` is None,
    still counting them)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._f: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self.count = 0
        self._fsync = path is not None and os.path.isfile(path)  # not /dev/null or a pipe

    def write(self, letters: list[DeadLetter]) -> None:
        """Count, append and fsync ``letters`` (called before the batch's store commit)."""
        for d in letters:
            metrics.DEAD_LETTERS.labels(d.reason).inc()
        self.count += len(letters)
        if self._f is not None and letters:
            self._f.write("".join(d.to_json() + "\n" for d in letters))
            self._f.flush()
            if self._fsync:
                os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


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
        values = get(users)
        read.update(zip(users, values, strict=True))
        return values

    result = processor.process(cols, load)
    outcomes = result.outcomes
    outcomes[INVALID] += len(letters)
    expected = {u: read[u] for u in result.updates}
    return result.updates, letters + result.dead_letters, outcomes, expected


def commit_batch(
    batch: RawBatch,
    processor: SequenceProcessor,
    validation: ValidationConfig,
    store: SequenceStore,
    dead_letters: DeadLetterSink,
    max_attempts: int = 20,
) -> tuple[list[DeadLetter], Counter]:
    """Process and atomically commit one batch, re-processing it on a write conflict.

    Dead letters are written (fsynced) before the commit: at-least-once.
    """
    for _attempt in range(max_attempts):
        updates, letters, outcomes, expected = process_batch(batch, processor, validation, store)
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
) -> RunSummary:
    """Drain ``source`` into ``store`` from its stored offsets; returns totals.

    Args:
        on_commit: called after each commit with the batch and the wall time in ms
            (the freshness benchmark and the crash test hook in here).
        max_batches: stop after this many batches (``None``: until the source ends).
    """
    from tqdm import tqdm

    summary = RunSummary()
    start = time.perf_counter()
    bar = tqdm(total=progress_total, unit="ev", disable=not show_progress, file=sys.stderr)
    try:
        for batch in source.batches(store.offsets):
            t0 = time.perf_counter()
            letters, outcomes = commit_batch(batch, processor, validation, store, dead_letters)
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
        bar.close()
        summary.seconds = time.perf_counter() - start
    return summary
