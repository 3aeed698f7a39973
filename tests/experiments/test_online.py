"""The paper's online experiments (issue 16 part 3): verdict helpers, variants, smoke runs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from transact.cli import main
from transact.evaluation.verdict import VERDICTS
from transact.experiments.budget import ONLINE_BUDGETS
from transact.experiments.online import (
    BASELINE,
    MDE_Z,
    TRANSACT,
    TRANSACT_ACTION_MASK,
    TRANSACT_DROPOUT,
    TRANSACT_MASK,
    TRANSACT_NO_MASK,
    difference_of_lifts,
    judge,
    slope_of,
    variant_run_config,
)
from transact.online.stats import Lift, paired_lift

SMOKE = ONLINE_BUDGETS["smoke"]


def _lift(lift: float, se: float) -> Lift:
    z = 1.959964
    return Lift(lift, lift - z * se, lift + z * se, se, 0.5, 1.0, 1.0, 100, 100, "paired")


def test_judge_direction_and_not_hurt_rules():
    up = _lift(0.08, 0.02)  # [+4%, +12%]
    cell = judge("repin", up, 0.11)
    assert cell["verdict"] == "holds" and cell["size"] == "consistent"
    assert cell["mde"] == pytest.approx(MDE_Z * 0.02)
    assert judge("hide", up, -0.10)["verdict"] == "contradicted"
    assert judge("repin", _lift(0.01, 0.02), 0.11)["verdict"] == "unsettled"
    assert judge("repin", up, 0.5)["size"] == "smaller"
    assert judge("only a direction", up, 1.0, sized=False)["size"] is None
    # not hurt: the interval's low end above -5%
    assert judge("not hurt", _lift(-0.01, 0.01), None, rule="not_hurt")["verdict"] == "holds"
    assert judge("not hurt", _lift(-0.10, 0.02), None, rule="not_hurt")["verdict"] == "contradicted"
    assert judge("not hurt", _lift(-0.03, 0.03), None, rule="not_hurt")["verdict"] == "unsettled"
    with pytest.raises(ValueError, match="direction rule"):
        judge("no paper value", up, None)


def test_slope_recovers_a_known_decay_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    truth, covered = -0.005, 0
    for _ in range(200):
        days = [_lift(0.10 + truth * (k + 1) + rng.normal(0, 0.01), 0.01) for k in range(14)]
        s = slope_of(days)
        covered += s.ci_low <= truth <= s.ci_high
    assert 180 <= covered <= 198  # 95% of 200 = 190, sd ~3
    exact = slope_of([_lift(0.1 - 0.01 * k, 0.01) for k in range(5)])
    assert exact.lift == pytest.approx(-0.01) and exact.ci_high < 0
    assert math.isnan(slope_of([_lift(0.1, 0.01)] * 2).lift)  # too few days


def test_difference_of_lifts_adds_variances():
    d = difference_of_lifts(_lift(0.10, 0.03), _lift(0.02, 0.04))
    assert d.lift == pytest.approx(0.08) and d.se == pytest.approx(0.05)
    assert d.ci_low == pytest.approx(0.08 - 1.959964 * 0.05, rel=1e-4)


def test_paired_lift_of_a_copy_with_itself_is_zero():
    y = np.random.default_rng(1).poisson(3.0, 500).astype(float)
    x = paired_lift(y, y)
    assert x.lift == 0 and x.ci_low == 0 and x.ci_high == 0


def test_variants_are_the_shipped_configs_with_their_encoder_options():
    get = lambda v: variant_run_config(v, SMOKE).model  # noqa: E731
    assert get(BASELINE)["encoder"] == "none"
    assert "encoder_overrides" not in get(TRANSACT)  # the demo's: the shipped mask
    assert get(TRANSACT_NO_MASK)["encoder_overrides"] == {"time_window_max_ms": 0}
    assert get(TRANSACT_MASK)["encoder_overrides"] == {"time_window_max_ms": 24 * 3600 * 1000}
    assert get(TRANSACT_DROPOUT)["encoder_overrides"] == {"time_window_max_ms": 0, "dropout": 0.3}
    assert get(TRANSACT_ACTION_MASK)["encoder_overrides"] == {
        "time_window_max_ms": 0,
        "random_action_mask_rate": 0.2,
    }
    config = variant_run_config(TRANSACT, SMOKE)
    assert config.train.max_steps == 6 and config.data.seq_len == 20
    default = variant_run_config(TRANSACT, ONLINE_BUDGETS["default"])
    assert default.train.max_steps == 0 and default.data.seq_len == 100  # as the demo


def test_model_cache_drops_overrides_equal_to_the_encoders_defaults():
    """The cache key of a trained variant: the diversity experiment's ``transact_mask``
    (the 24 h window spelled out) is the shipped ``transact``; a real change is not."""
    from tests.models.model_testing import make_spec
    from transact.experiments.online import _comparable

    spec = make_spec(seq_len=SMOKE.seq_len or 100)
    key = lambda v, s=spec: _comparable(variant_run_config(v, SMOKE).to_dict(), s)  # noqa: E731
    assert key(TRANSACT_MASK) == key(TRANSACT)
    assert key(TRANSACT_MASK, None) != key(TRANSACT, None)  # without a spec: as written
    assert key(TRANSACT_NO_MASK) != key(TRANSACT)
    assert key(TRANSACT_DROPOUT)["model"]["encoder_overrides"] == {
        "time_window_max_ms": 0,
        "dropout": 0.3,
    }


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One output root for the four smoke runs: the world and models are made once."""
    return tmp_path_factory.mktemp("online-experiments")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("name", "plot", "n_cells"),
    [
        ("table5", "table5.png", 12),
        ("fig6", "fig6.png", 4),
        ("diversity", "diversity.png", 8),
        ("feedback-loop", "feedback_loop.png", 7),
    ],
)
def test_online_experiment_smoke_writes_verdicts_and_a_plot(smoke_root, name, plot, n_cells):
    """`transact experiment NAME --budget smoke`: results.json holds a verdict per claim
    with its interval and MDE, results.md prints them, the plot exists, and the models
    are trained once for all four experiments."""
    argv = ["experiment", name, "--budget", "smoke", "--out", str(smoke_root), "--no-progress"]
    assert main([*argv, "--threads", "1"]) == 0
    out = smoke_root / name
    results = json.loads((out / "results.json").read_text())
    cells = results["cells"]
    assert len(cells) == n_cells
    assert all(c["verdict"] in VERDICTS for c in cells)
    judged = [c for c in cells if "error" not in c]
    assert judged and all(c["ci_low"] is None or c["ci_low"] <= c["ci_high"] for c in judged)
    assert all(
        c["mde"] is None or c["mde"] == pytest.approx(MDE_Z * c["se"], rel=1e-6) for c in judged
    )
    text = (out / "results.md").read_text()
    assert all(f"**{c['verdict']}**" in text for c in judged)
    assert (out / plot).stat().st_size > 5_000
    assert (out / next(iter(results["runs"])) / "report.json").exists()
    trained = results["models"]
    # the diversity experiment spells the mask out (transact_no_mask / transact_mask)
    transact = "transact_mask" if name == "diversity" else "transact"
    assert set(trained) >= {"baseline", transact}
    if name != "table5":  # the first run trained them; the others reuse them, the
        # diversity experiment's spelled-out 24 h mask included (the shipped default)
        assert trained["baseline"]["reused"]
        assert trained[transact]["reused"]
    if name == "fig6":
        assert len(results["daily_gain"]["fixed"]) == SMOKE.fig6_days
        assert {r["arm"] for r in results["retrains"]} == {
            "baseline_retrained",
            "transact_retrained",
        }
    if name == "feedback-loop":
        # the bucket's model served to every user: the copy is what it must be, and the
        # last two cells read every user where the two before read the bucket's
        assert results["checks"] and all(results["checks"].values())
        assert cells[5]["n_t"] > 5 * cells[3]["n_t"] > 0
        assert len(results["daily_gain"]["difference_every_user"]) == results["budget"]["days"]
        assert "transact@buckets" in (out / "results.md").read_text()
    if name == "table5":
        designs = {c["design"] for c in cells}
        assert designs == {
            "paired",
            "buckets (CUPED), settling share",
            "buckets (CUPED), the paper's 1.5%",
        }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_online_experiment_with_several_seeds_pools_independent_replicates(smoke_root):
    """`--seeds 0,1`: each seed's run in its own directory (its own models for seed 1), and
    the experiment's results.json pools them claim by claim."""
    argv = ["experiment", "feedback-loop", "--budget", "smoke", "--out", str(smoke_root)]
    assert main([*argv, "--no-progress", "--threads", "1", "--seeds", "0,1"]) == 0
    out = smoke_root / "feedback-loop"
    runs = [json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in runs] == [0, 1]
    assert runs[1]["models"]["transact"]["reused"] is False  # seed 1 trains its own
    pooled = json.loads((out / "results.json").read_text())
    assert pooled["combined_from"] == ["seed-0", "seed-1"]
    assert len(pooled["cells"]) == len(runs[0]["cells"]) == 7
    for k, cell in enumerate(pooled["cells"]):
        per_run = [r["cells"][k] for r in runs]
        assert [x["lift"] for x in cell["per_run"]] == [c["lift"] for c in per_run]
        usable = [c for c in per_run if c["se"]]
        if len(usable) == 2 and cell["se"] is not None:  # never wider than the best run alone
            het = pooled["heterogeneity"][k]
            if het["tau2"] == 0:
                assert cell["se"] <= min(c["se"] for c in usable) + 1e-12
        assert cell["verdict"] in VERDICTS
    assert (out / "forest.png").stat().st_size > 5_000
    assert (out / "cumulative.png").stat().st_size > 5_000


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_feedback_loop_with_several_retrains_asks_whether_the_loop_compounds(smoke_root):
    """`--days 4` at smoke (retrains every day: three of them): two more cells, the
    difference after the last retrain and its growth from the first retrain's period,
    each with an interval and a verdict; the budget records the days."""
    argv = ["experiment", "feedback-loop", "--budget", "smoke", "--out", str(smoke_root)]
    assert main([*argv, "--no-progress", "--threads", "1", "--days", "4"]) == 0
    results = json.loads((smoke_root / "feedback-loop" / "results.json").read_text())
    assert results["budget"]["days"] == 4
    assert len({r["day"] for r in results["retrains"]}) == 3
    cells = {c["claim"]: c for c in results["cells"]}
    assert len(cells) == 9
    last = cells["full traffic gains more than the bucket (after the last retrain)"]
    grows = cells["the full-traffic advantage grows (after the last retrain minus after the first)"]
    for cell in (last, grows):
        assert cell["verdict"] in VERDICTS and cell["paper"] == 1.0
        assert cell["ci_low"] <= cell["lift"] <= cell["ci_high"]
        assert cell["n_t"] == cell["n_c"] > 0


def test_feedback_loop_runs_long_enough_to_retrain():
    """At ``quick`` (3 days, retrains every 3.5 days) the loop would never close: the
    experiment takes the budget's week instead, and refuses a budget with no retrain."""
    from dataclasses import replace

    from transact.experiments.budget import get_online_budget
    from transact.experiments.feedback_loop import feedback_days

    assert feedback_days(get_online_budget("quick")) == 7
    assert feedback_days(get_online_budget("default")) == 7
    assert feedback_days(get_online_budget("smoke")) == 2
    never = replace(get_online_budget("quick"), retrain="fixed")
    with pytest.raises(ValueError, match="needs at least one retrain"):
        feedback_days(never)


def test_no_progress_reaches_the_trainer_and_keeps_the_cache_key(monkeypatch, tmp_path):
    """`--no-progress` turns the training bar off too, without changing which trained
    run a later call with bars reuses."""
    import transact.pipeline.run as pipeline_run
    import transact.pipeline.windows as windows
    from transact.experiments.online import train_variant

    seen = []
    monkeypatch.setattr(windows, "resolve_window", lambda world, which: type(
        "W", (), {"start_ms": 0, "end_ms": 1})())  # fmt: skip
    examples = type("Examples", (), {"feature_spec": None, "__len__": lambda self: 0})()
    monkeypatch.setattr(pipeline_run, "build_examples", lambda *a, **k: examples)
    monkeypatch.setattr(
        pipeline_run, "train_run", lambda config, *a, **k: seen.append(config.train.progress)
    )
    world = tmp_path / "world"
    world.mkdir()
    quick = ONLINE_BUDGETS["quick"]  # the shipped config's training, bar included
    quiet, _ = train_variant(TRANSACT, quick, world, tmp_path / "w", progress=False)
    loud, _ = train_variant(TRANSACT, quick, world, tmp_path / "w", progress=True)
    assert seen == [False, True]
    assert quiet == loud  # the same cache entry
