"""Event sources that resume from the offsets stored with the sequences.

Each source yields :class:`RawBatch` micro-batches. A batch carries the next offset of
every source key it read from; the runner commits those with the store update, and a
restarted source skips everything below the stored offsets. Sources here: Parquet log
replay (backfill and the embedded default) and JSON lines (stdin). Kafka is in
:mod:`transact.features.kafka`.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

NO_FUTURE_CHECK_MS = 2**62
"""A server time so far ahead that no event is "in the future" (replayed logs)."""


@dataclass
class RawBatch:
    """One micro-batch as read: either an Arrow table or raw JSON messages.

    Fields:
        table: rows in ``events_schema()`` (replay), or ``None``.
        first_offset: offset of ``table``'s first row.
        messages / sources / offsets / server_times_ms: raw JSON path, one entry per message.
        next_offsets: ``source key -> next offset`` after this batch (committed with it).
        source: the source key of ``table`` rows.
        server_time_ms: reference time of the future-timestamp check for ``table`` rows.
    """

    next_offsets: dict[str, int]
    table: pa.Table | None = None
    first_offset: int = 0
    source: str = ""
    server_time_ms: int = 0
    messages: list[bytes] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    server_times_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.messages)

    def keys_and_offsets(self) -> list[tuple[str, int]]:
        """``(source key, offset)`` of every record, in batch order."""
        if self.table is not None:
            n = self.table.num_rows
            return [(self.source, self.first_offset + i) for i in range(n)]
        return list(zip(self.sources, self.offsets, strict=True))

    def slice(self, lo: int, hi: int) -> RawBatch:
        """Records ``lo:hi`` as a batch of their own, whose ``next_offsets`` cover exactly
        them (each source key's offset after its last record in the slice), so slices
        committed one after the other in order advance the store as the whole batch does."""
        if self.table is not None:
            return RawBatch(
                next_offsets={self.source: self.first_offset + hi},
                table=self.table.slice(lo, hi - lo),
                first_offset=self.first_offset + lo,
                source=self.source,
                server_time_ms=self.server_time_ms,
            )
        out = RawBatch(
            next_offsets={},
            messages=self.messages[lo:hi],
            sources=self.sources[lo:hi],
            offsets=self.offsets[lo:hi],
            server_times_ms=self.server_times_ms[lo:hi],
        )
        for key, off in zip(out.sources, out.offsets, strict=True):
            out.next_offsets[key] = off + 1  # offsets rise within a key
        return out

    def without(self, drop: set[int]) -> RawBatch:
        """The batch less the records at positions ``drop``, with the SAME ``next_offsets``
        (committing it moves past the dropped records too)."""
        if not drop:
            return self
        keep = [i for i in range(len(self)) if i not in drop]
        if self.table is not None:  # rows are no longer contiguous: carry them as JSON
            rows = self.table.take(pa.array(keep, pa.int64())).to_pylist()
            return RawBatch(
                next_offsets=dict(self.next_offsets),
                messages=[_row_json(r) for r in rows],
                sources=[self.source] * len(keep),
                offsets=[self.first_offset + i for i in keep],
                server_times_ms=[self.server_time_ms] * len(keep),
            )
        return RawBatch(
            next_offsets=dict(self.next_offsets),
            messages=[self.messages[i] for i in keep],
            sources=[self.sources[i] for i in keep],
            offsets=[self.offsets[i] for i in keep],
            server_times_ms=[self.server_times_ms[i] for i in keep],
        )

    def record_text(self, i: int) -> str:
        """Record ``i`` as text, for a dead letter."""
        if self.table is not None:
            return _row_json(self.table.slice(i, 1).to_pylist()[0]).decode()
        return self.messages[i].decode("utf-8", "replace")


def _row_json(row: dict) -> bytes:
    import json

    return json.dumps(row, default=str, sort_keys=True).encode()


class EventSource(Protocol):
    """Something the runner can pull micro-batches from, starting at stored offsets.

    ``stored_offsets`` reads the store's offsets now; a source calls it when it starts
    and whenever it gains input (a Kafka partition assignment), so it always resumes from
    what the store holds, including commits other processors made.
    """

    def batches(self, stored_offsets: Callable[[], dict[str, int]]) -> Iterator[RawBatch]:
        """Micro-batches from the stored offsets on; ends when the input does."""
        ...

    def on_committed(self, batch: RawBatch) -> None:
        """Called after ``batch`` and its offsets were committed to the store."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def event_files(path: str) -> list[str]:
    """Parquet files of an events log, in replay order (day partition, then file name).

    Accepts a world directory (``DIR/events/day=*/``), an events directory
    (``DIR/day=*/`` or flat ``*.parquet``), or a single file.
    """
    if os.path.isfile(path):
        return [path]
    for pattern in ("events/day=*/*.parquet", "day=*/*.parquet", "*.parquet"):
        files = sorted(glob.glob(os.path.join(path, pattern)))
        if files:
            return files
    raise FileNotFoundError(
        f"no events Parquet files under {path!r} (looked for events/day=*/*.parquet)"
    )


class ParquetReplaySource:
    """Replays Parquet event logs in file order; offsets are global row numbers.

    Args:
        path: see :func:`event_files`.
        batch_size: rows per micro-batch.
        source_key: the offset key (stable across machines, unlike the path).
        server_time_ms: the future check's reference. Default ``None``: no future check,
            because logged rows were already accepted by a server (a simulated world
            may well lie in the wall clock's future); live sources use the server time.
    """

    def __init__(
        self,
        path: str,
        batch_size: int = 10_000,
        source_key: str = "replay",
        server_time_ms: int | None = None,
    ) -> None:
        self.files = event_files(path)
        self.batch_size = batch_size
        self.source_key = source_key
        self.server_time_ms = server_time_ms if server_time_ms is not None else NO_FUTURE_CHECK_MS
        self.total_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)

    def batches(self, stored_offsets: Callable[[], dict[str, int]]) -> Iterator[RawBatch]:
        start = stored_offsets().get(self.source_key, 0)
        base = 0
        for f in self.files:
            pf = pq.ParquetFile(f)
            rows = pf.metadata.num_rows
            if base + rows <= start:
                base += rows
                continue
            pos = base
            for rb in pf.iter_batches(batch_size=self.batch_size):
                tbl = pa.Table.from_batches([rb])
                if pos + tbl.num_rows <= start:
                    pos += tbl.num_rows
                    continue
                if pos < start:
                    tbl = tbl.slice(start - pos)
                    pos = start
                yield RawBatch(
                    next_offsets={self.source_key: pos + tbl.num_rows},
                    table=tbl,
                    first_offset=pos,
                    source=self.source_key,
                    server_time_ms=self.server_time_ms,
                )
                pos += tbl.num_rows
            base += rows

    def on_committed(self, batch: RawBatch) -> None:
        pass

    def close(self) -> None:
        pass


class JsonLinesSource:
    """JSON lines from a stream (stdin); offsets are line numbers (a replayed file resumes).

    Args:
        stream: a binary stream of lines.
        batch_size: lines per micro-batch (a batch also ends at end of input).
        source_key: the offset key.
    """

    def __init__(
        self, stream: IO[bytes], batch_size: int = 1000, source_key: str = "stdin"
    ) -> None:
        self.stream = stream
        self.batch_size = batch_size
        self.source_key = source_key

    def batches(self, stored_offsets: Callable[[], dict[str, int]]) -> Iterator[RawBatch]:
        start = stored_offsets().get(self.source_key, 0)
        batch: RawBatch | None = None
        for lineno, line in enumerate(self.stream):
            if lineno < start:
                continue
            if batch is None:
                batch = RawBatch(next_offsets={})
            batch.messages.append(line.rstrip(b"\r\n"))
            batch.sources.append(self.source_key)
            batch.offsets.append(lineno)
            batch.server_times_ms.append(int(time.time() * 1000))
            batch.next_offsets[self.source_key] = lineno + 1
            if len(batch.messages) >= self.batch_size:
                yield batch
                batch = None
        if batch is not None:
            yield batch

    def on_committed(self, batch: RawBatch) -> None:
        pass

    def close(self) -> None:
        pass
