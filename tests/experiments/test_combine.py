"""Pooling independent runs of an online experiment (transact experiment combine)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from transact.cli import main
from transact.experiments.combine import (
    anytime_interval,
    anytime_mde,
    combine_files,
    combine_results,
    markdown,
    pool,
    runs_for_mde_anytime,
)
from transact.experiments.online import MDE_Z, Z_POWER, judge
from transact.online.stats import Lift


def _lift(lift: float, se: float, n: int = 300) -> Lift:
    return Lift(lift, lift - 1.959964 * se, lift + 1.959964 * se, se, math.nan, 1.0, 1.0, n,
                n, "paired")  # fmt: skip


def _run(lifts: list[tuple[float, float]], seed: int, experiment: str = "feedback_loop"):
    claims = ["repin gain", "full minus bucket"]
    cells = [
        judge(claims[0], _lift(*lifts[0]), 0.11, design="paired"),
        judge(claims[1], _lift(*lifts[1]), 1.0, sized=False, design="paired"),
    ]
    return {"experiment": experiment, "title": "T", "budget": {"name": "quick", "days": 7},
            "cells": cells, "seed": seed}  # fmt: skip


def test_pool_is_the_fixed_effect_mean_when_runs_agree():
    p = pool([0.10, 0.10], [0.05, 0.05])
    assert p["lift"] == pytest.approx(0.10)
    assert p["se"] == pytest.approx(0.05 / math.sqrt(2))
    assert p["tau2"] == 0 and p["q"] == pytest.approx(0) and p["q_p"] == pytest.approx(1)
    p = pool([0.0, 0.3], [0.01, 0.03])  # unequal weights: 9:1 toward the precise run
    assert p["q"] > 50 and p["q_p"] < 1e-6 and p["tau2"] > 0


def test_pool_random_effect_equals_the_excess_spread_with_equal_errors():
    # equal standard errors s: DerSimonian-Laird's tau^2 is max(0, var(lifts) - s^2)
    rng = np.random.default_rng(3)
    lifts = list(rng.normal(0.05, 0.08, size=6))
    s = 0.03
    p = pool(lifts, [s] * 6)
    assert p["tau2"] == pytest.approx(max(0.0, np.var(lifts, ddof=1) - s**2))
    assert p["lift"] == pytest.approx(np.mean(lifts))
    assert p["se"] == pytest.approx(math.sqrt((s**2 + p["tau2"]) / 6))
    with pytest.raises(ValueError, match="standard error 1"):
        pool([0.1, 0.2], [0.1, 0.0])


def test_two_unsettled_runs_pool_into_a_verdict():
    runs = [_run([(0.055, 0.03), (0.03, 0.02)], 0), _run([(0.05, 0.03), (0.035, 0.02)], 1)]
    assert {c["verdict"] for r in runs for c in r["cells"]} == {"unsettled"}
    combined = combine_results(runs, ["seed-0", "seed-1"])
    gain, more = combined["cells"]
    assert gain["lift"] == pytest.approx(0.0525)
    assert gain["se"] == pytest.approx(0.03 / math.sqrt(2))
    assert gain["mde"] == pytest.approx(MDE_Z * 0.03 / math.sqrt(2))
    assert gain["verdict"] == "holds" and gain["runs"] == 2 and gain["n_t"] == 600
    assert gain["size"] == "smaller"  # the interval [+1.1%, +9.4%] excludes the paper's 11%
    assert more["verdict"] == "holds" and more["rule"] == "direction"
    assert [r["lift"] for r in gain["per_run"]] == [0.055, 0.05]
    assert combined["seeds"] == [0, 1]
    assert combined["heterogeneity"][0]["tau2"] == 0


def test_combine_refuses_runs_that_are_not_replicates():
    a = _run([(0.06, 0.03), (0.02, 0.02)], 0)
    b = _run([(0.05, 0.03), (0.035, 0.02)], 1)
    with pytest.raises(ValueError, match="at least two runs"):
        combine_results([a], ["a"])
    with pytest.raises(ValueError, match="b: experiment 'table5'"):
        combine_results([a, _run([(0.05, 0.03), (0.035, 0.02)], 1, "table5")], ["a", "b"])
    with pytest.raises(ValueError, match=r"b: budget differs from the first run's in \['days'\]"):
        combine_results([a, {**b, "budget": {"name": "quick", "days": 3}}], ["a", "b"])
    with pytest.raises(ValueError, match="b: its claims come in another order"):
        combine_results([a, {**b, "cells": b["cells"][::-1]}], ["a", "b"])
    with pytest.raises(ValueError, match=r"b: the claims \['repin gain'\] come twice"):
        combine_results([a, {**b, "cells": [b["cells"][0], *b["cells"]]}], ["a", "b"])
    with pytest.raises(ValueError, match="b: seed 0 again"):
        combine_results([a, {**b, "seed": 0}], ["a", "b"])
    with pytest.raises(ValueError, match="b: the same cells as a"):
        combine_results([a, {**a, "seed": None}], ["a", "b"])
    with pytest.raises(ValueError, match="b: no verdict cells"):
        combine_results([a, {"experiment": "x"}], ["a", "b"])


def test_a_claim_a_later_version_added_pools_over_the_runs_that_hold_it():
    """Runs of an experiment before a claim was added keep counting for the claims they
    hold; the new claim pools over the runs that have it, and the old run's entry says
    why it is missing (nothing is dropped without a word)."""
    old = _run([(0.05, 0.03), (0.02, 0.02)], 0)
    old["cells"] = old["cells"][:1]
    new = [_run([(0.06, 0.03), (0.03, 0.02)], 1), _run([(0.04, 0.03), (0.05, 0.02)], 2)]
    combined = combine_results([old, *new], ["old", "new-1", "new-2"])
    gain, more = combined["cells"]
    assert gain["runs"] == 3 and gain["lift"] == pytest.approx(0.05)
    assert more["runs"] == 2 and more["lift"] == pytest.approx(0.04)
    assert more["se"] == pytest.approx(0.02 / math.sqrt(2))
    assert more["per_run"][0]["error"].startswith("not in this run")
    assert [s["runs"] for s in combined["cumulative"][1]["steps"]] == [1, 2]
    text = "\n".join(markdown(combined))
    assert "| full minus bucket | absent | +3.0% [-0.9%, +6.9%] | +5.0% [+1.1%, +8.9%] |" in text
    # a claim no run of the list holds in order: the same claims first, the new one after
    first_new = combine_results([new[0], old], ["new-1", "old"])
    assert [c["claim"] for c in first_new["cells"]] == ["repin gain", "full minus bucket"]


def test_combine_command_writes_the_pooled_results_and_a_forest_plot(tmp_path, capsys):
    paths = []
    for seed, lifts in ((0, [(0.055, 0.03), (0.03, 0.02)]), (1, [(0.05, 0.03), (0.035, 0.02)])):
        d = tmp_path / f"seed-{seed}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(_run(lifts, seed)))
        paths.append(str(d / "results.json"))
    out = tmp_path / "out"
    assert main(["experiment", "combine", "--results", *paths, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "repin gain: +5.2% [+1.1, +9.4] (2 runs): holds" in printed
    pooled = out / "feedback_loop-pooled"
    results = json.loads((pooled / "results.json").read_text())
    assert results["combined_from"] == ["seed-0", "seed-1"]
    text = (pooled / "results.md").read_text()
    assert "| repin gain | +11.0% | +5.2% [+1.1%, +9.4%]" in text
    assert (pooled / "forest.png").stat().st_size > 5_000
    assert (pooled / "cumulative.png").stat().st_size > 5_000
    # command-line mistakes: one line, exit 2
    assert main(["experiment", "combine", "--results", paths[0], "--out", str(out)]) == 2
    assert "two or more runs" in capsys.readouterr().err
    assert main(["experiment", "combine", "--results", paths[0], paths[0], "--out", str(out)]) == 2
    assert "pooled runs must be independent" in capsys.readouterr().err
    assert main(["experiment", "power", "--results", *paths, "--out", str(out)]) == 2
    assert "takes one --results" in capsys.readouterr().err


def test_combine_files_names_an_unreadable_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: cannot read it as JSON"):
        combine_files([bad, bad], tmp_path / "out")


def test_a_claim_one_run_could_not_measure_pools_the_others(tmp_path):
    # table5's tiny buckets write an error cell (no rule, no lift) for a claim they cannot
    # measure; the pool takes the runs that could, and says when none could
    a = _run([(0.055, 0.03), (0.03, 0.02)], 0)
    b = _run([(0.05, 0.03), (0.035, 0.02)], 1)
    c = _run([(0.01, 0.03), (0.01, 0.02)], 2)
    error = {"claim": "repin gain", "design": "paired", "error": "too few users",
             "verdict": "unsettled", "paper": 0.11}  # fmt: skip
    a["cells"][0] = error
    combined = combine_results([a, b, c], ["a", "b", "c"])
    gain = combined["cells"][0]
    assert gain["runs"] == 2 and gain["lift"] == pytest.approx(0.03)
    assert gain["per_run"][0]["error"] == "too few users"
    b["cells"][0] = c["cells"][0] = error
    combined = combine_results([a, b, c], ["a", "b", "c"])
    assert combined["cells"][0]["error"] == "no run could measure it"
    assert combined["cells"][0]["verdict"] == "unsettled"
    from transact.experiments.combine import markdown

    text = "\n".join(markdown(combined))
    assert "- repin gain (paired): no run could measure it" in text
    assert "| full minus bucket | > 0 |" in text
    from transact.experiments.combine import plot_forest

    assert plot_forest(combined, tmp_path / "forest.png").stat().st_size > 5_000


def test_runs_for_mde_plans_the_pool_that_reaches_the_target():
    # one run's lift: its users' noise (se 0.02) around a per-run effect that varies with
    # tau = 0.025 between runs; the plan's k runs, pooled as combine pools them, reach an
    # MDE near the target (DerSimonian-Laird's tau^2 is itself estimated from the k runs)
    from transact.experiments.combine import runs_for_mde

    se, tau, target = 0.02, 0.025, 0.02
    se_one = math.sqrt(se**2 + tau**2)
    k = runs_for_mde(se_one, target)
    assert k == math.ceil((MDE_Z * se_one / target) ** 2) == 21
    rng = np.random.default_rng(0)
    mdes = []
    for _ in range(400):
        lifts = 0.01 + rng.normal(0, tau, size=k) + rng.normal(0, se, size=k)
        mdes.append(MDE_Z * pool(list(lifts), [se] * k)["se"])
    assert np.median(mdes) == pytest.approx(target, rel=0.08)
    # half the runs miss it by about sqrt(2)
    assert runs_for_mde(se_one, target * math.sqrt(2)) == 11
    assert runs_for_mde(0.001, 0.5) == 1
    with pytest.raises(ValueError, match="target MDE 0"):
        runs_for_mde(se_one, 0)


def test_combine_plans_runs_per_claim_from_the_spread_between_runs(tmp_path, capsys):
    from transact.experiments.combine import markdown

    runs = [
        _run([(0.05, 0.03), (0.06, 0.02)], 0),
        _run([(0.04, 0.03), (-0.04, 0.02)], 1),
        _run([(0.06, 0.03), (0.01, 0.02)], 2),
    ]
    combined = combine_results(runs, ["a", "b", "c"])
    gain, diff = combined["heterogeneity"]
    # the repin gains agree (tau2 = 0): one run's se is theirs; the paper's +11% -> 5.5%
    assert gain["tau2"] == 0 and gain["se_one_run"] == pytest.approx(0.03)
    assert gain["target_mde"] == pytest.approx(0.055)
    assert gain["runs_for_target"] == math.ceil((MDE_Z * 0.03 / 0.055) ** 2) == 3
    # the differences disagree: their spread enters one run's se; no size, no target
    assert diff["tau2"] > 0
    assert diff["se_one_run"] == pytest.approx(math.sqrt(0.02**2 + diff["tau2"]))
    assert diff["target_mde"] is None and diff["runs_for_target"] is None
    text = "\n".join(markdown(combined))
    assert "| full minus bucket | " in text and "| n/a | n/a | n/a | n/a | n/a |" in text
    assert diff["runs_for_target_any_look"] is None
    assert gain["runs_for_target_any_look"] == runs_for_mde_anytime(0.03, 0.055, 0.055)
    # --target 2 (percent) plans every claim for 2%
    paths = []
    for r in runs:
        d = tmp_path / f"seed-{r['seed']}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(r))
        paths.append(str(d / "results.json"))
    out = tmp_path / "out"
    args = ["experiment", "combine", "--results", *paths, "--out", str(out), "--target", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    need = math.ceil((MDE_Z * diff["se_one_run"] / 0.02) ** 2)
    need_any = runs_for_mde_anytime(diff["se_one_run"], 0.02, 0.02)
    assert need_any > need
    line = next(x for x in printed.splitlines() if x.startswith("full minus bucket: "))
    assert line.endswith(
        f"an MDE of 2.0% needs about {need} runs ({need_any} read at any number of runs)"
    )
    saved = json.loads((out / "feedback_loop-pooled" / "results.json").read_text())
    assert saved["target_mde"] == pytest.approx(0.02)
    assert saved["heterogeneity"][1]["runs_for_target"] == need
    assert saved["heterogeneity"][1]["runs_for_target_any_look"] == need_any
    table = (out / "feedback_loop-pooled" / "results.md").read_text()
    row = next(x for x in table.splitlines() if x.startswith("| full minus bucket | ") and
               x.endswith(f"| {need} | {need - 3} | {need_any} | {need_any - 3} |"))  # fmt: skip
    assert f"| {100 * saved['cells'][1]['anytime']['mde']:.1f}% |" in row
    assert main([*args[:-1], "0"]) == 2
    assert "argument --target" in capsys.readouterr().err


def test_the_cumulative_pool_ends_at_the_pool_and_skips_runs_without_the_claim(tmp_path):
    from transact.experiments.combine import plot_cumulative

    runs = [
        _run([(0.05, 0.03), (0.06, 0.02)], 0),
        _run([(0.04, 0.03), (-0.04, 0.02)], 1),
        _run([(0.06, 0.03), (0.01, 0.02)], 2),
    ]
    runs[1]["cells"][0] = {"claim": "repin gain", "design": "paired", "error": "too few users",
                           "verdict": "unsettled", "paper": 0.11}  # fmt: skip
    combined = combine_results(runs, ["a", "b", "c"])
    gain, diff = combined["cumulative"]
    assert [s["runs"] for s in gain["steps"]] == [1, 2]  # run b could not measure it
    assert [s["runs"] for s in diff["steps"]] == [1, 2, 3]
    first = diff["steps"][0]
    assert first["lift"] == pytest.approx(0.06) and first["tau2"] == 0
    assert first["ci_high"] - first["ci_low"] == pytest.approx(2 * 1.959964 * 0.02)
    # the second step is the pool of a and b alone: they disagree, so tau2 > 0
    assert diff["steps"][1]["lift"] == pytest.approx(pool([0.06, -0.04], [0.02, 0.02])["lift"])
    assert diff["steps"][1]["tau2"] > 0
    for cum, cell in zip(combined["cumulative"], combined["cells"], strict=True):
        assert cum["steps"][-1]["lift"] == pytest.approx(cell["lift"])
        assert cum["steps"][-1]["ci_low"] == pytest.approx(cell["ci_low"])
        # the always-valid band ends at the cell's, and is wider than one look's at every step
        assert cum["steps"][-1]["anytime_low"] == pytest.approx(cell["anytime"]["ci_low"])
        assert all(x["anytime_low"] < x["ci_low"] for x in cum["steps"])
    assert plot_cumulative(combined, tmp_path / "c.png").stat().st_size > 5_000


def _crossings(means: np.ndarray, ses: np.ndarray, scale: float) -> tuple[float, float]:
    """Share of sequences (rows of cumulative pooled ``means``) whose normal 95% interval,
    and whose always-valid one, excludes 0 at some look."""
    normal = (np.abs(means) > 1.959964 * ses).any(axis=1).mean()
    anytime = np.mean(
        [
            any(not lo <= 0 <= hi for lo, hi in map(anytime_interval, row, ses, [scale] * len(ses)))
            for row in means
        ]
    )
    return float(normal), float(anytime)


def test_the_anytime_interval_holds_at_every_look_where_the_normal_one_does_not():
    """Runs of a null effect pooled after each one, thirty looks: the normal 95% interval
    excludes 0 at some look in about a quarter of the sequences (a pool extended while
    unsettled ends "holds" far more often than 5%); the always-valid one in under 5%."""
    rng = np.random.default_rng(5)
    n_seq, k, se_run = 2000, 30, 0.02
    looks = np.arange(1, k + 1)
    means = np.cumsum(rng.normal(0.0, se_run, size=(n_seq, k)), axis=1) / looks
    normal, anytime = _crossings(means, se_run / np.sqrt(looks), scale=0.02)
    assert 0.15 < normal < 0.35, normal
    assert anytime <= 0.05, anytime
    # and it still finds a real effect of its scale: 30 runs of +2% (se 2% each)
    means = np.cumsum(rng.normal(0.02, se_run, size=(500, k)), axis=1) / looks
    last = [anytime_interval(m, se_run / math.sqrt(k), 0.02)[0] > 0 for m in means[:, -1]]
    assert np.mean(last) > 0.8


def test_anytime_interval_formula_and_its_edges():
    se, s, alpha = 0.01, 0.02, 0.05
    v = se**2
    half = math.sqrt(2 * v * (1 + v / s**2) * math.log(math.sqrt(1 + s**2 / v) / alpha))
    low, high = anytime_interval(0.03, se, s)
    assert (low, high) == pytest.approx((0.03 - half, 0.03 + half))
    assert half > 1.959964 * se  # always wider than one look's interval
    assert all(math.isnan(x) for x in anytime_interval(0.03, 0.0, s))
    assert all(math.isnan(x) for x in anytime_interval(math.nan, se, s))
    with pytest.raises(ValueError, match="mixing scale"):
        anytime_interval(0.03, se, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        anytime_interval(0.03, se, s, alpha=1.0)


def test_each_pooled_cell_carries_its_verdict_at_any_number_of_runs(tmp_path):
    runs = [_run([(0.055, 0.03), (0.03, 0.02)], 0), _run([(0.05, 0.03), (0.035, 0.02)], 1)]
    combined = combine_results(runs, ["seed-0", "seed-1"], target=0.02)
    for cell in combined["cells"]:
        any_ = cell["anytime"]
        assert any_["scale"] == 0.02
        low, high = anytime_interval(cell["lift"], cell["se"], 0.02)
        assert (any_["ci_low"], any_["ci_high"]) == pytest.approx((low, high))
        assert any_["ci_low"] < cell["ci_low"] and any_["ci_high"] > cell["ci_high"]
    # two runs "hold" for one look, not for a pool read as runs arrive
    gain, more = combined["cells"]
    assert gain["verdict"] == more["verdict"] == "holds"
    assert more["anytime"]["verdict"] == "unsettled"
    # without a target the scale is one run's MDE (the directional claim has no paper size)
    default = combine_results(runs, ["seed-0", "seed-1"])
    het = default["heterogeneity"][1]
    assert default["cells"][1]["anytime"]["scale"] == pytest.approx(het["mde_one_run"])
    text = "\n".join(markdown(combined))
    assert "| full minus bucket | +3.2% [+0.5%, +6.0%] | holds |" in text


def test_the_any_look_plan_reaches_the_target_with_80_percent_power():
    """runs_for_mde_anytime's k runs of an effect the size of the target: the always-valid
    interval of their pool excludes 0 about 80% of the time (the power an MDE promises),
    and k is the fewest that do so; a pool read at any look needs more runs than one look."""
    from transact.experiments.combine import runs_for_mde

    se, tau, target = 0.02, 0.015, 0.02
    se_one = math.sqrt(se**2 + tau**2)
    k = runs_for_mde_anytime(se_one, target, target)
    assert anytime_mde(se_one / math.sqrt(k), target) <= target
    assert anytime_mde(se_one / math.sqrt(k - 1), target) > target
    assert k > runs_for_mde(se_one, target) == 13
    rng = np.random.default_rng(3)
    found = []
    for _ in range(500):
        lifts = target + rng.normal(0, tau, size=k) + rng.normal(0, se, size=k)
        p = pool(list(lifts), [se] * k)
        found.append(anytime_interval(p["lift"], p["se"], target)[0] > 0)
    assert 0.72 < np.mean(found) < 0.88, np.mean(found)
    # the MDE: the half-width plus the 80% quantile's se, wider than one look's
    half = anytime_interval(0.0, 0.01, 0.02)[1]
    assert anytime_mde(0.01, 0.02) == pytest.approx(half + 0.841621 * 0.01)
    assert pytest.approx(0.841621) == Z_POWER
    assert anytime_mde(0.01, 0.02) > MDE_Z * 0.01
    assert runs_for_mde_anytime(0.001, 0.5, 0.5) == 1
    with pytest.raises(ValueError, match="target MDE"):
        runs_for_mde_anytime(se_one, 0.0, target)
    with pytest.raises(ValueError, match="standard error"):
        anytime_mde(0.0, 0.02)
