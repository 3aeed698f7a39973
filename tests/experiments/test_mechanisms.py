"""What each world mechanism contributes (issue 16 part 4): rows, statistics, verdicts, a
smoke run of two worlds end to end."""

import json
import math

import numpy as np
import pytest

from transact.cli import main
from transact.data.world import MECHANISMS
from transact.evaluation.verdict import VERDICTS
from transact.experiments.cli import MECHANISM_HELP
from transact.experiments.mechanisms import (
    CHOICES,
    METRICS,
    contribution,
    leaf_persistence,
    lift_of,
    parse_rows,
)
from transact.online.stats import Lift


def _lift(lift: float, se: float) -> dict:
    z = 1.959964
    return Lift(lift, lift - z * se, lift + z * se, se, 0.5, 1.0, 1.0, 100, 100, "paired").to_dict()


def test_rows_are_the_reference_then_the_chosen_mechanisms_in_a_fixed_order():
    assert parse_rows(None) == ("reference", *MECHANISMS, "all")
    assert parse_rows(["all", "satiation", "drift"]) == ("reference", "drift", "satiation", "all")
    with pytest.raises(ValueError, match=r"--mechanisms: unknown novelty; known: current_interest"):
        parse_rows(["satiation", "novelty"])


def test_help_lists_every_mechanism():
    listed = {line.split()[0] for line in MECHANISM_HELP.splitlines()[2:] if line.strip()}
    assert listed == set(CHOICES)


def test_leaf_persistence_counts_leaves_engaged_the_day_before_too():
    # user 0: day 0 leaves {1, 2}, day 1 leaves {2, 3} -> of day 1's two, one was there
    # user 1: day 0 leaf {5}, day 2 leaf {5} -> no engagement on day 1: not counted
    users = np.array([0, 0, 0, 0, 0, 1, 1])
    leaves = np.array([1, 2, 2, 2, 3, 5, 5])
    days = np.array([0, 0, 1, 1, 1, 0, 2])
    assert leaf_persistence(users, leaves, days) == pytest.approx(0.5)
    assert leaf_persistence(users[5:], leaves[5:], days[5:]) is None
    assert leaf_persistence(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)) is None


def test_contribution_is_the_difference_of_independent_lifts_with_its_verdict():
    reference = {m: _lift(0.10, 0.01) for _, m in METRICS}
    without = {m: _lift(x, 0.01) for (_, m), x in zip(METRICS, (0.0, 0.2, 0.095, 0.1), strict=True)}
    cells = {c["metric"]: c for c in contribution(reference, without, "satiation")}
    assert cells["repins"]["lift"] == pytest.approx(0.10)
    assert cells["repins"]["se"] == pytest.approx(math.sqrt(2) * 0.01)
    assert [cells[m]["verdict"] for _, m in METRICS] == [
        "holds",  # on: +10%, off: 0%: the mechanism raises the lift
        "contradicted",  # on: +10%, off: +20%: it lowers it
        "unsettled",
        "unsettled",
    ]
    assert lift_of(reference["repins"]).lift == pytest.approx(0.10)
    assert math.isnan(lift_of({**reference["repins"], "se": None}).se)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mechanisms_smoke_two_worlds_end_to_end(tmp_path, capsys):
    """`transact experiment mechanisms --budget smoke --mechanisms fresh_items`: the
    reference world and one without fresh items, each with finite lifts; the switch shows
    in the world (no item created during it); a rerun reuses both rows; a bad name is one
    line and exit 2."""
    argv = ["experiment", "mechanisms", "--budget", "smoke", "--out", str(tmp_path)]
    argv += ["--no-progress", "--threads", "1"]
    assert main([*argv, "--mechanisms", "fresh_items"]) == 0
    out = tmp_path / "mechanisms"
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert list(rows) == ["reference", "fresh_items"]
    for row in rows.values():
        assert not row["reused"] and row["row_wall_s"] >= row["wall_s"] > 0
        for _, metric in METRICS:
            lift = row["lifts"][metric]
            assert all(math.isfinite(lift[k]) for k in ("lift", "ci_low", "ci_high", "se"))
            assert lift["ci_low"] <= lift["lift"] <= lift["ci_high"]
            assert lift["n_t"] == lift["n_c"] > 0
        stats = row["statistics"]
        assert stats["impressions"] > 0 and stats["online_impressions"] > 0
        assert 0 < stats["leaf_persistence"] < 1 and 0 < stats["interests_kept"] < 1
    ref, off = rows["reference"]["statistics"], rows["fresh_items"]["statistics"]
    assert ref["fresh_items"] > 0 and off["fresh_items"] == 0
    assert rows["reference"]["world"] != rows["fresh_items"]["world"]
    cells = results["contributions"]["fresh_items"]
    assert [c["metric"] for c in cells] == [m for _, m in METRICS]
    for c, (_, metric) in zip(cells, METRICS, strict=True):
        assert c["verdict"] in VERDICTS
        want = (
            rows["reference"]["lifts"][metric]["lift"]
            - rows["fresh_items"]["lifts"][metric]["lift"]
        )
        assert c["lift"] == pytest.approx(want)
    text = (out / "results.md").read_text()
    assert "| fresh_items | " in text and "| reference | " in text
    assert (out / "mechanisms.png").stat().st_size > 5_000

    assert main([*argv, "--mechanisms", "fresh_items"]) == 0  # resumes: nothing is redone
    again = json.loads((out / "results.json").read_text())["rows"]
    assert again["reference"]["reused"] and again["fresh_items"]["reused"]
    assert again["fresh_items"]["lifts"] == rows["fresh_items"]["lifts"]

    capsys.readouterr()
    assert main([*argv, "--mechanisms", "fresh_items,novelty"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown novelty" in err
