"""Evaluate models the paper's way and compare them against a baseline (Table 1 style).

:func:`evaluate` computes, for one :class:`Predictions`, HIT@K per head (Eq. 3-4) and,
where ground-truth probabilities exist, the expected HIT@K (``hit.py``), AUC, log loss and
calibration per head, and diversity, for all users and for non-core users. :func:`compare`
lines several models (and the oracle) up against a baseline evaluated on the same
requests: relative lift with its 95% interval over users, a paired significance test, the
minimum detectable lift, and the share of the oracle's lift each model reaches.
:meth:`Comparison.to_dict` is the schema of ``metrics.json``; :meth:`Comparison.to_markdown`
is the report table (also the demo's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transact.evaluation.hit import (
    PerUserHits,
    per_user_diversity,
    per_user_hits_and_expected,
    ranking_score,
    utility_vector,
)
from transact.evaluation.metrics import log_loss, roc_auc
from transact.evaluation.predictions import Predictions
from transact.evaluation.reliability import calibration_report
from transact.evaluation.significance import (
    align_users,
    lift_interval,
    paired_bootstrap,
    paired_t_test,
    relative_lift,
)

SEGMENTS = ("all", "non_core")
TESTS = ("t_test", "bootstrap")


@dataclass(frozen=True)
class EvaluationConfig:
    """How models are scored and compared.

    Args:
        k: HIT@K cut-off (paper: 3).
        utility: u_h per head name for the ranking score S (Eq. 3); negative for a
            negative action. Heads not named weigh 0. The weights are data: a run config's
            ``[heads] utility`` (``transact.pipeline.heads``); empty until given, and
            :func:`evaluate` refuses a utility that weighs none of the heads.
        test: ``"t_test"`` (paired t-test over users; the 95% interval by the delta
            method) or ``"bootstrap"`` (paired bootstrap of the relative lift over users,
            for the p-value and the interval's standard error).
        n_bootstrap: resamples of the bootstrap test.
        alpha: significance level; p >= alpha is marked insignificant (paper: 0.05).
        seed: bootstrap seed.
    """

    k: int = 3
    utility: Mapping[str, float] = field(default_factory=dict)
    test: str = "t_test"
    n_bootstrap: int = 2000
    alpha: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"EvaluationConfig.k must be >= 1, got {self.k}")
        if self.test not in TESTS:
            raise ValueError(f"EvaluationConfig.test must be one of {TESTS}, got {self.test!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"EvaluationConfig.alpha must be in (0, 1), got {self.alpha}")
        if self.n_bootstrap < 10:
            raise ValueError(f"EvaluationConfig.n_bootstrap must be >= 10, got {self.n_bootstrap}")
        for head, weight in self.utility.items():
            if not math.isfinite(float(weight)):
                raise ValueError(f"EvaluationConfig.utility[{head!r}] is not finite: {weight}")

    @property
    def metric_name(self) -> str:
        return f"hit_at_{self.k}"

    @property
    def interval_method(self) -> str:
        """How :func:`compare` computes the lift's interval: ``delta`` with the t-test,
        ``bootstrap`` with the bootstrap test."""
        return "bootstrap" if self.test == "bootstrap" else "delta"


@dataclass(frozen=True)
class SegmentResult:
    """One model on one user segment: per-user values (for paired tests) and summaries.

    ``expected_hits`` are the per-user expected HIT@K (ground-truth probability of the
    top-K items), ``None`` without ground truth.
    """

    n_users: int
    n_requests: int
    n_impressions: int
    hits: PerUserHits
    expected_hits: PerUserHits | None
    auc: np.ndarray  # [H]
    log_loss: np.ndarray  # [H]
    diversity_users: np.ndarray  # [U]
    diversity: np.ndarray  # [U] unique top-level interests in the user's top-K

    @property
    def hit(self) -> np.ndarray:
        return self.hits.mean()

    @property
    def expected_hit(self) -> np.ndarray:
        """``[H]`` expected HIT@K (NaN without ground truth)."""
        if self.expected_hits is None:
            return np.full(self.hits.hits.shape[1], np.nan)
        return self.expected_hits.mean()


@dataclass(frozen=True)
class ModelResult:
    """Every segment of one model's evaluation, and its calibration on all rows
    (:func:`~transact.evaluation.calibration.calibration_report`)."""

    heads: tuple[str, ...]
    segments: dict[str, SegmentResult]
    calibration: dict[str, dict[str, Any]]


def _segment_mask(preds: Predictions, segment: str) -> np.ndarray:
    if segment == "all":
        return np.ones(len(preds), dtype=bool)
    if segment == "non_core":
        return ~preds.is_core.astype(bool)
    raise ValueError(f"unknown segment {segment!r}; known: {SEGMENTS}")


def evaluate(preds: Predictions, config: EvaluationConfig | None = None) -> ModelResult:
    """HIT@K, AUC, log loss and diversity of one model, for all and non-core users."""
    config = config or EvaluationConfig()
    u = utility_vector(preds.heads, config.utility)
    if not np.any(u):
        raise ValueError(
            f"no utility weight for any head of {list(preds.heads)} (utility "
            f"{dict(config.utility)}): the ranking score S would be 0; give --utility or a "
            "run config's [heads] utility"
        )
    segments: dict[str, SegmentResult] = {}
    for segment in SEGMENTS:
        p = preds.subset(_segment_mask(preds, segment))
        scores = ranking_score(p.scores, u)
        hits, expected = per_user_hits_and_expected(
            p.user_ids, p.request_ids, scores, p.labels, p.gt_probs, config.k
        )
        d_users, diversity = per_user_diversity(
            p.user_ids, p.request_ids, scores, p.top_interest, config.k
        )
        n_requests = (
            len(np.unique(np.stack([p.user_ids, p.request_ids], axis=1), axis=0)) if len(p) else 0
        )
        segments[segment] = SegmentResult(
            n_users=len(hits.users),
            n_requests=n_requests,
            n_impressions=len(p),
            hits=hits,
            expected_hits=expected,
            auc=np.array([roc_auc(p.labels[:, h], p.scores[:, h]) for h in range(len(p.heads))]),
            log_loss=np.array(
                [log_loss(p.labels[:, h], p.scores[:, h]) for h in range(len(p.heads))]
            ),
            diversity_users=d_users,
            diversity=diversity,
        )
    calibration = calibration_report(preds.scores, preds.labels, preds.heads) if len(preds) else {}
    return ModelResult(heads=preds.heads, segments=segments, calibration=calibration)


def _p_value(model: np.ndarray, baseline: np.ndarray, config: EvaluationConfig) -> float:
    if config.test == "t_test":
        return paired_t_test(model, baseline)
    return paired_bootstrap(model, baseline, n_resamples=config.n_bootstrap, seed=config.seed)


def _json_number(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _lift_cells(
    model: np.ndarray, baseline: np.ndarray, config: EvaluationConfig, prefix: str = ""
) -> dict[str, Any]:
    """Lift, 95% interval, p-value, significance and MDE of paired ``[U]`` values."""
    interval = lift_interval(
        model,
        baseline,
        method=config.interval_method,
        n_bootstrap=config.n_bootstrap,
        seed=config.seed,
        alpha=config.alpha,
    )
    p_val = _p_value(model, baseline, config)
    return {
        f"{prefix}lift_vs_baseline": relative_lift(float(model.mean()), float(baseline.mean()))
        if len(model)
        else float("nan"),
        f"{prefix}ci95": [interval.ci_low, interval.ci_high],
        f"{prefix}p_value": p_val,
        f"{prefix}significant": bool(p_val < config.alpha),
        f"{prefix}mde": interval.mde,
    }


def _baseline_cells(prefix: str = "") -> dict[str, Any]:
    nan = float("nan")
    return {
        f"{prefix}lift_vs_baseline": 0.0,
        f"{prefix}ci95": [nan, nan],
        f"{prefix}p_value": nan,
        f"{prefix}significant": False,
        f"{prefix}mde": nan,
    }


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x * 100:+.{digits}f}%"


def _ci_text(ci: list[float | None]) -> str:
    lo, hi = ci
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" [{lo * 100:+.1f}, {hi * 100:+.1f}]"


@dataclass
class Comparison:
    """Several models against one baseline (and the oracle, when known).

    ``rows[model][head][segment]`` holds ``hit_at_K``, ``lift_vs_baseline``, ``ci95``,
    ``p_value``, ``significant``, ``mde``, the same for the expected HIT@K with an
    ``expected_`` prefix (``None`` without ground truth), ``share_of_oracle_lift``,
    ``auc``, ``log_loss`` and ``n_users``; ``diversity[model][segment]`` the summed unique
    top-level interests with its lift; ``calibration[model][head]`` the calibration
    report of the model's probabilities on all rows.
    """

    config: EvaluationConfig
    heads: tuple[str, ...]
    baseline: str
    oracle: str | None
    rows: dict[str, dict[str, dict[str, dict[str, Any]]]]
    diversity: dict[str, dict[str, dict[str, Any]]]
    calibration: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def has_expected(self) -> bool:
        """Whether the expected HIT@K exists (every model had ground truth)."""
        first = self.rows[self.baseline][self.heads[0]]["all"] if self.heads else {}
        value = first.get(f"expected_{self.config.metric_name}")
        return value is not None and math.isfinite(value)

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` layout: ``models[model][head][segment][metric]``."""

        def clean(d: Any) -> Any:
            if isinstance(d, dict):
                return {k: clean(v) for k, v in d.items()}
            if isinstance(d, list | tuple):
                return [clean(v) for v in d]
            if isinstance(d, bool | int | str) or d is None:
                return d
            return _json_number(float(d))

        return {
            "k": self.config.k,
            "metric": self.config.metric_name,
            "baseline": self.baseline,
            "oracle": self.oracle,
            "utility": dict(self.config.utility),
            "test": self.config.test,
            "interval": self.config.interval_method,
            "alpha": self.config.alpha,
            "heads": list(self.heads),
            "segments": list(SEGMENTS),
            "models": clean(self.rows),
            "diversity": clean(self.diversity),
            "calibration": clean(self.calibration),
        }

    def _lift_table(self, prefix: str, models: list[str]) -> list[str]:
        body = []
        for name in models:
            row = [name]
            for h in self.heads:
                for s in SEGMENTS:
                    r = self.rows[name][h][s]
                    insignificant = not r[f"{prefix}significant"] and name != self.oracle
                    row.append(
                        _pct(r[f"{prefix}lift_vs_baseline"])
                        + ("*" if insignificant else "")
                        + _ci_text(r[f"{prefix}ci95"])
                    )
            body.append(row)
        return _table(["Model", *self._head_cols()], body)

    def _head_cols(self) -> list[str]:
        k = self.config.k
        return [f"HIT@{k}/{h} {s.replace('_', '-')}" for h in self.heads for s in SEGMENTS]

    def to_markdown(self) -> str:
        """Lift tables (sampled and expected HIT@K, with 95% intervals), absolute values,
        oracle share, AUC/log loss, calibration, diversity."""
        k, m = self.config.k, self.config.metric_name
        method = "delta method" if self.config.interval_method == "delta" else "paired bootstrap"
        star = (
            f"* p >= {self.config.alpha:g}: statistically insignificant (paired "
            f"{self.config.test.replace('_', '-')} over users). [a, b]: 95% interval of the "
            f"lift over users ({method}), in percent."
        )
        models = [name for name in self.rows if name != self.baseline]
        head_cols = self._head_cols()
        lines = [f"### Relative lift of HIT@{k} over `{self.baseline}`", ""]
        lines += self._lift_table("", models)
        lines += ["", star, ""]
        if self.has_expected:
            lines += [
                f"### Relative lift of expected HIT@{k} over `{self.baseline}`",
                "",
                f"Expected HIT@{k}: for each chunk, the sum over the model's top {k} of the "
                "ground-truth probability of the head; the same ranking as above without the "
                "noise of the label draw.",
                "",
            ]
            lines += self._lift_table("expected_", models)
            lines += [""]
        lines += [f"### Absolute HIT@{k} (top-{k} hits per user)", ""]
        body = []
        for name in self.rows:
            cells = []
            for h in self.heads:
                for s in SEGMENTS:
                    r = self.rows[name][h][s]
                    text = f"{r[m]:.4f}"
                    expected = r.get(f"expected_{m}")
                    if expected is not None and math.isfinite(expected):
                        text += f" (exp. {expected:.4f})"
                    cells.append(text)
            body.append([name, *cells])
        lines += _table(["Model", *head_cols], body)
        if self.has_expected:
            lines += ["", f"(exp. = expected HIT@{k} from the ground-truth probabilities)"]
        if self.oracle is not None:
            lines += ["", "### Share of the oracle's lift reached", ""]
            body = []
            for name in models:
                if name == self.oracle:
                    continue
                body.append(
                    [name]
                    + [
                        _pct(self.rows[name][h][s]["share_of_oracle_lift"]).lstrip("+")
                        for h in self.heads
                        for s in SEGMENTS
                    ]
                )
            lines += _table(["Model", *head_cols], body)
            lines += [
                "",
                f"Share = (model - {self.baseline}) / (oracle - {self.baseline}) of HIT@{k}; "
                "the oracle ranks by the simulator's ground-truth probabilities.",
            ]
        lines += ["", "### AUC and log loss (all users)", ""]
        cols = [f"{metric} {h}" for h in self.heads for metric in ("AUC", "logloss")]
        body = []
        for name in self.rows:
            row = [name]
            for h in self.heads:
                r = self.rows[name][h]["all"]
                row += [f"{r['auc']:.4f}", f"{r['log_loss']:.4f}"]
            body.append(row)
        lines += _table(["Model", *cols], body)
        lines += calibration_lines(self.calibration, self.heads)
        lines += [
            "",
            f"### Diversity: unique top-level interests in each user's top-{k}, summed",
            "",
        ]
        body = []
        for name in self.rows:
            row = [name]
            for s in SEGMENTS:
                d = self.diversity[name][s]
                lift = "" if name == self.baseline else f" ({_pct(d['lift_vs_baseline'])})"
                row.append(f"{d['sum']}{lift}")
            body.append(row)
        lines += _table(["Model", "all", "non-core"], body)
        return "\n".join(lines) + "\n"


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in body]
    return out


def calibration_lines(
    calibration: dict[str, dict[str, dict[str, Any]]], heads: tuple[str, ...]
) -> list[str]:
    """Markdown: per model and head, predicted/observed ratio and ECE (all rows)."""
    if not calibration:
        return []
    lines = [
        "",
        "### Calibration (all rows): mean predicted / observed rate, and ECE",
        "",
    ]
    body = []
    for name, report in calibration.items():
        row = [name]
        for h in heads:
            r = report.get(h, {})
            ratio, ece = r.get("ratio"), r.get("ece")
            row.append(
                ("n/a" if ratio is None or not math.isfinite(ratio) else f"{ratio:.2f}x")
                + ("" if ece is None else f" (ECE {ece:.4f})")
            )
        body.append(row)
    lines += _table(["Model", *heads], body)
    lines += [
        "",
        "A ratio of 1.00x is calibrated on average; ECE is the count-weighted mean "
        "|predicted - observed| over 10 equal-count bins of predicted probability.",
    ]
    return lines


def compare(
    predictions: Mapping[str, Predictions],
    baseline: str,
    *,
    oracle: str | None = None,
    config: EvaluationConfig | None = None,
) -> Comparison:
    """Evaluate every model and compare it with ``baseline`` (paired over users).

    Args:
        predictions: model name -> predictions on the SAME evaluation rows.
        baseline: the name in ``predictions`` that lifts are relative to.
        oracle: the name of the oracle's predictions, if present; every other model then
            gets ``share_of_oracle_lift = (model - baseline) / (oracle - baseline)``.
        config: evaluation settings.
    """
    config = config or EvaluationConfig()
    if baseline not in predictions:
        raise KeyError(f"baseline {baseline!r} not among models {list(predictions)}")
    if oracle is not None and oracle not in predictions:
        raise KeyError(f"oracle {oracle!r} not among models {list(predictions)}")
    heads = predictions[baseline].heads
    for name, p in predictions.items():
        if p.heads != heads:
            raise ValueError(f"model {name!r} has heads {p.heads}, baseline has {heads}")
    results = {name: evaluate(p, config) for name, p in predictions.items()}
    base = results[baseline]
    metric = config.metric_name
    rows: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    diversity: dict[str, dict[str, dict[str, Any]]] = {}
    for name, res in results.items():
        rows[name] = {h: {} for h in heads}
        diversity[name] = {}
        is_base = name == baseline
        for s in SEGMENTS:
            seg, bseg = res.segments[s], base.segments[s]
            align_users(seg.hits.users, seg.hits.hits, bseg.hits.users, bseg.hits.hits)
            with_expected = seg.expected_hits is not None and bseg.expected_hits is not None
            for hi, h in enumerate(heads):
                value, bvalue = float(seg.hit[hi]), float(bseg.hit[hi])
                share = float("nan")
                if oracle is not None and not is_base:
                    ovalue = float(results[oracle].segments[s].hit[hi])
                    if ovalue != bvalue:
                        share = (value - bvalue) / (ovalue - bvalue)
                cells = (
                    _baseline_cells()
                    if is_base
                    else _lift_cells(seg.hits.hits[:, hi], bseg.hits.hits[:, hi], config)
                )
                expected: dict[str, Any] = {f"expected_{metric}": float(seg.expected_hit[hi])}
                if (
                    with_expected
                    and seg.expected_hits is not None
                    and bseg.expected_hits is not None
                ):
                    expected.update(
                        _baseline_cells("expected_")
                        if is_base
                        else _lift_cells(
                            seg.expected_hits.hits[:, hi],
                            bseg.expected_hits.hits[:, hi],
                            config,
                            "expected_",
                        )
                    )
                rows[name][h][s] = {
                    metric: value,
                    **cells,
                    **expected,
                    "share_of_oracle_lift": share,
                    "auc": float(seg.auc[hi]),
                    "log_loss": float(seg.log_loss[hi]),
                    "n_users": int(seg.n_users),
                    "n_requests": int(seg.n_requests),
                }
            total, btotal = int(seg.diversity.sum()), int(bseg.diversity.sum())
            dp = (
                float("nan")
                if is_base
                else _p_value(
                    seg.diversity.astype(np.float64), bseg.diversity.astype(np.float64), config
                )
            )
            diversity[name][s] = {
                "sum": total,
                "mean_per_user": float(seg.diversity.mean())
                if len(seg.diversity)
                else float("nan"),
                "lift_vs_baseline": 0.0 if is_base else relative_lift(total, btotal),
                "p_value": dp,
            }
    calibration = {
        name: res.calibration for name, res in results.items() if name != oracle and res.calibration
    }
    return Comparison(
        config=config,
        heads=heads,
        baseline=baseline,
        oracle=oracle,
        rows=rows,
        diversity=diversity,
        calibration=calibration,
    )
