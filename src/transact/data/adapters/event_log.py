"""Event logs as world dirs: one row per action, grouped into impressions by the writer.

The shape of e-commerce and news logs: ``(user, item, action, time)`` rows, with or
without rows for the impressions themselves. :func:`import_events` names the log's
actions (``actions = (("clk", "click"), ("fav", "like"), ...)``, raw value -> action
name; default: every value is its own name, found by one read of the action column), the
value that means "shown" (``impression_value``), and streams the rows to
:class:`~transact.data.adapters.writer.LogWorldWriter`, which groups them into impressions
by (user, item) within ``RequestConfig.window_ms`` (:func:`~.requests.group_actions`):
every action of an impression becomes one of its labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from transact.data.adapters.item_content import ItemEmbedder, ItemRepresentation
from transact.data.adapters.log_columns import ContextColumns, ItemFile
from transact.data.adapters.log_source import TIME_UNITS, estimate_rows, log_files, scan
from transact.data.adapters.normalized import LogChunk, log_vocabulary
from transact.data.adapters.requests import RequestConfig
from transact.data.adapters.writer import BUCKET_ROWS, LogWorldWriter
from transact.data.io import DataError


@dataclass(frozen=True)
class EventColumns:
    """Column map of an event log.

    Args:
        user / item / action / time: column names (the action column holds strings or
            integers: the raw action values).
        time_unit: ``"ms"`` or ``"s"``.
        context: the optional columns (:class:`~.log_columns.ContextColumns`).
    """

    user: str = "user_id"
    item: str = "item_id"
    action: str = "action"
    time: str = "timestamp_ms"
    time_unit: str = "ms"
    context: ContextColumns = ContextColumns()

    def __post_init__(self) -> None:
        if self.time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit {self.time_unit!r} not in {sorted(TIME_UNITS)}")


def action_values(path: Path | str, column: str) -> list[str]:
    """The distinct values of the action column (one read of that column only), sorted."""
    seen: set[str] = set()
    for sb in scan(path, [column]):
        seen.update(str(v) for v in pc.unique(sb.column(column)).to_pylist())
    return sorted(seen)


def import_events(
    path: Path | str,
    out_dir: Path | str,
    columns: EventColumns | None = None,
    *,
    actions: Sequence[tuple[str, str]] | None = None,
    impression_value: str = "impression",
    negative: Sequence[str] = (),
    positive: Sequence[str] | None = None,
    main_positive: str | None = None,
    main_negative: str | None = None,
    impression: str = "impression",
    items_path: Path | str | None = None,
    item_id_column: str = "item_id",
    text_columns: Sequence[str] = (),
    item_repr: ItemRepresentation | None = None,
    item_embedder: ItemEmbedder | None = None,
    d_item: int = 32,
    requests: RequestConfig | None = None,
    seed: int = 0,
    bucket_rows: int = BUCKET_ROWS,
    progress: bool = False,
) -> Path:
    """Convert an event log (a CSV/Parquet file or a folder of them) to a world dir.

    Args:
        path / out_dir: the log and the new world dir.
        columns: the column map (:class:`EventColumns`).
        actions: ``(raw value, action name)`` pairs; a value not listed raises naming its
            row. None: every value of the column is an action of that name.
        impression_value: the raw value of an impression row (none needed: a log without
            impression rows opens an impression at each item's first action).
        negative / positive / main_positive / main_negative / impression: the vocabulary
            (:func:`~transact.data.adapters.normalized.log_vocabulary`).
        items_path / item_id_column / text_columns: an optional item file.
        item_repr / item_embedder: the item representation (:mod:`.item_content`).
        d_item / requests / seed / bucket_rows / progress: as
            :func:`~.impression_log.import_impressions`.
    """
    c = columns or EventColumns()
    if actions is None:
        actions = [(v, v) for v in action_values(path, c.action) if v != impression_value]
    raw_to_name = {raw: name for raw, name in actions}
    if impression_value in raw_to_name:
        raise ValueError(f"actions: {impression_value!r} is the impression value, not an action")
    labels = tuple(dict.fromkeys(raw_to_name.values()))
    vocab = log_vocabulary(
        labels, negative=negative, positive=positive, impression=impression,
        main_positive=main_positive, main_negative=main_negative,
    )  # fmt: skip
    raw_values = pa.array([impression_value, *raw_to_name], pa.string())
    code_of_raw = np.array(
        [vocab.id(impression), *(vocab.id(n) for n in raw_to_name.values())], np.int64
    )
    item_file = ItemFile(items_path, item_id_column, text_columns)
    files = log_files(path)
    with LogWorldWriter(
        out_dir, dataset=f"log:{Path(path).name}", actions=vocab, labels=labels,
        requests=requests, seed=seed, expected_rows=estimate_rows(files),
        bucket_rows=bucket_rows, progress=progress,
    ) as writer:  # fmt: skip
        wanted = [c.user, c.item, c.action, c.time, *c.context.names()]
        batches = scan(path, wanted)
        # delay: a log that fails on its first rows prints its one error line, no bar
        for sb in tqdm(batches, desc="import pass 1 (read)", disable=not progress, delay=1):
            keys = sb.keys(c.item)
            item_file.check(sb, c.item, keys)
            raw = sb.column(c.action).cast(pa.string())
            index = np.asarray(pc.index_in(raw, value_set=raw_values).fill_null(-1))
            if (index < 0).any():
                row = int(np.flatnonzero(index < 0)[0])
                raise DataError(
                    f"{sb.where(c.action, row)}: unknown action {raw[row].as_py()!r}; known: "
                    f"{raw_values.to_pylist()} (map it with --actions)"
                )
            chunk = LogChunk(
                "actions", sb.integers(c.user), keys, sb.times_ms(c.time, c.time_unit),
                code_of_raw[index], **c.context.read(sb),
            )  # fmt: skip
            writer.add(chunk)
        return writer.finish(
            item_file.items,
            item_repr=item_repr,
            item_embedder=item_embedder,
            d_item=d_item,
            extra={
                "source": {
                    "shape": "events",
                    "path": str(path),
                    "columns": {
                        "user": c.user,
                        "item": c.item,
                        "action": c.action,
                        "time": c.time,
                        "time_unit": c.time_unit,
                        "request": c.context.request,
                        "position": c.context.position,
                        "randomized": c.context.randomized,
                        "surface": c.context.surface,
                    },  # fmt: skip
                    "actions": dict(raw_to_name),
                    "impression_value": impression_value,
                    "items_path": str(items_path) if items_path else None,
                }
            },
        )
