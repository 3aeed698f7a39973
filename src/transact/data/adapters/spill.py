"""Temporary Arrow IPC files that bound the importer's memory: by user, then by day.

A log is larger than memory, but every step of the import needs either all rows of a user
(impressions, requests, core status) or all rows of a day (the world dir's time-ordered
day partitions). :class:`BucketSpill` hash-partitions rows by user into ``n`` files as
they stream in (pass 1), so pass 2 holds one bucket (~``rows / n`` rows) at a time;
:class:`DaySpill` collects pass 2's output, already in time order, by UTC day, so pass 3
merges a day's sorted parts and writes one day at a time. Both live in a temporary folder
inside the output directory, removed at the end.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from transact.data.io import day_string
from transact.data.schema import MS_PER_DAY

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: neighbouring ids spread out


def user_bucket(user_ids: np.ndarray, n_buckets: int) -> np.ndarray:
    """``[N]`` bucket 0..n-1 of each user id (a fixed hash, so a user has one bucket)."""
    mixed = user_ids.astype(np.uint64) * _GOLDEN
    return ((mixed >> np.uint64(32)) % np.uint64(n_buckets)).astype(np.int64)


class BucketSpill:
    """Rows streamed into ``n_buckets`` Arrow IPC files by user (pass 1 of the import).

    Args:
        directory: a new folder for the files.
        schema: the rows' schema (has an int64 ``user_id`` column).
        n_buckets: number of files; memory in pass 2 is about ``rows / n_buckets`` rows.
    """

    def __init__(self, directory: Path, schema: pa.Schema, n_buckets: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=False)
        self.schema = schema
        self.n_buckets = int(n_buckets)
        self._writers = [
            pa.ipc.new_file(self.dir / f"bucket-{b:05d}.arrow", schema)
            for b in range(self.n_buckets)
        ]
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        """Append ``table``'s rows to their users' buckets (row order kept per bucket)."""
        if table.num_rows == 0:
            return
        table = table.cast(self.schema)
        if self.n_buckets == 1:
            self._writers[0].write_table(table)
            self.rows += table.num_rows
            return
        buckets = user_bucket(np.asarray(table.column("user_id")), self.n_buckets)
        order = np.argsort(buckets, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(buckets, minlength=self.n_buckets))]
        ordered = table.take(pa.array(order))
        for b in np.flatnonzero(bounds[1:] > bounds[:-1]):
            self._writers[b].write_table(ordered.slice(bounds[b], bounds[b + 1] - bounds[b]))
        self.rows += table.num_rows

    def close(self) -> None:
        for w in self._writers:
            w.close()
        self._writers = []

    def read(self, bucket: int) -> pa.Table:
        """Every row of ``bucket`` (after :meth:`close`)."""
        return _read(self.dir / f"bucket-{bucket:05d}.arrow")


class DaySpill:
    """Pass 2's output tables by UTC day of ``time_column``, read back one day at a time.

    :meth:`add` may be called from several threads; a day's parts are read back in the
    order of their numbers (so the result does not depend on which thread wrote first)."""

    def __init__(self, directory: Path, schema: pa.Schema, time_column: str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=False)
        self.schema = schema
        self.time_column = time_column
        self._parts: dict[str, list[tuple[int, Path]]] = defaultdict(list)
        self._lock = threading.Lock()
        self.rows = 0

    def add(self, table: pa.Table, part: int) -> None:
        """Write ``table``'s rows (numeric columns, in ``time_column`` order: see
        :func:`time_order`) into one file per day, as ``part`` (a number unique per call:
        the writer's bucket). Sorted input makes each day one slice, and a day's parts
        sorted runs to merge (:func:`merge_by_time`)."""
        if table.num_rows == 0:
            return
        table = table.select(self.schema.names).cast(self.schema)
        times = np.asarray(table.column(self.time_column))
        if (times[1:] < times[:-1]).any():
            raise ValueError(f"DaySpill.add: rows not in {self.time_column} order")
        first, last = int(times[0]) // MS_PER_DAY, int(times[-1]) // MS_PER_DAY
        bounds = np.searchsorted(times, np.arange(first, last + 2) * MS_PER_DAY)
        for k in np.flatnonzero(bounds[1:] > bounds[:-1]).tolist():
            a, b = int(bounds[k]), int(bounds[k + 1])
            day = day_string((first + k) * MS_PER_DAY)
            path = self.dir / f"{day}-{part:06d}.arrow"
            with pa.ipc.new_file(path, self.schema) as w:
                w.write_table(table.slice(a, b - a))
            with self._lock:
                self._parts[day].append((part, path))
        with self._lock:
            self.rows += table.num_rows

    def days(self) -> list[str]:
        """The days that have rows, in order."""
        return sorted(self._parts)

    def read_day(self, day: str) -> list[tuple[int, pa.Table]]:
        """``[(part, rows)]`` of ``day`` in part order, each in time order; the day's
        files are deleted once read."""
        with self._lock:
            parts = sorted(self._parts.pop(day))
        tables = [(part, _read(path)) for part, path in parts]
        for _, path in parts:
            path.unlink()
        return tables


def merge_by_time(parts: list[pa.Table], column: str) -> pa.Table:
    """Tables each in ``column`` order -> one table in that order, ties in (part, row)
    order, as a stable sort of their concatenation would give. numpy's stable sort of
    int64 is a timsort, which merges the sorted runs it finds: k parts cost a merge, not
    a sort; then one take (after one concatenation: Arrow's take over a chunked column
    is slower)."""
    table = pa.concat_tables(parts)
    if len(parts) <= 1:
        return table
    order = np.argsort(np.asarray(table.column(column)), kind="stable")
    return table.combine_chunks().take(pa.array(order))


def time_order(times: np.ndarray, sorted_prefix: int = 0) -> np.ndarray:
    """``[N]`` the stable order of ``times`` (int64), what ``np.argsort(times,
    kind="stable")`` (:func:`time_order_reference`) returns, by LSD radix sort: numpy sorts
    16-bit keys by counting, so a log's span of under 2^32 ms (49 days) takes two such
    passes over ``times - min`` instead of one comparison sort. ``sorted_prefix``: the
    first rows are in order already (a bucket's impression events): only the rest is
    sorted, then the two runs merged (numpy's stable sort of int64, a timsort, merges
    runs it finds)."""
    if 0 < sorted_prefix < times.size:
        rest = sorted_prefix + _radix_order(times[sorted_prefix:])
        runs = np.concatenate([np.arange(sorted_prefix), rest])
        return runs[np.argsort(times[runs], kind="stable")]
    if sorted_prefix >= times.size:
        return np.arange(times.size)
    return _radix_order(times)


def _radix_order(times: np.ndarray) -> np.ndarray:
    if times.size == 0:
        return np.zeros(0, np.int64)
    offset = times - times.min()
    span = int(offset.max())
    if span >= 1 << 48:
        return time_order_reference(times)
    order = np.argsort((offset & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while span >> shift:
        # the 16-bit digit first, then gathered (2 bytes a row, not 8)
        digit = ((offset >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit[order], kind="stable")]
        shift += 16
    return order


def time_order_reference(times: np.ndarray) -> np.ndarray:
    """The plain stable sort :func:`time_order` is tested against."""
    return np.argsort(times, kind="stable")


def _read(path: Path) -> pa.Table:
    """A whole IPC file into memory (the spill's unit of work)."""
    with pa.OSFile(str(path)) as source:
        return pa.ipc.open_file(source).read_all()
