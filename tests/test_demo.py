"""Smoke tests of the whole pipeline on the seconds-sized "tiny" world."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from transact.cli import main
from transact.demo import (
    DEMO_RUNS,
    STAGES,
    DemoConfig,
    Stage,
    add_stage,
    demo_run_config,
    demo_run_configs,
    run_demo,
)
from transact.pipeline.run_config import load_run_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny_config(out: Path) -> DemoConfig:
    """The demo on the tiny world, 3 optimizer steps per model, 2 online days."""
    return DemoConfig(
        out_dir=out, world_preset="tiny", train_preset="tiny", max_steps=3, progress=False,
        online_days=2,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    ctx = run_demo(tiny_config(out))
    return out, ctx


@pytest.mark.slow
def test_demo_runs_end_to_end_and_writes_report_and_metrics(tiny_demo):
    out, ctx = tiny_demo
    metrics = json.loads((out / "metrics.json").read_text())
    for model in ("baseline", "transact", "oracle"):
        for head in ("click", "repin", "hide"):
            for segment in ("all", "non_core"):
                row = metrics["models"][model][head][segment]
                assert {"hit_at_3", "lift_vs_baseline", "p_value"} <= set(row)
    # hit_at_3 recomputed from the saved predictions agrees with metrics.json
    from transact.evaluation.hit import hit_at_k, ranking_score, utility_vector
    from transact.evaluation.predictions import Predictions

    p = Predictions.load(out / "runs" / "transact" / "eval" / "predictions.npz")
    s = ranking_score(p.scores, utility_vector(p.heads, metrics["utility"]))
    hits = hit_at_k(p.user_ids, p.request_ids, s, p.labels, k=3)
    assert metrics["models"]["transact"]["repin"]["all"]["hit_at_3"] == pytest.approx(hits[1])
    assert metrics["demo"]["n_eval_examples"] == len(p)
    assert set(metrics["demo"]["timings_s"]) == {s.name for s in STAGES if s.name != "report"}
    report = (out / "report.md").read_text()
    assert "Relative lift of HIT@3" in report and "oracle" in report
    # oracle HIT@3 is the ceiling: no model beats it on repin
    oracle = metrics["models"]["oracle"]["repin"]["all"]["hit_at_3"]
    assert oracle >= metrics["models"]["baseline"]["repin"]["all"]["hit_at_3"]


@pytest.mark.slow
def test_demo_ends_with_an_online_ab_test_and_the_report_plots(tiny_demo):
    """The online stage (issue 16): the report gains the online table in Table 5's layout,
    metrics.json its lifts, equal to the simulator's own report.json; lifts.png and
    reliability.png are written."""
    out, ctx = tiny_demo
    metrics = json.loads((out / "metrics.json").read_text())
    online = metrics["online"]
    assert online["days"] == 2 and online["treatment"] == "transact"
    claims = {(c["metric"], c["segment"]): c for c in online["claims"]}
    assert claims[("repins", "all")]["lift"] == pytest.approx(
        online["paired"]["repins/all"]["lift"]
    )
    assert metrics["demo"]["checks"]["bar"] == "online"
    assert metrics["demo"]["checks"]["online"]["verdict"] == claims[("repins", "all")]["verdict"]
    sim = json.loads((out / "online" / "report.json").read_text())
    for design in ("buckets", "paired"):
        for cell in ("repins/all", "hides/non_core", "time_spent_min/all"):
            metric, segment = cell.split("/")
            ours = online[design][cell]
            theirs = sim["designs"][design]["lifts"]["transact"][metric][segment]
            assert ours["lift"] == pytest.approx(theirs["lift"])
            assert ours["ci_low"] <= ours["lift"] <= ours["ci_high"]
    report = (out / "report.md").read_text()
    assert "## Online A/B test: transact over baseline, 2 simulated days" in report
    assert "| repin volume |" in report and "| time spent |" in report
    assert ctx.timings_s["online"] > 0
    for png in ("lifts.png", "reliability.png"):
        assert (out / png).stat().st_size > 5_000


@pytest.mark.slow
def test_second_demo_run_reuses_world_and_models(tiny_demo, capsys):
    out, _ = tiny_demo
    before = (out / "runs" / "transact" / "model.pt").stat().st_mtime_ns
    ctx = run_demo(tiny_config(out))
    log = capsys.readouterr().out
    assert "already holds this world; skipping generation" in log
    assert ctx.state["train_results"]["transact"].resumed_from_step == 3  # nothing retrained
    assert (out / "runs" / "transact" / "model.pt").stat().st_mtime_ns >= before


@pytest.mark.slow
def test_train_and_evaluate_commands_on_the_tiny_world(tiny_demo, tmp_path):
    out, _ = tiny_demo
    world = out / "world"
    run = tmp_path / "t"
    rc = main(
        ["train", "--config", "configs/transact_small.toml", "--data", str(world), "--out",
         str(run), "--set", "train.max_steps=2", "--set", "train.batch_size=32",
         "--set", "train.progress=false", "--start", "2026-01-07", "--end", "2026-01-08"]
    )  # fmt: skip
    assert rc == 0
    saved = json.loads((run / "train_summary.json").read_text())
    assert saved["steps"] == 2
    from transact.models.artifact import read_model

    cal = read_model(run)._parse("calibration", dict)  # written after training
    assert cal["keep_rate"] < 1.0 and cal["fitted_on"]["window_ms"][1] <= 1767830400000
    rc = main(["evaluate", "--model", str(run), "--data", str(world), "--utility", "repin=1"])
    assert rc == 0
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["utility"] == {"repin": 1.0}
    assert 0 <= m["heads"]["repin"]["all"]["hit_at_3"] <= 3
    assert m["heads"]["repin"]["all"]["oracle_hit_at_3"] >= 0
    assert "calibrated" in m["calibration"]  # evaluate reads the model's calibration


def test_add_stage_inserts_after_a_named_stage():
    names = [s.name for s in STAGES]
    stage = Stage("serving", "x", lambda ctx: None)
    add_stage(stage, after="transact")
    try:
        new = [s.name for s in STAGES]
        assert new.index("serving") == new.index("transact") + 1
        with pytest.raises(ValueError, match="exists already"):
            add_stage(stage, after="world")
        with pytest.raises(KeyError, match="no demo stage 'nope'"):
            add_stage(Stage("y", "y", lambda ctx: None), after="nope")
    finally:
        STAGES.remove(stage)
    assert [s.name for s in STAGES] == names
    assert np.all([callable(s.run) for s in STAGES])


class _CrashAfter:
    """Wraps an ExampleSet; raises after ``n`` batches (a crash in the middle of an epoch)."""

    def __init__(self, inner, n):
        self.inner, self.n, self.feature_spec = inner, n, inner.feature_spec

    def __len__(self):
        return len(self.inner)

    def batches(self, batch_size, *, shuffle, seed=0, start=0):
        for i, b in enumerate(
            self.inner.batches(batch_size, shuffle=shuffle, seed=seed, start=start)
        ):
            if i == self.n:
                raise KeyboardInterrupt("crash")
            yield b


@pytest.mark.slow
def test_resume_on_real_examples_and_ranker_matches_straight_run(tiny_demo, tmp_path):
    import torch

    from transact.models.artifact import read_model
    from transact.pipeline.run import train_run
    from transact.pipeline.run_config import RunConfig
    from transact.training.config import TrainConfig

    _, ctx = tiny_demo
    train_set = ctx.state["train_set"]
    config = RunConfig(
        name="b",
        model={"preset": "small", "encoder": "avg_pool"},
        train=TrainConfig.preset("tiny", max_steps=6, checkpoint_every_steps=2),
    )
    spec = train_set.feature_spec
    train_run(config, train_set, spec, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        train_run(config, _CrashAfter(train_set, 5), spec, tmp_path / "resumed")
    res = train_run(config, train_set, spec, tmp_path / "resumed", resume=True)
    assert res.resumed_from_step == 4
    a = read_model(tmp_path / "straight").weights
    b = read_model(tmp_path / "resumed").weights
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_demo_trains_the_run_configs_of_configs_dir_as_written():
    """Without flags the demo's models are exactly configs/baseline_small.toml and
    configs/transact_small.toml (no copy of them in Python)."""
    for name, file in DEMO_RUNS.items():
        assert demo_run_config(DemoConfig(), name) == load_run_config(CONFIGS / file)
    transact = demo_run_config(DemoConfig(), "transact")
    assert transact.model["encoder"] == "transact"
    assert "encoder_overrides" not in transact.model  # the paper's 24 h mask (3.3.4)
    assert demo_run_config(DemoConfig(), "baseline").model["encoder"] == "none"


def test_demo_follows_an_edit_of_the_toml_and_overrides_only_its_flags(tmp_path):
    edited = tmp_path / "configs"
    shutil.copytree(CONFIGS, edited, ignore=shutil.ignore_patterns("world"))
    text = (edited / "transact_small.toml").read_text()
    text = text.replace(
        'encoder = "transact"',
        'encoder = "transact"\nmlp_dims = [32]\nencoder_overrides = { time_window_max_ms = 0 }',
    )
    (edited / "transact_small.toml").write_text(text)
    config = DemoConfig(configs_dir=edited, train_preset="tiny", seed=7, max_steps=3)
    transact = demo_run_config(config, "transact")
    assert transact.model["encoder_overrides"] == {"time_window_max_ms": 0}
    assert transact.model["mlp_dims"] == [32]
    assert transact.train.batch_size == 64 and transact.train.max_steps == 3  # tiny preset
    assert transact.train.seed == 7 and transact.data.seed == 7
    assert transact.data.negative_ratio == 1.0  # the file's, untouched
    # both models must build the same examples
    base = (edited / "baseline_small.toml").read_text()
    (edited / "baseline_small.toml").write_text(
        base.replace("negative_ratio = 1.0", "negative_ratio = 2.0")
    )
    with pytest.raises(ValueError, match=r"differ in \[data\]"):
        demo_run_configs(config)
