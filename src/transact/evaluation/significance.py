"""Relative lift of a model over a baseline and its significance over users.

The paper reports relative lifts and marks p >= 0.05 as insignificant (4.2.1). HIT@K is a
mean over users of per-user sums, so two models evaluated on the same requests give
*paired* per-user values; the tests here pair them by user.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def relative_lift(model_value: float, baseline_value: float) -> float:
    """``model / baseline - 1`` (NaN when the baseline is 0 or NaN)."""
    if not np.isfinite(baseline_value) or baseline_value == 0:
        return float("nan")
    return float(model_value / baseline_value - 1.0)


def paired_t_test(model: np.ndarray, baseline: np.ndarray) -> float:
    """Two-sided paired t-test p-value of ``mean(model - baseline) != 0`` over ``[U]`` users.

    Identical inputs give p = 1 (no evidence of a difference) rather than NaN.
    """
    model = np.asarray(model, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if model.shape != baseline.shape:
        raise ValueError(f"paired test needs equal shapes, got {model.shape} and {baseline.shape}")
    diff = model - baseline
    if len(diff) < 2:
        return float("nan")
    if np.all(diff == diff[0]):
        return 1.0 if diff[0] == 0 else 0.0
    return float(stats.ttest_rel(model, baseline).pvalue)


def paired_bootstrap(
    model: np.ndarray,
    baseline: np.ndarray,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> float:
    """Two-sided paired bootstrap p-value for the relative lift ``mean(model)/mean(baseline)-1``.

    Users are resampled with replacement (the same users for both models); the p-value is
    twice the share of resamples whose lift falls on the other side of 0, capped at 1.
    """
    model = np.asarray(model, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if model.shape != baseline.shape:
        raise ValueError(f"paired test needs equal shapes, got {model.shape} and {baseline.shape}")
    n = len(model)
    if n < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        diffs[start:stop] = model[idx].mean(axis=1) - baseline[idx].mean(axis=1)
    observed = model.mean() - baseline.mean()
    if observed == 0:
        return 1.0
    other_side = (diffs <= 0).mean() if observed > 0 else (diffs >= 0).mean()
    return float(min(1.0, 2.0 * other_side))


def align_users(
    users_a: np.ndarray, values_a: np.ndarray, users_b: np.ndarray, values_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Check two per-user arrays cover the same sorted users and return the values.

    Models compared on different requests cannot be paired; this names the first user
    that differs instead of pairing the wrong rows.
    """
    if len(users_a) != len(users_b) or not np.array_equal(users_a, users_b):
        only_a = np.setdiff1d(users_a, users_b)
        only_b = np.setdiff1d(users_b, users_a)
        raise ValueError(
            "models were evaluated on different users: "
            f"{len(only_a)} only in the model (first {only_a[:3].tolist()}), "
            f"{len(only_b)} only in the baseline (first {only_b[:3].tolist()})"
        )
    return values_a, values_b
