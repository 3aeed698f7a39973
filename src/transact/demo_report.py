"""The demo's report: its bar, and a verdict for each of the paper's claims it tests.

``transact demo`` (:mod:`transact.demo`) ends with ``report.md``. This module writes the
parts that judge: Table 5's claims on the online stage's paired design
(:func:`online_claims`, :func:`online_lines`), Table 1's repin and hide cells offline
(:func:`offline_checks`), and the demo's bar (:func:`acceptance_checks`: online when the
online stage ran, fixed before the run that switched the demo to the paper's mask;
docs/online.md "The mask decision").
"""

from __future__ import annotations

from typing import Any

PAPER_TABLE1_TRANSACT = {
    "repin/all": 9.40,
    "repin/non_core": 10.42,
    "hide/all": -14.86,
    "hide/non_core": -13.54,
}
"""The paper's Table 1 lifts of TransAct over the baseline (percent), drawn in lifts.png."""

ONLINE_TABLE = (
    ("repins", "repin volume"),
    ("hides", "hide volume"),
    ("time_spent_min", "time spent"),
    ("clicks", "click volume"),
    ("diversity", "impression diversity"),
)
"""The demo's online table: Table 5's three metrics first (paper 4.4.2), then ours."""


def online_claims(result: Any) -> list[dict[str, Any]]:
    """Table 5's claims judged on the paired design: one verdict cell per claim
    (``transact.experiments.online.judge``: the paper's lift, ours with its 95% interval,
    the MDE, holds / contradicted / unsettled)."""
    from transact.experiments.online import judge
    from transact.experiments.table5 import PAPER

    treatment = result.treatments[0]
    return [
        judge(claim, result.lift(treatment, metric, segment, "paired"), paper,
              design="paired", metric=metric, segment=segment)
        for claim, metric, segment, paper in PAPER
    ]  # fmt: skip


def online_lines(result: Any) -> tuple[list[str], dict[str, Any]]:
    """The report's online section (Table 5's claims with verdicts, then every metric in
    both designs) and its JSON."""
    from transact.experiments.online import cells_table
    from transact.online.report import format_lift

    treatment = result.treatments[0]
    days = result.config.days
    claims = online_claims(result)
    lines = [
        f"## Online A/B test: {treatment} over {result.control}, {days} simulated days",
        "",
        "The world continues after its offline weeks; the models are fixed. *Paired*: "
        "every user on each model, counterfactual copies with the same random numbers "
        "(`transact online run --paired`; `docs/online.md`). *Buckets*: half of the users "
        "on each model, lift of per-user volume with CUPED on the last offline week.",
        "",
        "### Table 5's claims (paired design)",
        "",
        *cells_table(claims),
        "",
        "### Every metric, both designs",
        "",
        "`*`: the 95% interval contains 0.",
        "",
        "| metric | buckets, all | buckets, non-core | paired, all | paired, non-core |",
        "|---|---|---|---|---|",
    ]
    out: dict[str, Any] = {
        "days": days, "treatment": treatment, "control": result.control, "claims": claims,
    }  # fmt: skip
    for metric, label in ONLINE_TABLE:
        cells = []
        for design in ("buckets", "paired"):
            for segment in ("all", "non_core"):
                lift = result.lift(treatment, metric, segment, design)
                out.setdefault(design, {})[f"{metric}/{segment}"] = lift.to_dict()
                cells.append(format_lift(lift))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "The simulator's full report: `online/report.md`.", ""]
    return lines, out


ONLINE_BAR = ("repins", "all")
"""The demo's bar when the online stage ran (fixed before the run that switched the demo
to the paper's mask; docs/online.md "The mask decision"): the paired repin volume of
TransAct over the baseline, all users, holds."""


def offline_checks(metrics: dict[str, Any], model: str = "transact") -> dict[str, Any]:
    """Table 1's repin and hide cells: higher HIT@3/repin and lower HIT@3/hide than the
    baseline, p < 0.05 (the demo's bar when it runs no online stage), each with the
    paper's lift and the verdict of ours against it (holds / contradicted / unsettled).

    Judged on the expected HIT@3 where the data has ground truth (the world: the same
    ranking without the label draw's noise, as the experiments judge), else on the sampled
    HIT@3. ``passed``: every all-users cell passed.
    """
    from transact.evaluation.verdict import direction_verdict

    checks: dict[str, Any] = {}
    m = metrics["models"][model]
    alpha = metrics["alpha"]
    for head, sign in (("repin", 1), ("hide", -1)):
        if head not in m:
            continue
        for segment in ("all", "non_core"):
            r = m[head][segment]
            expected = r.get("expected_lift_vs_baseline") is not None
            prefix = "expected_" if expected else ""
            lift, p = r[f"{prefix}lift_vs_baseline"], r[f"{prefix}p_value"]
            ci = r.get(f"{prefix}ci95") or [None, None]
            paper = PAPER_TABLE1_TRANSACT[f"{head}/{segment}"] / 100
            ok = lift is not None and p is not None and sign * lift > 0 and p < alpha
            checks[f"{head}/{segment}"] = {
                "metric": "expected_hit_at_3" if expected else "hit_at_3",
                "lift": lift,
                "ci95": ci,
                "p_value": p,
                "paper": paper,
                "verdict": direction_verdict(paper, ci[0], ci[1]),
                "passed": bool(ok),
            }
    checks["passed"] = all(v["passed"] for k, v in checks.items() if k.endswith("/all"))
    return checks


def acceptance_checks(metrics: dict[str, Any], model: str = "transact") -> dict[str, Any]:
    """The demo's bar. With the online stage (``metrics["online"]``): Table 5's headline,
    the paired online repin volume over the baseline, all users, holds (:data:`ONLINE_BAR`);
    without it: :func:`offline_checks`. Both are reported; ``passed`` is the bar's.

    Returns ``{"bar": "online" | "offline", "offline": ..., "online": <the bar's verdict
    cell> | None, "passed": bool}``.
    """
    offline = offline_checks(metrics, model)
    online = None
    for cell in metrics.get("online", {}).get("claims", []):
        if (cell["metric"], cell["segment"]) == ONLINE_BAR:
            online = {**cell, "passed": cell["verdict"] == "holds"}
    if online is None:
        return {"bar": "offline", "offline": offline, "online": None,
                "passed": offline["passed"]}  # fmt: skip
    return {"bar": "online", "offline": offline, "online": online, "passed": online["passed"]}


def acceptance_line(checks: dict[str, Any]) -> str:
    """The report's one line on the demo's bar."""
    from transact.experiments.report import fmt_pct

    verdict = "PASSED" if checks["passed"] else "NOT MET"
    if checks["bar"] == "online":
        c = checks["online"]
        return (
            'Acceptance (fixed before the run, `docs/online.md` "The mask decision"): '
            "TransAct's paired online repin volume over the baseline, all users, holds: "
            f"{fmt_pct(c['lift'])} [{fmt_pct(c['ci_low'])}, {fmt_pct(c['ci_high'])}], "
            f"{c['verdict']}: **{verdict}**"
        )
    return (
        "Acceptance (no online stage: TransAct: higher expected HIT@3/repin, lower expected "
        f"HIT@3/hide, p < 0.05, all users): **{verdict}**"
    )


def offline_verdict_lines(checks: dict[str, Any]) -> list[str]:
    """Table 1's repin and hide cells beside the paper's, with the verdict of each."""
    from transact.experiments.report import fmt_ci, fmt_pct

    lines = [
        "### Table 1's claims: TransAct over the baseline, offline",
        "",
        "| cell | paper | ours (95% interval) | p | verdict |",
        "|---|---|---|---|---|",
    ]
    for cell, c in checks["offline"].items():
        if cell == "passed":
            continue
        p = "n/a" if c["p_value"] is None else f"{c['p_value']:.2g}"
        lines.append(
            f"| {c['metric']} {cell} | {fmt_pct(c['paper'])} | {fmt_pct(c['lift'])} "
            f"{fmt_ci(c['ci95'])} | {p} | **{c['verdict']}** |"
        )
    return [*lines, ""]
