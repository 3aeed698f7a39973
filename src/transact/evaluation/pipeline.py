"""Score trained models on an evaluation window and write their evaluation files.

``score_model`` runs a trained ``model.pt`` over the randomized requests of a window and
returns :class:`~transact.evaluation.predictions.Predictions`; ``write_evaluation`` and
``write_comparison`` turn predictions into ``metrics.json`` / ``report.md``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from transact.evaluation.calibration import Calibration
from transact.evaluation.hit import has_ground_truth
from transact.evaluation.predictions import Predictions, predict
from transact.evaluation.reliability import calibration_report, reliability_plot
from transact.evaluation.report import (
    SEGMENTS,
    Comparison,
    EvaluationConfig,
    ModelResult,
    compare,
    evaluate,
)

PREDICTIONS_FILE = "predictions.npz"
RELIABILITY_FILE = "reliability.png"
LIFTS_FILE = "lifts.png"


def score_model(
    model: torch.nn.Module,
    eval_set: Any,
    heads: tuple[str, ...],
    *,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Predictions:
    """Eval-mode predictions of ``model`` on every example of ``eval_set`` (in order)."""
    return predict(
        model,
        eval_set.batches(batch_size, shuffle=False),
        heads,
        device=device,
        progress=progress,
    )


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _head_rows(res: ModelResult, config: EvaluationConfig) -> dict[str, dict[str, Any]]:
    """``{head: {segment: {hit_at_K, expected_hit_at_K, auc, log_loss, counts}}}``."""
    m = config.metric_name
    out: dict[str, dict[str, Any]] = {}
    for hi, h in enumerate(res.heads):
        out[h] = {}
        for s in SEGMENTS:
            seg = res.segments[s]
            out[h][s] = {
                m: _finite(float(seg.hit[hi])),
                f"expected_{m}": _finite(float(seg.expected_hit[hi])),
                "auc": _finite(float(seg.auc[hi])),
                "log_loss": _finite(float(seg.log_loss[hi])),
                "n_users": seg.n_users,
                "n_requests": seg.n_requests,
                "n_impressions": seg.n_impressions,
            }
    return out


def evaluation_dict(
    preds: Predictions, config: EvaluationConfig, calibration: Calibration | None = None
) -> dict[str, Any]:
    """One model's metrics as JSON: HIT@K and expected HIT@K per head and segment, AUC,
    log loss, the oracle's HIT@K when ground truth exists, calibration per head, and with
    a ``calibration`` the same metrics on the calibrated probabilities (``calibrated``)."""
    m = config.metric_name
    res = evaluate(preds, config)
    heads = _head_rows(res, config)
    if len(preds) and has_ground_truth(preds.gt_probs):
        oracle = evaluate(preds.oracle(), config)
        for hi, h in enumerate(preds.heads):
            for s in SEGMENTS:
                heads[h][s][f"oracle_{m}"] = _finite(float(oracle.segments[s].hit[hi]))
    out: dict[str, Any] = {"k": config.k, "utility": dict(config.utility), "heads": heads}
    out["diversity"] = {s: {"sum": int(res.segments[s].diversity.sum())} for s in SEGMENTS}
    out["calibration"] = {"raw": _clean(res.calibration)}
    if calibration is not None:
        calibrated = preds.with_scores(calibration.apply(preds.scores))
        out["calibration"]["calibrated"] = _clean(
            calibration_report(calibrated.scores, calibrated.labels, calibrated.heads)
        )
        out["calibration"]["parameters"] = calibration.to_dict()
        out["calibrated"] = {"heads": _head_rows(evaluate(calibrated, config), config)}
    return out


def _clean(d: Any) -> Any:
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(d, dict):
        return {k: _clean(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [_clean(v) for v in d]
    if isinstance(d, float):
        return _finite(d)
    return d


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def write_comparison(cmp: Comparison, out_dir: Path, *, title: str, preface: str = "") -> None:
    """``out_dir/metrics.json`` (:meth:`Comparison.to_dict`), ``out_dir/report.md``,
    ``out_dir/lifts.png`` (:func:`~transact.evaluation.plots.comparison_lift_plot`) and,
    when the models have a calibration report, ``out_dir/reliability.png``."""
    from transact.evaluation.plots import comparison_lift_plot

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", cmp.to_dict())
    text = f"# {title}\n\n{preface}{cmp.to_markdown()}"
    (out_dir / "report.md").write_text(text)
    comparison_lift_plot(cmp, out_dir / LIFTS_FILE, title=title)
    if cmp.calibration:
        reliability_plot(cmp.calibration, out_dir / RELIABILITY_FILE, title=title)


def predictions_file(path: str | Path) -> Path:
    """The predictions file of a ``.npz`` path, an evaluation dir or a run dir (``RUN/eval``)."""
    path = Path(path)
    for candidate in (path, path / PREDICTIONS_FILE, path / "eval" / PREDICTIONS_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{path}: no {PREDICTIONS_FILE} (run `transact evaluate --model RUN` first)"
    )


def load_predictions(path: str | Path) -> Predictions:
    """Predictions from a ``.npz`` file, an evaluation dir, or a run dir (``RUN/eval``)."""
    return Predictions.load(predictions_file(path))


def recorded_utility(path: str | Path) -> dict[str, float] | None:
    """The utility weights ``transact evaluate`` scored ``path``'s predictions with (its
    ``metrics.json`` beside ``predictions.npz``), or None when there is no such file."""
    metrics = predictions_file(path).parent / "metrics.json"
    if not metrics.is_file():
        return None
    utility = json.loads(metrics.read_text()).get("utility")
    return {str(h): float(w) for h, w in utility.items()} if isinstance(utility, dict) else None


def comparison_utility(named_paths: dict[str, str | Path]) -> dict[str, float]:
    """The one utility every model was evaluated with (their ``metrics.json``).

    Raises ``ValueError`` naming the models when they were scored with different weights
    or when none recorded any: the lifts would compare rankings under different S."""
    found = {name: recorded_utility(p) for name, p in named_paths.items()}
    known = {name: u for name, u in found.items() if u is not None}
    if not known:
        raise ValueError(
            f"none of {list(named_paths)} records its utility weights (metrics.json of "
            "`transact evaluate`); give --utility head=weight,..."
        )
    first_name, first = next(iter(known.items()))
    for name, u in known.items():
        if u != first:
            raise ValueError(
                f"models {first_name!r} and {name!r} were evaluated with different utility "
                f"weights ({first} vs {u}); give --utility to compare them under one"
            )
    return first


def compare_files(
    named_paths: dict[str, str | Path],
    baseline: str,
    *,
    with_oracle: bool,
    config: EvaluationConfig,
) -> Comparison:
    """Load every model's predictions and compare them with ``baseline`` (and the oracle).

    Without utility weights in ``config``, the ones the models were evaluated with
    (:func:`comparison_utility`)."""
    from dataclasses import replace

    preds = {name: load_predictions(p) for name, p in named_paths.items()}
    if not config.utility:
        config = replace(config, utility=comparison_utility(named_paths))
    oracle = None
    if with_oracle:
        oracle = "oracle"
        if oracle in preds:
            raise ValueError("a model is named 'oracle'; rename it")
        preds[oracle] = preds[baseline].oracle()
    return compare(preds, baseline, oracle=oracle, config=config)
