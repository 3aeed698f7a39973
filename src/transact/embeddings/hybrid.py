"""One call that gives the ranker its batch user embeddings: train once, generate every day.

The training and experiments stages need a :class:`~transact.data.schema.UserEmbeddingSource`
for a world directory. :func:`ensure_user_embeddings` trains a PinnerFormer encoder on the
world's training days (unless a checkpoint with the same preset, seed and training end is
cached in ``out_dir``), generates the dated table of every day the world's requests need
(each request reads the day before its own), and returns the day-before loader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from transact.data.io import date_to_day, day_to_date, partition_days
from transact.embeddings.generate import generate_many
from transact.embeddings.store import DatedUserEmbeddings
from transact.embeddings.train import (
    CHECKPOINT_NAME,
    default_train_end_date,
    train_pinnerformer,
)
from transact.embeddings.train import (
    preset as make_preset,
)


def ensure_user_embeddings(
    data_dir: str | Path,
    out_dir: str | Path,
    preset: str = "demo",
    seed: int = 0,
    train_end_date: str | None = None,
    dates: list[str] | None = None,
    progress: bool = True,
    device: str = "cpu",
    users_by_date: Mapping[str, np.ndarray] | None = None,
) -> DatedUserEmbeddings:
    """Train (or reuse) PinnerFormer and generate embeddings for every day; return the loader.

    Args:
        data_dir: world directory (``items.parquet``, ``events/day=*/``).
        out_dir: cache directory; the model lands in ``out_dir/model-<preset>-s<seed>-<end>/``
            and the tables in ``<that>/user_embeddings/date=*/``.
        preset: :data:`transact.embeddings.train.PRESETS` name ("tiny", "demo", "full").
        seed: training seed.
        train_end_date: last training day (default: the day before the manifest's
            evaluation range).
        dates: days to generate (default: every event day except the last, whose table
            no request in the world reads).
        progress: tqdm bars.
        device: where to train ("cpu" or "cuda"); generation runs on CPU.
        users_by_date: restrict each named date's table to these users (its readers:
            a log spanning years needs hundreds of tables, each read by a few users).

    Returns:
        a :class:`DatedUserEmbeddings` (``lookup(user_ids, request_time_ms)`` ->
        ``[B, 64]``) over the generated tables.

    Example::

        source = ensure_user_embeddings("runs/world", "runs/pf", preset="demo", seed=0)
        emb = source.lookup(user_ids, request_time_ms)
    """
    config = make_preset(preset, seed=seed)
    train_end_date = train_end_date or default_train_end_date(data_dir)
    model_dir = Path(out_dir) / f"model-{preset}-s{seed}-{train_end_date}"
    ckpt = model_dir / CHECKPOINT_NAME
    stamp = model_dir / "ensure.json"
    key = {"preset": preset, "seed": seed, "train_end_date": train_end_date, "data": str(data_dir)}
    if not (ckpt.exists() and stamp.exists() and json.loads(stamp.read_text()) == key):
        train_pinnerformer(
            data_dir, model_dir, config, train_end_date, progress=progress, device=device
        )
        stamp.write_text(json.dumps(key))
    days = partition_days(data_dir, "events")
    if dates is None:
        first, last = date_to_day(days[0]), date_to_day(days[-1])
        dates = [day_to_date(d) for d in range(first, last)]
    root = model_dir / "user_embeddings"
    generate_many(data_dir, ckpt, dates, root, progress=progress, users_by_date=users_by_date)
    return DatedUserEmbeddings(root, d_user=config.model.d_user)
