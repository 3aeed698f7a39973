"""Figure 6: TransAct's daily repin-volume gain, fixed against retrained, over two weeks.

The paper (4.4.3, Figure 6): without retraining, TransAct's gain over the baseline decays
over two weeks; retrained twice a week it stays. Here one paired run holds four copies of
the same users (common random numbers): the baseline and TransAct, each fixed (the model
of the pre-period serves every day) and each retrained from scratch on a sliding 14-day
window of its own logs on the budget's schedule (``every:3.5d``: online days 3, 7, 10).
The gains are paired lifts between copies, day by day:

* *fixed*: TransAct fixed over the baseline fixed;
* *retrained*: TransAct retrained over the baseline retrained;
* *mixed*: TransAct retrained over the baseline fixed (what retraining TransAct alone adds).

Verdicts: the decay (the weighted least-squares slope of the fixed gain over the days:
the paper's claim is a negative slope) and retraining keeping the gain (retrained minus
fixed gain over the second half: the paper's claim is positive).
"""

from __future__ import annotations

from typing import Any

from transact.experiments.online import (
    BASELINE,
    TRANSACT,
    OnlineRun,
    cells_table,
    difference_of_lifts,
    judge,
    paired_between,
    single_run_record,
    slope_of,
    write_results,
)

NAME = "fig6"
TITLE = "Figure 6: daily repin-volume gain of TransAct, fixed against retrained"

CURVES = (
    ("fixed", "transact_fixed", "baseline_fixed"),
    ("retrained", "transact_retrained", "baseline_retrained"),
    ("TransAct retrained, baseline fixed", "transact_retrained", "baseline_fixed"),
)


def run(ctx: OnlineRun) -> dict[str, Any]:
    """Run Figure 6 (module docstring); writes results.json/md and fig6.png."""
    from transact.online import ArmSpec, OnlineConfig, RetrainSchedule
    from transact.online.report import plot_daily_gain

    b = ctx.budget
    models, trained = ctx.models([BASELINE, TRANSACT])
    schedule = RetrainSchedule.parse(b.retrain)
    fixed = RetrainSchedule()
    arms = (
        ArmSpec("baseline_fixed", str(models["baseline"]), 0.25, fixed),
        ArmSpec("transact_fixed", str(models["transact"]), 0.25, fixed),
        ArmSpec("baseline_retrained", str(models["baseline"]), 0.25, schedule),
        ArmSpec("transact_retrained", str(models["transact"]), 0.25, schedule),
    )
    config = OnlineConfig(
        str(ctx.world), arms, days=b.fig6_days, paired=True, training_data="own",
        retrain_steps=b.retrain_steps, pre_days=b.pre_days, seed=ctx.seed,
        progress=ctx.progress,
    )  # fmt: skip
    result, wall = ctx.simulate("run", config)
    days = list(range(b.fig6_days))
    curves = {
        label: [paired_between(result, t, c, "repins", days=[k]) for k in days]
        for label, t, c in CURVES
    }
    half = days[len(days) // 2 :]
    fixed_late = paired_between(result, "transact_fixed", "baseline_fixed", "repins", days=half)
    re_late = paired_between(
        result, "transact_retrained", "baseline_retrained", "repins", days=half
    )
    cells = [
        judge("fixed gain decays (slope per day)", slope_of(curves["fixed"]), -1.0, sized=False),
        judge(
            "retraining keeps the gain (retrained - fixed, second half)",
            difference_of_lifts(re_late, fixed_late),
            1.0,
            sized=False,
        ),
        judge("fixed gain, second half", fixed_late, 0.11),
        judge("retrained gain, second half", re_late, 0.11),
    ]
    plot_daily_gain(
        [(label, lifts) for label, lifts in curves.items()],
        ctx.out_dir / "fig6.png",
        title=TITLE + " (paired copies)",
        ylabel="repin-volume gain over the baseline (%)",
        retrain_days=schedule.retrain_days(b.fig6_days),
    )
    results = {
        "experiment": NAME,
        "title": TITLE,
        "budget": b.to_dict(),
        "world": str(ctx.world),
        "models": trained,
        "cells": cells,
        "daily_gain": {
            label: [{"day": k + 1, **x.to_dict()} for k, x in enumerate(lifts)]
            for label, lifts in curves.items()
        },
        "retrains": [r.to_dict() for r in result.retrains],
        "runs": single_run_record(ctx.out_dir, wall, result),
    }
    steps = f"{b.retrain_steps} steps" if b.retrain_steps else "the run config's training"
    lines = ctx.header(TITLE)
    lines += [
        f"{b.fig6_days} online days, retraining `{b.retrain}` from scratch on the last 14 days "
        f"of each copy's own logs ({steps} per retrain; "
        f"{len(result.retrains)} retrains). The slope's paper value is only its sign.",
        "",
        *cells_table(cells),
        "",
        "| day | " + " | ".join(label for label, _, _ in CURVES) + " |",
        "|---|" + "---|" * len(CURVES),
    ]
    for k in days:
        row = [
            f"{100 * curves[label][k].lift:+.1f}% [{100 * curves[label][k].ci_low:+.1f}, "
            f"{100 * curves[label][k].ci_high:+.1f}]"
            for label, _, _ in CURVES
        ]
        lines.append(f"| {k + 1} | " + " | ".join(row) + " |")
    write_results(ctx.out_dir, results, lines)
    return results
