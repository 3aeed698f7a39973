"""The mask experiment: its rows, its reading of results, and the persistence worlds."""

from __future__ import annotations

import pytest

from transact.data.schema import MS_PER_HOUR
from transact.experiments.budget import BUDGETS
from transact.experiments.mask import (
    WINDOW_HOURS,
    build,
    persistence_world,
    plot_persistence,
    points,
    window_hours,
)


def _results(lifts: dict[int, float]) -> dict:
    spec = build(BUDGETS["smoke"])
    rows = [{"key": "baseline", "is_baseline": True, "metrics": {}, "config": {}}]
    for v in spec.variants:
        h = int(dict(v.encoder_options).get("time_window_max_ms", 24 * MS_PER_HOUR) // MS_PER_HOUR)
        cell = {"lift": lifts[h], "ci95": [lifts[h] - 0.02, lifts[h] + 0.02]}
        rows.append(
            {
                "key": v.key,
                "config": {"encoder_options": dict(v.encoder_options)},
                "metrics": {"repin": {"all": cell}},
            }
        )
    return {"variants": rows, "dataset": {"name": "w"}, "budget": {"name": "smoke"}}


def test_rows_are_the_window_grid_with_the_papers_24h_as_plain_transact():
    spec = build(BUDGETS["smoke"])
    assert [v.key for v in spec.variants] == [
        "transact_window_0h", "transact_window_1h", "transact_window_6h", "transact",
    ]  # fmt: skip
    transact = spec.variants[-1]
    assert transact.encoder_options == ()  # the paper's default: shared with Table 1
    res = _results({0: 0.10, 1: 0.06, 6: 0.03, 24: 0.01})
    assert [window_hours(r) for r in res["variants"][1:]] == [float(h) for h in WINDOW_HOURS]
    pts = points(res, "repin")
    assert [p[0] for p in pts] == [0.0, 1.0, 6.0, 24.0]
    assert pts[0][1] == pytest.approx(10.0) and pts[0][2] == pytest.approx(8.0)


def test_persistence_world_changes_only_the_half_life_and_is_reused(tmp_path):
    from transact.data.io import load_manifest
    from transact.data.world import PRESETS

    d = persistence_world(tmp_path / "w6", 6, preset="tiny")
    cfg = load_manifest(d).extra["config"]
    assert cfg["current_interest_half_life_hours"] == 6.0
    base = PRESETS["tiny"]
    assert (
        cfg["n_users"] == base.n_users and cfg["drift_half_life_days"] == base.drift_half_life_days
    )
    mtime = (d / "manifest.json").stat().st_mtime_ns
    assert persistence_world(d, 6, preset="tiny") == d  # reused, not regenerated
    assert (d / "manifest.json").stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="half-life 6.0 h, not 12 h"):
        persistence_world(d, 12, preset="tiny")
    plot_persistence(
        {
            6.0: _results({0: 0.1, 1: 0.05, 6: 0.0, 24: -0.01}),
            36.0: _results({0: 0.1, 1: 0.08, 6: 0.06, 24: 0.04}),
        },
        tmp_path / "p.png",
    )
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_a_persistence_sweep_reuses_the_default_world_and_passes_the_rows(tmp_path, monkeypatch):
    """The preset's own half-life runs on the budget's default world in the plain mask
    run's cache; other half-lives on their generated worlds, each with its own cache."""
    import transact.experiments.mask as mask
    import transact.experiments.suite as suite
    from transact.data.world import PRESETS

    budget = BUDGETS["smoke"]
    own = PRESETS[budget.world_preset].current_interest_half_life_hours
    worlds: list[float] = []
    calls: list[dict] = []

    def fake_world(out_dir, h, *, preset="demo", seed=0):
        worlds.append(h)
        return out_dir

    def fake_run_named(name, **kwargs):
        calls.append({"name": name, **kwargs})
        lift = 0.1 if kwargs["dataset"] == "world" else -0.05
        return {name: _results({0: lift, 1: lift, 6: lift, 24: lift})}

    monkeypatch.setattr(mask, "persistence_world", fake_world)
    monkeypatch.setattr(suite, "run_named", fake_run_named)
    rows = ("transact_window_0h", "transact")
    runs = mask.run_persistence(
        (6.0, own), budget=budget, out_root=tmp_path, progress=False, variants=rows
    )
    assert worlds == [6.0]  # no copy of the default world is generated
    assert [c["dataset"] for c in calls] == [str(tmp_path / "_work" / "worlds" / "tiny-hl6h"),
                                             "world"]  # fmt: skip
    assert calls[0]["work_dir"] is None  # its own cache under mask-hl6h/_work
    assert calls[1]["work_dir"] == tmp_path / "_work"  # `transact experiment mask`'s cache
    assert [c["out_root"] for c in calls] == [tmp_path / "mask-hl6h", tmp_path / f"mask-hl{own:g}h"]
    assert all(c["variants"] == rows for c in calls)
    assert points(runs[own], "repin")[0][1] == pytest.approx(10.0)
    assert (tmp_path / "mask" / "persistence.png").read_bytes()[:4] == b"\x89PNG"
