import json

import pytest

from transact.cli import build_parser, main


def test_help_teaches_every_experiment(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["experiment", "--help"])
    text = capsys.readouterr().out
    for name in ("table1", "table2", "table3", "fig4", "fig5", "table4", "table8", "table9", "all"):
        assert name in text
    assert "examples:" in text and "--budget" in text


def test_bad_seeds_name_the_flag(tmp_path, capsys):
    assert main(["experiment", "table1", "--seeds", "a,b", "--out", str(tmp_path)]) == 2
    assert "argument --seeds: 'a,b' is not a comma-separated list" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~2-3 min on 2 quiet cores; generous for a shared machine
def test_experiment_all_smoke_runs_end_to_end(tmp_path):
    """`transact experiment all --budget smoke`: every experiment writes its outputs."""
    out = tmp_path / "exp"
    assert main(["experiment", "all", "--budget", "smoke", "--out", str(out), "--no-progress"]) == 0
    for name in ("table1", "table2", "table3", "fig4", "fig5", "table4", "table8", "table9"):
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
    }
