"""How calibrated a model's probabilities are, per head: ratio, ECE, reliability curve.

:func:`calibration_report` gives, per head, the mean predicted probability over the
observed rate (1 is calibrated on average), the expected calibration error over
equal-count bins, the log loss and the bins themselves; :func:`reliability_plot` draws the
bins of one or more reports. Fitting and applying a calibration is ``calibration.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transact.evaluation.metrics import log_loss


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10
) -> list[dict[str, float]]:
    """Equal-count bins of predicted probability: ``n``, ``mean_predicted``, ``observed``.

    Quantile bins, not equal-width ones: a head with a 0.5% base rate puts nearly every
    example in the first tenth of [0, 1]. Ties never split across bins, so there may be
    fewer than ``n_bins``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(p) == 0:
        return []
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)[1:-1]))
    idx = np.searchsorted(edges, p, side="right")
    out = []
    for b in range(len(edges) + 1):
        sel = idx == b
        if sel.any():
            out.append(
                {
                    "n": int(sel.sum()),
                    "mean_predicted": float(p[sel].mean()),
                    "observed": float(y[sel].mean()),
                }
            )
    return out


def calibration_report(
    probabilities: np.ndarray,
    labels: np.ndarray,
    heads: Sequence[str],
    *,
    n_bins: int = 10,
) -> dict[str, dict[str, Any]]:
    """Calibration per head of ``[N, H]`` probabilities against 0/1 labels.

    Returns ``{head: {n, mean_predicted, observed_rate, ratio, ece, log_loss, bins}}``:
    ``ratio`` = mean predicted / observed rate (1 is calibrated on average; ``None`` when
    nothing is observed), ``ece`` = expected calibration error, the count-weighted mean
    ``|mean_predicted - observed|`` over the reliability bins.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 2 or p.shape[1] != len(heads):
        raise ValueError(
            f"calibration_report needs [N, {len(heads)}] arrays, got {p.shape} and {y.shape}"
        )
    out: dict[str, dict[str, Any]] = {}
    for h, head in enumerate(heads):
        bins = reliability_bins(p[:, h], y[:, h], n_bins)
        n = len(p)
        mean_p = float(p[:, h].mean()) if n else float("nan")
        obs = float(y[:, h].mean()) if n else float("nan")
        ece = sum(b["n"] * abs(b["mean_predicted"] - b["observed"]) for b in bins) / n if n else 0
        out[head] = {
            "n": n,
            "mean_predicted": mean_p,
            "observed_rate": obs,
            "ratio": mean_p / obs if n and obs > 0 else None,
            "ece": float(ece) if n else None,
            "log_loss": log_loss(y[:, h], p[:, h]),
            "bins": bins,
        }
    return out


def reliability_plot(
    reports: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | Path, *, title: str = ""
) -> Path:
    """Write a reliability plot (PNG): one panel per head, one line per report.

    ``reports`` maps a label (``"raw"``, ``"calibrated"``, a model name) to a
    :func:`calibration_report`. Axes are logarithmic (rare heads live near 0); a bin with
    nothing observed is drawn at the panel's floor with a downward triangle.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = list(next(iter(reports.values()))) if reports else []
    n_rows = (len(reports) + 2) // 3
    fig, axes = plt.subplots(
        1, max(1, len(heads)), figsize=(4.2 * max(1, len(heads)), 4 + 0.25 * n_rows)
    )
    axes = np.atleast_1d(axes)
    for ax, head in zip(axes, heads, strict=False):
        values = [
            v
            for rep in reports.values()
            for b in rep[head]["bins"]
            for v in (b["mean_predicted"], b["observed"])
            if v > 0
        ]
        lo = min(values) / 2 if values else 1e-4
        hi = min(1.0, max(values) * 1.5) if values else 1.0
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8, linestyle="--")
        for label, rep in reports.items():
            bins = rep[head]["bins"]
            xs = np.array([max(b["mean_predicted"], lo) for b in bins])
            ys = np.array([b["observed"] for b in bins])
            line = ax.plot(xs, np.maximum(ys, lo), marker="o", label=label)[0]
            zero = ys <= 0
            if zero.any():
                ax.scatter(xs[zero], np.full(zero.sum(), lo), marker="v", color=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo / 1.2, hi)
        ax.set_xlabel("mean predicted probability (bin)")
        ax.set_ylabel("observed rate")
        ax.set_title(head)
    handles, labels = axes[0].get_legend_handles_labels()
    n_rows = (len(labels) + 2) // 3
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, min(0.45, 0.06 * n_rows + 0.02), 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
