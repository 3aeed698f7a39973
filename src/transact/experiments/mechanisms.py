"""What each world mechanism contributes to TransAct's online lift, shown by switching it off.

Not a table of the paper (issue 16 part 4, docs/online.md): the simulated world's
closed-loop mechanisms (:data:`~transact.data.world.MECHANISMS`, docs/data.md 2.4) are
what makes a realtime sequence worth having or not, so each is switched off to see how
much of Table 5's lift it carries. One row per world: the reference (every mechanism on,
the budget's world or ``--dataset``), each chosen mechanism off alone
(:meth:`WorldConfig.without <transact.data.world.WorldConfig.without>`) and all of them
off (``all``: :meth:`~transact.data.world.WorldConfig.mechanisms_off`). Per row:

* the world is generated with the switch (:func:`~transact.experiments.online.generated_world`,
  cached by its config) and its statistics show that the switch took effect
  (:func:`switch_statistics`);
* the baseline and TransAct, Table 5's two models (the shipped run configs), are trained
  on its training window (the world changes, so the models must be retrained; cached as
  every online experiment's models are);
* Table 5's paired design runs for the budget's days (every user served by each model in
  counterfactual copies with common random numbers): TransAct's lifts over the baseline
  in repin and hide volume, impression diversity and time spent, with 95% intervals.

A mechanism's *contribution* to a lift is the lift in the reference world minus the lift
in the world without it, with the interval of independent estimates (the worlds are
drawn apart: :func:`~transact.experiments.online.difference_of_lifts`), judged as the
claim "the mechanism raises TransAct's lift": **holds** (significantly up),
**contradicted** (significantly down), unsettled. A finished row is written to
``OUT/mechanisms/ROW/row.json`` and reused by a rerun with the same budget, seed, world
and models, so a crash loses only the row it was in.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from transact.data.world.config import MECHANISMS
from transact.experiments.online import (
    BASELINE,
    MDE_Z,
    TRANSACT,
    OnlineRun,
    difference_of_lifts,
    fmt_pct,
    generated_world,
    judge,
    world_dir_config,
    write_results,
)
from transact.online.stats import Lift

NAME = "mechanisms"
TITLE = "What each world mechanism contributes to TransAct's online lift (switched off)"
REFERENCE = "reference"
ALL_OFF = "all"
CHOICES = (*MECHANISMS, ALL_OFF)
"""What ``--mechanisms`` may name: a mechanism of the world, or ``all`` of them at once."""

METRICS = (
    ("repin volume", "repins"),
    ("hide volume", "hides"),
    ("impression diversity", "diversity"),
    ("time spent", "time_spent_min"),
)
"""(what the tables call it, the online metric) of each lift."""

ROW_FILE = "row.json"
LEAF_PERSISTENCE_ACTIONS = ("click", "repin")


def parse_rows(names: Sequence[str] | None) -> tuple[str, ...]:
    """The rows to run: the reference, then ``names`` (default: every mechanism and
    ``all``) in :data:`CHOICES`' order; raises ``ValueError`` naming the known ones."""
    if names is None:
        return (REFERENCE, *CHOICES)
    unknown = [n for n in names if n not in CHOICES]
    if unknown:
        raise ValueError(f"--mechanisms: unknown {', '.join(unknown)}; known: {', '.join(CHOICES)}")
    return (REFERENCE, *(c for c in CHOICES if c in names))


def row_world_config(base: Any, row: str) -> Any:
    """The ``WorldConfig`` of ``row``: ``base`` (the reference), ``base`` without the
    mechanism, or ``base`` with every mechanism off (``all``)."""
    if row == REFERENCE:
        return base
    if row == ALL_OFF:
        return base.mechanisms_off()
    return base.without(row)


def describe_row(row: str) -> str:
    """What is switched off in ``row``, in words."""
    if row == REFERENCE:
        return "nothing (every mechanism on)"
    if row == ALL_OFF:
        return "every mechanism (WorldConfig.mechanisms_off())"
    return MECHANISMS[row]


def run(ctx: OnlineRun, rows: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the rows ``rows`` (mechanism names, see :func:`parse_rows`; default every one)
    as the module docstring says; writes results.json/md and mechanisms.png."""
    from tqdm import tqdm

    names = parse_rows(rows)
    base, preset, world_seed = _base_world(ctx)
    done: dict[str, dict[str, Any]] = {}
    for row in tqdm(names, desc="worlds", unit="world", disable=not ctx.progress):
        started = time.perf_counter()
        config = row_world_config(base, row)
        world = (
            ctx.world
            if row == REFERENCE
            else generated_world(config, preset, ctx.work_dir, ctx.progress, world_seed)
        )
        done[row] = _run_row(replace(ctx, world=world), row, config, started)
    contributions = {
        row: contribution(done[REFERENCE]["lifts"], done[row]["lifts"], row)
        for row in names
        if row != REFERENCE
    }
    results = {
        "experiment": NAME,
        "title": TITLE,
        "budget": ctx.budget.to_dict(),
        "world": str(ctx.world),
        "rows": done,
        "contributions": contributions,
        "cells": [c for cells in contributions.values() for c in cells],
    }
    plot(done, ctx.out_dir / "mechanisms.png")
    write_results(ctx.out_dir, results, markdown(ctx, done, contributions))
    return results


def _base_world(ctx: OnlineRun) -> tuple[Any, str, int]:
    """(reference ``WorldConfig``, preset name, seed) the switched worlds are made from:
    the reference world's own (the budget's world, or the ``--dataset`` world)."""
    from transact.data.io import load_manifest

    manifest = load_manifest(ctx.world)
    return world_dir_config(ctx.world), manifest.preset or "custom", int(manifest.seed)


def _run_row(ctx: OnlineRun, row: str, config: Any, started: float) -> dict[str, Any]:
    """One world's row: models, the paired simulation, lifts and statistics; reuses
    ``out_dir/ROW/row.json`` when it was made with the same key. ``started``: when the
    row's work began (``time.perf_counter()``, before its world was generated)."""
    models, trained = ctx.models([BASELINE, TRANSACT])
    key = {
        "row": row,
        "world": str(ctx.world.resolve()),
        "world_config": asdict(config),
        "budget": ctx.budget.to_dict(),
        "seed": ctx.seed,
        "models": {k: str(Path(v).resolve()) for k, v in models.items()},
    }
    key = json.loads(json.dumps(key))  # as row.json reads back: tuples become lists
    path = ctx.out_dir / row / ROW_FILE
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return {**cached, "reused": True}
    config_ab = ctx.ab_config(models, ctx.budget.settle_share, paired=True)
    result, wall = ctx.simulate(row, config_ab)
    lifts = {
        metric: result.lift("transact", metric, "all", "paired").to_dict() for _, metric in METRICS
    }
    record = {
        "key": key,
        "switched_off": describe_row(row),
        "world": str(ctx.world),
        "models": trained,
        "statistics": {**switch_statistics(ctx.world), **online_counters(result)},
        "lifts": lifts,
        "wall_s": wall,
        "reused": False,
    }
    # the whole row: world generation (when new), training, simulation and statistics
    record["row_wall_s"] = round(time.perf_counter() - started, 1)
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return record


def switch_statistics(world: Path) -> dict[str, Any]:
    """Statistics of a generated world that show which mechanisms it has.

    * traffic (``transact data stats``' figures): impressions, requests per session (the
      continue elasticity), sessions per active user-day (the return elasticity), time
      spent per active user-day, the training window's label rates (satiation);
    * ``fresh_items``: items created after the world's start (0 without fresh items);
    * ``interests_kept``: the mean share of a user's top-level long-term interests of
      day 0 still held at the end (1 without drift);
    * ``leaf_persistence``: of the leaves a user clicked or repinned on a day, the share
      they also engaged with the day before (user-days with engagements the day before
      only): current interests carry a leaf over days, the long-term mixture less so.
    """
    import pyarrow.parquet as pq

    from transact.data.io import load_event_arrays, load_manifest
    from transact.data.schema import MS_PER_DAY
    from transact.data.stats import world_stats

    manifest = load_manifest(world)
    stats = world_stats(world, seq_len=1)
    sessions = stats["sessions"] or {}
    train = stats["label_rates"]["train"]
    items = pq.read_table(world / "items.parquet", columns=["created_time_ms", "taxonomy_path"])
    created = items.column("created_time_ms").to_numpy()
    users = pq.read_table(
        world / "users.parquet", columns=["long_term_interests_start", "long_term_interests_end"]
    ).to_pydict()
    kept = [
        len(set(a) & set(b)) / len(a)
        for a, b in zip(
            users["long_term_interests_start"], users["long_term_interests_end"], strict=True
        )
        if a
    ]
    _, leaf_of_item = np.unique(
        np.asarray(items.column("taxonomy_path").to_pylist()), return_inverse=True
    )
    events = load_event_arrays(world, actions=LEAF_PERSISTENCE_ACTIONS)
    return {
        "impressions": stats["impressions"],
        "requests": stats["requests"],
        "sessions": sessions.get("sessions"),
        "requests_per_session": sessions.get("requests_per_session"),
        "sessions_per_active_user_day": (
            sessions["sessions"] / sessions["active_user_days"]
            if sessions.get("active_user_days")
            else None
        ),
        "time_spent_min_per_active_user_day": sessions.get("time_spent_min_per_active_user_day"),
        "train_label_rates": {
            h: train[f"label_rate_{h}"] for h in manifest.heads if f"label_rate_{h}" in train
        },
        "fresh_items": int((created >= manifest.start_ms).sum()),
        "interests_kept": float(np.mean(kept)) if kept else None,
        "leaf_persistence": leaf_persistence(
            events.user_ids,
            leaf_of_item[events.item_ids],
            (events.times_ms - manifest.start_ms) // MS_PER_DAY,
        ),
    }


def leaf_persistence(users: np.ndarray, leaves: np.ndarray, days: np.ndarray) -> float | None:
    """Of the distinct (user, day, leaf) engagements whose user engaged the day before,
    the share whose leaf the user engaged with the day before too (``None``: none).

    Args:
        users / leaves / days: ``[E]`` int arrays, one entry per engagement.
    """
    if users.size == 0:
        return None
    n_leaves = int(leaves.max()) + 1
    n_days = int(days.max()) + 2
    user_day = users.astype(np.int64) * n_days + days.astype(np.int64)
    triples = np.unique(user_day * n_leaves + leaves.astype(np.int64))
    triple_user_day, triple_leaf = np.divmod(triples, n_leaves)
    had_day_before = np.isin(triple_user_day - 1, np.unique(user_day))
    if not had_day_before.any():
        return None
    same_leaf = np.isin((triple_user_day - 1) * n_leaves + triple_leaf, triples)
    return float(same_leaf[had_day_before].mean())


def online_counters(result: Any) -> dict[str, Any]:
    """What the online period itself shows: impressions simulated, and per user of the
    baseline's paired copy the sessions, time spent and unique top-level interests
    viewed (the diversity metric) over the period."""
    arm = result.arm("baseline", "paired").metrics
    per_user = {
        metric: float(arm.get(metric, "all").period(metric).mean())
        for metric in ("sessions", "time_spent_min", "diversity")
    }
    return {"online_impressions": int(result.impressions), "online_baseline_per_user": per_user}


def lift_of(record: dict[str, Any]) -> Lift:
    """A :class:`Lift` back from its ``to_dict()`` (``None`` -> NaN)."""
    numbers = ("lift", "ci_low", "ci_high", "se", "p_value", "mean_t", "mean_c")
    values: dict[str, Any] = {f.name: record.get(f.name) for f in fields(Lift)}
    values.update({k: math.nan for k in numbers if values[k] is None})
    return Lift(**values)


def contribution(
    reference: dict[str, dict[str, Any]], without: dict[str, dict[str, Any]], row: str
) -> list[dict[str, Any]]:
    """Per metric, the reference world's lift minus the lift without ``row``'s mechanism,
    its interval (independent worlds) and the verdict of "it raises TransAct's lift"."""
    cells = []
    for label, metric in METRICS:
        diff = difference_of_lifts(lift_of(reference[metric]), lift_of(without[metric]))
        cells.append(
            judge(
                f"{row}: raises TransAct's {label} lift",
                diff,
                1.0,
                sized=False,
                mechanism=row,
                metric=metric,
            )
        )
    return cells


def _cell(lift: dict[str, Any]) -> str:
    return f"{fmt_pct(lift['lift'])} [{fmt_pct(lift['ci_low'])}, {fmt_pct(lift['ci_high'])}]"


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown(
    ctx: OnlineRun, rows: dict[str, dict[str, Any]], contributions: dict[str, list[dict]]
) -> list[str]:
    """results.md: the table of worlds (statistics and lifts), the contributions with
    their verdicts, and what can and cannot be told from them."""
    b = ctx.budget
    lines = ctx.header(TITLE)
    lines += [
        f"Each row is its own world (generated with the switch), its own baseline and "
        f"TransAct (trained on that world), and Table 5's paired design for {b.days} online "
        "days: TransAct's lift over the baseline with its 95% interval (users, common "
        "random numbers). Statistics of the offline world show the switch: requests per "
        "session (continue elasticity), sessions per active user-day (return elasticity), "
        "training repin rate (satiation), items created during the world (fresh items), "
        "long-term interests kept from day 0 to the end (drift), and the share of a "
        "day's engaged leaves also engaged the day before (current interests).",
        "",
        "| world (switched off) | impressions | requests / session | sessions / active "
        "user-day | repin rate | fresh items | interests kept | leaf persistence | "
        + " | ".join(f"{label} lift" for label, _ in METRICS)
        + " |",
        "|---" * (8 + len(METRICS)) + "|",
    ]
    for row, r in rows.items():
        s = r["statistics"]
        cells = [
            row,
            f"{s['impressions']:,}",
            _num(s["requests_per_session"], ".2f"),
            _num(s["sessions_per_active_user_day"], ".2f"),
            fmt_pct(s["train_label_rates"].get("repin"), 2).lstrip("+"),
            f"{s['fresh_items']:,}",
            _num(s["interests_kept"], ".2f"),
            _num(s["leaf_persistence"], ".2f"),
            *(_cell(r["lifts"][metric]) for _, metric in METRICS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "What is switched off in each row:", ""]
    lines += [f"* `{row}`: {r['switched_off']}" for row, r in rows.items()]
    if contributions:
        lines += [
            "",
            "Contribution of each mechanism: the lift with every mechanism on minus the "
            'lift without it, 95% interval of independent worlds; verdict of "it raises '
            "TransAct's lift\" (**holds**: up, **contradicted**: down, unsettled: neither "
            "at 5%; for hide volume, up means a smaller cut in hides).",
            "",
            "| mechanism | " + " | ".join(label for label, _ in METRICS) + " |",
            "|---" * (1 + len(METRICS)) + "|",
        ]
        for row, judged in contributions.items():
            text = [f"{_cell(c)} {_verdict(c)}" if c["lift"] is not None else "n/a" for c in judged]
            lines.append(f"| {row} | " + " | ".join(text) + " |")
    lines += ["", *reading(contributions, b.days)]
    return lines


def _verdict(cell: dict[str, Any]) -> str:
    return cell["verdict"] if cell["verdict"] == "unsettled" else f"**{cell['verdict']}**"


def reading(contributions: dict[str, list[dict]], days: int) -> list[str]:
    """The paragraph under the tables: what the verdicts say, and what they cannot."""
    out = []
    for label, metric in METRICS:
        by: dict[str, list[str]] = {"holds": [], "contradicted": [], "unsettled": []}
        mdes = []
        for row, cells in contributions.items():
            c = next(c for c in cells if c["metric"] == metric)
            by[c["verdict"]].append(row)
            if c["se"] is not None:
                mdes.append(MDE_Z * c["se"])
        parts = []
        if by["holds"]:
            parts.append("raised by " + ", ".join(by["holds"]))
        if by["contradicted"]:
            parts.append("lowered by " + ", ".join(by["contradicted"]))
        if by["unsettled"]:
            points = f"{100 * max(mdes):.0f}" if mdes else ""
            unit = "point" if points == "1" else "points"
            mde = f" (detectable here: about {points} {unit})" if mdes else ""
            parts.append("no settled change from " + ", ".join(by["unsettled"]) + mde)
        if parts:
            out.append(f"* {label} lift: " + "; ".join(parts) + ".")
    return [
        "What can be told: whether switching a mechanism off moves TransAct's lift by more "
        "than the two worlds' user noise, and which way:",
        "",
        *out,
        "",
        "What cannot: a row differs from the reference in more than its switch. Each world "
        "is its own random draw and trains its own models (one training seed: the "
        "intervals hold the users' noise, not the training's), nothing is re-calibrated "
        "when a mechanism goes (base rates move with it, so a lift is relative to a "
        f"different baseline), and {days} online days show a short-run effect only. "
        "Mechanisms may interact: the `all` row is not the sum of the single rows.",
    ]


def plot(rows: dict[str, dict[str, Any]], path: Path) -> None:
    """mechanisms.png: per metric, each world's lift with its 95% interval, the reference
    world's lift as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(12, 0.5 * len(names) + 1.8), sharey=True)
    for ax, (label, metric) in zip(axes, METRICS, strict=True):
        for y, row in enumerate(names):
            lift = rows[row]["lifts"][metric]
            if lift["lift"] is None or lift["ci_low"] is None or lift["ci_high"] is None:
                continue
            x = 100 * lift["lift"]
            err = [[x - 100 * lift["ci_low"]], [100 * lift["ci_high"] - x]]
            colour = "black" if row == REFERENCE else "tab:blue"
            ax.errorbar([x], [y], xerr=err, fmt="o", capsize=3, color=colour)
        ref = rows[REFERENCE]["lifts"][metric]["lift"]
        if ref is not None:
            ax.axvline(100 * ref, color="black", linestyle="--", linewidth=0.8)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_title(f"{label} lift", fontsize=9)
        ax.set_xlabel("TransAct over the baseline (%, paired)", fontsize=8)
    axes[0].set_yticks(range(len(names)), [f"{n} off" if n != REFERENCE else n for n in names])
    axes[0].invert_yaxis()
    fig.suptitle(TITLE, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
