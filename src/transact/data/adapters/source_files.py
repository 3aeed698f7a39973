"""Reading a log's raw files (CSV, Parquet) with errors that name the file, column and row.

Shared by the readers (:mod:`.movielens`, :mod:`.event_log`): every failure is a
:class:`~transact.data.io.DataError` located by :func:`~transact.data.io.where`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from transact.data.io import DataError, where


def read_csv(path: Path, **kw: Any) -> pa.Table:
    """``path`` parsed by ``pyarrow.csv.read_csv(**kw)``; a missing or unparsable file raises."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        return pacsv.read_csv(path, **kw)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: cannot parse ({exc})") from None


def read_log_table(path: Path) -> pa.Table:
    """A whole CSV or Parquet file (by suffix) as a table; empty CSV fields stay strings."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.suffix == ".parquet":
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    return read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))


def checked_column(table: pa.Table, name: str, path: Path, kind: str) -> np.ndarray:
    """Column ``name`` as numpy, checked: present, ``kind`` "int" (integers) or "num"
    (integers or floats), no empty value."""
    if name not in table.column_names:
        raise DataError(f"{where(path, name)}: missing column (have {table.column_names})")
    col = table.column(name)
    if kind == "int" and not pa.types.is_integer(col.type):
        raise DataError(f"{where(path, name)}: type {col.type}, expected integers")
    if kind == "num" and not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DataError(f"{where(path, name)}: type {col.type}, expected numbers")
    if col.null_count:
        row = int(np.flatnonzero(np.asarray(col.is_null()))[0])
        raise DataError(f"{where(path, name, row)}: empty value")
    return np.asarray(col)


def item_rows(ext: np.ndarray, known: dict[Any, int], path: Path, column: str) -> np.ndarray:
    """``[N]`` external item ids -> ``[N]`` int64 rows of the item table ``known``
    (external id -> row); an id not in it raises naming the first row."""
    idx = np.array([known.get(x, -1) for x in ext.tolist()], np.int64)
    bad = np.flatnonzero(idx < 0)
    if bad.size:
        raise DataError(
            f"{where(path, column, int(bad[0]))}: item {ext[bad[0]]!r} is not in the item table "
            f"({bad.size} such rows)"
        )
    return idx


def read_item_file(
    path: Path, id_column: str, text_columns: tuple[str, ...] = (), genre_column: str = "genres"
) -> tuple[list[str], list[str], list[list[str]]]:
    """An item file (CSV/Parquet, one row per item) -> ``(ids, texts, genres)``.

    ``texts`` joins the ``text_columns`` with ". " (the id when there are none); the
    ``genre_column`` (``|``-separated), when present, gives each item's genres. A missing
    column or an empty or duplicate id raises naming the file, column and row.
    """
    table = read_log_table(path)
    if id_column not in table.column_names:
        raise DataError(f"{where(path, id_column)}: missing column (have {table.column_names})")
    for c in text_columns:
        if c not in table.column_names:
            raise DataError(f"{where(path, c)}: missing text column (have {table.column_names})")
    raw = table.column(id_column).to_pylist()
    ids = [str(x) if x is not None else "" for x in raw]
    for row, e in enumerate(ids):
        if e == "":
            raise DataError(f"{where(path, id_column, row)}: empty item id")
    seen: dict[str, int] = {}
    for row, e in enumerate(ids):
        if e in seen:
            raise DataError(f"{where(path, id_column, row)}: duplicate item id {e!r}")
        seen[e] = row
    columns = [table.column(c).to_pylist() for c in text_columns]
    texts = [
        ". ".join(str(col[i]) for col in columns) if columns else ids[i] for i in range(len(ids))
    ]
    genres = (
        [str(g).split("|") if g else [] for g in table.column(genre_column).to_pylist()]
        if genre_column in table.column_names
        else [[] for _ in ids]
    )
    return ids, texts, genres
