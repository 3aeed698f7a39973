"""Evaluate models the paper's way and compare them against a baseline (Table 1 style).

:func:`evaluate` computes, for one :class:`Predictions`, HIT@K per head (Eq. 3-4), AUC
and log loss per head, and diversity, for all users and for non-core users.
:func:`compare` lines several models (and the oracle) up against a baseline evaluated on
the same requests: relative lift, a paired significance test over users, and the share
of the oracle's lift each model reaches. :meth:`Comparison.to_dict` is the schema of
``metrics.json``; :meth:`Comparison.to_markdown` is the report table.
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
    per_user_hits,
    ranking_score,
    utility_vector,
)
from transact.evaluation.metrics import log_loss, roc_auc
from transact.evaluation.predictions import Predictions
from transact.evaluation.significance import (
    align_users,
    paired_bootstrap,
    paired_t_test,
    relative_lift,
)

SEGMENTS = ("all", "non_core")
TESTS = ("t_test", "bootstrap")

DEFAULT_UTILITY: dict[str, float] = {"click": 1.0, "repin": 2.0, "hide": -5.0}
"""Utility weights u_h of Eq. (3). The paper does not publish its values. These are about
the inverse base rates of the heads in the simulated world (click 2.9%, repin 1.4%, hide
0.5% of impressions), normalized to click = 1 and signed (hide negative), so each head
moves S by a comparable amount and no single noisy head dominates the ranking (see
docs/evaluation.md)."""


@dataclass(frozen=True)
class EvaluationConfig:
    """How models are scored and compared.

    Args:
        k: HIT@K cut-off (paper: 3).
        utility: u_h per head name for the ranking score S (Eq. 3); negative for hide.
            Heads not named weigh 0.
        test: ``"t_test"`` (paired t-test over users) or ``"bootstrap"`` (paired
            bootstrap of the relative lift over users).
        n_bootstrap: resamples of the bootstrap test.
        alpha: significance level; p >= alpha is marked insignificant (paper: 0.05).
        seed: bootstrap seed.
    """

    k: int = 3
    utility: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_UTILITY))
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


@dataclass(frozen=True)
class SegmentResult:
    """One model on one user segment: per-user values (for paired tests) and summaries."""

    n_users: int
    n_requests: int
    n_impressions: int
    hits: PerUserHits
    auc: np.ndarray  # [H]
    log_loss: np.ndarray  # [H]
    diversity_users: np.ndarray  # [U]
    diversity: np.ndarray  # [U] unique top-level interests in the user's top-K

    @property
    def hit(self) -> np.ndarray:
        return self.hits.mean()


@dataclass(frozen=True)
class ModelResult:
    """Every segment of one model's evaluation."""

    heads: tuple[str, ...]
    segments: dict[str, SegmentResult]


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
    segments: dict[str, SegmentResult] = {}
    for segment in SEGMENTS:
        p = preds.subset(_segment_mask(preds, segment))
        scores = ranking_score(p.scores, u)
        hits = per_user_hits(p.user_ids, p.request_ids, scores, p.labels, config.k)
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
            auc=np.array([roc_auc(p.labels[:, h], p.scores[:, h]) for h in range(len(p.heads))]),
            log_loss=np.array(
                [log_loss(p.labels[:, h], p.scores[:, h]) for h in range(len(p.heads))]
            ),
            diversity_users=d_users,
            diversity=diversity,
        )
    return ModelResult(heads=preds.heads, segments=segments)


def _p_value(model: np.ndarray, baseline: np.ndarray, config: EvaluationConfig) -> float:
    if config.test == "t_test":
        return paired_t_test(model, baseline)
    return paired_bootstrap(model, baseline, n_resamples=config.n_bootstrap, seed=config.seed)


def _json_number(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class Comparison:
    """Several models against one baseline (and the oracle, when known).

    ``rows[model][head][segment]`` holds ``hit_at_K``, ``lift_vs_baseline``, ``p_value``,
    ``significant``, ``share_of_oracle_lift``, ``auc``, ``log_loss`` and ``n_users``;
    ``diversity[model][segment]`` the summed unique top-level interests with its lift.
    """

    config: EvaluationConfig
    heads: tuple[str, ...]
    baseline: str
    oracle: str | None
    rows: dict[str, dict[str, dict[str, dict[str, Any]]]]
    diversity: dict[str, dict[str, dict[str, Any]]]

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` layout: ``models[model][head][segment][metric]``."""

        def clean(d: Any) -> Any:
            if isinstance(d, dict):
                return {k: clean(v) for k, v in d.items()}
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
            "alpha": self.config.alpha,
            "heads": list(self.heads),
            "segments": list(SEGMENTS),
            "models": clean(self.rows),
            "diversity": clean(self.diversity),
        }

    def to_markdown(self) -> str:
        """Table 1-style lift table, absolute values, oracle share, AUC/log loss, diversity."""
        k, m = self.config.k, self.config.metric_name
        star = f"* p >= {self.config.alpha:g}: statistically insignificant (paired {self.config.test.replace('_', '-')} over users)."
        models = [name for name in self.rows if name != self.baseline]
        head_cols = [f"HIT@{k}/{h} {s.replace('_', '-')}" for h in self.heads for s in SEGMENTS]

        def table(header: list[str], body: list[list[str]]) -> list[str]:
            out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(r) + " |" for r in body]
            return out

        def pct(x: float | None) -> str:
            return "n/a" if x is None or not math.isfinite(x) else f"{x * 100:+.2f}%"

        lines = [f"### Relative lift of HIT@{k} over `{self.baseline}`", ""]
        body = []
        for name in models:
            row = [name]
            for h in self.heads:
                for s in SEGMENTS:
                    r = self.rows[name][h][s]
                    mark = "" if r["significant"] or name == self.oracle else "*"
                    row.append(pct(r["lift_vs_baseline"]) + mark)
            body.append(row)
        lines += table(["Model", *head_cols], body)
        lines += ["", star, "", f"### Absolute HIT@{k} (top-{k} hits per user)", ""]
        body = []
        for name in self.rows:
            body.append(
                [name] + [f"{self.rows[name][h][s][m]:.4f}" for h in self.heads for s in SEGMENTS]
            )
        lines += table(["Model", *head_cols], body)
        if self.oracle is not None:
            lines += ["", "### Share of the oracle's lift reached", ""]
            body = []
            for name in models:
                if name == self.oracle:
                    continue
                body.append(
                    [name]
                    + [
                        pct(self.rows[name][h][s]["share_of_oracle_lift"]).lstrip("+")
                        for h in self.heads
                        for s in SEGMENTS
                    ]
                )
            lines += table(["Model", *head_cols], body)
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
        lines += table(["Model", *cols], body)
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
                lift = "" if name == self.baseline else f" ({pct(d['lift_vs_baseline'])})"
                row.append(f"{d['sum']}{lift}")
            body.append(row)
        lines += table(["Model", "all", "non-core"], body)
        return "\n".join(lines) + "\n"


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
        for s in SEGMENTS:
            seg, bseg = res.segments[s], base.segments[s]
            align_users(seg.hits.users, seg.hits.hits, bseg.hits.users, bseg.hits.hits)
            for hi, h in enumerate(heads):
                value, bvalue = float(seg.hit[hi]), float(bseg.hit[hi])
                is_base = name == baseline
                p_val = (
                    float("nan")
                    if is_base
                    else _p_value(seg.hits.hits[:, hi], bseg.hits.hits[:, hi], config)
                )
                share = float("nan")
                if oracle is not None and not is_base:
                    ovalue = float(results[oracle].segments[s].hit[hi])
                    if ovalue != bvalue:
                        share = (value - bvalue) / (ovalue - bvalue)
                rows[name][h][s] = {
                    metric: value,
                    "lift_vs_baseline": 0.0 if is_base else relative_lift(value, bvalue),
                    "p_value": p_val,
                    "significant": (not is_base) and bool(p_val < config.alpha),
                    "share_of_oracle_lift": share,
                    "auc": float(seg.auc[hi]),
                    "log_loss": float(seg.log_loss[hi]),
                    "n_users": int(seg.n_users),
                    "n_requests": int(seg.n_requests),
                }
            total, btotal = int(seg.diversity.sum()), int(bseg.diversity.sum())
            dp = (
                float("nan")
                if name == baseline
                else _p_value(
                    seg.diversity.astype(np.float64), bseg.diversity.astype(np.float64), config
                )
            )
            diversity[name][s] = {
                "sum": total,
                "mean_per_user": float(seg.diversity.mean())
                if len(seg.diversity)
                else float("nan"),
                "lift_vs_baseline": 0.0 if name == baseline else relative_lift(total, btotal),
                "p_value": dp,
            }
    return Comparison(
        config=config,
        heads=heads,
        baseline=baseline,
        oracle=oracle,
        rows=rows,
        diversity=diversity,
    )
