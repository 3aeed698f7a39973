"""Give an existing world dir learned item embeddings (``transact data item-embeddings``).

:func:`rewrite_item_embeddings` reads the engagements of the dataset's training window,
learns item vectors with :func:`transact.data.item_repr.learn_item_embeddings` and writes
them into ``items.parquet``'s ``embedding`` column, in place or into a copy of the world
dir. The manifest records what was done under ``extra.item_representation`` (the same
note the importer writes), and ``extra.embeddings`` names the new source, so every later
stage and report can say which item representation a model saw. This is how a log that
was imported without content (its items embedded from their id strings) is upgraded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transact.data.io import DataError, load_event_arrays, load_manifest, save_manifest
from transact.data.item_repr import (
    ItemReprConfig,
    learn_item_embeddings,
    learned_mask,
)

WORLD_PARTS = ("manifest.json", "items.parquet", "users.parquet", "events", "impressions")
"""What a world dir is made of (docs/data.md 1); a copy takes these and nothing else."""


def item_representation_note(
    method: str,
    embeddings: np.ndarray,
    *,
    actions: Sequence[str],
    before_ms: int,
    n_events: int,
    seed: int,
    config: ItemReprConfig,
    replaced: Any = None,
) -> dict[str, Any]:
    """The manifest's ``extra.item_representation`` for learned vectors (JSON-ready)."""
    learned = learned_mask(embeddings)
    return {
        "kind": "learned",
        "method": method,
        "d_item": int(embeddings.shape[1]),
        "learned_items": int(learned.sum()),
        "cold_items": int((~learned).sum()),
        "cold_start": "zero vector",
        "events": {"actions": list(actions), "before_ms": int(before_ms), "count": n_events},
        "seed": seed,
        "config": asdict(config),
        "replaced": replaced,
    }


def rewrite_item_embeddings(
    data_dir: Path | str,
    out_dir: Path | str | None = None,
    *,
    method: str = "item2vec",
    actions: Sequence[str] | None = None,
    d_item: int | None = None,
    seed: int = 0,
    config: ItemReprConfig | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Learn item vectors from ``data_dir``'s training window and write them; returns the note.

    Args:
        data_dir: a world dir.
        out_dir: a new directory for the rewritten copy (``WORLD_PARTS`` are copied);
            ``None`` rewrites ``data_dir`` in place (refused while ``data_dir/examples``
            holds example sets built with the old vectors).
        method: ``item2vec`` or ``mf``.
        actions: which events count as engagement (default: the manifest's positive
            actions; a hide is not co-engagement, an impression is not engagement).
        d_item: the new vectors' size (default: the manifest's d_item; another size
            changes the manifest's ``feature_spec.d_item``).
        seed / config / progress: see :func:`learn_item_embeddings`.

    Only events before the manifest's ``train_range_ms[1]`` (the warm-up and training
    period) are read: the evaluation period never shapes a vector.
    """
    src = Path(data_dir)
    manifest = load_manifest(src)
    cfg = config or ItemReprConfig()
    actions = tuple(actions) if actions is not None else tuple(manifest.actions.positive)
    for a in actions:
        if a not in manifest.actions.names:
            raise DataError(
                f"{src}/manifest.json: action {a!r} is not in the dataset's vocabulary "
                f"{list(manifest.actions.names)}"
            )
    d = manifest.d_item if d_item is None else d_item
    if d < 1:
        raise ValueError(f"d_item={d}: must be >= 1")
    dst = src if out_dir is None else Path(out_dir)
    if out_dir is None and (src / "examples").exists():
        raise DataError(
            f"{src / 'examples'} holds example sets built with the old item embeddings; "
            "remove it first or write the new dataset with --out"
        )
    if out_dir is not None and (dst / "manifest.json").exists():
        raise FileExistsError(f"{dst}/manifest.json exists; choose a new --out directory")

    events = load_event_arrays(src, None, manifest.train_end_ms, actions=actions)
    embeddings = learn_item_embeddings(
        events.user_ids, events.item_ids.astype(np.int64), events.times_ms,
        manifest.n_items, d, method, seed, config=cfg, progress=progress,
    )  # fmt: skip
    note = item_representation_note(
        method, embeddings, actions=actions, before_ms=manifest.train_end_ms,
        n_events=len(events), seed=seed, config=cfg,
        replaced=manifest.extra.get("item_representation", manifest.extra.get("embeddings")),
    )  # fmt: skip

    if out_dir is not None:
        dst.mkdir(parents=True, exist_ok=True)
        for part in WORLD_PARTS[2:]:
            if (src / part).is_dir():
                shutil.copytree(src / part, dst / part)
            elif (src / part).exists():
                shutil.copy2(src / part, dst / part)
    _write_embeddings(src / "items.parquet", dst / "items.parquet", embeddings)
    spec = replace(manifest.feature_spec, d_item=d)
    extra = {**manifest.extra, "embeddings": f"learned:{method}", "item_representation": note}
    save_manifest(dst, replace(manifest, feature_spec=spec, extra=extra))
    return note


def _write_embeddings(source: Path, target: Path, embeddings: np.ndarray) -> None:
    """``source``'s item table with its ``embedding`` column replaced, written atomically."""
    from transact.data.schema import items_schema

    table = pq.read_table(source)
    n, d = embeddings.shape
    if table.num_rows != n:
        raise DataError(f"{source}: {table.num_rows} items, the manifest says {n}")
    column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.ravel(), pa.float32()), d)
    table = table.set_column(table.column_names.index("embedding"), "embedding", column)
    base = items_schema(d)
    extra_fields = [f for f in table.schema if f.name not in base.names]
    schema = pa.schema(list(base) + extra_fields, metadata=base.metadata)
    tmp = target.with_suffix(".parquet.tmp")
    pq.write_table(table.select(schema.names).cast(schema), tmp, compression="zstd")
    os.replace(tmp, target)  # a crash leaves the old table or the new one, never half


__all__ = ["WORLD_PARTS", "item_representation_note", "rewrite_item_embeddings"]
