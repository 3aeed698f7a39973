from pathlib import Path

import pytest

from transact.training.cli import apply_overrides, parse_override
from transact.training.run_config import load_run_config, run_config_from_dict

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
