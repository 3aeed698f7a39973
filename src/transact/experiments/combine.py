"""Pool independent runs of one online experiment: a verdict per claim from every seed.

An online experiment (``table5``, ``fig6``, ``diversity``, ``feedback-loop``) run with
another ``--seed`` trains its own models, draws its own buckets and its own random numbers:
an independent replicate of the whole experiment. One run of the demo world is often too
small to settle a claim (the feedback loop's difference of gains needs several times the
users, docs/online.md); several runs pooled can. :func:`combine_results` pools each verdict
cell over the runs by inverse-variance weighting with a DerSimonian-Laird random effect:

* weights ``w_i = 1 / se_i^2``; the fixed-effect mean ``m = sum(w_i l_i) / sum(w_i)``;
* Cochran's ``Q = sum(w_i (l_i - m)^2)`` on ``k - 1`` degrees of freedom (its p-value says
  whether the runs disagree by more than their intervals allow);
* the between-run variance ``tau^2 = max(0, (Q - (k - 1)) / (sum(w) - sum(w^2) / sum(w)))``
  (the models of different seeds differ, so their true lifts may too);
* the pooled lift with weights ``1 / (se_i^2 + tau^2)``, its ``se = 1 / sqrt(sum of those
  weights)`` and a normal 95% interval. With ``tau^2 = 0`` this is the fixed-effect pool.

Each pooled cell is judged by the experiment's own rule (:func:`.online.judge`), so its
verdict and MDE read like a single run's. The runs must be the same experiment at the same
budget; the same run given twice (identical cells) is refused. A claim that a later
version of the experiment added is pooled over the runs that hold it (each other run's
entry says it predates the claim), so earlier runs keep counting for the claims they
hold.

**How many runs a claim needs** (:func:`runs_for_mde`). Under the random-effect model a
further run's lift varies around the mean effect with variance ``se_one^2 = mean(se_i^2) +
tau^2`` (its own users' noise plus the between-run spread), so ``k`` runs pool to an MDE of
about ``MDE_Z * se_one / sqrt(k)`` and a target MDE ``t`` needs ``k = ceil((MDE_Z * se_one
/ t)^2)`` runs. The target is ``--target`` (percent), else half the paper's value for a
claim that has a size (``power``'s default); a claim the paper gives only a direction for
has none unless one is given. It is a plan, not a promise: with a handful of runs tau^2 is
itself uncertain (DerSimonian-Laird with k runs has k - 1 degrees of freedom). For a
pool read as runs arrive, :func:`runs_for_mde_anytime` plans the same target for the
always-valid interval below (its MDE, :func:`anytime_mde`, is wider than one look's).

**Verdicts under repeated looks** (:func:`anytime_interval`). The normal 95% interval is
valid for one look at a number of runs fixed in advance. A pool that is read as runs
arrive, and extended while it is unsettled, crosses 0 by chance far more often than 5% of
the time (over 30 looks at a null effect, about a quarter of the time; tested). Every
pooled cell therefore also carries an always-valid 95% interval, the normal-mixture
confidence sequence (Robbins; Howard, Ramdas, McAuliffe and Sekhon 2021), which holds at
every number of runs at once, and the verdict of the experiment's rule on it
(``anytime`` in each cell). For an estimate of variance ``v = se^2`` and a mixing scale
``s`` (the effect size it is tuned for) its half-width is ``sqrt(2 v (1 + v / s^2) log(
sqrt(1 + s^2 / v) / alpha))``. ``s`` is the planning target (``--target``, else half the
paper's value), else one run's MDE. With a between-run variance the pool is a random walk
in information only approximately (tau^2 is re-estimated at each look), so the guarantee
is approximate there.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transact.experiments.online import (
    MDE_Z,
    Z_POWER,
    cells_table,
    fmt_pct,
    judge,
    write_results,
)
from transact.online.stats import Lift, normal_interval


def pool(lifts: Sequence[float], ses: Sequence[float]) -> dict[str, float]:
    """DerSimonian-Laird pool of independent estimates ``lifts`` with standard errors
    ``ses`` (every ``se > 0``): ``lift``, ``se``, ``tau2``, ``q``, ``q_df``, ``q_p``."""
    from scipy import stats

    if len(lifts) != len(ses) or not lifts:
        raise ValueError(f"pool: {len(lifts)} lifts and {len(ses)} standard errors")
    for i, se in enumerate(ses):
        if not (math.isfinite(se) and se > 0):
            raise ValueError(f"pool: standard error {i} is {se}, must be finite and > 0")
    w = [1.0 / s**2 for s in ses]
    sw = sum(w)
    fixed = sum(wi * li for wi, li in zip(w, lifts, strict=True)) / sw
    q = sum(wi * (li - fixed) ** 2 for wi, li in zip(w, lifts, strict=True))
    df = len(lifts) - 1
    denom = sw - sum(wi**2 for wi in w) / sw
    tau2 = max(0.0, (q - df) / denom) if df > 0 and denom > 0 else 0.0
    w_re = [1.0 / (s**2 + tau2) for s in ses]
    lift = sum(wi * li for wi, li in zip(w_re, lifts, strict=True)) / sum(w_re)
    return {
        "lift": lift,
        "se": 1.0 / math.sqrt(sum(w_re)),
        "tau2": tau2,
        "q": q,
        "q_df": float(df),
        "q_p": float(stats.chi2.sf(q, df)) if df > 0 else math.nan,
    }


def runs_for_mde(se_one: float, target: float) -> int:
    """Independent runs whose pool reaches an MDE of ``target`` (a fraction > 0) when one
    run's lift has standard error ``se_one`` around the mean effect (users' noise and the
    between-run spread): ``ceil((MDE_Z * se_one / target)^2)``, at least 1."""
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target MDE {target}: must be finite and > 0")
    if not (math.isfinite(se_one) and se_one > 0):
        raise ValueError(f"one run's standard error {se_one}: must be finite and > 0")
    return max(1, math.ceil((MDE_Z * se_one / target) ** 2 - 1e-9))


def anytime_mde(se: float, scale: float, alpha: float = 0.05) -> float:
    """The always-valid interval's MDE at standard error ``se``: the smallest true effect
    its ``1 - alpha`` interval of mixing scale ``scale`` excludes 0 for with 80% power
    (its half-width plus ``Z_POWER * se``; one look's is ``MDE_Z * se``)."""
    _, half = anytime_interval(0.0, se, scale, alpha)
    if not math.isfinite(half):
        raise ValueError(f"anytime_mde: standard error {se}, must be finite and > 0")
    return half + Z_POWER * se


def runs_for_mde_anytime(se_one: float, target: float, scale: float) -> int:
    """As :func:`runs_for_mde` for a pool read at any number of runs: the fewest runs whose
    always-valid interval (mixing scale ``scale``) reaches an MDE of ``target``, each run's
    lift with standard error ``se_one`` around the mean effect. Always at least as many as
    one look's, as the interval is wider."""
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target MDE {target}: must be finite and > 0")
    if not (math.isfinite(se_one) and se_one > 0):
        raise ValueError(f"one run's standard error {se_one}: must be finite and > 0")

    def reaches(k: int) -> bool:
        return anytime_mde(se_one / math.sqrt(k), scale) <= target

    high = 1  # the MDE falls with k (to 0): double to a k that reaches, then bisect
    while not reaches(high):
        high *= 2
    low = high // 2  # does not reach (or is 0)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


def default_target(cell: dict[str, Any]) -> float | None:
    """The MDE worth planning for when none is given: half the paper's value for a claim
    judged by its direction with a size (as ``transact experiment power``), else None."""
    paper = _sized_paper(cell)
    return None if paper is None else abs(paper) / 2


def _sized_paper(cell: dict[str, Any]) -> float | None:
    """The paper's value of a claim judged by its direction with a size; None for a claim
    the paper gives only a direction for, or judges by another rule."""
    paper = cell.get("paper")
    if cell.get("rule") == "direction" and cell.get("sized", True) and _finite(paper) and paper:
        return float(paper)
    return None


def _measured(cell: dict[str, Any]) -> bool:
    """Whether a run's cell has a finite lift and standard error (a run that could not
    measure the claim writes an error cell without them)."""
    return _finite(cell.get("lift")) and _finite(cell.get("se")) and cell["se"] > 0


def anytime_interval(
    estimate: float, se: float, scale: float, alpha: float = 0.05
) -> tuple[float, float]:
    """The always-valid ``1 - alpha`` interval of a normal ``estimate`` with standard error
    ``se``, read at any number of looks: the normal-mixture confidence sequence with
    mixing scale ``scale`` (> 0, in the estimate's units: the effect size it is tuned to
    detect; choose it before the first look). NaN bounds for a non-finite or non-positive
    ``se``."""
    if not (math.isfinite(estimate) and math.isfinite(se) and se > 0):
        return math.nan, math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"anytime_interval: the mixing scale must be finite and > 0, not {scale}")
    if not 0 < alpha < 1:
        raise ValueError(f"anytime_interval: alpha {alpha} outside (0, 1)")
    v, s2 = se**2, scale**2
    half = math.sqrt(2 * v * (1 + v / s2) * math.log(math.sqrt(1 + s2 / v) / alpha))
    return estimate - half, estimate + half


def _anytime(
    template: dict[str, Any], lift: Lift, scale: float | None, runs: int
) -> dict[str, Any]:
    """The ``anytime`` entry of a pooled cell: the always-valid interval and the verdict of
    the experiment's own rule on it (None fields where there is no scale or no estimate)."""
    low, high = _anytime_bounds(lift, scale)
    if not (scale and math.isfinite(low) and math.isfinite(high)):
        return {"ci_low": None, "ci_high": None, "verdict": None, "scale": scale, "mde": None}
    wide = dataclasses.replace(lift, ci_low=low, ci_high=high)
    cell = judge(template["claim"], wide, template["paper"], rule=template["rule"],
                 sized=template.get("sized", True), runs=runs)  # fmt: skip
    return {"ci_low": low, "ci_high": high, "verdict": cell["verdict"], "scale": scale,
            "mde": anytime_mde(lift.se, scale)}  # fmt: skip


def _anytime_bounds(lift: Lift, scale: float | None) -> tuple[float, float]:
    """The always-valid bounds of a pooled ``lift``; NaN without a scale or an estimate."""
    return anytime_interval(lift.lift, lift.se, scale) if scale else (math.nan, math.nan)


def pooled_lift(cells: Sequence[dict[str, Any]]) -> tuple[Lift, dict[str, float]]:
    """One claim's cells of several runs -> the pooled :class:`Lift` and :func:`pool`'s
    numbers, with ``se_one_run`` (a further run's standard error around the mean effect,
    ``sqrt(mean(se_i^2) + tau^2)``). Cells without a finite lift and se (a run that could
    not measure it) are left out; with none left the lift is NaN."""
    usable = [c for c in cells if _measured(c)]
    n_t = sum(int(c.get("n_t") or 0) for c in usable)
    n_c = sum(int(c.get("n_c") or 0) for c in usable)
    if not usable:
        nan = math.nan
        return Lift(nan, nan, nan, nan, nan, nan, nan, 0, 0, "pooled (none)"), {"runs": 0}
    p = pool([c["lift"] for c in usable], [c["se"] for c in usable])
    p["se_one_run"] = math.sqrt(sum(c["se"] ** 2 for c in usable) / len(usable) + p["tau2"])
    lift, se = p["lift"], p["se"]
    method = "pooled, DerSimonian-Laird" if p["tau2"] > 0 else "pooled, inverse variance"
    low, high, p_value = normal_interval(lift, se)
    return (
        Lift(
            lift=lift,
            ci_low=low,
            ci_high=high,
            se=se,
            p_value=p_value,
            mean_t=math.nan,
            mean_c=math.nan,
            n_t=n_t,
            n_c=n_c,
            method=method,
        ),  # fmt: skip
        {**p, "runs": len(usable)},
    )


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def combine_results(
    runs: Sequence[dict[str, Any]], labels: Sequence[str], target: float | None = None
) -> dict[str, Any]:
    """Pool the verdict cells of ``runs`` (each an online experiment's ``results.json``
    as a dict; ``labels`` name them in the output). ``target``: the MDE (a fraction) to
    plan the number of runs for, every claim (default: :func:`default_target` per claim).
    Raises ``ValueError`` naming the run and field when they are not replicates of one
    experiment."""
    if target is not None and not (math.isfinite(target) and target > 0):
        raise ValueError(f"target MDE {target}: must be finite and > 0")
    if len(runs) < 2:
        raise ValueError(f"combine needs at least two runs, got {len(runs)}")
    if len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
    first = runs[0]
    for label, r in zip(labels, runs, strict=True):
        if not isinstance(r.get("cells"), list) or not r["cells"]:
            raise ValueError(f"{label}: no verdict cells (field 'cells'): not an online "
                             "experiment's results.json")  # fmt: skip
    claims = _claims(runs, labels)
    for label, r in zip(labels[1:], runs[1:], strict=True):
        if r.get("experiment") != first.get("experiment"):
            raise ValueError(f"{label}: experiment {r.get('experiment')!r}, the first run's is "
                             f"{first.get('experiment')!r}")  # fmt: skip
        if r.get("budget") != first.get("budget"):
            diff = sorted(
                k for k in set(r.get("budget") or {}) | set(first.get("budget") or {})
                if (r.get("budget") or {}).get(k) != (first.get("budget") or {}).get(k)
            )  # fmt: skip
            raise ValueError(f"{label}: budget differs from the first run's in {diff}")
    seen: dict[str, str] = {}
    for label, r in zip(labels, runs, strict=True):
        if r.get("seed") is not None and str(r["seed"]) in seen:
            raise ValueError(f"{label}: seed {r['seed']} again (also {seen[str(r['seed'])]}): "
                             "pooled runs must be independent")  # fmt: skip
        if r.get("seed") is not None:
            seen[str(r["seed"])] = label
    for i in range(len(runs)):
        for j in range(i):
            if _cell_values(runs[i]) == _cell_values(runs[j]):
                raise ValueError(f"{labels[i]}: the same cells as {labels[j]}: the same run "
                                 "twice; pooled runs must be independent")  # fmt: skip
    cells: list[dict[str, Any]] = []
    heterogeneity: list[dict[str, Any]] = []
    cumulative: list[dict[str, Any]] = []
    for k in range(len(claims)):
        per_run = [_cell_of(r, claims[k]) for r in runs]
        summary = [
            {"run": lab, "lift": c.get("lift"), "ci_low": c.get("ci_low"),
             "ci_high": c.get("ci_high"), "se": c.get("se"), "verdict": c.get("verdict"),
             **({"error": c["error"]} if "error" in c else {})}
            for lab, c in zip(labels, per_run, strict=True)
        ]  # fmt: skip
        # a run that could not measure the claim writes an error cell without a rule
        template = next((c for c in per_run if "rule" in c), None)
        if template is None:
            cells.append({"claim": claims[k], "design": per_run[0].get("design", ""),
                          "paper": per_run[0].get("paper"), "verdict": "unsettled",
                          "error": "no run could measure it", "runs": 0,
                          "per_run": summary})  # fmt: skip
            heterogeneity.append({"claim": claims[k], "runs": 0})
            cumulative.append({"claim": claims[k], "steps": []})
            continue
        lift, p = pooled_lift(per_run)
        cell = judge(
            template["claim"], lift, template["paper"], rule=template["rule"],
            sized=template.get("sized", True), design=template.get("design", ""),
            runs=p["runs"], per_run=summary,
        )  # fmt: skip
        plan = _plan(p, target if target is not None else default_target(template))
        cell["anytime"] = _anytime(
            template, lift, plan["target_mde"] or plan["mde_one_run"], int(p["runs"])
        )
        cells.append(cell)
        cumulative.append(
            {"claim": claims[k], "steps": _cumulative(per_run, cell["anytime"]["scale"])}
        )
        heterogeneity.append(
            {"claim": claims[k], **{k2: _json_num(v) for k2, v in p.items()}, **plan}
        )  # fmt: skip
    return {
        "experiment": first.get("experiment"),
        "title": first.get("title"),
        "budget": first.get("budget"),
        "combined_from": list(labels),
        "seeds": [r.get("seed") for r in runs],
        "method": "per cell: inverse-variance pool with a DerSimonian-Laird between-run "
        "variance (tau2), normal 95% interval; verdicts by the experiment's own rule; "
        "beside it an always-valid 95% interval for a pool read at any number of runs "
        "(normal-mixture confidence sequence) and the rule's verdict on it",
        "target_mde": target,
        "cells": cells,
        "heterogeneity": heterogeneity,
        "cumulative": cumulative,
    }


ABSENT = "not in this run: its experiment predates the claim"


def _claims(runs: Sequence[dict[str, Any]], labels: Sequence[str]) -> list[str]:
    """Every claim of the runs, in the order they come (a later version of an experiment
    adds cells after the earlier ones: its runs pool with the earlier runs on the claims
    both hold). Raises ``ValueError`` when two runs hold their common claims in another
    order, or one holds a claim twice."""
    claims: list[str] = []
    for r in runs:
        claims += [c["claim"] for c in r["cells"] if c["claim"] not in claims]
    for label, r in zip(labels, runs, strict=True):
        own = [c["claim"] for c in r["cells"]]
        if len(set(own)) < len(own):
            twice = sorted({c for c in own if own.count(c) > 1})
            raise ValueError(f"{label}: the claims {twice} come twice")
        if own != [c for c in claims if c in own]:
            raise ValueError(f"{label}: its claims come in another order than the other runs'")
    return claims


def _cell_of(run: dict[str, Any], claim: str) -> dict[str, Any]:
    """``run``'s cell of ``claim``, or an error cell saying the run does not hold it."""
    cell = next((c for c in run["cells"] if c["claim"] == claim), None)
    return cell if cell is not None else {"claim": claim, "error": ABSENT}


def _cumulative(
    per_run: Sequence[dict[str, Any]], scale: float | None = None
) -> list[dict[str, Any]]:
    """The pool of the first ``k`` runs able to measure the claim, for every ``k`` (the
    runs in the order given): how the estimate and its interval settled as runs came, with
    the always-valid interval of mixing scale ``scale`` (None bounds without one)."""
    steps, usable = [], []
    for c in filter(_measured, per_run):
        usable.append(c)
        lift, p = pooled_lift(usable)
        low, high = _anytime_bounds(lift, scale)
        steps.append(
            {"runs": len(usable), "lift": lift.lift, "ci_low": lift.ci_low,
             "ci_high": lift.ci_high, "tau2": p["tau2"], "anytime_low": _json_num(low),
             "anytime_high": _json_num(high)}
        )  # fmt: skip
    return steps


def _plan(p: dict[str, float], target: float | None) -> dict[str, Any]:
    """The planning fields of one claim: a further run's MDE, the target and the runs it
    needs (None where there is no target or no usable run)."""
    se_one = p.get("se_one_run", math.nan)
    usable = math.isfinite(se_one) and se_one > 0
    return {
        "mde_one_run": MDE_Z * se_one if usable else None,
        "target_mde": target,
        "runs_for_target": runs_for_mde(se_one, target) if usable and target else None,
        # read as runs arrive: the always-valid interval, whose scale is the target
        "runs_for_target_any_look": (
            runs_for_mde_anytime(se_one, target, target) if usable and target else None
        ),
    }


def _cell_values(r: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [(c.get("lift"), c.get("se")) for c in r["cells"]]


def _json_num(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def markdown(combined: dict[str, Any]) -> list[str]:
    """``results.md`` of a combined run: the pooled verdicts, then each run's cells."""
    labels = combined["combined_from"]
    lines = [
        f"# {combined.get('title') or combined.get('experiment')}: {len(labels)} runs pooled",
        "",
        f"Runs: {', '.join(f'`{x}`' for x in labels)}. {combined['method']}. "
        "Heterogeneity: Cochran's Q and its p-value (a small p says the runs disagree "
        "by more than their intervals allow; tau2 then widens the pooled interval).",
        "",
        *cells_table([c for c in combined["cells"] if "error" not in c]),
        *[
            f"- {c['claim']} ({c.get('design', '')}): {c['error']}"
            for c in combined["cells"]
            if "error" in c
        ],
        "",
        "| claim | " + " | ".join(labels) + " | Q (p) | tau2 |",
        "|---|" + "---|" * len(labels) + "---|---|",
    ]
    for cell, het in zip(combined["cells"], combined["heterogeneity"], strict=True):
        if "error" in cell:
            runs = [r.get("error", "n/a") for r in cell["per_run"]]
        else:
            runs = [
                "absent" if r.get("error") == ABSENT
                else f"{fmt_pct(r['lift'])} [{fmt_pct(r['ci_low'])}, {fmt_pct(r['ci_high'])}]"
                for r in cell["per_run"]
            ]  # fmt: skip
        q = "n/a" if het.get("q") is None else f"{het['q']:.2f} ({_p(het.get('q_p'))})"
        tau2 = "n/a" if het.get("tau2") is None else f"{het['tau2']:.2e}"
        lines.append(f"| {cell['claim']} | " + " | ".join(runs) + f" | {q} | {tau2} |")
    lines += [
        "",
        "Read at any number of runs (a pool looked at as runs arrived, and extended while "
        "unsettled, needs these: the normal interval's 5% holds for one look at a number "
        "of runs fixed in advance):",
        "",
        "| claim | normal 95% (one look) | verdict | always-valid 95% | verdict | mixing scale |",
        "|---|---|---|---|---|---|",
    ]
    for cell in combined["cells"]:
        if "error" in cell:
            continue
        any_ = cell.get("anytime") or {}
        if any_.get("ci_low") is None:
            anytime, verdict = "n/a", "n/a"
        else:
            anytime = f"[{fmt_pct(any_['ci_low'])}, {fmt_pct(any_['ci_high'])}]"
            verdict = f"**{any_['verdict']}**"
        lines.append(
            f"| {cell['claim']} | {fmt_pct(cell.get('lift'))} [{fmt_pct(cell.get('ci_low'))}, "
            f"{fmt_pct(cell.get('ci_high'))}] | {cell['verdict']} | {anytime} | {verdict} | "
            f"{_pct_or_na(any_.get('scale'))} |"
        )
    lines += [
        "",
        f"Runs to plan for (the MDE of k runs is about one run's MDE / sqrt(k), one run's "
        f"counting the spread between runs; the target is {_target_words(combined)}. "
        "At any look: the always-valid interval's MDE, its half-width plus 0.84 se, "
        "and the runs it needs to reach the target with the target as its scale):",
        "",
        "| claim | MDE now | at any look | one run's MDE | target MDE | runs for it | more "
        "runs | runs for it, any look | more runs, any look |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, het in zip(combined["cells"], combined["heterogeneity"], strict=True):
        done = int(het.get("runs") or 0)
        need, more = _need(het.get("runs_for_target"), done)
        need_any, more_any = _need(het.get("runs_for_target_any_look"), done)
        lines.append(
            f"| {cell['claim']} | {_pct_or_na(cell.get('mde'))} | "
            f"{_pct_or_na((cell.get('anytime') or {}).get('mde'))} | "
            f"{_pct_or_na(het.get('mde_one_run'))} | {_pct_or_na(het.get('target_mde'))} | "
            f"{need} | {more} | {need_any} | {more_any} |"
        )
    return lines


def _need(need: int | None, runs: int) -> tuple[str, str]:
    """A plan's runs and the runs still to add, as table text."""
    return ("n/a", "n/a") if need is None else (str(need), str(max(0, need - runs)))


def _pct_or_na(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _target_words(combined: dict[str, Any]) -> str:
    if combined.get("target_mde") is not None:
        return f"{100 * combined['target_mde']:.1f}% for every claim (--target)"
    return ("half the paper's value where it gives one (n/a where it gives only a "
            "direction: give --target)")  # fmt: skip


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"p={p:.2g}"


def plot_forest(combined: dict[str, Any], path: Path) -> Path:
    """A forest plot: per claim, each run's interval, the pooled one (in black) and the
    paper's value where it gives one (a red x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = combined["cells"]
    labels = combined["combined_from"]
    rows = len(cells) * (len(labels) + 2)
    fig, ax = plt.subplots(figsize=(8, 0.28 * rows + 1.2))
    y, ticks, names = 0, [], []

    def interval(item: dict[str, Any], y: float, **style: Any) -> None:
        """``item``'s lift and 95% interval at height ``y`` (nothing when it has none)."""
        if item.get("lift") is not None and item.get("ci_low") is not None:
            lift, low, high = (100 * item[k] for k in ("lift", "ci_low", "ci_high"))
            ax.errorbar(lift, y, xerr=[[lift - low], [high - lift]], **style)

    for cell in cells:
        for r in cell["per_run"]:
            interval(r, y, fmt="o", color="tab:blue", ms=4, capsize=2)
            ticks.append(y)
            names.append(f"  {r['run']}")
            y -= 1
        paper = _sized_paper(cell)
        if paper is not None:
            ax.plot(100 * paper, y, "x", color="tab:red", ms=7)
        interval(cell, y, fmt="D", color="black", ms=5, capsize=3)
        ticks.append(y)
        names.append(f"{cell['claim'][:48]}: pooled, {cell['verdict']}")
        y -= 2
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_xlabel("lift (%), 95% interval; red x: the paper's value")
    ax.set_title(f"{combined.get('experiment')}: {len(labels)} runs pooled", fontsize=9)
    return _save(fig, path)


def plot_cumulative(combined: dict[str, Any], path: Path) -> Path:
    """Per claim, the pooled lift and its 95% interval after each run (in the order the
    runs were given), the always-valid interval around it, and the paper's value where it
    gives a size: whether more runs are still moving the estimate, and whether a crossing
    of 0 would survive the looks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(c, cum) for c, cum in zip(combined["cells"], combined["cumulative"], strict=True)
            if cum["steps"]]  # fmt: skip
    fig, axes = plt.subplots(len(rows), 1, figsize=(7, 2.0 * len(rows) + 0.8), squeeze=False)
    for ax, (cell, cum) in zip(axes[:, 0], rows, strict=True):
        k = [s["runs"] for s in cum["steps"]]
        lift = [100 * s["lift"] for s in cum["steps"]]
        if all(s.get("anytime_low") is not None for s in cum["steps"]):
            ax.fill_between(k, [100 * s["anytime_low"] for s in cum["steps"]],
                            [100 * s["anytime_high"] for s in cum["steps"]], color="grey",
                            alpha=0.15, lw=0)  # fmt: skip
        ax.fill_between(k, [100 * s["ci_low"] for s in cum["steps"]],
                        [100 * s["ci_high"] for s in cum["steps"]], color="tab:blue",
                        alpha=0.2, lw=0)  # fmt: skip
        ax.plot(k, lift, "o-", color="tab:blue", ms=3)
        ax.axhline(0, color="grey", lw=0.8)
        paper = _sized_paper(cell)
        if paper is not None:
            ax.axhline(100 * paper, color="tab:red", lw=0.8, ls="--")
        anytime = (cell.get("anytime") or {}).get("verdict")
        looks = f" (one look), {anytime} (any look)" if anytime else ""
        ax.set_title(f"{cell['claim'][:70]}: {cell['verdict']}{looks}", fontsize=8)
        ax.set_ylabel("lift (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("runs pooled (in the order given)\nblue: 95% interval for one "
                           "look; grey: always-valid 95%, at any number of runs (any look);\nred dashes: "
                           "the paper's value", fontsize=8)  # fmt: skip
    fig.suptitle(f"{combined.get('experiment')}: the pool as runs are added", fontsize=9)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (its folder made) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def read_runs(paths: Sequence[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each ``results.json`` of ``paths`` as a dict, and a label per run: its directory's
    name (``seed-0``, ``seed-1``, ...) when those differ, else a longer part of its path."""
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read it as JSON: {exc}") from None
    labels = [Path(p).parent.name for p in paths]
    if len(set(labels)) < len(labels):
        labels = [str(Path(p).parent) for p in paths]
    if len(set(labels)) < len(labels):
        labels = [str(p) for p in paths]
    return runs, labels


def write_combined(combined: dict[str, Any], out_dir: Path) -> None:
    """``results.json``, ``results.md``, ``forest.png`` and ``cumulative.png`` of a pool
    into ``out_dir``."""
    write_results(out_dir, combined, markdown(combined))
    plot_forest(combined, out_dir / "forest.png")
    plot_cumulative(combined, out_dir / "cumulative.png")


def combine_files(
    paths: Sequence[Path], out_dir: Path, target: float | None = None
) -> dict[str, Any]:
    """Read each ``results.json`` of ``paths`` (:func:`read_runs`), pool them
    (:func:`combine_results`, planning for ``target``) and write the pool into ``out_dir``
    (:func:`write_combined`)."""
    combined = combine_results(*read_runs(paths), target=target)
    write_combined(combined, out_dir)
    return combined
