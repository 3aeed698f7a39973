"""Lifts of a treatment arm over the control with 95% intervals: CUPED and paired designs.

Two designs, two estimators of the same relative lift ``mean(treatment) / mean(control) -
1`` of a per-user value (a user's repins over the period, say):

* **Buckets** (:func:`cuped_lift`): the arms hold different users, so the lift compares
  two independent samples. CUPED (Deng et al., WSDM 2013) removes the part of each user's
  value that the pre-period predicts: ``y' = y - theta (x - mean(x))`` with ``x`` the
  user's value of the same metric in the pre-period and ``theta = cov(x, y) / var(x)``
  estimated on both arms pooled (assignment is random, so ``x`` is independent of it and
  the adjusted means stay unbiased). The relative lift of the adjusted means gets a
  delta-method interval for a ratio of independent means,
  ``var = var_t / (n_t m_c^2) + m_t^2 var_c / (n_c m_c^4)``. Without a covariate it is
  the plain two-sample lift.
* **Paired** (:func:`paired_lift`): the arms are counterfactual copies of the same users
  with common random numbers, so per-user differences carry the comparison; the interval
  is ``evaluation.significance.lift_interval``'s paired delta method (the one the offline
  tables use). A pre-period covariate would cancel in the difference (it is the same user
  in both arms), so paired lifts need no CUPED.

``p < 0.05`` exactly when the 95% interval excludes 0 (normal quantiles throughout: the
arms hold hundreds of users or more).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from transact.evaluation.significance import lift_interval


@dataclass(frozen=True)
class Lift:
    """A relative lift of a treatment over the control with its interval.

    Fields:
        lift: ``mean_t / mean_c - 1`` of the (adjusted) per-user values.
        ci_low / ci_high: the ``1 - alpha`` interval; ``se`` its standard error.
        p_value: two-sided, normal.
        mean_t / mean_c: the (adjusted) means per user of each arm.
        n_t / n_c: users in each arm.
        method: ``cuped``, ``difference`` (two samples, no covariate) or ``paired``.
        theta: CUPED's coefficient (None otherwise).
        variance_reduction: ``1 - var(adjusted lift) / var(plain lift)`` (CUPED only).
    """

    lift: float
    ci_low: float
    ci_high: float
    se: float
    p_value: float
    mean_t: float
    mean_c: float
    n_t: int
    n_c: int
    method: str
    theta: float | None = None
    variance_reduction: float | None = None

    @property
    def significant(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)

    def to_dict(self) -> dict[str, float | int | str | bool | None]:
        out: dict[str, float | int | str | bool | None] = asdict(self)
        out["significant"] = self.significant
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in out.items()}  # fmt: skip


def _ratio_interval(
    m_t: float, m_c: float, var_t: float, var_c: float, n_t: int, n_c: int, alpha: float
) -> tuple[float, float, float, float, float]:
    """(lift, low, high, se, p) of ``m_t / m_c - 1`` for independent sample means.

    All NaN when the control's mean is not distinguishable from 0 (its own interval holds
    0): Fieller's interval of the ratio is then unbounded and the delta method's is
    meaningless (a small bucket with a handful of events gave "-13,301%"), so the lift is
    undefined rather than a number that reads as a result."""
    nan = float("nan")
    if n_t < 2 or n_c < 2 or not math.isfinite(m_c) or m_c == 0:
        return nan, nan, nan, nan, nan
    q = float(stats.norm.ppf(1 - alpha / 2))
    if math.isfinite(var_c) and abs(m_c) <= q * math.sqrt(max(var_c, 0.0) / n_c):
        return nan, nan, nan, nan, nan
    lift = m_t / m_c - 1.0
    var = var_t / (n_t * m_c**2) + m_t**2 * var_c / (n_c * m_c**4)
    se = math.sqrt(max(var, 0.0))
    p = (1.0 if lift == 0 else 0.0) if se == 0 else float(2 * stats.norm.sf(abs(lift) / se))
    return lift, lift - q * se, lift + q * se, se, p


def cuped_lift(
    y_t: np.ndarray,
    y_c: np.ndarray,
    x_t: np.ndarray | None = None,
    x_c: np.ndarray | None = None,
    *,
    alpha: float = 0.05,
) -> Lift:
    """Relative lift of two independent buckets, CUPED-adjusted when ``x_*`` are given.

    Args:
        y_t / y_c: ``[n_t]`` / ``[n_c]`` per-user values in the experiment.
        x_t / x_c: the same users' pre-period values (the covariate), or None.
        alpha: 1 - the interval's level.
    """
    yt, yc = np.asarray(y_t, np.float64), np.asarray(y_c, np.float64)
    n_t, n_c = yt.size, yc.size
    theta: float | None = None
    reduction: float | None = None
    if x_t is not None and x_c is not None:
        xt, xc = np.asarray(x_t, np.float64), np.asarray(x_c, np.float64)
        if xt.shape != yt.shape or xc.shape != yc.shape:
            raise ValueError("cuped_lift: each covariate must have its arm's shape")
        x_all, y_all = np.concatenate([xt, xc]), np.concatenate([yt, yc])
        var_x = float(x_all.var(ddof=1)) if x_all.size > 1 else 0.0
        theta = float(np.cov(x_all, y_all, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
        x_mean = _mean(x_all)
        plain = _ratio_interval(_mean(yt), _mean(yc), _var(yt), _var(yc), n_t, n_c, alpha)
        yt = yt - theta * (xt - x_mean)
        yc = yc - theta * (xc - x_mean)
    lift, low, high, se, p = _ratio_interval(
        _mean(yt), _mean(yc), _var(yt), _var(yc), n_t, n_c, alpha
    )
    if theta is not None:
        plain_se = plain[3]
        if math.isfinite(plain_se) and plain_se > 0 and math.isfinite(se):
            reduction = 1.0 - (se / plain_se) ** 2
    return Lift(
        lift,
        low,
        high,
        se,
        p,
        _mean(yt),
        _mean(yc),
        n_t,
        n_c,
        "cuped" if theta is not None else "difference",
        theta,
        reduction,
    )


def _mean(values: np.ndarray) -> float:
    """The mean, NaN for no values (an arm or a segment with no users)."""
    return float(values.mean()) if values.size else float("nan")


def _var(values: np.ndarray) -> float:
    return float(values.var(ddof=1)) if values.size > 1 else float("nan")


def paired_lift(y_t: np.ndarray, y_c: np.ndarray, *, alpha: float = 0.05) -> Lift:
    """Relative lift of paired per-user values (the same users in both arms, ``[U]`` each)."""
    yt, yc = np.asarray(y_t, np.float64), np.asarray(y_c, np.float64)
    if yt.shape != yc.shape:
        raise ValueError(f"paired_lift: shapes differ {yt.shape} vs {yc.shape}")
    li = lift_interval(yt, yc, method="delta", alpha=alpha)
    return Lift(
        li.lift,
        li.ci_low,
        li.ci_high,
        li.se,
        li.p_value,
        _mean(yt),
        _mean(yc),
        int(yt.size),
        int(yc.size),
        "paired",
    )


def change_of_paired_ratio(
    num_late: np.ndarray,
    den_late: np.ndarray,
    num_early: np.ndarray,
    den_early: np.ndarray,
    *,
    alpha: float = 0.05,
) -> Lift:
    """How much a ratio of per-user sums changes between two periods of the same users:
    ``sum(num_late) / sum(den_late) - sum(num_early) / sum(den_early)``, with a
    delta-method interval over users.

    A user's values in the two periods are correlated (the same person, often the same
    tastes), so the interval of two independent ratios would be wrong on either side; the
    delta method here carries the full covariance of the four per-user values. The
    feedback loop's "does the full-traffic advantage grow" reads it with ``num`` the
    per-user ``T - B`` and ``den`` the per-user ``C`` of
    :func:`~transact.experiments.online.paired_difference_of_gains`.

    Returns a :class:`Lift` whose ``lift`` is the change, ``mean_t`` / ``mean_c`` the late
    and the early ratio, and ``method`` ``"paired change"``.
    """
    parts = [np.asarray(v, np.float64) for v in (num_late, den_late, num_early, den_early)]
    if len({v.shape for v in parts}) != 1 or parts[0].ndim != 1:
        shapes = [v.shape for v in parts]
        raise ValueError(
            f"change_of_paired_ratio: four per-user vectors of one length, got {shapes}"
        )
    x = np.stack(parts)
    n = int(x.shape[1])
    nan = float("nan")
    m = x.mean(axis=1) if n >= 2 else None
    if m is None or m[1] == 0 or m[3] == 0:
        return Lift(nan, nan, nan, nan, nan, nan, nan, n, n, "paired change")
    late, early = m[0] / m[1], m[2] / m[3]
    change = float(late - early)
    grad = np.array([1 / m[1], -m[0] / m[1] ** 2, -1 / m[3], m[2] / m[3] ** 2])
    se = float(math.sqrt(max(grad @ np.cov(x) @ grad, 0.0) / n))
    low, high, p = normal_interval(change, se, alpha)
    return Lift(change, low, high, se, p, float(late), float(early), n, n, "paired change")


def normal_interval(estimate: float, se: float, alpha: float = 0.05) -> tuple[float, float, float]:
    """``(low, high, p)`` of an estimate with a normal standard error: the ``1 - alpha``
    interval ``estimate -/+ z se`` and the two-sided p-value (NaN when ``se`` is 0)."""
    z = float(stats.norm.ppf(1 - alpha / 2))
    p = float(2 * stats.norm.sf(abs(estimate) / se)) if se > 0 else math.nan
    return estimate - z * se, estimate + z * se, p
