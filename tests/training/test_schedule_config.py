import math

import pytest

from transact.training.config import TrainConfig
from transact.training.schedule import warmup_cosine_factor


def test_warmup_is_linear_then_cosine_to_the_floor():
    f = lambda s: warmup_cosine_factor(s, warmup_steps=10, total_steps=110, min_ratio=0.1)  # noqa: E731
    assert f(0) == pytest.approx(0.1)
    assert f(4) == pytest.approx(0.5)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert f(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert f(110) == pytest.approx(0.1)
    assert f(500) == pytest.approx(0.1)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_paper_preset_is_the_paper():
    c = TrainConfig.preset("paper")
    assert (c.batch_size, c.warmup_steps, c.peak_lr) == (12000, 5000, 0.0048)
    small = TrainConfig.preset("small", seed=3)
    assert small.seed == 3 and small.batch_size < c.batch_size
    with pytest.raises(KeyError, match="unknown TrainConfig preset 'huge'"):
        TrainConfig.preset("huge")


def test_from_dict_lists_every_bad_field():
    with pytest.raises(ValueError) as err:
        TrainConfig.from_dict({"batch_sise": 3, "peak_lr": "fast", "epochs": 1}, where="train")
    msg = str(err.value)
    assert "[train].batch_sise: unknown field" in msg
    assert "[train].peak_lr: expected float, got 'fast'" in msg
    with pytest.raises(ValueError, match="precision: must be one of"):
        TrainConfig.from_dict({"precision": "fp8"})
    with pytest.raises(ValueError, match="batch_size: must be >= 1"):
        TrainConfig(batch_size=0)
    c = TrainConfig.from_dict({"preset": "tiny", "epochs": 2})
    assert c.epochs == 2.0 and c.batch_size == TrainConfig.preset("tiny").batch_size
