"""The offline world's end state is its exact replay, checked against its manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from transact.data.world import ProductionRanker, run_day
from transact.online.replay import replay_offline


def test_the_replay_reproduces_the_world_and_measures_its_last_days(online_world: Path) -> None:
    end = replay_offline(online_world, pre_days=2, progress=False)
    assert end.n_days == 4 and end.env.day == 3
    repins = end.pre.get("repins").values  # [2 days, 60 users]
    assert repins.shape == (2, 60) and repins.sum() > 0
    # the env goes on from there like the world would: day 4 with production
    day4 = run_day(end.env.fork(), 4, ProductionRanker())
    assert day4.n_impressions > 0
    assert end.core_at_end.dtype == bool and 0 < end.core_at_end.mean() < 1


def test_a_world_the_replay_does_not_reproduce_is_refused(
    online_world: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "world"
    shutil.copytree(online_world, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["extra"]["counts"]["impressions"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not reproduce its logs.*impressions"):
        replay_offline(copy, pre_days=1, progress=False)
    manifest["extra"]["generator"] = "transact.data.adapters"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not a simulated world"):
        replay_offline(copy, pre_days=1, progress=False)
    with pytest.raises(ValueError, match="pre_days=9"):
        replay_offline(online_world, pre_days=9, progress=False)


def test_forks_of_the_end_state_are_independent(online_world: Path) -> None:
    end = replay_offline(online_world, pre_days=1, progress=False)
    a, b = end.env.fork(stream=5), end.env.fork(stream=5)
    run_day(a, 4, ProductionRanker())
    assert not np.array_equal(a.state.satisfaction, end.env.state.satisfaction)
    assert np.array_equal(b.state.satisfaction, end.env.state.satisfaction)
