"""A log's files streamed in Arrow record batches, every value checked where it is read.

A log is one CSV or Parquet file, or a folder of them (read in sorted order, e.g. the
daily parts of an export). :func:`scan` yields :class:`SourceBatch` es of the named
columns only, each knowing its file and the file row of its first row, so a bad value is
reported as ``file, column 'c', row r`` (:func:`~transact.data.io.where`). Memory holds
one batch of the selected columns at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from transact.data.io import MIN_PLAUSIBLE_MS, DataError, where

SUFFIXES = (".parquet", ".csv")
TIME_UNITS = {"ms": 1, "s": 1000}
BATCH_ROWS = 1 << 20
_CSV_BYTES_PER_ROW = 24  # a low guess: the row estimate only sizes the spill buckets


def log_files(path: Path | str) -> list[Path]:
    """``[path]`` for a CSV/Parquet file, or the CSV/Parquet files under a folder (sorted)."""
    p = Path(path)
    if p.is_file():
        if p.suffix not in SUFFIXES:
            raise DataError(f"{p}: not a .csv or .parquet file")
        return [p]
    if not p.is_dir():
        raise DataError(f"{p}: no such file or folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
    if not files:
        raise DataError(f"{p}: no .csv or .parquet files in the folder")
    if len({f.suffix for f in files}) > 1:
        raise DataError(f"{p}: mixes .csv and .parquet files; keep one format")
    return files


def estimate_rows(files: Sequence[Path]) -> int:
    """Row count (exact for Parquet, from the file size for CSV): sizes the spill."""
    total = 0
    for f in files:
        if f.suffix == ".parquet":
            total += _parquet(f).count_rows()
        else:
            total += f.stat().st_size // _CSV_BYTES_PER_ROW + 1
    return total


def _parquet(f: Path) -> ds.Dataset:
    try:
        return ds.dataset(f, format="parquet")
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{f}: not a readable Parquet file ({exc})") from None


def _csv(f: Path) -> ds.Dataset:
    if f.stat().st_size == 0:
        raise DataError(f"{f}: empty file")
    fmt = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    try:
        return ds.dataset(f, format=fmt)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{f}: cannot parse as CSV ({exc})") from None


@dataclass
class SourceBatch:
    """One record batch of a log file: ``batch`` row ``i`` is file row ``first_row + i``."""

    file: Path
    first_row: int
    batch: pa.RecordBatch

    @property
    def num_rows(self) -> int:
        return self.batch.num_rows

    def where(self, column: str, row: int | None = None) -> str:
        """``file, column 'c', row r`` (``row`` within the batch)."""
        return where(self.file, column, None if row is None else self.first_row + row)

    def column(self, name: str) -> pa.Array:
        """The column, which may hold no empty value."""
        col = self.batch.column(name)
        if col.null_count:
            row = int(np.flatnonzero(np.asarray(col.is_null()))[0])
            raise DataError(f"{self.where(name, row)}: empty value")
        return col

    def integers(self, name: str) -> np.ndarray:
        """``[n]`` int64 of an integer column."""
        col = self.column(name)
        if not pa.types.is_integer(col.type):
            raise DataError(f"{self.where(name)}: type {col.type}, expected integers")
        return np.asarray(col).astype(np.int64, copy=False)

    def times_ms(self, name: str, unit: str) -> np.ndarray:
        """``[n]`` int64 milliseconds of a time column in ``unit`` ("ms" or "s"); a value
        that is not a number, or that looks like seconds given as ms, raises."""
        col = self.column(name)
        if pa.types.is_timestamp(col.type):
            return np.asarray(pc.cast(col, pa.timestamp("ms")).cast(pa.int64()))
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise DataError(f"{self.where(name)}: type {col.type}, expected numbers")
        values = np.asarray(col)
        if values.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise DataError(f"{self.where(name, int(bad[0]))}: {values[bad[0]]} is not a time")
            values = values * TIME_UNITS[unit]
        else:
            values = values.astype(np.int64) * TIME_UNITS[unit]
        times = values.astype(np.int64)
        bad = np.flatnonzero(times < MIN_PLAUSIBLE_MS)
        if bad.size:
            raise DataError(
                f"{self.where(name, int(bad[0]))}: time {values[bad[0]]} ms is before 1973 "
                f"(seconds read as {unit}? give the time unit) - {bad.size} such rows"
            )
        return times

    def binary(self, name: str) -> np.ndarray:
        """``[n]`` bool of a label column: booleans or the numbers 0 and 1 only."""
        col = self.column(name)
        if pa.types.is_boolean(col.type):
            return np.asarray(col)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise DataError(f"{self.where(name)}: type {col.type}, expected 0/1 labels")
        values = np.asarray(col)
        bad = np.flatnonzero((values != 0) & (values != 1))
        if bad.size:
            raise DataError(
                f"{self.where(name, int(bad[0]))}: label {values[bad[0]]} is not 0 or 1 "
                f"({bad.size} such rows)"
            )
        return values == 1

    def keys(self, name: str) -> pa.Array:
        """An id column as int64 or string values (what the log calls an item or request)."""
        col = self.column(name)
        if pa.types.is_integer(col.type):
            return col.cast(pa.int64())
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            return col.cast(pa.string())
        raise DataError(f"{self.where(name)}: type {col.type}, expected integer or string ids")


def scan(
    path: Path | str, columns: Sequence[str], batch_rows: int = BATCH_ROWS
) -> Iterator[SourceBatch]:
    """Stream ``columns`` of every log file under ``path`` (:func:`log_files`).

    A missing column raises naming the file and the columns it has; a file that cannot
    be parsed raises naming it."""
    wanted = list(dict.fromkeys(columns))
    for f in log_files(path):
        data = _parquet(f) if f.suffix == ".parquet" else _csv(f)
        missing = [c for c in wanted if c not in data.schema.names]
        if missing:
            raise DataError(f"{where(f, missing[0])}: missing column (have {data.schema.names})")
        first = 0
        try:
            for batch in data.to_batches(columns=wanted, batch_size=batch_rows):
                if batch.num_rows:
                    yield SourceBatch(f, first, batch)
                    first += batch.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{f}: cannot read past row {first} ({exc})") from None
