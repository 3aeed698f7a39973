"""Pointwise metrics per head: ROC AUC and log loss (numpy/scipy, no sklearn)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``[N]`` scores against ``[N]`` 0/1 labels (Mann-Whitney U with mid-ranks).

    Returns NaN when only one class is present (AUC is undefined there).
    """
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probabilities: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of ``[N]`` probabilities (clipped to [eps, 1-eps])."""
    y = np.asarray(labels, dtype=np.float64)
    if len(y) == 0:
        return float("nan")
    p = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1.0 - eps)
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())
