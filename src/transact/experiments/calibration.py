"""The experiments' calibration: where each variant's calibration is fitted, and its record.

Every trained variant is calibrated (``transact.evaluation.calibration``): its training
set's negative keep rate is undone, then a per-head Platt step is fitted on a
*calibration slice*, every impression (not down-sampled) of the randomized requests of
the last days of the training window. :func:`calibration_slice` builds the slice,
:func:`keep_rate_of` reads the keep rate from a training set, :func:`calibration_summary`
is the JSON the runner keeps per (variant, seed).

Why randomized requests: they have no position effect (paper 4.2.1), like the
evaluation's, so the calibrated probability is the item's engagement probability
without the old ranker's position bias. Measured on the demo world (`default` budget, the
no-sequence baseline): Platt fitted on all requests of the last training day leaves week
3's click at 1.19x its observed rate and hide at 0.88x (the position mix of the
non-randomized requests differs), on the randomized requests of the last 3 days at 1.08x
and 1.08x. docs/evaluation.md, "Calibration", has the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transact.data.schema import MS_PER_DAY
from transact.evaluation.calibration import Calibration
from transact.evaluation.predictions import Predictions
from transact.evaluation.reliability import calibration_report

CALIBRATION_MAX_EXAMPLES = 20_000
"""Impressions of the calibration slice every variant is scored on (about 20 s per variant
at |S| = 100 on one core; enough for a per-head Platt fit of the rarest head, hide at
0.5%, with about 100 positives)."""
CALIBRATION_VERSION = 2
"""Part of every run key: bump it when the calibration changes, so cached runs refit."""


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
    data: Any, *, seq_len: int, user_embeddings: Any, max_examples: int, seed: int = 0
) -> tuple[Any, np.ndarray | None, dict[str, Any]]:
    """Every impression of the randomized requests of the last days of the training
    window, not down-sampled.

    Starts with one day and doubles the days until the slice has ``max_examples``
    impressions or covers the window (randomized requests are a small share of a day; a
    sparse log like MovieLens needs more days). Returns ``(example set, rows to keep or
    None, description)``; the rows draw whole requests uniformly down to ``max_examples``.
    Raises ``DataError`` when the training window has no randomized request.
    """
    from transact.data.examples import build_example_set
    from transact.data.io import DataError

    m = data.manifest
    days = 1
    while True:
        start = max(m.train_start_ms, m.train_end_ms - days * MS_PER_DAY)
        try:
            examples = build_example_set(
                data.data_dir,
                start,
                m.train_end_ms,
                seq_len=seq_len,
                negative_ratio=None,
                randomized_only=True,
                user_embeddings=user_embeddings,
                seed=seed,
            )
        except DataError:
            if start == m.train_start_ms:
                raise
            days *= 2  # no impressions in these days (a sparse log): widen
            continue
        if len(examples) >= max_examples or start == m.train_start_ms:
            break
        days *= 2
    if len(examples) == 0:
        raise DataError(
            f"{data.data_dir}: the training window has no randomized request to calibrate on "
            "(the impressions' 'randomized' column is false everywhere)"
        )
    rows = request_subset_rows(examples, max_examples, seed)
    info = {
        "requests": "randomized",
        "window_ms": [int(start), int(m.train_end_ms)],
        "days": (m.train_end_ms - start) / MS_PER_DAY,
        "impressions_in_window": len(examples),
        "examples": len(examples) if rows is None else len(rows),
    }
    return examples, rows, info


def calibration_summary(
    calibration: Calibration, eval_preds: Predictions, slice_info: dict[str, Any]
) -> dict[str, Any]:
    """The JSON the runner keeps per (variant, seed): parameters, where they were fitted,
    and per head on the evaluation week the predicted/observed ratio, ECE and log loss of
    the raw, the sampling-corrected and the calibrated probabilities."""
    raw = eval_preds.scores
    corrected = Calibration(calibration.heads, calibration.keep_rate, calibration.joint).apply(raw)
    reports = {
        name: calibration_report(p, eval_preds.labels, eval_preds.heads)
        for name, p in (
            ("raw", raw),
            ("sampling_corrected", corrected),
            ("calibrated", calibration.apply(raw)),
        )
    }

    def short(r: dict[str, Any]) -> dict[str, Any]:
        return {k: r[k] for k in ("mean_predicted", "observed_rate", "ratio", "ece", "log_loss")}

    platt = "per-head Platt" if calibration.has_platt else "no Platt step"
    return _json_clean(
        {
            "method": (
                f"down-sampling undone (keep rate {calibration.keep_rate:.4f}, heads "
                f"{calibration.joint}), then {platt} fitted on {slice_info.get('examples', 0)} "
                f"impressions of the randomized requests of the training window's last "
                f"{slice_info.get('days', 0):g} day(s), not down-sampled"
            ),
            "parameters": calibration.to_dict(),
            "slice": slice_info,
            "eval": {
                h: {name: short(rep[h]) for name, rep in reports.items()} for h in eval_preds.heads
            },
            "eval_bins": {h: reports["calibrated"][h]["bins"] for h in eval_preds.heads},
            "eval_bins_raw": {h: reports["raw"][h]["bins"] for h in eval_preds.heads},
        }
    )


def _json_clean(d: Any) -> Any:
    """NaN/inf -> None, recursively, so the summary is strict JSON."""
    if isinstance(d, dict):
        return {k: _json_clean(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [_json_clean(v) for v in d]
    if isinstance(d, float) and not np.isfinite(d):
        return None
    return d
