"""Relative lift of a model over a baseline, its interval and significance over users.

The paper reports relative lifts and marks p >= 0.05 as insignificant (4.2.1). HIT@K is a
mean over users of per-user sums, so two models evaluated on the same requests give
*paired* per-user values; the tests here pair them by user.

:func:`lift_interval` is what the tables report: the lift with a 95% interval (delta
method or paired bootstrap over users, plus the spread between training seeds), its
p-value and the minimum lift the run could detect at 80% power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


# ---------------------------------------------------------------- intervals of the lift

INTERVAL_METHODS = ("delta", "bootstrap")


def minimum_detectable_effect(
    se: float, *, alpha: float = 0.05, power: float = 0.8, df: float = math.inf
) -> float:
    """Smallest true lift a two-sided level-``alpha`` test detects with ``power``.

    ``(z_{1 - alpha/2} + z_{power}) * se``: a lift of this size puts the estimate beyond
    the critical value ``z_{1 - alpha/2} * se`` with probability ``power`` (normal
    approximation, the same ``se`` under the null and the alternative). At alpha 0.05 and
    80% power the factor is 1.960 + 0.842 = 2.802. With finite ``df`` (few seeds, see
    :func:`lift_interval`) Student-t quantiles replace the normal ones. Returned in the
    units of ``se`` (relative lift here).
    """
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    dist = stats.norm if math.isinf(df) else stats.t(df)
    return float((dist.ppf(1 - alpha / 2) + dist.ppf(power)) * se)


def delta_lift_se(model: np.ndarray, baseline: np.ndarray) -> float:
    """Delta-method standard error of the paired relative lift ``mean(m)/mean(b) - 1``.

    The lift is a ratio of means over the same ``[U]`` users. Its influence function is
    ``psi_u = (m_u - rho * b_u) / mean(b)`` with ``rho = mean(m) / mean(b)``, so
    ``SE = sd(psi) / sqrt(U)``. Pairing enters through ``m_u - rho * b_u``: a user whose
    hits are high under both models adds little variance. NaN when ``U < 2`` or the
    baseline mean is 0.
    """
    m = np.asarray(model, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if m.shape != b.shape or m.ndim != 1:
        raise ValueError(f"delta_lift_se needs two equal [U] arrays, got {m.shape}, {b.shape}")
    n = len(m)
    b_mean = b.mean() if n else float("nan")
    if n < 2 or not np.isfinite(b_mean) or b_mean == 0:
        return float("nan")
    psi = (m - (m.mean() / b_mean) * b) / b_mean
    return float(psi.std(ddof=1) / np.sqrt(n))


def bootstrap_lifts(
    model: np.ndarray, baseline: np.ndarray, *, n_resamples: int = 2000, seed: int = 0
) -> np.ndarray:
    """``[n_resamples]`` relative lifts of users resampled with replacement (paired).

    Each resample draws ``U`` user indices and takes both models' values of those users,
    so the pairing is kept. Vectorized: one ``[chunk, U]`` index matrix per chunk of
    resamples, chunks sized to keep memory near 16 MB. A resample whose baseline mean is
    0 gives NaN (no lift is defined there); callers use ``nanstd``/``nanquantile``.
    """
    m = np.asarray(model, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if m.shape != b.shape or m.ndim != 1:
        raise ValueError(f"bootstrap needs two equal [U] arrays, got {m.shape}, {b.shape}")
    if n_resamples < 10:
        raise ValueError(f"n_resamples must be >= 10, got {n_resamples}")
    n = len(m)
    out = np.full(n_resamples, np.nan)
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        mm, bm = m[idx].mean(axis=1), b[idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:stop] = np.where(bm != 0, mm / bm - 1.0, np.nan)
    return out


@dataclass(frozen=True)
class LiftInterval:
    """A relative lift with its 95% interval, p-value and minimum detectable effect.

    Fields:
        lift: ``mean(model) / mean(baseline) - 1`` of the per-user values averaged over
            seeds.
        ci_low / ci_high: the ``1 - alpha`` interval, ``lift -/+ t_df * se``.
        se: total standard error, ``sqrt(se_users^2 + seed_sd^2 / n_seeds)``.
        df: degrees of freedom of ``se`` (Welch-Satterthwaite; ``inf`` with one seed, where
            the quantiles are the normal ones).
        se_users: the spread between users (delta method or paired bootstrap on the
            seed-averaged per-user values).
        seed_sd: standard deviation of the per-seed lifts (``None`` with one seed): the
            spread between training seeds on the same users.
        p_value: two-sided, ``2 * P(T_df > |lift| / se)``; ``p < alpha`` exactly when the
            interval excludes 0.
        mde: minimum detectable lift at 80% power (:func:`minimum_detectable_effect`).
        per_seed: the lift of each seed alone.
    """

    lift: float
    ci_low: float
    ci_high: float
    se: float
    se_users: float
    seed_sd: float | None
    df: float
    p_value: float
    mde: float
    n_users: int
    n_seeds: int
    method: str
    per_seed: tuple[float, ...]

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)

    def excludes_zero(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)


def _nan_interval(n_users: int, n_seeds: int, method: str, per_seed: tuple[float, ...]):
    nan = float("nan")
    return LiftInterval(
        nan, nan, nan, nan, nan, None, nan, nan, nan, n_users, n_seeds, method, per_seed
    )


def lift_interval(
    model: np.ndarray,
    baseline: np.ndarray,
    *,
    method: str = "delta",
    n_bootstrap: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> LiftInterval:
    """Paired relative lift of ``model`` over ``baseline`` with a ``1 - alpha`` interval.

    Args:
        model / baseline: per-user values (e.g. HIT@3 per user), ``[U]`` for one seed or
            ``[S, U]`` for S training seeds; seed ``s`` of the model is compared with seed
            ``s`` of the baseline, users are the same columns in both.
        method: ``"delta"`` (closed form, :func:`delta_lift_se`) or ``"bootstrap"``
            (standard deviation of :func:`bootstrap_lifts`) for the spread between users.
        n_bootstrap / seed: resamples and generator seed of the bootstrap.
        alpha: 1 - the interval's level (0.05: the 95% interval).
        power: power of the minimum detectable effect.

    How seeds and users combine: the lift is taken on the per-user values averaged over
    seeds; ``se_users`` is the spread of that lift over users; the per-seed lifts are
    measured on the same users, so their spread ``seed_sd`` is training noise alone, and
    the mean of S seeds carries ``seed_sd^2 / S`` of it. The two are independent sources
    and add: ``se^2 = se_users^2 + seed_sd^2 / S``. (The seed-by-user interaction is in
    both terms, which makes the interval slightly conservative.) ``seed_sd`` comes from
    only S - 1 degrees of freedom, so the interval uses Student's t with the
    Welch-Satterthwaite degrees of freedom ``se^4 / (se_users^4 / (U - 1) + (seed_sd^2 /
    S)^2 / (S - 1))``: about the normal quantile when users dominate, about ``t_{S-1}``
    when seeds do (with 3 seeds, 4.30 instead of 1.96). With one seed the training noise
    is unmeasured and the interval covers user sampling only.
    """
    if method not in INTERVAL_METHODS:
        raise ValueError(f"method must be one of {INTERVAL_METHODS}, got {method!r}")
    m = np.atleast_2d(np.asarray(model, dtype=np.float64))
    b = np.atleast_2d(np.asarray(baseline, dtype=np.float64))
    if m.shape != b.shape:
        raise ValueError(f"paired lift needs equal shapes, got {m.shape} and {b.shape}")
    n_seeds, n_users = m.shape
    per_seed = tuple(
        relative_lift(float(ms.mean()), float(bs.mean())) if n_users else float("nan")
        for ms, bs in zip(m, b, strict=True)
    )
    m_avg, b_avg = m.mean(axis=0), b.mean(axis=0)
    if n_users < 2:
        return _nan_interval(n_users, n_seeds, method, per_seed)
    lift = relative_lift(float(m_avg.mean()), float(b_avg.mean()))
    if not np.isfinite(lift):
        return _nan_interval(n_users, n_seeds, method, per_seed)
    if method == "delta":
        se_users = delta_lift_se(m_avg, b_avg)
    else:
        se_users = float(
            np.nanstd(bootstrap_lifts(m_avg, b_avg, n_resamples=n_bootstrap, seed=seed), ddof=1)
        )
    seed_sd: float | None = None
    se, df = se_users, math.inf
    if n_seeds > 1:
        finite = [x for x in per_seed if np.isfinite(x)]
        seed_sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
        seed_var = seed_sd**2 / n_seeds
        se = float(np.sqrt(se_users**2 + seed_var))
        denominator = se_users**4 / (n_users - 1) + seed_var**2 / (n_seeds - 1)
        df = se**4 / denominator if denominator > 0 else math.inf
    dist = stats.norm if math.isinf(df) else stats.t(df)
    q = float(dist.ppf(1 - alpha / 2))
    # a zero spread (identical or constant-shift values) leaves no doubt about the sign
    p = (1.0 if lift == 0 else 0.0) if se == 0 else float(2 * dist.sf(abs(lift) / se))
    return LiftInterval(
        lift=lift,
        ci_low=lift - q * se,
        ci_high=lift + q * se,
        se=se,
        se_users=se_users,
        seed_sd=seed_sd,
        df=df,
        p_value=p,
        mde=minimum_detectable_effect(se, alpha=alpha, power=power, df=df),
        n_users=n_users,
        n_seeds=n_seeds,
        method=method,
        per_seed=per_seed,
    )
