"""The shared experiment runner: train every variant per seed, evaluate, compare, report.

``run_experiment`` takes an :class:`~transact.experiments.spec.ExperimentSpec`, a backend
that knows how to train and score one variant on one dataset, and a budget. For every
seed it trains the baseline and each variant (reusing a :class:`RunCache` so a variant
shared between tables is trained once), computes per-user HIT@3 for all and non-core
users, and reports, per head and group: HIT@3 (mean and spread over seeds), the relative
lift over the baseline (mean and spread over seeds) and a paired t-test p-value over
users on the seed-averaged per-user hits. It writes ``results.json`` and ``results.md``
under the output folder; figure modules add a PNG through ``plot``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from transact.evaluation.hit import PerUserHits, per_user_hits, ranking_score, utility_vector
from transact.evaluation.predictions import Predictions
from transact.evaluation.significance import paired_t_test, relative_lift
from transact.experiments.budget import ExperimentBudget
from transact.experiments.spec import COLUMN_GROUPS, ExperimentSpec, Variant

SIGNIFICANCE = 0.05
HIT_K = 3


class VariantUnavailable(RuntimeError):
    """A backend cannot run a variant (e.g. no batch user embedding yet); the row is skipped."""


class ExperimentBackend(Protocol):
    """Trains and scores variants on one prepared dataset.

    ``heads`` are the ranker's heads (the column order of its predictions) and
    ``utility`` the Eq. (3) weights u_h used to rank each chunk.
    """

    heads: tuple[str, ...]
    utility: dict[str, float]

    def describe(self) -> dict[str, Any]:
        """Dataset, sizes and anything a reader needs to reproduce the run."""
        ...

    def train_and_score(self, variant: Variant, seed: int) -> Predictions:
        """Train ``variant`` with ``seed`` on the training weeks; score the held-out week."""
        ...

    def forward_latency_ms(self, variant: Variant, batch_size: int) -> float:
        """Median eval-mode forward latency of the trained ``variant`` per batch, in ms."""
        ...


@dataclass
class VariantRun:
    """What the runner keeps of one (variant, seed): per-user hits per group, timings."""

    hits: dict[str, PerUserHits]
    train_s: float
    latency_ms: float | None = None


@dataclass
class RunCache:
    """Trained-and-scored variants keyed by (fingerprint, seed), shared by experiments."""

    runs: dict[tuple[str, int], VariantRun] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    oracle: dict[str, PerUserHits] | None = None


def _hits_by_group(preds: Predictions, utility: dict[str, float]) -> dict[str, PerUserHits]:
    """Per-user HIT@3 (Eq. 3-4) for all users and for non-core users."""
    u = utility_vector(preds.heads, utility)
    out = {}
    for group in COLUMN_GROUPS:
        p = preds if group == "all" else preds.subset(~preds.is_core.astype(bool))
        out[group] = per_user_hits(
            p.user_ids, p.request_ids, ranking_score(p.scores, u), p.labels, HIT_K
        )
    return out


def paired_lift(model: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """Relative lift of mean ``[U]`` per-user hits over the baseline's, and the paired p."""
    lift = (
        relative_lift(float(model.mean()), float(baseline.mean())) if len(model) else float("nan")
    )
    return lift, paired_t_test(model, baseline)


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
            preds = backend.train_and_score(variant, seed)
        except VariantUnavailable as exc:
            cache.skipped[fp] = str(exc)
            return None
        run = VariantRun(_hits_by_group(preds, backend.utility), time.perf_counter() - start)
        if cache.oracle is None and len(preds) and np.isfinite(preds.gt_probs).all():
            cache.oracle = _hits_by_group(preds.oracle(), backend.utility)
        cache.runs[(fp, seed)] = run
    if measure_latency and run.latency_ms is None:
        run.latency_ms = backend.forward_latency_ms(variant, latency_batch)
    return run


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _aligned(a: PerUserHits, b: PerUserHits, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Head ``j`` per-user hits of two runs, paired by user (all variants see the same
    evaluation requests, so this is the identity unless a backend drops users)."""
    if len(a.users) == len(b.users) and np.array_equal(a.users, b.users):
        return a.hits[:, j], b.hits[:, j]
    _, ia, ib = np.intersect1d(a.users, b.users, return_indices=True)
    return a.hits[ia, j], b.hits[ib, j]


def _compare(
    runs: list[VariantRun], base_runs: list[VariantRun], heads: tuple[str, ...]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Metrics of one variant against the baseline, per head and group, over seeds."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for j, head in enumerate(heads):
        out[head] = {}
        for group in COLUMN_GROUPS:
            per_seed = []
            model_sum: np.ndarray | None = None
            base_sum: np.ndarray | None = None
            for run, base in zip(runs, base_runs, strict=True):
                m, b = _aligned(run.hits[group], base.hits[group], j)
                lift, p = paired_lift(m, b)
                per_seed.append(
                    {
                        "hit_at_3": float(m.mean()) if len(m) else None,
                        "lift": _finite(lift),
                        "p_value": _finite(p),
                    }
                )
                model_sum = m if model_sum is None else model_sum + m
                base_sum = b if base_sum is None else base_sum + b
            assert model_sum is not None and base_sum is not None
            pooled_lift, pooled_p = paired_lift(model_sum / len(runs), base_sum / len(runs))
            hits = [s["hit_at_3"] for s in per_seed if s["hit_at_3"] is not None]
            lifts = [s["lift"] for s in per_seed if s["lift"] is not None]
            out[head][group] = {
                "hit_at_3": float(np.mean(hits)) if hits else None,
                "hit_at_3_std": float(np.std(hits, ddof=1)) if len(hits) > 1 else 0.0,
                "lift": _finite(pooled_lift),
                "lift_std": float(np.std(lifts, ddof=1)) if len(lifts) > 1 else 0.0,
                "p_value": _finite(pooled_p),
                "significant": pooled_p < SIGNIFICANCE if math.isfinite(pooled_p) else False,
                "n_users": int(len(model_sum)),
                "per_seed": per_seed,
            }
    return out


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
    ``variants`` holds every row (the baseline first) with ``metrics[head][group]`` =
    ``{hit_at_3, hit_at_3_std, lift, lift_std, p_value, significant, n_users, per_seed}``
    and the paper's numbers; skipped rows carry the reason.
    """
    from tqdm import tqdm

    from transact.experiments.agreement import agreement
    from transact.experiments.report import write_markdown

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
        "columns": list(spec.columns),
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
            "paper": {c: source.paper_value(c) for c in spec.columns} if source.paper else {},
            "paper_insignificant": list(source.paper_marks),
            "skipped": cache.skipped.get(variant.fingerprint()),
        }
        variant_runs = runs.get(variant.key)
        if variant_runs and base_runs:
            entry["metrics"] = _compare(variant_runs, base_runs, heads)
            entry["train_s"] = float(np.mean([r.train_s for r in variant_runs]))
            lat = [r.latency_ms for r in variant_runs if r.latency_ms is not None]
            entry["latency_ms"] = float(np.median(lat)) if lat else None
        results["variants"].append(entry)
    for label, reason in spec.skipped:
        results["variants"].append({"key": None, "label": label, "skipped": reason, "paper": {}})
    if cache.oracle is not None and base_runs:
        oracle_run = VariantRun(cache.oracle, 0.0)
        results["oracle"] = _compare([oracle_run] * len(base_runs), base_runs, heads)
    results["agreement"] = agreement(results)
    results["wall_s"] = time.perf_counter() - start

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=False))
    write_markdown(results, out_dir / "results.md")
    if plot is not None and base_runs:
        plot(results, out_dir)
    return results
