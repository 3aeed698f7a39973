"""The power projection: a pilot's cell reproduces itself and scales as the formula says."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from transact.evaluation.significance import lift_interval
from transact.experiments.power import plan_markdown, power_plan, project_mde


def _pilot(rng: np.random.Generator, n_users: int, n_seeds: int, lift: float, seed_sd: float):
    base = rng.gamma(2.0, 0.15, size=n_users)
    per_seed = 1 + lift + rng.normal(0, seed_sd, size=(n_seeds, 1))
    model = base * per_seed * rng.lognormal(0, 0.3, size=(n_seeds, n_users))
    baseline = base * rng.lognormal(0, 0.3, size=(n_seeds, n_users))
    return model, baseline


def _cell(interval, n_users: int, n_seeds: int, paper: float) -> dict:
    return {
        "lift": interval.lift, "ci95": [interval.ci_low, interval.ci_high], "mde": interval.mde,
        "se": interval.se, "se_users": interval.se_users, "seed_sd": interval.seed_sd,
        "n_users": n_users, "n_seeds": n_seeds, "paper": paper,
    }  # fmt: skip


def test_projection_at_the_pilots_size_is_the_pilots_mde_and_scales_with_users_and_seeds():
    rng = np.random.default_rng(0)
    model, baseline = _pilot(rng, 800, 3, lift=0.06, seed_sd=0.02)
    iv = lift_interval(model, baseline)
    cell = _cell(iv, 800, 3, 0.094)
    assert project_mde(cell, 800, 3) == pytest.approx(iv.mde, rel=1e-9)
    # users only: four times the users halve the users' part
    no_seed = dict(cell, seed_sd=0.0)
    assert project_mde(no_seed, 3200, 3) == pytest.approx(
        project_mde(no_seed, 800, 3) / 2, rel=1e-3
    )
    # more seeds shrink the seeds' part, never below the users' floor
    assert project_mde(cell, 800, 8) < project_mde(cell, 800, 3)
    assert project_mde(cell, 800, 1000) > 2.8 * iv.se_users * 0.99
    assert math.isinf(project_mde(cell, 800, 1))  # one seed cannot measure its spread

    # what a bigger run measures (same generating process; medians over 20 pilots and 20
    # big runs, since 3 seeds measure seed_sd roughly): the projection is conservative,
    # since a seed's lift measured on more users also varies less (the seed-by-user part
    # of seed_sd shrinks), but not by more than half
    projected, measured = [], []
    for s in range(20):
        pilot = lift_interval(*_pilot(np.random.default_rng(100 + s), 800, 3, 0.06, 0.02))
        projected.append(project_mde(_cell(pilot, 800, 3, 0.094), 3200, 3))
        measured.append(lift_interval(*_pilot(np.random.default_rng(s), 3200, 3, 0.06, 0.02)).mde)
    assert np.median(measured) <= np.median(projected) <= 1.5 * np.median(measured)


def test_power_plan_picks_the_cheapest_point_that_meets_half_the_paper(tmp_path):
    rng = np.random.default_rng(1)
    model, baseline = _pilot(rng, 500, 2, lift=0.08, seed_sd=0.01)
    iv = lift_interval(model, baseline)
    results = {
        "budget": {"name": "pilot"},
        "variants": [{"key": "transact", "metrics": {"repin": {"all": _cell(iv, 500, 2, 0.094)}}}],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    plan = power_plan(path, users=(500, 2000, 8000))
    assert plan["target"] == pytest.approx(0.047)
    meets = [g for g in plan["grid"] if g["meets"]]
    assert all(g["mde"] <= 0.047 for g in meets)
    best = plan["smallest"]
    assert best is not None and best["mde"] <= 0.047
    assert not any(g["n_seeds"] < best["n_seeds"] for g in meets)
    text = plan_markdown(plan)
    assert "Cheapest that meets the target" in text and "n/a (1 seed)" in text
    with pytest.raises(KeyError, match="no row 'bst'"):
        power_plan(path, row="bst")
    one_seed = dict(results)
    one_seed["variants"][0]["metrics"]["repin"]["all"]["seed_sd"] = None
    path.write_text(json.dumps(one_seed))
    with pytest.raises(ValueError, match="at least two"):
        power_plan(path)
