"""Calibrated probabilities: undo negative down-sampling, then per-head Platt scaling.

Training keeps every example with a positive label on any head and a share ``q`` (the
*keep rate*) of the all-negative ones (paper 4.1.1; ``data/examples.py``). A model fitted
to that sample predicts ``p'_h = P_train(y_h = 1 | x)``, far above the true rate of a rare
head. With ``a(x)`` the true probability that *some* head is positive, every ``y_h = 1``
example is kept, so

    p'_h = p_h / s(x),     s(x) = a(x) + q (1 - a(x))   in [q, 1]

Every head of an example is inflated by the same factor ``1 / s``, and ``s`` differs
between examples (items likely to be engaged with are inflated less), so the utility
``S = sum_h u_h p'_h`` ranks by ``S / s(x)``, not by ``S``. Undoing it needs ``a(x)``,
which the heads determine only under an assumption about how they co-occur
(:func:`undo_negative_sampling`):

* ``exclusive`` (at most one head positive per impression, as in the MovieLens adapter):
  ``a = sum_h p_h``, so ``s = q / (1 - (1 - q) sum_h p'_h)``, exact.
* ``independent`` (heads independent given x in the true distribution):
  ``a = 1 - prod_h (1 - s p'_h)``; ``s`` is the one root in ``[q, 1]`` of
  ``s = q + (1 - q) a(s)``, found by Newton's method (the right side is concave in ``s``,
  so Newton from ``s = 1`` converges monotonically), exact under the assumption.
* a model with an "any positive" head gives ``a' = P_train(any | x)`` and the exact
  ``s = q / (1 - (1 - q) a')`` with no assumption.

For one head all three are the textbook prior correction ``odds(p) = q odds(p')``. The
two assumptions differ by terms of order ``p_h p_k`` of the *true* probabilities (under
0.1% for the world's heads, whose hide excludes click and repin while click and repin
are drawn independently). :func:`choose_joint` picks ``exclusive`` when no example of a
labelled sample has two positive heads.

A second, per-head **Platt** step ``p <- sigmoid(slope_h * logit(p) + intercept_h)``, fitted
on held-out data that was *not* down-sampled, removes what the correction cannot: an
under-trained or mis-specified model. :class:`Calibration` holds both steps as plain
numbers (JSON), with :meth:`Calibration.apply` in numpy and :meth:`Calibration.apply_torch`
for serving. How calibrated probabilities are is measured in ``reliability.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

FORMAT = "transact.calibration/1"
EPS = 1e-7
"""Probabilities are clipped to [EPS, 1 - EPS] before a logit (as in ``log_loss``)."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


JOINTS = ("independent", "exclusive")
NEWTON_STEPS = 12
"""Newton iterations of the ``independent`` correction; from ``s = 1`` the error after 12
is below 1e-12 for every input (``tests/evaluation/test_calibration.py`` checks it against
bisection)."""


def _check_keep_rate(keep_rate: float) -> None:
    if not 0 < keep_rate <= 1:
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")


def sampling_scale(
    probabilities: np.ndarray,
    keep_rate: float,
    *,
    joint: str = "independent",
    any_positive: np.ndarray | None = None,
) -> np.ndarray:
    """``[N]`` the factor ``s(x) = a + q (1 - a)`` with ``p_h = s * p'_h`` (module docstring).

    Args:
        probabilities: ``p'`` ``[N, H]``, what a model trained on the sample predicts.
        keep_rate: ``q`` in (0, 1], the share of all-negative examples kept.
        joint: ``"independent"`` or ``"exclusive"``: how heads co-occur.
        any_positive: ``[N]`` training-sample probability that some head is positive
            (a model's "any" head); when given, ``joint`` is not needed and s is exact.
    """
    _check_keep_rate(keep_rate)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    q = float(keep_rate)
    if any_positive is not None:
        a = np.clip(np.asarray(any_positive, dtype=np.float64), 0.0, 1.0)
        if a.shape != p.shape[:1]:
            raise ValueError(f"any_positive has shape {a.shape}, expected {p.shape[:1]}")
        return q / (1.0 - (1.0 - q) * a)
    if joint == "exclusive":
        return q / (1.0 - (1.0 - q) * np.minimum(p.sum(axis=1), 1.0))
    if joint != "independent":
        raise ValueError(f"joint must be one of {JOINTS}, got {joint!r}")
    s = np.ones(len(p))
    for _ in range(NEWTON_STEPS):
        factors = 1.0 - s[:, None] * p  # [N, H], each in [0, 1]
        # prod_{k != h} factors_k from prefix and suffix products (no division by ~0)
        ones = np.ones((len(p), 1))
        left = np.cumprod(np.concatenate([ones, factors[:, :-1]], axis=1), axis=1)
        right = np.cumprod(np.concatenate([ones, factors[:, :0:-1]], axis=1), axis=1)[:, ::-1]
        f = q + (1.0 - q) * (1.0 - factors.prod(axis=1)) - s
        df = (1.0 - q) * (p * left * right).sum(axis=1) - 1.0
        step = np.divide(f, df, out=np.zeros_like(f), where=df < -1e-15)
        s = np.clip(s - step, q, 1.0)
    return s


def sampling_scale_reference(
    probabilities: np.ndarray, keep_rate: float, *, iterations: int = 200
) -> np.ndarray:
    """Plain bisection for the ``independent`` ``s`` (the reference of the Newton path)."""
    _check_keep_rate(keep_rate)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    q = float(keep_rate)
    lo, hi = np.full(len(p), q), np.ones(len(p))
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        f = q + (1.0 - q) * (1.0 - np.prod(1.0 - mid[:, None] * p, axis=1)) - mid
        lo, hi = np.where(f > 0, mid, lo), np.where(f > 0, hi, mid)
    return 0.5 * (lo + hi)


def undo_negative_sampling(
    probabilities: np.ndarray,
    keep_rate: float,
    *,
    joint: str = "independent",
    any_positive: np.ndarray | None = None,
) -> np.ndarray:
    """``[N, H]`` training-sample probabilities -> ``[N, H]`` probabilities of the true
    distribution, for all-negative examples kept at rate ``keep_rate``:
    ``p_h = s(x) * p'_h`` with :func:`sampling_scale` (a no-op at ``keep_rate = 1``)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    if keep_rate == 1.0:
        return p
    return p * sampling_scale(p, keep_rate, joint=joint, any_positive=any_positive)[:, None]


def choose_joint(labels: np.ndarray) -> str:
    """``exclusive`` when no row of ``[N, H]`` 0/1 labels has two positives, else
    ``independent`` (how the heads of a labelled sample co-occur)."""
    return (
        "exclusive"
        if int((np.asarray(labels) > 0).sum(axis=1).max(initial=0)) <= 1
        else "independent"
    )


def fit_platt(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    max_iter: int = 100,
) -> tuple[float, float]:
    """Platt scaling of one head: ``(slope, intercept)`` of ``sigmoid(a logit(p) + b)``.

    Minimizes the (weighted) log loss by Newton's method with step halving. Targets are
    Platt's smoothed ``(n_pos + 1) / (n_pos + 2)`` and ``1 / (n_neg + 2)`` (weighted counts),
    so a head without positives still has a finite fit. ``weights`` ``[N]`` are example
    weights, e.g. ``1 / keep_rate`` for the kept negatives of a down-sampled set.
    """
    x = _logit(probabilities)
    y = np.asarray(labels, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (x.shape == y.shape == w.shape) or x.ndim != 1:
        raise ValueError(f"fit_platt needs [N] arrays, got {x.shape}, {y.shape}, {w.shape}")
    if len(x) == 0:
        raise ValueError("fit_platt needs at least one example")
    n_pos, n_neg = float((w * y).sum()), float((w * (1 - y)).sum())
    t = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(a: float, b: float) -> float:
        z = a * x + b
        # -t log s(z) - (1 - t) log(1 - s(z)) = softplus(z) - t z, stable for any z
        return float((w * (np.logaddexp(0.0, z) - t * z)).sum())

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(max_iter):
        s = _sigmoid(a * x + b)
        r, v = w * (s - t), w * s * (1 - s)
        grad = np.array([(r * x).sum(), r.sum()])
        hess = np.array([[(v * x * x).sum(), (v * x).sum()], [(v * x).sum(), v.sum()]])
        hess += 1e-9 * max(1.0, float(np.trace(hess))) * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-8:
            na, nb = a - scale * step[0], b - scale * step[1]
            new = loss(na, nb)
            if new <= current:
                break
            scale *= 0.5
        else:
            break
        improvement = current - new
        a, b, current = na, nb, new
        if improvement <= 1e-12 * max(1.0, abs(current)):
            break
    return float(a), float(b)


def _sampling_scale_torch(p: torch.Tensor, q: float, joint: str) -> torch.Tensor:
    """:func:`sampling_scale` in torch on ``[B, H]`` (the same Newton steps)."""
    if joint == "exclusive":
        return q / (1.0 - (1.0 - q) * p.sum(dim=1).clamp(max=1.0))
    s = torch.ones(p.shape[0], dtype=p.dtype, device=p.device)
    ones = torch.ones(p.shape[0], 1, dtype=p.dtype, device=p.device)
    for _ in range(NEWTON_STEPS):
        factors = 1.0 - s[:, None] * p
        left = torch.cumprod(torch.cat([ones, factors[:, :-1]], dim=1), dim=1)
        right = torch.cumprod(torch.cat([ones, factors.flip(1)[:, :-1]], dim=1), dim=1).flip(1)
        f = q + (1.0 - q) * (1.0 - factors.prod(dim=1)) - s
        df = (1.0 - q) * (p * left * right).sum(dim=1) - 1.0
        ok = df < -1e-12
        step = torch.where(ok, f / torch.where(ok, df, -torch.ones_like(df)), torch.zeros_like(f))
        s = (s - step).clamp(q, 1.0)
    return s


@dataclass(frozen=True)
class Calibration:
    """Per-head calibration: undo negative down-sampling, then Platt scaling.

    Args:
        heads: head names, the column order of the probabilities it applies to.
        keep_rate: share ``q`` of all-negative examples the training set kept (1.0: no
            down-sampling correction).
        joint: how heads co-occur, for the correction: ``"independent"`` or
            ``"exclusive"`` (:func:`sampling_scale`).
        slope / intercept: Platt parameters per head (empty: no Platt step).
        fitted_on: where the parameters come from (examples, window, method); JSON only.

    Example::

        cal = fit_calibration(p_heldout, y_heldout, heads, keep_rate=0.042)
        Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))).apply(p_eval)
        cal.apply_torch(torch.sigmoid(logits))  # serving, [B, H]
    """

    heads: tuple[str, ...]
    keep_rate: float = 1.0
    joint: str = "independent"
    slope: tuple[float, ...] = ()
    intercept: tuple[float, ...] = ()
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.keep_rate <= 1:
            raise ValueError(f"Calibration.keep_rate must be in (0, 1], got {self.keep_rate}")
        if self.joint not in JOINTS:
            raise ValueError(f"Calibration.joint must be one of {JOINTS}, got {self.joint!r}")
        if len(self.slope) != len(self.intercept) or len(self.slope) not in (0, len(self.heads)):
            raise ValueError(
                f"Calibration.slope/intercept need one value per head ({len(self.heads)}) or "
                f"none, got {len(self.slope)} and {len(self.intercept)}"
            )
        for name in ("slope", "intercept"):
            for head, value in zip(self.heads, getattr(self, name), strict=False):
                if not math.isfinite(value):
                    raise ValueError(f"Calibration.{name}[{head!r}] is not finite: {value}")

    @classmethod
    def identity(cls, heads: Sequence[str]) -> Calibration:
        return cls(heads=tuple(heads))

    @property
    def has_platt(self) -> bool:
        return bool(self.slope)

    def _check(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2 or shape[1] != len(self.heads):
            raise ValueError(
                f"calibration of heads {list(self.heads)} needs [N, {len(self.heads)}] "
                f"probabilities, got shape {tuple(shape)}"
            )

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """``[N, H]`` raw probabilities -> ``[N, H]`` calibrated (float64, numpy)."""
        p = np.asarray(probabilities, dtype=np.float64)
        self._check(p.shape)
        p = undo_negative_sampling(p, self.keep_rate, joint=self.joint)
        if self.has_platt:
            a, b = np.asarray(self.slope), np.asarray(self.intercept)
            p = _sigmoid(a[None, :] * _logit(p) + b[None, :])
        return p

    def apply_torch(self, probabilities: torch.Tensor) -> torch.Tensor:
        """The same map as :meth:`apply` on a ``[B, H]`` tensor (computed in float32 on the
        tensor's device, returned in its dtype); a pure function of its input, for serving."""
        self._check(tuple(probabilities.shape))
        p = probabilities.float().clamp(0.0, 1.0)
        q = self.keep_rate
        if q != 1.0:
            p = p * _sampling_scale_torch(p, q, self.joint)[:, None]
        if self.has_platt:
            slope = torch.tensor(self.slope, dtype=torch.float32, device=p.device)
            intercept = torch.tensor(self.intercept, dtype=torch.float32, device=p.device)
            pc = p.clamp(EPS, 1.0 - EPS)
            p = torch.sigmoid(slope * (torch.log(pc) - torch.log1p(-pc)) + intercept)
        return p.to(probabilities.dtype)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what a model's metadata stores)."""
        return {
            "format": FORMAT,
            "heads": list(self.heads),
            "keep_rate": self.keep_rate,
            "joint": self.joint,
            "platt": (
                {"slope": list(self.slope), "intercept": list(self.intercept)}
                if self.has_platt
                else None
            ),
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "calibration") -> Calibration:
        """Read :meth:`to_dict`'s form; a bad field raises ``ValueError`` naming it."""
        if data.get("format") != FORMAT:
            raise ValueError(f"{source}: format must be {FORMAT!r}, got {data.get('format')!r}")
        heads = data.get("heads")
        if not isinstance(heads, list) or not all(isinstance(h, str) for h in heads):
            raise ValueError(f"{source}: heads must be a list of names, got {heads!r}")
        platt = data.get("platt")
        slope: tuple[float, ...] = ()
        intercept: tuple[float, ...] = ()
        if platt is not None:
            for key in ("slope", "intercept"):
                values = platt.get(key) if isinstance(platt, Mapping) else None
                if not isinstance(values, list) or len(values) != len(heads):
                    raise ValueError(
                        f"{source}: platt.{key} must list {len(heads)} numbers, got {values!r}"
                    )
            slope = tuple(float(v) for v in platt["slope"])
            intercept = tuple(float(v) for v in platt["intercept"])
        try:
            keep_rate = float(data.get("keep_rate", 1.0))
            joint = str(data.get("joint", "independent"))
            return cls(
                tuple(heads), keep_rate, joint, slope, intercept, dict(data.get("fitted_on", {}))
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None


def fit_calibration(
    probabilities: np.ndarray,
    labels: np.ndarray,
    heads: Sequence[str],
    *,
    keep_rate: float = 1.0,
    joint: str | None = None,
    platt: bool = True,
    weights: np.ndarray | None = None,
    fitted_on: Mapping[str, Any] | None = None,
) -> Calibration:
    """Fit a :class:`Calibration` on ``[N, H]`` probabilities and 0/1 labels.

    The down-sampling correction needs no fit (``keep_rate`` is known from how the
    training set was built); the Platt step is fitted per head on the corrected
    probabilities. Fit it on data that is held out and *not* down-sampled, or pass
    ``weights`` (``1 / keep_rate`` for kept negatives) to fit on a down-sampled set.
    ``joint`` defaults to :func:`choose_joint` of ``labels``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    if p.shape != y.shape or p.ndim != 2 or p.shape[1] != len(heads):
        raise ValueError(
            f"fit_calibration needs [N, {len(heads)}] probabilities and labels, "
            f"got {p.shape} and {y.shape}"
        )
    joint = joint or choose_joint(y)
    base = Calibration(tuple(heads), keep_rate, joint, fitted_on=dict(fitted_on or {}))
    if not platt:
        return base
    corrected = base.apply(p)
    params = [fit_platt(corrected[:, h], y[:, h], weights=weights) for h in range(len(heads))]
    return Calibration(
        tuple(heads),
        keep_rate,
        joint,
        slope=tuple(a for a, _ in params),
        intercept=tuple(b for _, b in params),
        fitted_on=dict(fitted_on or {}),
    )
