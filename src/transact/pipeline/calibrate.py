"""Calibrate a trained run: where its calibration is fitted, and how it reaches ``model.pt``.

A model trained on a down-sampled set predicts inflated probabilities
(``transact.evaluation.calibration``). Every run the pipeline trains is therefore
calibrated before it is served: the training set's keep rate of all-negative examples is
undone, then a per-head Platt step is fitted on a *calibration slice*, every impression
(not down-sampled) of the randomized requests of the last days of the training window.
:func:`calibrate_model` fits it, :func:`calibration_slice` builds the slice,
:func:`keep_rate_of` reads the keep rate from a training set; the result is written into
the model's metadata (``metadata["calibration"]``), which ``transact evaluate`` and the
serving ranker read.

Why randomized requests: they have no position effect (paper 4.2.1), like the
evaluation's, so the calibrated probability is the item's engagement probability without
the old ranker's position bias. Why the end of the *training* window: the evaluation week
stays untouched, and the slice is as close in time to serving as the training data is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from transact.data.examples import RowSubset
from transact.data.schema import MS_PER_DAY
from transact.evaluation.calibration import Calibration, fit_calibration

CALIBRATION_MAX_EXAMPLES = 20_000
"""Impressions of the calibration slice a model is scored on (about 20 s at |S| = 100 on
one core; enough for a per-head Platt fit of the world's rarest head, hide at 0.5%, with
about 100 positives)."""


def keep_rate_of(train_set: Any) -> float:
    """Share ``q`` of all-negative examples the training set kept (1.0: not down-sampled),
    from the data stage's ``ExampleSet.meta``; a set without that record counts as not
    down-sampled."""
    meta = getattr(train_set, "meta", None) or {}
    if meta.get("negative_ratio") is None or not meta.get("negatives"):
        return 1.0
    kept = int(meta.get("negatives_kept", 0))
    if kept <= 0:
        raise ValueError(
            "the training set kept no negatives (meta.negatives_kept = 0): its probabilities "
            "cannot be corrected for down-sampling"
        )
    return kept / int(meta["negatives"])


def request_subset_rows(source: Any, max_examples: int, seed: int = 0) -> np.ndarray | None:
    """Rows of whole requests drawn uniformly, at most ``max_examples`` (``None``: all)."""
    if len(source) <= max_examples:
        return None
    order = np.random.default_rng(seed).permutation(source.n_requests)
    sizes = np.bincount(source.example_request, minlength=source.n_requests)[order]
    take = order[np.cumsum(sizes) <= max_examples]
    return np.flatnonzero(np.isin(source.example_request, take))


def calibration_slice(
    data_dir: str | Path,
    start_ms: int,
    end_ms: int,
    *,
    seq_len: int,
    user_embeddings: Any,
    max_examples: int,
    seed: int = 0,
) -> tuple[Any, np.ndarray | None, dict[str, Any]]:
    """Every impression of the randomized requests of the last days of ``[start_ms, end_ms)``,
    not down-sampled.

    Starts with one day and doubles the days until the slice has ``max_examples``
    impressions or covers the window (randomized requests are a small share of a day; a
    sparse log like MovieLens needs more days). Returns ``(example set, rows to keep or
    None, description)``; the rows draw whole requests uniformly down to ``max_examples``.
    Raises ``DataError`` when the window has no randomized request.
    """
    from transact.data.examples import build_example_set
    from transact.data.io import DataError

    days = 1
    while True:
        start = max(start_ms, end_ms - days * MS_PER_DAY)
        try:
            examples = build_example_set(
                data_dir,
                start,
                end_ms,
                seq_len=seq_len,
                negative_ratio=None,
                randomized_only=True,
                user_embeddings=user_embeddings,
                seed=seed,
            )
        except DataError:
            if start == start_ms:
                raise
            days *= 2  # no impressions in these days (a sparse log): widen
            continue
        if len(examples) >= max_examples or start == start_ms:
            break
        days *= 2
    if len(examples) == 0:
        raise DataError(
            f"{data_dir}: the training window has no randomized request to calibrate on "
            "(the impressions' 'randomized' column is false everywhere)"
        )
    rows = request_subset_rows(examples, max_examples, seed)
    info = {
        "requests": "randomized",
        "window_ms": [int(start), int(end_ms)],
        "days": (end_ms - start) / MS_PER_DAY,
        "impressions_in_window": len(examples),
        "examples": len(examples) if rows is None else len(rows),
    }
    return examples, rows, info


def calibrate_model(
    model: torch.nn.Module,
    data_dir: str | Path,
    start_ms: int,
    end_ms: int,
    *,
    train_set: Any,
    seq_len: int,
    user_embeddings: Any = None,
    max_examples: int = CALIBRATION_MAX_EXAMPLES,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Calibration:
    """Fit ``model``'s calibration on the randomized requests at the end of its training
    window ``[start_ms, end_ms)``: the keep rate of ``train_set`` undone, then per-head Platt.

    The returned :class:`Calibration` records where it was fitted (``fitted_on``).
    """
    from transact.evaluation.predictions import predict

    heads: tuple[str, ...] = tuple(cast(Any, model).spec.heads)
    examples, rows, info = calibration_slice(
        data_dir,
        start_ms,
        end_ms,
        seq_len=seq_len,
        user_embeddings=user_embeddings,
        max_examples=max_examples,
        seed=seed,
    )
    source: Any = examples if rows is None else RowSubset(examples, rows)
    fit_on = predict(model, source.batches(batch_size, shuffle=False), heads, device=device)
    return fit_calibration(
        fit_on.scores, fit_on.labels, heads, keep_rate=keep_rate_of(train_set), fitted_on=info
    )


def calibrate_run(
    run_dir: str | Path,
    data_dir: str | Path,
    start_ms: int,
    end_ms: int,
    *,
    train_set: Any,
    seq_len: int,
    user_embeddings: Any = None,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
) -> Calibration | None:
    """Calibrate the trained run in ``run_dir`` (:func:`calibrate_model` on its training
    window ``[start_ms, end_ms)``) and write the calibration into its ``model.pt``'s
    metadata, which the serving registry, ``transact evaluate`` and the online simulator
    read. Returns it, or ``None`` when the window has no randomized request (the model then
    serves raw probabilities; the caller says so)."""
    from transact.data.io import DataError
    from transact.models.artifact import load_model, update_metadata

    model, _, _ = load_model(run_dir, device)
    try:
        cal = calibrate_model(
            model,
            data_dir,
            start_ms,
            end_ms,
            train_set=train_set,
            seq_len=seq_len,
            user_embeddings=user_embeddings,
            batch_size=batch_size,
            device=device,
        )
    except DataError:
        return None
    update_metadata(run_dir, {"calibration": cal.to_dict()})
    return cal


def calibration_of(metadata: dict[str, Any], source: str = "model metadata") -> Calibration | None:
    """The calibration a model's metadata holds (``None``: none); ``ValueError`` naming
    ``source`` when it is malformed."""
    if "calibration" not in metadata:
        return None
    return Calibration.from_dict(metadata["calibration"], source=source)
