from dataclasses import fields

import pytest

from transact.data.world import MECHANISMS, PRESETS, WorldConfig


def test_config_validation_names_every_bad_field():
    with pytest.raises(ValueError, match="WorldConfig.min_items"):
        WorldConfig(min_items=20, max_items=10)
    with pytest.raises(ValueError, match="WorldConfig.candidate_mix"):
        WorldConfig(candidate_mix=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="WorldConfig.candidate_mix"):
        WorldConfig(candidate_mix=(0.5, 0.25, 0.25))  # three shares: the fresh one is missing
    with pytest.raises(ValueError) as exc:
        WorldConfig(satiation_weight=-1.0, drift_half_life_days=float("nan"), p_session_jump=2)
    for name in ("satiation_weight", "drift_half_life_days", "p_session_jump"):
        assert f"WorldConfig.{name}" in str(exc.value)
    with pytest.raises(ValueError, match="fresh_items_per_day"):
        WorldConfig(fresh_items_per_day=0.1)  # 10% a day over 38 days: more than the catalog


def test_toml_overrides_a_preset_and_refuses_unknown_fields(tmp_path):
    f = tmp_path / "w.toml"
    f.write_text('preset = "tiny"\nn_users = 33\ncandidate_mix = [0.4, 0.3, 0.2, 0.1]\n')
    cfg = WorldConfig.from_toml(f)
    assert cfg.n_users == 33 and cfg.candidate_mix == (0.4, 0.3, 0.2, 0.1)
    assert cfg.n_items == PRESETS["tiny"].n_items
    f.write_text("n_userz = 3\n")
    with pytest.raises(ValueError, match="n_userz"):
        WorldConfig.from_toml(f)
    f.write_text('preset = "huge"\n')
    with pytest.raises(ValueError, match="preset 'huge': unknown"):
        WorldConfig.from_toml(f)
    f.write_text("satiation_weight = -2.0\n")
    with pytest.raises(ValueError, match=r"w.toml: WorldConfig.satiation_weight"):
        WorldConfig.from_toml(f)


def test_mechanisms_off_switches_every_closed_loop_mechanism():
    off = PRESETS["demo"].mechanisms_off()
    assert off.current_interest_half_life_hours == 0 and off.drift_half_life_days == 0
    assert off.satiation_weight == 0 and off.fresh_items_per_day == 0
    assert off.freshness_weight == 0 and off.candidate_mix[3] == 0
    assert abs(sum(off.candidate_mix) - 1) < 1e-9
    assert off.continue_elasticity == 0 and off.return_elasticity == 0
    assert off == PRESETS["demo"].without(*MECHANISMS)
    # the committed configs load
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "configs" / "world"
    for path in sorted(root.glob("*.toml")):
        WorldConfig.from_toml(path)


def test_generate_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    from transact.cli import main

    out = tmp_path / "w"
    assert (
        main(["data", "generate", "--out", str(out), "--preset", "tiny", "--days", "1", "1", "0"])
        == 2
    )
    assert "WorldConfig.eval_days" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("satiation_weight = -1.0\n")
    assert main(["data", "generate", "--out", str(out), "--config", str(bad)]) == 2
    assert "satiation_weight" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()


def test_without_switches_off_one_mechanism_and_nothing_else():
    demo = PRESETS["demo"]
    changed = {
        name: {f.name for f in fields(WorldConfig)
               if getattr(demo.without(name), f.name) != getattr(demo, f.name)}
        for name in MECHANISMS
    }  # fmt: skip
    assert changed == {
        "current_interest": {"current_interest_half_life_hours"},
        "drift": {"drift_half_life_days"},
        "satiation": {"satiation_weight"},
        "fresh_items": {"fresh_items_per_day", "freshness_weight", "candidate_mix"},
        "continue": {"continue_elasticity"},
        "return": {"return_elasticity"},
    }
    mix = demo.without("fresh_items").candidate_mix
    assert mix[3] == 0 and sum(mix) == pytest.approx(1.0)
    assert mix[0] / mix[1] == pytest.approx(demo.candidate_mix[0] / demo.candidate_mix[1])
    assert demo.without() == demo
    with pytest.raises(ValueError, match=r"unknown world mechanisms \['novelty'\]; known"):
        demo.without("satiation", "novelty")
