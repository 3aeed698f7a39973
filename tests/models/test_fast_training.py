"""The fast training forward computes TransAct's function: values and gradients against the
plain forward in float64, for every fusion, positional encoding and compression."""

import numpy as np
import pytest
import torch

from tests.models.model_testing import HOUR, full_history
from transact.models import TransAct, TransActConfig
from transact.models.fast_training import (
    Dropout,
    FastTrainingOptions,
    plan_buckets,
    restore_fast_training,
    set_fast_training,
)

S = 20


def _inputs(batch_size: int = 24, seed: int = 0):
    """Histories of 0..S actions (row 0 empty, row 1 full), an hour apart, float64."""
    types, emb, times, request, cand = full_history(batch_size, S, seed=seed)
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, S + 1, (batch_size,), generator=g)
    lengths[0], lengths[1] = 0, S
    pad = torch.arange(S)[None] >= lengths[:, None]
    types[pad] = 0
    times[pad] = 0
    return types, emb.double(), times, request, cand.double()


def _forward_and_grads(model, args, options, seed=5):
    model.fast_training = options
    torch.manual_seed(seed)  # the same time window for both forwards
    out = model(*args)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
    return out.detach(), [
        torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)
    ]


CONFIGS = [
    {},
    {"time_window_max_ms": 5 * HOUR},
    {"time_window_max_ms": 5 * HOUR, "time_window_per_example": True},
    {"fusion": "append", "positional_encoding": "linear_age", "num_heads": 8,
     "compression": "all_cols", "dim_feedforward": 128},  # BST's shape
    {"fusion": "none", "use_action_types": False},  # the vanilla transformer
    {"compression": "all_cols_max_pool"},
    {"compression": "random_k_cols"},
    {"compression": "first_col"},
    {"compression": "max_pool"},
    {"compression": "first_k_cols"},
    {"positional_encoding": "learned"},
    {"positional_encoding": "sinusoidal", "num_heads": 2},
    {"attend_action_types": (1, 2)},
    {"num_layers": 3, "dim_feedforward": 8},
]  # fmt: skip


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: ",".join(map(str, o)) or "paper")
@pytest.mark.parametrize(
    "options",
    [FastTrainingOptions(), FastTrainingOptions(compact=False), FastTrainingOptions(max_buckets=1)],
    ids=["compact", "no-compact", "one-bucket"],
)
def test_fast_training_forward_equals_the_plain_forward(overrides, options):
    model = TransAct(TransActConfig(seq_len=S, k=4, dropout=0.0, **overrides)).double().train()
    args = _inputs()
    plain, plain_grads = _forward_and_grads(model, args, None)
    fast, fast_grads = _forward_and_grads(model, args, options)
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    for g_fast, g_plain in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(g_fast, g_plain, rtol=1e-10, atol=1e-10)
    assert plain[0].abs().max() == 0 or overrides.get("fusion") == "append"  # empty history


def test_fp32_fast_forward_is_within_rounding_and_a_hidden_window_changes_nothing():
    model = TransAct(TransActConfig(seq_len=S, k=4, dropout=0.0, time_window_max_ms=30 * HOUR))
    model.train()
    args = tuple(a.float() if a.is_floating_point() else a for a in _inputs(64, seed=3))
    plain, _ = _forward_and_grads(model, args, None, seed=11)
    fast, _ = _forward_and_grads(model, args, FastTrainingOptions(), seed=11)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    # a different seed draws another window: the output changes, for both paths alike
    other, _ = _forward_and_grads(model, args, FastTrainingOptions(), seed=12)
    assert (other - fast).abs().max() > 1e-3


def test_eval_mode_ignores_the_fast_training_options():
    model = TransAct(TransActConfig(seq_len=S, k=4)).double().eval()
    args = _inputs()
    plain = model(*args)
    model.fast_training = FastTrainingOptions()
    torch.testing.assert_close(model(*args), plain, rtol=0, atol=0)


def test_fast_training_with_dropout_trains_and_differs_per_draw():
    model = TransAct(TransActConfig(seq_len=S, k=4)).train()  # dropout 0.1
    model.fast_training = FastTrainingOptions()
    args = tuple(a.float() if a.is_floating_point() else a for a in _inputs(32))
    torch.manual_seed(0)
    first = model(*args)
    torch.manual_seed(0)
    again = model(*args)
    torch.manual_seed(1)
    other = model(*args)
    torch.testing.assert_close(again, first, rtol=0, atol=0)  # a pure function of the seed
    assert (other - first).abs().max() > 1e-3
    first.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_dropout_masks_keep_one_minus_p_and_scale_by_its_inverse():
    torch.manual_seed(0)
    drop = Dropout(0.1, "numpy")
    x = torch.ones(1_000_003)
    y = drop(x)
    kept = y != 0
    assert abs(float(kept.float().mean()) - 0.9) < 5 * (0.09 / 1e6) ** 0.5  # 5 sigma
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    assert float(drop.threshold) / 2**32 == pytest.approx(0.1, abs=1e-9)
    torch.manual_seed(0)
    assert torch.equal(Dropout(0.1, "numpy")(x), y)  # seeded from torch's RNG
    assert Dropout(0.0, "numpy")(x) is x
    assert Dropout(0.1, "torch").bits is None


def test_plan_buckets_covers_every_row_in_order():
    rng = np.random.default_rng(0)
    counts = sorted(rng.integers(1, 101, size=512).tolist(), reverse=True)
    bounds = plan_buckets(counts, 96, 32, max_buckets=8)
    assert bounds[0][0] == 0 and bounds[-1][1] == 512 and len(bounds) <= 8
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    padded = sum((hi - lo) * counts[lo] for lo, hi in bounds)
    assert padded < 0.7 * 512 * 100  # uniform lengths: buckets save a third or more
    assert plan_buckets([100] * 64, 96, 32, max_buckets=8) == [(0, 64)]  # nothing to gain
    assert plan_buckets([], 96, 32, 4) == []


def test_set_and_restore_fast_training_on_every_sequence_encoder():
    outer = torch.nn.Sequential(TransAct(TransActConfig(seq_len=S, k=4)), torch.nn.Linear(2, 2))
    previous = set_fast_training(outer, FastTrainingOptions(max_buckets=2))
    assert outer[0].fast_training == FastTrainingOptions(max_buckets=2)
    restore_fast_training(previous)
    assert outer[0].fast_training is None


def test_options_are_checked():
    with pytest.raises(ValueError, match="max_buckets"):
        FastTrainingOptions(max_buckets=0)
    with pytest.raises(ValueError, match="dropout_rng"):
        FastTrainingOptions(dropout_rng="mt")
