"""How big a run must be to settle a cell: the minimum detectable lift projected from a pilot.

A cell's lift has the standard error of :func:`transact.evaluation.significance.lift_interval`
over users and seeds,

    se^2 = se_users^2 + seed_sd^2 / S,

where ``se_users`` (the spread between users of the seed-averaged per-user lift) shrinks
as ``1 / sqrt(n_users)`` and ``seed_sd`` (the spread of the lift between training seeds)
is a property of the training budget. The minimum detectable lift at 80% power and
alpha = 0.05 is ``mde = 2.80 se`` (Student-t quantiles at the Welch-Satterthwaite degrees
of freedom with few seeds, as the runner computes it). From a pilot run's ``results.json`` (at least two seeds,
so that ``seed_sd`` is measured), :func:`project_mde` projects the ``mde`` of a run with
other numbers of users and seeds, and :func:`power_plan` tabulates it against a target
(the issue: half the paper's lift).

The projection is conservative in two places: it keeps ``se_users`` as measured at the
pilot's seeds (averaging per-user values over more seeds shrinks it a little), and it
keeps ``seed_sd`` as measured on the pilot's users, although part of it is the users'
sampling noise of each seed's lift, which shrinks with more users (in
``tests/experiments/test_power.py`` a run with four times the users measures an ``mde``
about 1.5x smaller than projected when that part dominates). It assumes the training budget, and with it the size of the lift and ``seed_sd``, stays the
pilot's: a run with a different number of steps needs its own pilot.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transact.evaluation.significance import minimum_detectable_effect


def _cell(results: Mapping[str, Any], row: str, column: str) -> Mapping[str, Any]:
    head, _, group = column.partition("/")
    for v in results.get("variants", []):
        if v.get("key") == row:
            try:
                return v["metrics"][head][group]
            except KeyError:
                raise KeyError(f"row {row!r} has no cell {column!r}") from None
    keys = [v.get("key") for v in results.get("variants", [])]
    raise KeyError(f"no row {row!r} in the results (rows: {keys})")


def project_mde(cell: Mapping[str, Any], n_users: int, n_seeds: int) -> float:
    """The ``mde`` (a relative lift, 0.047 = 4.7%) of a run with ``n_users`` evaluation
    users and ``n_seeds`` seeds, projected from a pilot ``cell`` of ``results.json``
    (fields ``se_users``, ``seed_sd``, ``n_users``); NaN when the pilot lacks them."""
    se_users, n0 = cell.get("se_users"), cell.get("n_users")
    seed_sd = cell.get("seed_sd")
    if se_users is None or not n0 or n_users < 1 or n_seeds < 1:
        return float("nan")
    user_var = se_users**2 * n0 / n_users
    seed_var = (seed_sd or 0.0) ** 2 / n_seeds
    var = user_var + seed_var
    df = math.inf
    if n_seeds > 1 and seed_var > 0:  # the runner's Welch-Satterthwaite degrees of freedom
        df = var**2 / (user_var**2 / max(n_users - 1, 1) + seed_var**2 / (n_seeds - 1))
    elif seed_var > 0:  # one seed cannot measure its own spread: no finite interval
        return float("inf")
    return minimum_detectable_effect(math.sqrt(var), df=df)


def power_plan(
    results_path: str | Path,
    *,
    row: str = "transact",
    column: str = "repin/all",
    target: float | None = None,
    users: Sequence[int] = (),
    seeds: Sequence[int] = (1, 2, 3, 4, 5, 8),
) -> dict[str, Any]:
    """The projected ``mde`` of ``row``'s ``column`` over a grid of users x seeds.

    ``target`` defaults to half the paper's lift of that cell (the issue's rule); ``users``
    defaults to the pilot's number. Returns ``{pilot, target, grid: [{n_users, n_seeds,
    mde, meets}], smallest}`` where ``smallest`` is the cheapest grid point that meets the
    target (fewest seeds, then fewest users), or ``None``.
    """
    results = json.loads(Path(results_path).read_text())
    cell = _cell(results, row, column)
    if target is None:
        paper = cell.get("paper")
        if paper is None:
            raise ValueError(f"{row} {column}: no paper value; pass a target")
        target = abs(float(paper)) / 2
    if cell.get("seed_sd") is None:
        raise ValueError(
            f"{results_path}: the pilot has one seed, so the spread between seeds is "
            "unknown; run the pilot with at least two (--seeds 0,1)"
        )
    user_grid = sorted(set(users) | {int(cell["n_users"])})
    grid = [
        {
            "n_users": n,
            "n_seeds": s,
            "mde": project_mde(cell, n, s),
        }
        for s in seeds
        for n in user_grid
    ]
    for g in grid:
        g["meets"] = bool(g["mde"] <= target)
    meeting = [g for g in grid if g["meets"]]
    smallest = min(meeting, key=lambda g: (g["n_seeds"], g["n_users"])) if meeting else None
    pilot = {
        k: cell.get(k)
        for k in ("lift", "ci95", "mde", "se", "se_users", "seed_sd", "n_users", "n_seeds")
    }
    return {
        "results": str(results_path),
        "row": row,
        "column": column,
        "budget": results.get("budget", {}),
        "pilot": pilot,
        "target": target,
        "grid": grid,
        "smallest": smallest,
    }


def plan_markdown(plan: Mapping[str, Any]) -> str:
    """The plan as a Markdown table (users down, seeds across; bold = meets the target)."""
    grid = plan["grid"]
    seeds = sorted({g["n_seeds"] for g in grid})
    users = sorted({g["n_users"] for g in grid})
    by = {(g["n_users"], g["n_seeds"]): g for g in grid}
    p = plan["pilot"]
    lines = [
        f"Pilot {plan['row']} {plan['column']}: lift {100 * (p['lift'] or 0):+.2f}%, "
        f"se {100 * (p['se'] or 0):.2f}% (users {100 * (p['se_users'] or 0):.2f}%, seed sd "
        f"{100 * (p['seed_sd'] or 0):.2f}%), {p['n_users']} users x {p['n_seeds']} seeds; "
        f"target mde <= {100 * plan['target']:.2f}%",
        "",
        "| users \\ seeds | " + " | ".join(str(s) for s in seeds) + " |",
        "|---|" + "---|" * len(seeds),
    ]
    for n in users:
        cells = []
        for s in seeds:
            g = by[(n, s)]
            text = f"{100 * g['mde']:.2f}%" if math.isfinite(g["mde"]) else "n/a (1 seed)"
            cells.append(f"**{text}**" if g["meets"] else text)
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    best = plan["smallest"]
    lines.append("")
    lines.append(
        f"Cheapest that meets the target: {best['n_seeds']} seeds x {best['n_users']} users "
        f"(mde {100 * best['mde']:.2f}%)."
        if best
        else "No grid point meets the target: the training budget (lift size and seed "
        "spread) or the world's number of users must change."
    )
    return "\n".join(lines) + "\n"
