"""5.1: the feedback loop, a small bucket against full traffic, each retrained on its logs.

The paper (5.1): at full traffic TransAct's gain grows beyond what a small bucket shows,
because the model shapes the engagement, and so the sequences and the training data, it
is retrained on. Here one run does both, over the budget's ``days`` (or its longer
``fig6_days`` when no retrain falls in ``days``: a week at ``quick``), with TransAct and the
baseline retrained from scratch on the budget's schedule (``every:3.5d``), on the
simulator's ``pooled-buckets`` training data:

* **small bucket**: the bucket design with TransAct on ``feedback_share`` (10%) of the
  users and the baseline on the rest, each retrained on *all* of the bucket
  environment's logs, as production retrains a treatment on its whole traffic: 90% of
  TransAct's training data was shaped by the baseline;
* **full traffic**: the paired copies, every user on TransAct retrained on its copy's
  logs (all shaped by TransAct) against every user on the baseline retrained on its own,
  the same users and random numbers (paired lift).

Both TransAct models retrain on every user's logs; they differ only in which ranker
shaped them, which is the loop the claim is about. (With ``own`` data, the design of
this experiment until 2026-12-04, the bucket's model trained on its 10% of the users
only, so "full minus bucket" measured ten times the training data as much as the loop:
docs/online.md.) The claim: the full-traffic gain is larger than the small bucket's, the
more so after the retrains (the second half of the period). With two or more retrains in
the period (``--days 14`` at ``every:3.5d``: three) the loop can compound, and two more
cells ask whether it does: the difference after the last retrain, and how much it grew
from the period after the first retrain to the one after the last, on the same users
(before the first retrain the bucket's users see the same model in the bucket and in the
full-traffic copy: the difference is 0 there by construction)
(:func:`~transact.experiments.online.paired_growth_of_gains`). A week with one retrain
keeps the five cells, so its runs pool with earlier ones.

The comparison on the bucket's users has ten times fewer users than the world: one run's
difference is too noisy to tell anything (docs/online.md). So the bucket's retrained
TransAct is also served to *every* user, in one more paired copy (``transact@buckets``,
:attr:`~transact.online.OnlineConfig.bucket_model_copies`): two more cells compare full
traffic's model with the bucket's on all users, the same users and random numbers,
``(T - O) / C`` (:func:`~transact.experiments.online.paired_difference_between`). Both
TransAct copies serve TransAct-shaped sequences; only the data their model retrained on
differs, which is the loop. ``results.json``'s ``checks`` confirm the copy is what it
should be: the full-traffic copy's days before the first retrain, and the bucket's days
on the bucket's users (:func:`design_checks`). The five earlier cells come first and are
unchanged, so runs pool with runs of before (``combine`` pools each claim over the runs
that hold it).

Every environment of the run shares one random stream keyed by day and user, so the
bucket's TransAct users are also in both paired copies with the same random numbers. The
cells use that: the bucket's gain is read twice, by CUPED against the other bucket (the
paper's design) and paired against the same users in the baseline copy; and the
difference of the two gains is paired on the bucket's users (``(T - B) / C`` per
:func:`~transact.experiments.online.paired_difference_of_gains`), instead of a difference
of two independent lifts, which cut its MDE about threefold on the demo world
(docs/online.md).
"""

from __future__ import annotations

from typing import Any

from transact.experiments.online import (
    BASELINE,
    TRANSACT,
    OnlineRun,
    cells_table,
    judge,
    paired_across,
    paired_between,
    paired_difference_between,
    paired_difference_of_gains,
    paired_growth_of_gains,
    single_run_record,
    write_results,
)

NAME = "feedback-loop"
BUCKET_MODEL = f"{TRANSACT.key}@buckets"
"""The paired copy serving the bucket's retrained TransAct to every user."""
TITLE = "5.1: the feedback loop, a small bucket against full traffic (each retrained on its environment's logs)"


def run(ctx: OnlineRun) -> dict[str, Any]:
    """Run the feedback-loop experiment (module docstring); writes results.json/md and
    feedback_loop.png."""
    from transact.online import ArmSpec, OnlineConfig, RetrainSchedule
    from transact.online.report import plot_daily_gain

    b = ctx.budget
    schedule = RetrainSchedule.parse(b.retrain)
    n_days = feedback_days(b)
    retrain_days = schedule.retrain_days(n_days)
    models, trained = ctx.models([BASELINE, TRANSACT])
    arms = (
        ArmSpec("baseline", str(models["baseline"]), 1.0 - b.feedback_share),
        ArmSpec("transact", str(models["transact"]), b.feedback_share),
    )
    config = OnlineConfig(
        str(ctx.world), arms, days=n_days, paired=True, retrain=schedule,
        training_data="pooled-buckets", bucket_model_copies=(TRANSACT.key,),
        retrain_steps=b.retrain_steps, pre_days=b.pre_days, seed=ctx.seed,
        progress=ctx.progress,
    )  # fmt: skip
    result, wall = ctx.simulate("run", config)
    days = list(range(n_days))
    half = days[len(days) // 2 :]
    small = result.lift("transact", "repins")
    small_paired = paired_across(result, "transact", "baseline", "repins")
    full = paired_between(result, "transact", "baseline", "repins")
    small_daily = [paired_across(result, "transact", "baseline", "repins", days=[k]) for k in days]
    full_daily = [paired_between(result, "transact", "baseline", "repins", days=[k]) for k in days]

    def more(period: list[int] | None) -> Any:
        return paired_difference_of_gains(
            result, "transact", "transact", "baseline", "repins", days=period
        )

    diff_daily = [more([k]) for k in days]

    def more_everyone(period: list[int] | None) -> Any:
        return paired_difference_between(
            result, "transact", BUCKET_MODEL, "baseline", "repins", days=period
        )

    everyone_daily = [more_everyone([k]) for k in days]

    cells = [
        judge("small bucket: repin gain (CUPED, against the other bucket)", small, 0.11,
              design="buckets"),
        judge("small bucket: repin gain (paired, against its users on the baseline)",
              small_paired, 0.11, design="bucket users, paired copy"),
        judge("full traffic: repin gain", full, 0.11, design="paired"),
        judge("full traffic gains more than the bucket (whole period)", more(None), 1.0,
              sized=False, design="bucket users, paired"),
        judge("full traffic gains more than the bucket (second half)", more(half), 1.0,
              sized=False, design="bucket users, paired"),
    ]  # fmt: skip
    if len(retrain_days) >= 2:
        # several retrains: does the loop compound? Before the first retrain the bucket's
        # users see the same model in the bucket and in the full-traffic copy, so the
        # difference is 0 there by construction; the growth is read from the period after
        # the first retrain to the period after the last, on the same users
        first = days[retrain_days[0] : retrain_days[1]]
        last = days[retrain_days[-1] :]
        growth = paired_growth_of_gains(
            result, "transact", "transact", "baseline", "repins", early=first, late=last
        )
        cells += [
            judge("full traffic gains more than the bucket (after the last retrain)",
                  more(last), 1.0, sized=False, design="bucket users, paired"),
            judge("the full-traffic advantage grows (after the last retrain minus after "
                  "the first)", growth, 1.0, sized=False,
                  design="bucket users, paired, two periods"),
        ]  # fmt: skip
    everyone = "every user, paired copies (full traffic's model against the bucket's)"
    # after the cells of before, so runs of before pool on those (combine)
    cells += [
        judge("full traffic's model gains more than the bucket's, both served to every user "
              "(whole period)", more_everyone(None), 1.0, sized=False, design=everyone),
        judge("full traffic's model gains more than the bucket's, both served to every user "
              "(second half)", more_everyone(half), 1.0, sized=False, design=everyone),
    ]  # fmt: skip
    small_label = f"small bucket ({b.feedback_share:.0%}, paired)"
    plot_daily_gain(
        [(small_label, small_daily), ("full traffic", full_daily),
         ("full traffic minus the bucket", diff_daily),
         ("full traffic's model minus the bucket's (every user)", everyone_daily)],
        ctx.out_dir / "feedback_loop.png",
        title=TITLE,
        ylabel="repin-volume gain over the baseline (%)",
        retrain_days=retrain_days,
    )  # fmt: skip
    checks = design_checks(result, retrain_days[0])
    results = {
        "experiment": NAME,
        "title": TITLE,
        "budget": b.to_dict(),
        "world": str(ctx.world),
        "models": trained,
        "cells": cells,
        "daily_gain": {
            "small_bucket": [x.to_dict() for x in small_daily],
            "small_bucket_cuped": [x.to_dict() for x in result.daily_lifts("transact", "repins")],
            "full_traffic": [x.to_dict() for x in full_daily],
            "difference": [x.to_dict() for x in diff_daily],
            "difference_every_user": [x.to_dict() for x in everyone_daily],
        },
        "checks": checks,
        "retrains": [r.to_dict() for r in result.retrains],
        "runs": single_run_record(ctx.out_dir, wall, result),
    }
    lines = ctx.header(TITLE)
    lines += [
        f"TransAct on {b.feedback_share:.0%} of the users against full traffic, "
        f"{n_days} online days, retrained `{b.retrain}` from scratch (the bucket arms on "
        "all of the bucket environment's logs, each paired copy on its own) "
        f"({b.retrain_steps} steps per retrain, {len(result.retrains)} retrains). The "
        "paper gives no number for this claim; the paper column of the gains is Table 5's. "
        "Every environment shares one random stream keyed by day and user, so the bucket's "
        "TransAct users are paired with themselves in the full-traffic copies: the paired "
        "cells compare the same users with the same random numbers.",
        "",
        f"The bucket's retrained TransAct is also served to every user in one more paired "
        f"copy (`{BUCKET_MODEL}`), so the last cells compare the two retrained models on all "
        "users instead of the bucket's share. Design checks: "
        + "; ".join(f"{k} {v}" for k, v in checks.items())
        + ".",
        "",
        *cells_table(cells),
    ]
    write_results(ctx.out_dir, results, lines)
    return results


def design_checks(result: Any, first_retrain: int) -> dict[str, bool]:
    """What the extra copy must be, by construction, checked on the run's per-user daily
    repins: before the first retrain it lives the same days as the full-traffic TransAct
    copy (the same model, users and random numbers), and on the bucket's TransAct users it
    lives the same days as the bucket over the whole period (the same models; a user's days
    depend on no other user's). A False here means the comparison is not the one the
    cells name."""
    import numpy as np

    copy_metrics = result.arm(BUCKET_MODEL, "paired").metrics
    copy = copy_metrics.get("repins")
    full = result.arm("transact", "paired").metrics.get("repins")
    bucket = result.arm("transact", "buckets")
    mine = copy_metrics.select(bucket.users).get("repins")
    return {
        "copy equals full traffic before the first retrain": bool(
            np.array_equal(copy.values[:first_retrain], full.values[:first_retrain])
        ),
        "copy equals the bucket on its users": bool(
            np.array_equal(mine.values, bucket.metrics.get("repins").values)
        ),
    }


def feedback_days(budget: Any) -> int:
    """The experiment's online days: the budget's ``days`` when its schedule retrains in
    them, else its longer ``fig6_days``; raises ``ValueError`` when no retrain falls in
    either (the loop the claim is about would not close: the run would only repeat
    Table 5 in a small bucket)."""
    from transact.online import RetrainSchedule

    schedule = RetrainSchedule.parse(budget.retrain)
    for n_days in (budget.days, budget.fig6_days):
        if schedule.retrain_days(n_days):
            return int(n_days)
    raise ValueError(
        f"budget {budget.name!r}: retrain {budget.retrain!r} retrains on none of the "
        f"{budget.fig6_days} online days; the feedback loop needs at least one retrain"
    )
