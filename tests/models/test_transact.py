import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.models.model_testing import HOUR, REQUEST_MS, full_history
from transact.models import TransAct, TransActConfig
from transact.models.transact import (
    COMPRESSIONS,
    FUSIONS,
    POSITIONAL_ENCODINGS,
    require_serving_fast_path,
    serving_fast_path_blockers,
)

S = 20


def small_config(**kw) -> TransActConfig:
    return TransActConfig(**{"seq_len": S, "k": 4, **kw})


def test_defaults_are_the_papers_section_4_1_2():
    cfg = TransActConfig()
    assert (cfg.d_action, cfg.d_item, cfg.seq_len) == (32, 32, 100)
    assert (cfg.num_layers, cfg.num_heads, cfg.dim_feedforward, cfg.dropout) == (2, 1, 32, 0.1)
    assert cfg.positional_encoding == "none" and cfg.fusion == "concat"
    assert cfg.compression == "first_k_max_pool" and cfg.k == 10
    assert cfg.time_window_max_ms == 24 * 3600 * 1000 and not cfg.time_window_per_example
    model = TransAct(cfg)
    assert model.out_dim == 11 * (32 + 2 * 32)
    out = model.eval()(*full_history(3, 100))
    assert out.shape == (3, 1056)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_output_size_for_every_fusion_and_compression(fusion, compression):
    model = TransAct(small_config(fusion=fusion, compression=compression)).eval()
    d = {"concat": 96, "append": 64, "none": 64}[fusion]
    tokens = S + (fusion == "append")
    cols = {
        "random_col": 1,
        "first_col": 1,
        "random_k_cols": 4,
        "first_k_cols": 4,
        "all_cols": tokens,
        "max_pool": 1,
        "first_k_max_pool": 5,
        "all_cols_max_pool": tokens + 1,
    }[compression]
    out = model(*full_history(2, S))
    assert model.out_dim == cols * d
    assert out.shape == (2, cols * d)
    assert torch.isfinite(out).all()


def _perturb(args, positions, *, types=False):
    """Copy of the inputs with new random embeddings (and action types) at ``positions``."""
    types_, emb, times, request, cand = (a.clone() for a in args)
    rows, cols = positions
    emb[rows, cols] = torch.randn(len(rows), emb.shape[-1]) * 10
    if types:
        types_[rows, cols] = torch.where(types_[rows, cols] == 1, 2, 1)
    return types_, emb, times, request, cand


def test_padding_is_never_read():
    types, emb, times, request, cand = full_history(3, S)
    types[:, 12:] = 0  # 12 real actions, padding after
    times[:, 12:] = 0
    emb[:, 12:] = 0
    model = TransAct(small_config(compression="all_cols_max_pool")).eval()
    base = model(types, emb, times, request, cand)
    rows = torch.arange(3).repeat_interleave(8)
    cols = torch.arange(12, 20).repeat(3)
    changed = model(*_perturb((types, emb, times, request, cand), (rows, cols)))
    torch.testing.assert_close(changed, base, rtol=0, atol=0)
    # ... while a real action is read
    real = model(
        *_perturb((types, emb, times, request, cand), (torch.tensor([0]), torch.tensor([3])))
    )
    assert (real[0] - base[0]).abs().max() > 1e-3


def test_future_actions_are_masked_in_eval_and_train():
    types, emb, times, request, cand = full_history(2, S)
    times[:, 0] = REQUEST_MS  # at request time: hidden
    times[:, 1] = REQUEST_MS + HOUR  # after: hidden
    positions = (torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]))
    for train in (False, True):
        model = TransAct(small_config(dropout=0.0, time_window_max_ms=0)).train(train)
        base = model(types, emb, times, request, cand)
        changed = model(*_perturb((types, emb, times, request, cand), positions, types=True))
        torch.testing.assert_close(changed, base, rtol=0, atol=0)
        # the first columns of the hidden positions are zero
        assert base[:, : 2 * 96].abs().max() == 0


def test_random_time_window_only_in_training_with_uniform_T():
    types, emb, times, request, cand = full_history(1, S)
    model = TransAct(small_config(time_window_max_ms=20 * HOUR))
    model.eval()
    eval_mask = model.sequence_mask(types, times, request)
    assert not eval_mask.any()  # nothing hidden at inference
    model.train()
    torch.manual_seed(0)
    draws = torch.stack([model.sequence_mask(types, times, request)[0] for _ in range(3000)])
    # action i is (i + 1) hours old; hidden iff T > age, T ~ U[0, 20 h]
    rate = draws.float().mean(0)
    for i in range(S):
        expected = max(0.0, 1 - (i + 1) / 20)
        assert abs(rate[i].item() - expected) < 0.04, (i, rate[i].item(), expected)
    # per batch: every row gets the same window; the mask is a prefix (newest first)
    assert all(bool((d[:-1] >= d[1:]).all()) for d in draws)


def test_random_action_mask_hides_each_real_action_at_its_rate_in_training_only():
    types, emb, times, request, cand = full_history(64, S)
    types[:, 15:] = 0  # padding stays hidden whatever the draw
    model = TransAct(small_config(time_window_max_ms=0, random_action_mask_rate=0.3))
    assert not model.eval().sequence_mask(types, times, request)[:, :15].any()
    model.train()
    torch.manual_seed(0)
    draws = torch.stack([model.sequence_mask(types, times, request) for _ in range(50)])
    real = draws[:, :, :15].float()
    assert abs(real.mean().item() - 0.3) < 0.01  # 48,000 draws: sd 0.002
    assert draws[:, :, 15:].all()
    # independent per action: the positions' rates agree, rows differ within a batch
    assert (real.mean((0, 1)) - 0.3).abs().max() < 0.04
    assert draws[0, :, :15].sum(1).unique().numel() > 3
    with pytest.raises(ValueError, match="random_action_mask_rate"):
        small_config(random_action_mask_rate=1.0)


def test_time_window_per_example_differs_between_rows():
    types, emb, times, request, cand = full_history(64, S)
    torch.manual_seed(1)
    per_batch = TransAct(small_config(time_window_max_ms=20 * HOUR)).train()
    per_example = TransAct(small_config(time_window_max_ms=20 * HOUR, time_window_per_example=True))
    m1 = per_batch.sequence_mask(types, times, request).sum(1)
    m2 = per_example.train().sequence_mask(types, times, request).sum(1)
    assert m1.unique().numel() == 1
    assert m2.unique().numel() > 5


def test_time_window_masked_actions_do_not_change_training_output():
    types, emb, times, request, cand = full_history(2, S)
    model = TransAct(small_config(dropout=0.0, time_window_max_ms=20 * HOUR)).train()
    torch.manual_seed(3)
    mask = model.sequence_mask(types, times, request)
    assert 0 < mask[0].sum() < S
    torch.manual_seed(3)
    base = model(types, emb, times, request, cand)
    rows, cols = mask.nonzero(as_tuple=True)
    perturbed = _perturb((types, emb, times, request, cand), (rows, cols), types=True)
    torch.manual_seed(3)
    changed = model(*perturbed)
    torch.testing.assert_close(changed, base, rtol=0, atol=0)


@pytest.mark.parametrize("positional_encoding", POSITIONAL_ENCODINGS)
def test_empty_history_gives_zero_output_and_finite_gradients(positional_encoding):
    types, emb, times, request, cand = full_history(3, S)
    types[0] = 0  # brand-new user
    emb[0] = 0
    times[0] = 0
    times[1] = REQUEST_MS + 5  # every action in the future
    model = TransAct(small_config(positional_encoding=positional_encoding))
    for train in (True, False):
        model.train(train)
        model.zero_grad()
        out = model(types, emb, times, request, cand)
        assert torch.isfinite(out).all()
        assert out[:2].abs().max() == 0
        assert out[2].abs().max() > 0
        out.square().sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is None or torch.isfinite(p.grad).all(), name
    model.eval()
    torch.testing.assert_close(model(types, emb, times, request, cand)[:2], torch.zeros(2, 480))


@pytest.mark.parametrize("positional_encoding", POSITIONAL_ENCODINGS)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_gradients_reach_every_parameter(positional_encoding, fusion):
    cfg = small_config(positional_encoding=positional_encoding, fusion=fusion)
    model = TransAct(dataclasses.replace(cfg, time_window_max_ms=5 * HOUR)).train()
    out = model(*full_history(4, S))
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_training_uses_dropout():
    args = full_history(4, S)
    model = TransAct(small_config(time_window_max_ms=0)).eval()
    torch.testing.assert_close(model(*args), model(*args), rtol=0, atol=0)
    model.train()
    assert (model(*args) - model(*args)).abs().max() > 1e-4


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    lengths=st.lists(st.integers(0, S), min_size=3, max_size=3),
    heads=st.sampled_from([1, 2, 4]),
    fusion=st.sampled_from(FUSIONS),
)
def test_sdpa_path_matches_reference_path(seed, lengths, heads, fusion):
    types, emb, times, request, cand = full_history(3, S, seed=seed)
    for row, n in enumerate(lengths):
        types[row, n:] = 0
    cfg = small_config(num_heads=heads, fusion=fusion, compression="all_cols_max_pool")
    torch.manual_seed(seed)
    fast = TransAct(cfg).eval()
    ref = TransAct(dataclasses.replace(cfg, attention="reference")).eval()
    ref.load_state_dict(fast.state_dict())
    torch.testing.assert_close(
        fast(types, emb, times, request, cand), ref(types, emb, times, request, cand),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip


def test_no_positional_encoding_is_order_free_and_encodings_are_not():
    types, emb, times, request, cand = full_history(2, S)
    perm = torch.randperm(S, generator=torch.Generator().manual_seed(0))
    permuted = (types[:, perm], emb[:, perm], times[:, perm], request, cand)
    for pe in ("none", "learned", "sinusoidal"):
        model = TransAct(small_config(positional_encoding=pe, compression="max_pool")).eval()
        if pe == "learned":
            torch.nn.init.normal_(model.learned_positions.weight)
        diff = (model(types, emb, times, request, cand) - model(*permuted)).abs().max()
        assert (diff < 1e-5) if pe == "none" else (diff > 1e-3), pe
    # linear_age reads the action's age; without it times only matter for masking
    older = times - 3 * HOUR
    for pe in ("none", "linear_age"):
        model = TransAct(small_config(positional_encoding=pe)).eval()
        diff = model(types, emb, times, request, cand) - model(types, emb, older, request, cand)
        assert (diff.abs().max() < 1e-6) if pe == "none" else (diff.abs().max() > 1e-4), pe


def test_append_fusion_candidate_token_is_read_even_without_history():
    types, emb, times, request, cand = full_history(2, S)
    types[0] = 0
    model = TransAct(small_config(fusion="append", compression="all_cols")).eval()
    out = model(types, emb, times, request, cand).view(2, S + 1, 64)
    assert out[0, :S].abs().max() == 0  # no history columns
    assert out[0, S].abs().max() > 0  # the candidate token
    # the candidate's dummy action-type vector is zero: its input is [0 (32), candidate]
    cand2 = cand.clone()
    cand2[1] += 1
    assert (model(types, emb, times, request, cand2)[1] - out[1].flatten()).abs().max() > 1e-4


def test_attend_action_types_hides_other_actions():
    types, emb, times, request, cand = full_history(2, S)
    types[:, :5] = 1  # action 1 is not attended below
    model = TransAct(small_config(attend_action_types=(2, 3, 4, 5), dropout=0.0)).eval()
    base = model(types, emb, times, request, cand)
    rows = torch.arange(2).repeat_interleave(5)
    cols = torch.arange(5).repeat(2)
    torch.testing.assert_close(
        model(*_perturb((types, emb, times, request, cand), (rows, cols))), base, rtol=0, atol=0
    )


def test_inputs_are_checked_and_long_sequences_cut_to_the_latest():
    model = TransAct(small_config()).eval()
    types, emb, times, request, cand = full_history(2, S + 5)
    out = model(types, emb, times, request, cand)
    cut = model(types[:, :S], emb[:, :S], times[:, :S], request, cand)
    torch.testing.assert_close(out, cut, rtol=0, atol=0)
    torch.testing.assert_close(model(types, emb, times, request[:, None], cand), out)
    bad = types.clone()
    bad[1, 3] = 99
    with pytest.raises(ValueError, match=r"action_types\[1, 3\] = 99"):
        model(bad, emb, times, request, cand)
    with pytest.raises(ValueError, match="fewer than seq_len"):
        model(types[:, :5], emb[:, :5], times[:, :5], request, cand)
    with pytest.raises(TypeError, match="action_times_ms must be integer"):
        model(types, emb, times.double(), request, cand)
    with pytest.raises(ValueError, match="candidate_embedding"):
        model(types, emb, times, request, cand[:, :5])


def test_config_validation_and_from_dict():
    with pytest.raises(ValueError, match="TransActConfig.compression='avg'"):
        TransActConfig(compression="avg")
    with pytest.raises(ValueError, match="TransActConfig.k=10: must be in 1..seq_len=8"):
        TransActConfig(seq_len=8)
    with pytest.raises(ValueError, match="num_heads"):
        TransActConfig(num_heads=5)
    cfg = TransActConfig.from_dict({"fusion": "append", "attend_action_types": [2, 3]})
    assert cfg.fusion == "append" and cfg.attend_action_types == (2, 3)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['layers'\]"):
        TransActConfig.from_dict({"layers": 3})
    with pytest.raises(TypeError, match="TransActConfig.num_layers: expected an integer"):
        TransActConfig.from_dict({"num_layers": "3"})
    assert TransActConfig(positional_encoding="linear_time").positional_encoding == "linear_age"


def test_serving_fast_path_rule_names_every_unsupported_field():
    assert serving_fast_path_blockers(TransActConfig()) == []
    # fields that do not change inference do not block
    assert serving_fast_path_blockers(TransActConfig(dropout=0.3, time_window_max_ms=0)) == []
    cfg = TransActConfig(fusion="append", compression="max_pool", positional_encoding="learned")
    assert serving_fast_path_blockers(cfg) == [
        "TransActConfig.fusion='append': need 'concat'",
        "TransActConfig.positional_encoding='learned': need 'none'",
        "TransActConfig.compression='max_pool': need 'first_k_max_pool'",
    ]
    with pytest.raises(ValueError, match=r"who: unsupported TransAct config: .*fusion.*; "):
        require_serving_fast_path(cfg, "who")
