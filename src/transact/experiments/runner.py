"""The shared experiment runner: train every variant per seed, evaluate, compare, report.

``run_experiment`` takes an :class:`~transact.experiments.spec.ExperimentSpec`, a backend
that knows how to train and score one variant on one dataset, and a budget. For every
seed it trains the baseline and each variant (reusing a :class:`RunCache` so a variant
shared between tables is trained once), computes per-user HIT@3 and, where the data has
ground-truth probabilities, per-user *expected* HIT@3, for all and non-core users, and
reports per head and group (a *cell*): HIT@3 and expected HIT@3 (mean and spread over
seeds), the relative lift over the baseline with its 95% interval, p-value and minimum
detectable lift (users and seeds combined, :func:`~transact.evaluation.significance.lift_interval`),
and, where the paper has a number, a verdict (:mod:`transact.evaluation.verdict`). The
lift is of expected HIT@3 when it exists (no label-draw noise) and of the sampled HIT@3
otherwise; the other one is kept beside it. It writes ``results.json``, ``results.md`` and
``lifts.png`` under the output folder; figure modules add a PNG through ``plot``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from transact.evaluation.hit import (
    PerUserHits,
    per_user_hits_and_expected,
    ranking_score,
    utility_vector,
)
from transact.evaluation.predictions import Predictions
from transact.evaluation.significance import LiftInterval, lift_interval
from transact.evaluation.verdict import benefit_direction, judge_cell
from transact.experiments.budget import ExperimentBudget
from transact.experiments.spec import COLUMN_GROUPS, ExperimentSpec, Variant

SIGNIFICANCE = 0.05
POWER = 0.8
HIT_K = 3
INTERVAL_METHOD = "delta"
"""How the runner's intervals spread over users: the delta method (closed form; the
paired bootstrap agrees with it, tests/evaluation/test_significance.py)."""


class VariantUnavailable(RuntimeError):
    """A backend cannot run a variant (e.g. no batch user embedding yet); the row is skipped."""


@dataclass(frozen=True)
class ScoredVariant:
    """What a backend returns for one trained (variant, seed).

    Args:
        predictions: the evaluation week's predictions HIT@3 is computed on (calibrated
            probabilities when the backend calibrates).
        calibration: the backend's calibration summary (parameters, per-head reports of
            the raw and calibrated probabilities, log loss); JSON, ``None`` if none.
    """

    predictions: Predictions
    calibration: dict[str, Any] | None = None


class ExperimentBackend(Protocol):
    """Trains and scores variants on one prepared dataset.

    ``heads`` are the ranker's heads (the column order of its predictions), ``utility``
    the Eq. (3) weights u_h used to rank each chunk, and ``roles`` the dataset's heads
    that play the paper's columns (``{"repin": "like", "hide": "hate"}`` on a log whose
    main positive action is a like; empty where the paper's names are heads).
    """

    heads: tuple[str, ...]
    utility: dict[str, float]
    roles: dict[str, str]

    def describe(self) -> dict[str, Any]:
        """Dataset, sizes and anything a reader needs to reproduce the run."""
        ...

    def train_and_score(self, variant: Variant, seed: int) -> ScoredVariant:
        """Train ``variant`` with ``seed`` on the training weeks; score the held-out week."""
        ...

    def forward_latency_ms(self, variant: Variant, batch_size: int) -> float:
        """Median eval-mode forward latency of the trained ``variant`` per batch, in ms."""
        ...


@dataclass
class VariantRun:
    """What the runner keeps of one (variant, seed): per-user sampled and expected hits
    per group (``expected`` is ``None`` without ground truth), calibration, timings."""

    hits: dict[str, PerUserHits]
    expected: dict[str, PerUserHits | None]
    train_s: float
    latency_ms: float | None = None
    calibration: dict[str, Any] | None = None


@dataclass
class RunCache:
    """Trained-and-scored variants keyed by (fingerprint, seed), shared by experiments."""

    runs: dict[tuple[str, int], VariantRun] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    oracle: VariantRun | None = None


def _hits_by_group(
    preds: Predictions, utility: dict[str, float]
) -> tuple[dict[str, PerUserHits], dict[str, PerUserHits | None]]:
    """Per-user sampled and expected HIT@3 (Eq. 3-4) for all users and non-core users."""
    u = utility_vector(preds.heads, utility)
    hits: dict[str, PerUserHits] = {}
    expected: dict[str, PerUserHits | None] = {}
    for group in COLUMN_GROUPS:
        p = preds if group == "all" else preds.subset(~preds.is_core.astype(bool))
        hits[group], expected[group] = per_user_hits_and_expected(
            p.user_ids, p.request_ids, ranking_score(p.scores, u), p.labels, p.gt_probs, HIT_K
        )
    return hits, expected


def _run_variant(
    backend: ExperimentBackend,
    cache: RunCache,
    variant: Variant,
    seed: int,
    measure_latency: bool,
    latency_batch: int,
) -> VariantRun | None:
    fp = variant.fingerprint()
    if fp in cache.skipped:
        return None
    run = cache.runs.get((fp, seed))
    if run is None:
        start = time.perf_counter()
        try:
            scored = backend.train_and_score(variant, seed)
        except VariantUnavailable as exc:
            cache.skipped[fp] = str(exc)
            return None
        preds = scored.predictions
        hits, expected = _hits_by_group(preds, backend.utility)
        run = VariantRun(hits, expected, time.perf_counter() - start, None, scored.calibration)
        if cache.oracle is None and len(preds) and np.isfinite(preds.gt_probs).all():
            cache.oracle = VariantRun(*_hits_by_group(preds.oracle(), backend.utility), 0.0)
        cache.runs[(fp, seed)] = run
    if measure_latency and run.latency_ms is None:
        run.latency_ms = backend.forward_latency_ms(variant, latency_batch)
    return run


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _stacked(
    runs: Sequence[Mapping[str, PerUserHits | None]], group: str, j: int, users: np.ndarray
) -> np.ndarray | None:
    """``[S, U]`` head ``j`` per-user values of ``users`` over seeds (None if any is missing)."""
    rows = []
    for by_group in runs:
        per_user = by_group[group]
        if per_user is None:
            return None
        idx = np.searchsorted(per_user.users, users)
        rows.append(per_user.hits[idx, j])
    return np.stack(rows)


def _common_users(runs: list[VariantRun], group: str) -> np.ndarray:
    """Users every run evaluated (all variants see the same evaluation requests, so this
    is every user unless a backend drops some)."""
    users = runs[0].hits[group].users
    for run in runs[1:]:
        other = run.hits[group].users
        if len(other) != len(users) or not np.array_equal(other, users):
            users = np.intersect1d(users, other)
    return users


def _interval_dict(interval: LiftInterval, prefix: str = "") -> dict[str, Any]:
    return {
        f"{prefix}lift": _finite(interval.lift),
        f"{prefix}ci95": [_finite(interval.ci_low), _finite(interval.ci_high)],
        f"{prefix}p_value": _finite(interval.p_value),
        f"{prefix}mde": _finite(interval.mde),
        f"{prefix}se": _finite(interval.se),
        f"{prefix}se_users": _finite(interval.se_users),
        f"{prefix}seed_sd": _finite(interval.seed_sd) if interval.seed_sd is not None else None,
        # degrees of freedom of se (Welch-Satterthwaite over users and seeds; null = inf)
        f"{prefix}df": _finite(interval.df),
    }


def _interval(model: np.ndarray, baseline: np.ndarray) -> LiftInterval:
    return lift_interval(model, baseline, method=INTERVAL_METHOD, alpha=SIGNIFICANCE, power=POWER)


def _mean_sd(values: np.ndarray) -> tuple[float | None, float]:
    """Mean over seeds of per-seed means ``[S]``, and their sd (0.0 with one seed)."""
    if not len(values) or not np.isfinite(values).all():
        return None, 0.0
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _compare(
    runs: list[VariantRun], base_runs: list[VariantRun], heads: tuple[str, ...]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every cell of one variant against the baseline, per head and group, over seeds.

    Seed ``s`` of the variant is paired with seed ``s`` of the baseline; users are paired
    across the two. The reported ``lift`` is of expected HIT@3 when every run has ground
    truth (``metric`` says which), with ``sampled_*`` beside it.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for j, head in enumerate(heads):
        out[head] = {}
        for group in COLUMN_GROUPS:
            users = _common_users([*runs, *base_runs], group)
            m = _stacked([r.hits for r in runs], group, j, users)
            b = _stacked([r.hits for r in base_runs], group, j, users)
            assert m is not None and b is not None
            em = _stacked([r.expected for r in runs], group, j, users)
            eb = _stacked([r.expected for r in base_runs], group, j, users)
            sampled = _interval(m, b)
            expected = _interval(em, eb) if em is not None and eb is not None else None
            primary = expected or sampled
            hit, hit_sd = _mean_sd(m.mean(axis=1) if users.size else np.zeros(0))
            cell: dict[str, Any] = {
                "metric": "expected_hit_at_3" if expected is not None else "hit_at_3",
                "hit_at_3": hit,
                "hit_at_3_std": hit_sd,
                "expected_hit_at_3": None,
                "expected_hit_at_3_std": None,
            }
            if em is not None and users.size:
                cell["expected_hit_at_3"], cell["expected_hit_at_3_std"] = _mean_sd(em.mean(axis=1))
            cell.update(_interval_dict(primary))
            p = primary.p_value
            cell["significant"] = bool(p < SIGNIFICANCE) if math.isfinite(p) else False
            cell.update(
                {
                    k: v
                    for k, v in _interval_dict(sampled, "sampled_").items()
                    if k in ("sampled_lift", "sampled_ci95", "sampled_p_value")
                }
            )
            cell["n_users"] = int(users.size)
            cell["n_seeds"] = len(runs)
            cell["per_seed"] = [
                {
                    "hit_at_3": float(m[s].mean()) if users.size else None,
                    "expected_hit_at_3": float(em[s].mean())
                    if em is not None and users.size
                    else None,
                    "lift": _finite(primary.per_seed[s]),
                    "sampled_lift": _finite(sampled.per_seed[s]),
                }
                for s in range(len(runs))
            ]
            out[head][group] = cell
    return out


def dataset_columns(
    columns: Sequence[str], roles: Mapping[str, str], heads: Sequence[str]
) -> dict[str, str]:
    """``{dataset column: paper column}``: each paper column (``"repin/all"``) on the
    dataset's head that plays its role (``"like/all"``); a column whose role no head
    plays is left out."""
    out = {}
    for column in columns:
        head, _, group = column.partition("/")
        mine = roles.get(head, head)
        if mine in heads:
            out[f"{mine}/{group}"] = column
    return out


def _judge(
    entry: dict[str, Any], spec: ExperimentSpec, utility: dict[str, float], columns: Sequence[str]
) -> None:
    """Add ``verdict``, ``size``, ``strict_verdict``, ``rule`` to every cell of ``entry``
    that has a paper number (in place)."""
    for column in columns:
        paper = entry.get("paper", {}).get(column)
        head, _, group = column.partition("/")
        cell = entry.get("metrics", {}).get(head, {}).get(group)
        if paper is None or cell is None:
            continue
        lo, hi = cell["ci95"]
        judged = judge_cell(
            paper / 100.0,
            float("nan") if lo is None else lo,
            float("nan") if hi is None else hi,
            null_claim=spec.null_claim or column in entry.get("paper_insignificant", []),
            benefit=benefit_direction(utility.get(head, 0.0)),
            margin=spec.equivalence_margin,
        )
        cell.update(judged.to_dict())
        cell["paper"] = paper / 100.0


def run_experiment(
    spec: ExperimentSpec,
    backend: ExperimentBackend,
    budget: ExperimentBudget,
    out_dir: Path,
    *,
    cache: RunCache | None = None,
    plot: Callable[[dict[str, Any], Path], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``spec`` with ``backend`` at ``budget``; write results under ``out_dir``.

    Returns the results dictionary that is also written to ``out_dir/results.json``:
    ``variants`` holds every row (the baseline first) with ``metrics[head][group]``, a
    cell: ``metric`` (which HIT@3 the lift is of), ``hit_at_3``, ``expected_hit_at_3``
    (``None`` without ground truth), their spread over seeds, ``lift``, ``ci95``,
    ``p_value``, ``significant``, ``mde``, ``se``, ``se_users``, ``seed_sd``,
    ``sampled_lift`` / ``sampled_ci95`` / ``sampled_p_value``, ``n_users``, ``n_seeds``,
    ``per_seed``, and where the paper has a number ``paper``, ``verdict``, ``size``,
    ``strict_verdict``, ``rule``, ``margin``. Each row also has the paper's numbers, the
    backend's ``calibration`` per seed, and skipped rows the reason. Writes
    ``results.json``, ``results.md``, ``lifts.png`` and, when the backend calibrates,
    ``calibration.png``.
    """
    from tqdm import tqdm

    from transact.experiments.agreement import agreement
    from transact.experiments.report import plot_calibration, plot_lifts, write_markdown

    cache = cache if cache is not None else RunCache()
    start = time.perf_counter()
    baseline = spec.baseline.resolved(budget.seq_len)
    rows = [baseline] + [
        v.resolved(budget.seq_len)
        for v in spec.variants
        if v.resolved(budget.seq_len).fingerprint() != baseline.fingerprint()
    ]
    # A row of the paper that *is* the baseline (e.g. Table 2's full model) keeps its label.
    baseline_row = next(
        (
            v
            for v in spec.variants
            if v.resolved(budget.seq_len).fingerprint() == baseline.fingerprint()
        ),
        None,
    )
    runs: dict[str, list[VariantRun]] = {}
    seeds = budget.figure_seeds if spec.figure else budget.seeds
    todo = [(v, s) for s in seeds for v in rows]
    bar = tqdm(todo, desc=f"experiment {spec.name}", unit="run", disable=not progress)
    for variant, seed in bar:
        bar.set_postfix_str(f"{variant.key} seed={seed}")
        run = _run_variant(backend, cache, variant, seed, spec.measure_latency, 256)
        if run is not None:
            runs.setdefault(variant.key, []).append(run)
    bar.close()

    heads = tuple(backend.heads)
    base_runs = runs.get(baseline.key)
    column_map = dataset_columns(spec.columns, getattr(backend, "roles", {}), heads)
    columns = list(column_map)
    results: dict[str, Any] = {
        "experiment": spec.name,
        "title": spec.title,
        "dataset": backend.describe(),
        "budget": budget.to_dict(),
        "seeds": list(seeds),
        "hit_k": HIT_K,
        "heads": list(heads),
        "utility": dict(backend.utility),
        "baseline": baseline.key,
        "columns": columns,
        "paper_columns": column_map,
        "columns_without_head": [c for c in spec.columns if c not in column_map.values()],
        "interval": {
            "method": INTERVAL_METHOD,
            "level": 1 - SIGNIFICANCE,
            "power": POWER,
            "null_claim": spec.null_claim,
            "equivalence_margin": spec.equivalence_margin,
            "seeds_combined": "se^2 = se_users^2 + seed_sd^2 / n_seeds; Student t with "
            "Welch-Satterthwaite df",
        },
        "paper_claims": list(spec.paper_claims),
        "notes": list(spec.notes),
        "variants": [],
        "oracle": None,
    }
    if base_runs is None:
        results["error"] = (
            f"baseline {baseline.label!r} could not run: {cache.skipped.get(baseline.fingerprint())}"
        )
    for variant in rows:
        label = baseline_row.label if (variant is baseline and baseline_row) else variant.label
        source = baseline_row if (variant is baseline and baseline_row) else variant
        entry: dict[str, Any] = {
            "key": variant.key,
            "label": label,
            "is_baseline": variant is baseline,
            "config": variant.config_dict(),
            "options": {k: v for k, v in variant.encoder_options},
            "paper": (
                {c: source.paper_value(p) for c, p in column_map.items()} if source.paper else {}
            ),
            "paper_insignificant": [c for c, p in column_map.items() if p in source.paper_marks],
            "skipped": cache.skipped.get(variant.fingerprint()),
        }
        variant_runs = runs.get(variant.key)
        if variant_runs and base_runs:
            entry["metrics"] = _compare(variant_runs, base_runs, heads)
            if variant is not baseline:
                _judge(entry, spec, backend.utility, columns)
            entry["calibration"] = [r.calibration for r in variant_runs]
            entry["train_s"] = float(np.mean([r.train_s for r in variant_runs]))
            lat = [r.latency_ms for r in variant_runs if r.latency_ms is not None]
            entry["latency_ms"] = float(np.median(lat)) if lat else None
        results["variants"].append(entry)
    for label, reason in spec.skipped:
        results["variants"].append({"key": None, "label": label, "skipped": reason, "paper": {}})
    if cache.oracle is not None and base_runs:
        results["oracle"] = _compare([cache.oracle] * len(base_runs), base_runs, heads)
    results["agreement"] = agreement(results)
    results["wall_s"] = time.perf_counter() - start

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=False))
    write_markdown(results, out_dir / "results.md")
    if base_runs:
        plot_lifts(results, out_dir / "lifts.png")
        plot_calibration(results, out_dir / "calibration.png")
    if plot is not None and base_runs:
        plot(results, out_dir)
    return results
