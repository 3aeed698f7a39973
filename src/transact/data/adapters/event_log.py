"""Any action log (CSV or Parquet) as a world dir, given which column holds what.

:func:`import_log` reads one row per action of a user on an item, named by
:class:`LogColumns`, checks every column and action name, and hands the log to
:func:`~transact.data.adapters.writer.write_log_world` (requests, item embeddings, split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transact.data.adapters.normalized import LOG_ACTIONS, ItemInput, LogInput
from transact.data.adapters.source_files import checked_column, item_rows, read_log_table
from transact.data.adapters.writer import RequestConfig, write_log_world
from transact.data.io import DataError, check_milliseconds, where


@dataclass(frozen=True)
class LogColumns:
    """Column mapping of a generic log file.

    Args:
        user / item / action / timestamp: column names in the log.
        time_unit: "ms" or "s" (seconds are multiplied by 1000).
        item_id_column: the id column of the optional item file.
    """

    user: str = "user_id"
    item: str = "item_id"
    action: str = "action_type"
    timestamp: str = "timestamp_ms"
    time_unit: str = "ms"
    item_id_column: str = "item_id"


def import_log(
    path: Path | str,
    out_dir: Path | str,
    columns: LogColumns | None = None,
    *,
    items_path: Path | str | None = None,
    text_columns: Sequence[str] = (),
    d_item: int = 32,
    embeddings: str = "auto",
    requests: RequestConfig | None = None,
    seed: int = 0,
) -> Path:
    """Convert any action log (CSV or Parquet) into a world dir.

    Every row is one action of a user on an item; action names must be in
    :data:`LOG_ACTIONS` (``impression`` = shown without engagement). Items come from the
    log itself or from ``items_path`` (whose ``text_columns`` are embedded; a ``genres``
    column, ``|``-separated, feeds the fallback and the taxonomy). Bad rows raise
    :class:`DataError` naming the file, column and first row.
    """
    cols = columns or LogColumns()
    p = Path(path)
    table = read_log_table(p)
    users = checked_column(table, cols.user, p, "int").astype(np.int64)
    if cols.item not in table.column_names:
        raise DataError(f"{where(p, cols.item)}: missing column (have {table.column_names})")
    item_ext = np.array([str(x) for x in table.column(cols.item).to_pylist()], dtype=object)
    if cols.action not in table.column_names:
        raise DataError(f"{where(p, cols.action)}: missing column (have {table.column_names})")
    actions = np.array(table.column(cols.action).to_pylist(), dtype=object)
    bad = np.flatnonzero(~np.isin(actions, list(LOG_ACTIONS.names)))
    if bad.size:
        raise DataError(
            f"{where(p, cols.action, int(bad[0]))}: unknown action {actions[bad[0]]!r}; "
            f"known: {list(LOG_ACTIONS.names)}"
        )
    times = checked_column(table, cols.timestamp, p, "num")
    if not np.issubdtype(times.dtype, np.integer) and not np.isfinite(times).all():
        row = int(np.flatnonzero(~np.isfinite(times))[0])
        raise DataError(f"{where(p, cols.timestamp, row)}: NaN timestamp")
    times = (times.astype(np.float64) * (1000 if cols.time_unit == "s" else 1)).astype(np.int64)
    check_milliseconds(times, p, cols.timestamp)
    if items_path is not None:
        ip = Path(items_path)
        it = read_log_table(ip)
        if cols.item_id_column not in it.column_names:
            raise DataError(
                f"{where(ip, cols.item_id_column)}: missing column (have {it.column_names})"
            )
        ext = [str(x) for x in it.column(cols.item_id_column).to_pylist()]
        for c in text_columns:
            if c not in it.column_names:
                raise DataError(f"{where(ip, c)}: missing text column (have {it.column_names})")
        texts = [
            ". ".join(str(it.column(c)[i].as_py()) for c in text_columns)
            if text_columns
            else ext[i]
            for i in range(len(ext))
        ]
        genres = (
            [str(g).split("|") if g else [] for g in it.column("genres").to_pylist()]
            if "genres" in it.column_names
            else [[] for _ in ext]
        )
    else:
        ext = sorted(set(item_ext.tolist()))
        texts, genres = list(ext), [[] for _ in ext]
    known = {e: i for i, e in enumerate(ext)}
    index = item_rows(item_ext, known, p, cols.item)
    labelled = np.where(actions == "impression", "", actions)
    log = LogInput(users, index, labelled, times, np.ones(users.size, bool))
    items = ItemInput(external_ids=ext, texts=texts, genres=genres)
    return write_log_world(
        out_dir, log, items, dataset=f"log:{p.name}", d_item=d_item, embeddings=embeddings,
        requests=requests, seed=seed,
        extra={"columns": cols.__dict__, "source_path": str(p)},
    )  # fmt: skip
