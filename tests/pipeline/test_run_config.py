from pathlib import Path

import pytest

from transact.pipeline.run_config import load_run_config, run_config_from_dict
from transact.training.cli import apply_overrides, parse_override

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_run_config(path)
    assert config.name
    assert config.evaluation.k == 3


def test_bad_fields_are_all_named_with_their_table(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\nepochs = 3\n[train]\nbatch_size = "big"\n[model]\nencoder = "gru"\n'
        "[eval]\nk = 0\n[data]\nseq_lenn = 5\n"
    )
    with pytest.raises(ValueError) as err:
        load_run_config(bad)
    msg = str(err.value)
    assert str(bad) in msg
    assert "epochs: unknown top-level key" in msg
    assert "[train].batch_size: expected int, got 'big'" in msg
    assert "encoder='gru'" in msg
    assert "[eval]" in msg and "k must be >= 1" in msg
    assert "[data].seq_lenn: unknown field" in msg


def test_overrides_use_toml_values():
    assert parse_override("train.max_steps=20") == ("train", "max_steps", 20)
    assert parse_override("model.encoder=avg_pool") == ("model", "encoder", "avg_pool")
    raw = apply_overrides({"train": {"preset": "tiny"}}, [parse_override("train.peak_lr=0.5")])
    config = run_config_from_dict(raw)
    assert config.train.peak_lr == 0.5
    assert config.train.batch_size == 64  # the tiny preset's, kept


def test_shipped_configs_are_package_data_and_configs_dir_links_to_them():
    import tomllib

    from transact.pipeline.run_config import shipped_config_path, shipped_configs_dir

    root = CONFIGS.parent
    shipped = sorted(p.name for p in shipped_configs_dir().glob("*.toml"))
    assert shipped == ["baseline_small.toml", "transact_paper.toml", "transact_small.toml"]
    for name in shipped:  # one source of truth: the repository's configs/ are the same files
        assert (CONFIGS / name).resolve() == (shipped_configs_dir() / name).resolve()
    assert shipped_config_path("transact_small") == shipped_configs_dir() / "transact_small.toml"
    with pytest.raises(FileNotFoundError, match="shipped: \\['baseline_small'"):
        shipped_config_path("nope")
    # pyproject's package data names files that exist (it named a missing folder before)
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["transact"]
    for pattern in patterns:
        assert list((root / "src" / "transact").glob(pattern)), pattern
    assert "configs/*.toml" in patterns


def test_load_run_config_applies_overrides_before_validating(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n[train]\npreset = "tiny"\n')
    config = load_run_config(path, {"train": {"max_steps": 3}, "data": {"seed": 4}})
    assert config.train.max_steps == 3 and config.train.batch_size == 64
    assert config.data.seed == 4
    with pytest.raises(ValueError, match=r"\[train\].max_steps: expected int"):
        load_run_config(path, {"train": {"max_steps": "3"}})
