import json

import pytest

from transact.cli import build_parser, main
from transact.experiments.cli import NAMES


def test_help_teaches_every_experiment(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["experiment", "--help"])
    text = capsys.readouterr().out
    for name in NAMES:
        assert name in text
    assert "examples:" in text and "--budget" in text


def test_bad_seeds_name_the_flag(tmp_path, capsys):
    assert main(["experiment", "table1", "--seeds", "a,b", "--out", str(tmp_path)]) == 2
    assert "argument --seeds: 'a,b' is not a comma-separated list" in capsys.readouterr().err


def test_retrain_steps_override_the_online_budget_only(tmp_path, capsys, monkeypatch):
    import transact.experiments.online as online

    seen = {}
    monkeypatch.setattr(
        online, "run_online_experiment", lambda name, **kw: seen.update(kw, name=name)
    )
    out = str(tmp_path)
    assert (
        main(["experiment", "fig6", "--budget", "smoke", "--retrain-steps", "0", "--out", out]) == 0
    )
    assert seen["name"] == "fig6" and seen["budget"].retrain_steps == 0
    assert seen["budget"].fig6_days == 3  # the rest of the smoke budget unchanged
    assert main(["experiment", "table1", "--retrain-steps", "5", "--out", out]) == 2
    assert "--retrain-steps: only for the online experiments" in capsys.readouterr().err
    assert main(["experiment", "fig6", "--retrain-steps", "-1", "--out", out]) == 2


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~1 min on 2 quiet cores
def test_experiment_table1_smoke_writes_a_verdict_for_every_cell(tmp_path):
    """`transact experiment table1 --budget smoke` (issue 15): every cell of Table 1 gets
    expected HIT@3, lift, 95% interval, MDE and verdict in results.json, the verdict is
    beside the paper's number in results.md, and the lifts and calibration are plotted."""
    from transact.evaluation.verdict import SIZES, VERDICTS

    out = tmp_path / "exp"
    argv = ["experiment", "table1", "--budget", "smoke", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    results = json.loads((out / "table1" / "results.json").read_text())
    base = results["variants"][0]
    assert base["is_baseline"]
    judged = 0
    for v in results["variants"][1:]:
        for column, paper in v["paper"].items():
            head, _, group = column.partition("/")
            cell = v["metrics"][head][group]
            # the simulated world has ground truth: the lift is of expected HIT@3
            assert cell["metric"] == "expected_hit_at_3"
            e, e_base = cell["expected_hit_at_3"], base["metrics"][head][group]["expected_hit_at_3"]
            assert e > 0 and e_base > 0
            assert cell["lift"] == pytest.approx(e / e_base - 1)
            lo, hi = cell["ci95"]
            assert lo < cell["lift"] < hi
            assert cell["mde"] == pytest.approx(2.8016 * cell["se"], rel=1e-3)
            assert cell["verdict"] in VERDICTS and cell["size"] in SIZES
            assert cell["paper"] == pytest.approx(paper / 100)
            if cell["verdict"] == "holds" and cell["rule"] == "direction":
                assert (lo > 0) if paper > 0 else (hi < 0)
            assert {"hit_at_3", "sampled_lift", "sampled_ci95", "p_value", "n_users"} <= set(cell)
            judged += 1
    assert judged == 16  # 4 rows x 4 columns with a paper number
    # BST (positive actions)'s hide cells are starred in the paper: the equivalence rule
    bst_pos = next(v for v in results["variants"] if v["key"] == "bst_positive")
    assert bst_pos["metrics"]["hide"]["all"]["rule"] == "equivalence"
    assert bst_pos["metrics"]["repin"]["all"]["rule"] == "direction"
    # the calibration of every trained row, raw vs calibrated, on the evaluation week
    for v in results["variants"]:
        cal = v["calibration"][0]
        assert 0 < cal["parameters"]["keep_rate"] < 1
        for head in ("click", "repin", "hide"):
            assert cal["eval"][head]["calibrated"]["log_loss"] > 0
    md = (out / "table1" / "results.md").read_text()
    assert "| paper repin/all | ours repin/all | verdict repin/all |" in md
    assert "| +9.40% |" in md and any(w in md for w in VERDICTS)
    for png in ("lifts.png", "calibration.png"):
        assert (out / "table1" / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~2-3 min on 2 quiet cores; generous for a shared machine
def test_experiment_all_smoke_runs_end_to_end(tmp_path):
    """`transact experiment all --budget smoke`: every experiment writes its outputs."""
    out = tmp_path / "exp"
    assert main(["experiment", "all", "--budget", "smoke", "--out", str(out), "--no-progress"]) == 0
    for name in (
        "table1",
        "table2",
        "table3",
        "fig4",
        "fig5",
        "table4",
        "table8",
        "table9",
        "mask",
    ):
        results = json.loads((out / name / "results.json").read_text())
        assert (out / name / "results.md").read_text().startswith(f"# {name}")
        if name == "table9":
            assert (
                results["ours"]["transact"]["flops_per_example"]
                > results["ours"]["baseline"]["flops_per_example"]
            )
            continue
        trained = [v for v in results["variants"] if v.get("metrics")]
        assert len(trained) >= 2, name  # the baseline and at least one variant ran
        for v in trained:
            for head in ("click", "repin", "hide"):
                for group in ("all", "non_core"):
                    cell = v["metrics"][head][group]
                    assert cell["hit_at_3"] is not None and cell["hit_at_3"] >= 0
    assert (out / "fig4" / "fig4.png").exists() and (out / "fig5" / "fig5.png").exists()
    for name in ("table1", "table2", "table3", "fig4", "fig5", "table4", "table8", "mask"):
        assert (out / name / "lifts.png").exists(), name
    assert (out / "mask" / "mask.png").read_bytes()[:4] == b"\x89PNG"
    mask = json.loads((out / "mask" / "results.json").read_text())
    assert sorted(v["key"] for v in mask["variants"]) == [
        "baseline", "transact", "transact_window_0h", "transact_window_1h", "transact_window_6h",
    ]  # fmt: skip
    table8 = json.loads((out / "table8" / "results.json").read_text())
    assert table8["interval"]["null_claim"]  # "no real effect": the equivalence rule
    assert all(
        v["metrics"][c.split("/")[0]]["all"]["rule"] == "equivalence"
        for v in table8["variants"]
        if v.get("paper") and v.get("metrics")
        for c in v["paper"]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["experiments"]) == {
        "table1",
        "table2",
        "table3",
        "fig4",
        "fig5",
        "table4",
        "table8",
        "table9",
        "mask",
    }
