"""Impression tables as world dirs: one row per shown item, one 0/1 column per action.

The shape of public short-video and feed logs (KuaiRand, Tenrec, ...): each row is one
impression of an item to a user with binary label columns (``is_click``, ``long_view``,
``is_like``, ``is_hate``, ...). :func:`import_impressions` maps the label columns onto
action names (``labels = (("is_click", "click"), ("is_like", "like"), ...)``), keeps every
label of an impression (a clicked and liked item is one impression with two labels),
declares the log's vocabulary (which actions are negative, which play the paper's
"repin" and "hide"), and streams the log through
:class:`~transact.data.adapters.writer.LogWorldWriter`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from transact.data.adapters.item_content import ItemEmbedder, ItemRepresentation
from transact.data.adapters.log_columns import ContextColumns, ItemFile
from transact.data.adapters.log_source import TIME_UNITS, estimate_rows, log_files, scan
from transact.data.adapters.normalized import LogChunk, log_vocabulary
from transact.data.adapters.requests import RequestConfig
from transact.data.adapters.writer import BUCKET_ROWS, LogWorldWriter


@dataclass(frozen=True)
class ImpressionColumns:
    """Column map of an impression table.

    Args:
        user / item / time: column names (user ids integers; item ids integers or
            strings; times numbers or timestamps).
        time_unit: ``"ms"`` or ``"s"``.
        labels: ``(column, action)`` pairs: each 0/1 column is the label of that action.
        context: the optional columns (:class:`~.log_columns.ContextColumns`).
    """

    labels: tuple[tuple[str, str], ...]
    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp_ms"
    time_unit: str = "ms"
    context: ContextColumns = ContextColumns()

    def __post_init__(self) -> None:
        if self.time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit {self.time_unit!r} not in {sorted(TIME_UNITS)}")
        if not self.labels:
            raise ValueError("labels: an impression table needs at least one label column")


def import_impressions(
    path: Path | str,
    out_dir: Path | str,
    columns: ImpressionColumns,
    *,
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
    """Convert an impression table (a CSV/Parquet file or a folder of them) to a world dir.

    Args:
        path / out_dir: the log and the new world dir.
        columns: the column map (:class:`ImpressionColumns`).
        negative / positive / main_positive / main_negative / impression: the vocabulary
            (:func:`~transact.data.adapters.normalized.log_vocabulary`).
        items_path / item_id_column / text_columns: an optional item file.
        item_repr / item_embedder: the item representation (:mod:`.item_content`).
        d_item: item embedding size.
        requests: requests, split and history (:class:`~.requests.RequestConfig`).
        seed: seed of the shuffled positions (and of learned representations).
        bucket_rows: rows held in memory at once (the spill's bucket size).
        progress: progress bars.

    Every bad value raises :class:`~transact.data.io.DataError` naming the file, the
    column and the row.
    """
    label_actions = tuple(a for _, a in columns.labels)
    vocab = log_vocabulary(
        label_actions, negative=negative, positive=positive, impression=impression,
        main_positive=main_positive, main_negative=main_negative,
    )  # fmt: skip
    item_file = ItemFile(items_path, item_id_column, text_columns)
    files = log_files(path)
    with LogWorldWriter(
        out_dir, dataset=f"log:{Path(path).name}", actions=vocab, labels=label_actions,
        requests=requests, seed=seed, expected_rows=estimate_rows(files),
        bucket_rows=bucket_rows, progress=progress,
    ) as writer:  # fmt: skip
        c = columns
        wanted = [c.user, c.item, c.time, *(col for col, _ in c.labels), *c.context.names()]
        batches = scan(path, wanted)
        # delay: a log that fails on its first rows prints its one error line, no bar
        for sb in tqdm(batches, desc="import pass 1 (read)", disable=not progress, delay=1):
            keys = sb.keys(c.item)
            item_file.check(sb, c.item, keys)
            mask = np.zeros(sb.num_rows, np.int64)
            for k, (col, _) in enumerate(c.labels):
                mask |= sb.binary(col).astype(np.int64) << k
            chunk = LogChunk(
                "impressions", sb.integers(c.user), keys, sb.times_ms(c.time, c.time_unit), mask,
                **c.context.read(sb),
            )  # fmt: skip
            writer.add(chunk)
        return writer.finish(
            item_file.items,
            item_repr=item_repr,
            item_embedder=item_embedder,
            d_item=d_item,
            extra={
                "source": {
                    "shape": "impressions",
                    "path": str(path),
                    "columns": {
                        "user": c.user,
                        "item": c.item,
                        "time": c.time,
                        "time_unit": c.time_unit,
                        "labels": dict(c.labels),
                        "request": c.context.request,
                        "position": c.context.position,
                        "randomized": c.context.randomized,
                        "surface": c.context.surface,
                    },  # fmt: skip
                    "items_path": str(items_path) if items_path else None,
                }
            },
        )
