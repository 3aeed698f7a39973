"""What both log readers share: the optional columns, the item file, the label map.

Optional columns (:class:`ContextColumns`) carry what a log may know and the world dir
keeps: a request or session id (which impressions were shown together), a display
position, whether the request's order was randomized, and a surface (tab, page). The
item file (:class:`ItemFile`) gives item texts and genres and the item table's order; the
log's item ids are checked against it batch by batch, naming the row of an unknown one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transact.data.adapters.log_source import SourceBatch
from transact.data.adapters.normalized import ItemInput
from transact.data.adapters.source_files import read_item_file
from transact.data.io import DataError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def parse_pairs(text: str, what: str) -> tuple[tuple[str, str], ...]:
    """``"a=b,c=d"`` -> ``(("a", "b"), ("c", "d"))``; ``c`` alone means ``c=c``. Action
    names must be identifiers (letters, digits, ``_``, ``-``); raises ``ValueError``."""
    pairs = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        left, _, right = part.partition("=")
        left, right = left.strip(), (right.strip() or left.strip())
        if not left or not _NAME.fullmatch(right):
            raise ValueError(
                f"{what} {part!r}: expected COLUMN=ACTION (ACTION a name like long_view)"
            )
        pairs.append((left, right))
    if not pairs:
        raise ValueError(f"{what} {text!r}: expected COLUMN=ACTION,...")
    for i, side in ((0, "columns"), (1, "actions")):
        names = [p[i] for p in pairs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{what}: {side} {dup} named twice")
    return tuple(pairs)


@dataclass(frozen=True)
class ContextColumns:
    """The optional columns of a log (None: the log has no such column).

    Args:
        request: request or session id (integers or strings); impressions of one (user,
            request id) are one request. Without it requests are cut by time gaps.
        position: display position within the request (integers; ranked per request).
        randomized: 0/1, the request's order was shuffled (paper 4.2.1: only those
            evaluate). Without it every request counts as randomized.
        surface: surface name (a tab, a page), a context feature of the ranker.
    """

    request: str | None = None
    position: str | None = None
    randomized: str | None = None
    surface: str | None = None

    def names(self) -> list[str]:
        return [c for c in (self.request, self.position, self.randomized, self.surface) if c]

    def read(self, sb: SourceBatch) -> dict[str, Any]:
        """The chunk fields of one batch (:class:`~.normalized.LogChunk` keywords)."""
        return {
            "request_keys": sb.keys(self.request) if self.request else None,
            "positions": sb.integers(self.position) if self.position else None,
            "randomized": sb.binary(self.randomized) if self.randomized else None,
            "surfaces": sb.column(self.surface).cast(pa.string()) if self.surface else None,
        }


class ItemFile:
    """The optional item file of a log: its rows, and a check of the log's item ids.

    Args:
        path: CSV/Parquet, one row per item; None when the log has none.
        id_column: the item id column (the log's item ids, as strings, must be in it).
        text_columns: columns joined into the item's text (the ``text`` representation).
    """

    def __init__(
        self, path: Path | str | None, id_column: str = "item_id", text_columns: Sequence[str] = ()
    ) -> None:
        self.items: ItemInput | None = None
        self._known: pa.Array | None = None
        if path is None:
            if text_columns:
                raise DataError("text columns need an item file (--items-path)")
            return
        ids, texts, genres = read_item_file(Path(path), id_column, tuple(text_columns))
        self.items = ItemInput(ids, texts, genres, extra={"has_text": bool(text_columns)})
        self._known = pa.array(ids, pa.string())

    def check(self, sb: SourceBatch, column: str, keys: pa.Array) -> None:
        """Raise naming the first row whose item id is not in the item file."""
        if self._known is None:
            return
        ok = np.asarray(pc.is_in(keys.cast(pa.string()), value_set=self._known))
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            raise DataError(
                f"{sb.where(column, row)}: item {keys[row].as_py()!r} is not in the item file "
                f"({int((~ok).sum())} such rows in this batch)"
            )
