"""``transact online run`` and ``transact bench online`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transact.cli import main

pytestmark = pytest.mark.slow


def test_online_run_writes_the_report(
    online_world: Path, online_models: dict[str, Path], tmp_path: Path, capsys
) -> None:
    out = tmp_path / "online"
    argv = [
        "online", "run", "--arm", f"control={online_models['baseline']}",
        "--arm", "oracle=policy:oracle", "--days", "1", "--pre-days", "2",
        "--share", "control=0.4", "--share", "oracle=0.3", "--out", str(out), "--threads", "1",
    ]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "online day 1/1 (2026-01-09)" in captured.err  # a progress bar per simulated day
    assert "oracle over control (buckets): repins" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["data_dir"] == str(online_world)  # from the model's metadata
    assert report["config"]["arms"][0]["share"] == 0.4
    users = report["bucket_users"]
    assert users["control"] + users["oracle"] + users["rest"] == 60 and users["rest"] > 5
    assert report["designs"]["buckets"]["arms"]["rest"]["users"] == users["rest"]
    assert report["designs"]["buckets"]["lifts"]["oracle"]["repins"]["all"]["method"] == "cuped"
    text = (out / "report.md").read_text()
    assert "## Table 5: oracle over control, user buckets (CUPED)" in text
    assert "| Homefeed Repin Volume |" in text
    for name in ("fig6.png", "diversity.png", "timings.json"):
        assert (out / name).stat().st_size > 0
    # an experiment never writes over another one
    assert main(argv) == 2
    assert "holds an experiment already" in capsys.readouterr().err


def test_bench_online_on_a_demo_layout(
    online_world: Path, online_models: dict[str, Path], tmp_path: Path
) -> None:
    demo = tmp_path / "demo"
    (demo / "runs").mkdir(parents=True)
    (demo / "world").symlink_to(online_world)
    for name in ("baseline", "transact"):
        (demo / "runs" / name).symlink_to(online_models[name])
    out = tmp_path / "bench.json"
    argv = ["bench", "online", "--demo", str(demo), "--days", "1", "--json", str(out),
            "--no-progress", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    batched, ref = result["batched"], result["reference_first_day"]
    assert batched["impressions"] > 0 and batched["impressions_per_s"] > 0
    assert batched["dead_letters"] == 0
    assert {"env", "assembly", "forward", "stream", "replay", "backfill"} <= set(batched["seconds"])
    assert ref["scored_requests"] == batched["scored_requests"]  # the same day, both paths
    assert result["scoring_speedup_vs_per_request"] > 0


def test_a_bucket_model_copy_of_a_policy_is_one_line_and_exit_2(
    online_world: Path, tmp_path: Path, capsys
) -> None:
    argv = [
        "online", "run", "--arm", "a=policy:random", "--arm", "b=policy:oracle",
        "--bucket-model-copy", "b", "--data", str(online_world), "--out", str(tmp_path / "o"),
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "arm 'b' is a world policy" in err[0] and "paired=True" in err[0]
    assert not (tmp_path / "o").exists()
