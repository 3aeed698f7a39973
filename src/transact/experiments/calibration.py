"""The experiments' calibration: where each variant's calibration is fitted, and its record.

Every trained variant is calibrated (``transact.evaluation.calibration``): its training
set's negative keep rate is undone, then a per-head Platt step is fitted on a
*calibration slice*, every impression (not down-sampled) of the randomized requests of
the last days of the training window. :func:`calibration_slice` builds the slice,
:func:`keep_rate_of` reads the keep rate from a training set, :func:`calibration_summary`
is the JSON the runner keeps per (variant, seed). The slice and the keep rate are the
pipeline's (``transact.pipeline.calibrate``), the same that ``transact train`` uses.

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

from transact.evaluation.calibration import Calibration
from transact.evaluation.predictions import Predictions
from transact.evaluation.reliability import calibration_report
from transact.pipeline.calibrate import (  # noqa: F401  (the runner's names)
    CALIBRATION_MAX_EXAMPLES,
    keep_rate_of,
)
from transact.pipeline.calibrate import calibration_slice as pipeline_slice

CALIBRATION_VERSION = 2
"""Part of every run key: bump it when the calibration changes, so cached runs refit."""


def calibration_slice(
    data: Any, *, seq_len: int, user_embeddings: Any, max_examples: int, seed: int = 0
) -> tuple[Any, np.ndarray | None, dict[str, Any]]:
    """The calibration slice (:func:`transact.pipeline.calibrate.calibration_slice`) of a
    prepared dataset's training window (``data.manifest``)."""
    m = data.manifest
    return pipeline_slice(
        data.data_dir,
        m.train_start_ms,
        m.train_end_ms,
        seq_len=seq_len,
        user_embeddings=user_embeddings,
        max_examples=max_examples,
        seed=seed,
    )


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
