"""The online experiment's outputs: report.json, report.md (Table 5), fig6.png, diversity.png.

* ``report.json``: :meth:`OnlineResult.to_dict` (deterministic for a seed);
  ``timings.json`` beside it holds the seconds by part (they vary between runs).
* ``report.md``: per design and treatment arm, the layout of the paper's Table 5 (online
  metrics x all / non-core users) with 95% intervals (``*``: the interval contains 0),
  then the arms' volumes per assigned user, the stream's counts and the retrains.
* ``fig6.png``: the daily repin-volume gain of each treatment over the control with its
  interval (paper Figure 6 compares fixed and retrained models; :func:`plot_daily_gain`
  draws curves from several results on one axis, which is how fixed against retrained
  is drawn from two runs).
* ``diversity.png``: per arm and day, the impression diversity (unique top-level interests
  seen per active user) and the mean entropy of users' true interests: diversity alone
  falls under a filter bubble; the entropy falls too under an echo chamber.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transact.online.result import TABLE5, OnlineResult
from transact.online.stats import Lift

PAPER_TABLE5 = {
    "repins": {"all": 11.0, "non_core": 17.0},
    "hides": {"all": -10.0, "non_core": -10.5},
    "time_spent_min": {"all": 2.0, "non_core": 1.5},
}
"""The paper's Table 5 (TransAct over the baseline, 1.5% buckets), in percent."""


def write_report(result: OnlineResult, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, timings.json, report.md, fig6.png and diversity.png into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = result.to_dict()
    paths = {
        "report.json": out / "report.json",
        "timings.json": out / "timings.json",
        "report.md": out / "report.md",
        "fig6.png": out / "fig6.png",
        "diversity.png": out / "diversity.png",
    }
    paths["report.json"].write_text(json.dumps(report, indent=1) + "\n")
    timings = {
        "seconds": {k: round(v, 3) for k, v in sorted(result.timings.items())},
        "retrains": [
            {
                "design": r.design,
                "arm": r.arm,
                "day": r.day,
                "wall_s": round(r.wall_s, 2),
                "cpu_s": round(r.cpu_s, 2),
            }
            for r in result.retrains
        ],  # fmt: skip
    }
    paths["timings.json"].write_text(json.dumps(timings, indent=1) + "\n")
    paths["report.md"].write_text(render_markdown(result, report))
    curves = [
        (f"{arm} ({design}, {_schedule(result, arm)})", result.daily_lifts(arm, "repins", "all", design))
        for design in result.designs
        for arm in result.treatments
    ]  # fmt: skip
    plot_daily_gain(
        curves,
        paths["fig6.png"],
        title=f"daily repin-volume gain over {result.control} (all users, 95% intervals)",
    )
    plot_diversity(result, paths["diversity.png"])
    return paths


def _schedule(result: OnlineResult, arm: str) -> str:
    spec = next(a for a in result.config.arms if a.name == arm)
    return str(result.config.schedule(spec))


def format_lift(lift: dict[str, Any] | Lift) -> str:
    """``+11.0% [+5.1, +16.9]`` (``*`` when the interval contains 0)."""
    d = lift.to_dict() if isinstance(lift, Lift) else lift
    value, lo, hi = d.get("lift"), d.get("ci_low"), d.get("ci_high")
    if value is None or lo is None or hi is None:
        return "n/a"
    star = "" if d.get("significant") else "*"
    return f"{100 * value:+.1f}%{star} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def render_markdown(result: OnlineResult, report: dict[str, Any]) -> str:
    """report.md (module docstring)."""
    cfg = result.config
    t = report["timeline"]
    lines = [
        "# Online experiment",
        "",
        f"World `{cfg.data_dir}`: {t['offline_days']} offline days (the pre-period; CUPED "
        f"covariates from {t['pre_period'][0]} to {t['pre_period'][1]}), then {cfg.days} "
        f"online days {t['online_start']} to {t['online_end']}. Seed {cfg.seed}, bucket salt "
        f"`{cfg.bucket_salt}`, {100 * cfg.randomized_share:g}% shuffled requests online.",
        "",
        "| arm | model | share | users | retrain |",
        "| --- | --- | --- | --- | --- |",
    ]
    for a in report["config"]["arms"]:
        role = " (control)" if a["name"] == result.control else ""
        lines.append(
            f"| {a['name']}{role} | `{a['model']}` | {100 * a['share']:.1f}% | "
            f"{report['bucket_users'][a['name']]:,} | {a['retrain']} |"
        )
    lines.append(f"| rest | `{cfg.rest}` | | {report['bucket_users']['rest']:,} | fixed |")
    lines += [
        "",
        f"Retraining from scratch on the last {cfg.window_days} days of "
        f"{'each bucket' + chr(39) + 's own' if cfg.training_data == 'own' else 'all (pooled)'} "
        f"logs, {cfg.retrain_steps or 'the run config' + chr(39) + 's'} steps.",
        "",
        "Lifts over the control with 95% intervals; `*`: the interval contains 0. Volumes "
        "are per assigned user (every user the hash put in the bucket). Buckets: CUPED on "
        "the pre-period; paired: the same users in counterfactual copies with common "
        "random numbers.",
        "",
    ]
    titles = {"buckets": "user buckets (CUPED)", "paired": "paired counterfactual copies"}
    for design in result.designs:
        d = report["designs"][design]
        for arm in result.treatments:
            lines += [
                f"## Table 5: {arm} over {result.control}, {titles[design]}",
                "",
                "| Online Metrics | All Users | Non-core Users |",
                "| --- | --- | --- |",
            ]
            for metric, title in TABLE5:
                cells = [format_lift(d["lifts"][arm][metric][s]) for s in ("all", "non_core")]
                lines.append(f"| {title} | {cells[0]} | {cells[1]} |")
            if design == "buckets":
                rep = d["lifts"][arm]["repins"]["all"]
                vr = rep.get("variance_reduction")
                plain = format_lift(rep["without_cuped"])
                lines += [
                    "",
                    f"Repin volume without CUPED: {plain}"
                    + (f"; CUPED removed {100 * vr:.0f}% of its variance." if vr else "."),
                ]
            lines.append("")
        lines += [
            f"### Per assigned user over {cfg.days} days ({design})",
            "",
            "| arm | users | active | repins | clicks | hides | time spent (min) | "
            "diversity / active user-day | entropy (end) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, a in d["arms"].items():
            m = a["metrics"]
            div_days = [v for v in m["diversity"]["all"]["daily_per_active_user"] if v is not None]
            div = sum(div_days) / len(div_days) if div_days else math.nan
            lines.append(
                f"| {name} | {a['users']:,} | {a['active_users']:,} | "
                + " | ".join(
                    _num(m[k]["all"]["per_assigned_user"])
                    for k in ("repins", "clicks", "hides", "time_spent_min")
                )
                + f" | {div:.2f} | {_num(m['interest_entropy']['all']['per_assigned_user'], 3)} |"
            )
        lines.append("")
    lines += [
        "## Stream and retraining",
        "",
        "| environment | users | impressions | events processed | accepted | dead letters |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, env in report["environments"].items():
        s = env["stream"]
        lines.append(
            f"| {name} | {env['users']:,} | {env['impressions']:,} | {s['events']:,} | "
            f"{s['outcomes'].get('accepted', 0):,} | {s['dead_letters_total']} |"
        )
    lines.append("")
    if report["retrains"]:
        lines += [
            "| design | arm | day | window | users | examples | steps | final loss |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in report["retrains"]:
            lines.append(
                f"| {r['design']} | {r['arm']} | {r['day']} | {_window(r)} | "
                f"{r['users'] if r['users'] is not None else 'all'} | {r['examples']:,} | "
                f"{r['steps']} | {r['final_loss']:.4f}"
                + (f" (reuses {r['reused_from']})" if r.get("reused_from") else "")
                + " |"
            )
    else:
        lines.append("No retraining (every arm fixed).")
    lines.append("")
    return "\n".join(lines)


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _window(r: dict[str, Any]) -> str:
    from transact.data.io import day_string

    return f"{day_string(r['window_start_ms'])} to {day_string(r['window_end_ms'] - 1)}"


def plot_daily_gain(
    curves: Sequence[tuple[str, Sequence[Lift]]],
    path: str | Path,
    *,
    title: str = "daily repin-volume gain",
    ylabel: str = "gain over the control (%)",
    retrain_days: Sequence[int] = (),
) -> Path:
    """Write a PNG of daily gains: one line with its 95% band per ``(label, lifts)``.

    ``lifts[k]`` is online day k's lift (``OnlineResult.daily_lifts``). Curves of several
    results go on one axis (fixed against retrained: one run each). ``retrain_days``
    (``RetrainSchedule.retrain_days``: online day indices at whose midnight a model is
    retrained) are drawn as dotted lines between the day before and the day.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for label, lifts in curves:
        days = [k + 1 for k, x in enumerate(lifts) if math.isfinite(x.lift)]
        ok = [x for x in lifts if math.isfinite(x.lift)]
        if not ok:
            continue
        line = ax.plot(days, [100 * x.lift for x in ok], marker="o", markersize=3, label=label)[0]
        ax.fill_between(
            days,
            [100 * x.ci_low for x in ok],
            [100 * x.ci_high for x in ok],
            color=line.get_color(),
            alpha=0.15,
        )
    ax.axhline(0.0, color="grey", linewidth=0.8)
    for k, day in enumerate(retrain_days):  # day index d is plotted at d + 1
        ax.axvline(day + 0.5, color="grey", linestyle=":", linewidth=1.0,
                   label="retrain" if k == 0 else None)  # fmt: skip
    ax.set_xlabel("online day")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_diversity(result: OnlineResult, path: str | Path) -> Path:
    """Write diversity.png: per arm and day, unique top-level interests seen per active
    user, and the mean entropy of the users' true interests (day 0: the pre-period's end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"buckets": "-", "paired": "--"}
    for design in result.designs:
        for name, arm in result.arms[design].items():
            if name == "rest":
                continue
            agg = result.aggregate(name, design)["metrics"]
            div = agg["diversity"]["all"]["daily_per_active_user"]
            days = [k + 1 for k, v in enumerate(div) if v is not None]
            label = f"{name} ({design})"
            lines = left.plot(
                days, [v for v in div if v is not None], styles[design], marker="o",
                markersize=3, label=label,
            )  # fmt: skip
            start = result.covariate(arm.users, "interest_entropy").mean()
            ent = [start, *agg["interest_entropy"]["all"]["daily_per_assigned_user"]]
            right.plot(
                range(len(ent)), ent, styles[design], marker="o", markersize=3,
                color=lines[0].get_color(), label=label,
            )  # fmt: skip
    left.set_title("impression diversity: unique top-level interests per active user-day",
                   fontsize=9)  # fmt: skip
    left.set_xlabel("online day")
    right.set_title("entropy of users' true interests (nats), mean per user", fontsize=9)
    right.set_xlabel("online day (0: end of the pre-period)")
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
