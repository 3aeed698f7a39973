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

from transact.evaluation.predictions import Predictions, predict
from transact.evaluation.report import SEGMENTS, Comparison, EvaluationConfig, compare, evaluate

PREDICTIONS_FILE = "predictions.npz"


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


def evaluation_dict(preds: Predictions, config: EvaluationConfig) -> dict[str, Any]:
    """One model's metrics (and the oracle's HIT@K when ground truth exists) as JSON."""
    res = evaluate(preds, config)
    oracle = None
    if len(preds) and not torch.isnan(torch.from_numpy(preds.gt_probs)).any():
        oracle = evaluate(preds.oracle(), config)
    out: dict[str, Any] = {"k": config.k, "utility": dict(config.utility), "heads": {}}
    for hi, h in enumerate(preds.heads):
        out["heads"][h] = {}
        for s in SEGMENTS:
            seg = res.segments[s]
            row = {
                config.metric_name: _finite(float(seg.hit[hi])),
                "auc": _finite(float(seg.auc[hi])),
                "log_loss": _finite(float(seg.log_loss[hi])),
                "n_users": seg.n_users,
                "n_requests": seg.n_requests,
                "n_impressions": seg.n_impressions,
            }
            if oracle is not None:
                row[f"oracle_{config.metric_name}"] = _finite(float(oracle.segments[s].hit[hi]))
            out["heads"][h][s] = row
    out["diversity"] = {s: {"sum": int(res.segments[s].diversity.sum())} for s in SEGMENTS}
    return out


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def write_comparison(cmp: Comparison, out_dir: Path, *, title: str, preface: str = "") -> None:
    """``out_dir/metrics.json`` (:meth:`Comparison.to_dict`) and ``out_dir/report.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", cmp.to_dict())
    text = f"# {title}\n\n{preface}{cmp.to_markdown()}"
    (out_dir / "report.md").write_text(text)


def load_predictions(path: str | Path) -> Predictions:
    """Predictions from a ``.npz`` file, an evaluation dir, or a run dir (``RUN/eval``)."""
    path = Path(path)
    for candidate in (path, path / PREDICTIONS_FILE, path / "eval" / PREDICTIONS_FILE):
        if candidate.is_file():
            return Predictions.load(candidate)
    raise FileNotFoundError(
        f"{path}: no {PREDICTIONS_FILE} (run `transact evaluate --model RUN` first)"
    )


def compare_files(
    named_paths: dict[str, str | Path],
    baseline: str,
    *,
    with_oracle: bool,
    config: EvaluationConfig,
) -> Comparison:
    """Load every model's predictions and compare them with ``baseline`` (and the oracle)."""
    preds = {name: load_predictions(p) for name, p in named_paths.items()}
    oracle = None
    if with_oracle:
        oracle = "oracle"
        if oracle in preds:
            raise ValueError("a model is named 'oracle'; rename it")
        preds[oracle] = preds[baseline].oracle()
    return compare(preds, baseline, oracle=oracle, config=config)
