"""The realtime path of a simulated environment: its events -> stream processor -> store.

Every round's events (``StepResult.events_table()``, rows of ``events_schema()``) go
through the same code ``transact stream run`` runs (``features.runner.commit_batch``:
validate, dedup, lateness, sequence update, one atomic RocksDB write with the offsets),
into the sequence store the environment's rankers read with
``features.reader.SequenceReader``. There is no other way for an action to reach a model:
the store holds what the processor accepted, dead letters are counted and kept in a file.

The store starts as the production store at the end of the offline world: the world's
event log replayed through the processor (:func:`backfill`), once per run; a paired arm
starts from a copy of it (:func:`copy_store`).
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from transact.data.io import load_manifest
from transact.features.dead_letters import DeadLetterSink
from transact.features.events import ValidationConfig
from transact.features.processor import ProcessorConfig, SequenceProcessor
from transact.features.runner import commit_batch, run_stream
from transact.features.sources import ParquetReplaySource, RawBatch
from transact.features.store import RocksDBSequenceStore

BACKFILL_SOURCE = "replay"


@dataclass
class StreamStats:
    """What a stream processed: events, batches, outcomes and dead letters by reason."""

    events: int = 0
    batches: int = 0
    outcomes: Counter = field(default_factory=Counter)
    dead_letters: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, object]:
        return {
            "events": self.events,
            "batches": self.batches,
            "outcomes": dict(sorted(self.outcomes.items())),
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "dead_letters_total": int(sum(self.dead_letters.values())),
        }


def processor_config(seq_len: int) -> ProcessorConfig:
    """The operator's rules: the defaults of ``transact stream run`` with the store keeping
    ``seq_len`` actions (the longest sequence a served model reads)."""
    return ProcessorConfig(capacity=max(seq_len, 1))


def backfill(world_dir: str | Path, store_dir: str | Path, seq_len: int) -> StreamStats:
    """Replay the offline world's event log into a new RocksDB store at ``store_dir``
    (``transact stream run --source parquet:WORLD``); returns what it processed."""
    manifest = load_manifest(world_dir)
    store = RocksDBSequenceStore(str(store_dir))
    try:
        summary = run_stream(
            ParquetReplaySource(str(world_dir), batch_size=50_000, source_key=BACKFILL_SOURCE),
            store,
            SequenceProcessor(processor_config(seq_len)),
            ValidationConfig(actions=manifest.actions, n_items=manifest.n_items),
            DeadLetterSink(None),
            show_progress=False,
        )
    finally:
        store.close()
    return StreamStats(
        summary.events, summary.batches, Counter(summary.outcomes), Counter(summary.dead_letters)
    )


def copy_store(source_dir: str | Path, dest_dir: str | Path) -> None:
    """Copy a closed RocksDB store directory (a paired arm's store starts as the site's)."""
    shutil.copytree(source_dir, dest_dir)


class OnlineStream:
    """One environment's stream: its processor, store and dead-letter file.

    Args:
        store_dir: the RocksDB directory (opened read-write: this is its only writer).
        dead_letters: the dead-letter file (JSON lines).
        source_key: the offset key of this stream's events in the store.
        world_dir: the world dir (action vocabulary, item count for validation).
        seq_len: actions kept per user.

    Each :meth:`feed` is one micro-batch of ``transact stream run``: the store's offsets
    advance with it, so the store says how many online events it has applied.
    """

    def __init__(
        self,
        store_dir: str | Path,
        dead_letters: str | Path,
        source_key: str,
        world_dir: str | Path,
        seq_len: int,
    ) -> None:
        manifest = load_manifest(world_dir)
        self.store = RocksDBSequenceStore(str(store_dir))
        self.processor = SequenceProcessor(processor_config(seq_len))
        self.validation = ValidationConfig(actions=manifest.actions, n_items=manifest.n_items)
        self.sink = DeadLetterSink(str(dead_letters))
        self.source_key = source_key
        self.offset = self.store.offsets().get(source_key, 0)
        self.sink.resume(self.store.offsets())
        self.stats = StreamStats()

    def feed(self, events: pa.Table, server_time_ms: int) -> None:
        """Process one round's events (``events_schema()``, time-ordered) and commit them.

        ``server_time_ms`` is the simulated clock when the batch reaches the processor
        (the round's last event): the future-timestamp check runs against it.
        """
        n = events.num_rows
        if n == 0:
            return
        batch = RawBatch(
            next_offsets={self.source_key: self.offset + n},
            table=events,
            first_offset=self.offset,
            source=self.source_key,
            server_time_ms=int(server_time_ms),
        )
        letters, outcomes = commit_batch(
            batch, self.processor, self.validation, self.store, self.sink
        )
        self.offset += n
        self.stats.events += n
        self.stats.batches += 1
        self.stats.outcomes.update(outcomes)
        self.stats.dead_letters.update(d.reason for d in letters)

    def close(self) -> None:
        self.sink.close()
        self.store.close()
