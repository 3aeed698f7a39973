import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.models.model_testing import make_inputs, make_spec
from transact.cli import main as cli_main
from transact.data.schema import RankerInputs
from transact.models import SEQUENCE_ENCODERS, Pinnability, PinnabilityConfig
from transact.models.layers import ConsolidatedEmbedding, CrossNetV2
from transact.models.summary import measure_flops

SPEC = make_spec(seq_len=20)


def small(**kw) -> PinnabilityConfig:
    return PinnabilityConfig.preset("small", **kw)


def _replace(inputs, **fields):
    return inputs._replace(**fields)


@pytest.mark.parametrize("encoder", SEQUENCE_ENCODERS)
def test_logits_per_head_for_every_encoder(encoder):
    model = Pinnability(SPEC, small(encoder=encoder)).eval()
    inputs = make_inputs(SPEC, batch_size=7)
    logits = model(inputs)
    assert logits.shape == (7, len(SPEC.heads))
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(model.predict_proba(inputs), torch.sigmoid(logits))
    torch.testing.assert_close(model(inputs), logits, rtol=0, atol=0)  # eval: deterministic


@pytest.mark.parametrize("cross_mode", ["stacked", "parallel"])
def test_gradients_reach_every_parameter(cross_mode):
    # a short time window so no row's history is hidden whole
    config = small(
        cross_mode=cross_mode,
        num_cross_layers=2,
        encoder_overrides={"time_window_max_ms": 3_600_000},
    )
    model = Pinnability(SPEC, config).train()
    inputs = make_inputs(SPEC, batch_size=16)
    model(inputs).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_consolidated_lookup_is_one_table_and_matches_per_feature_lookups():
    emb = ConsolidatedEmbedding([4, 7, 3], dim=5)
    assert emb.table.weight.shape == (14, 5)
    assert emb.offsets.tolist() == [0, 4, 11]
    idx = torch.tensor([[0, 0, 0], [3, 6, 2], [1, 2, 1]])
    torch.testing.assert_close(emb(idx), emb.reference(idx), rtol=0, atol=0)
    # feature 1, local index 2 reads global row 4 + 2
    torch.testing.assert_close(emb(idx)[2, 5:10], emb.table.weight[6])
    model = Pinnability(SPEC, small())
    tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    assert len(tables) == 2  # the consolidated one + TransAct's action-type table
    assert model.embedding.table.weight.shape == (4 + 7 + 3 + 11 + 2, 16)


@settings(max_examples=20, deadline=None)
@given(
    cards=st.lists(st.integers(1, 50), min_size=1, max_size=12),
    batch=st.integers(1, 9),
    seed=st.integers(0, 1000),
)
def test_consolidated_lookup_matches_reference_property(cards, batch, seed):
    torch.manual_seed(seed)
    emb = ConsolidatedEmbedding(cards, dim=3)
    idx = torch.stack([torch.randint(0, c, (batch,)) for c in cards], dim=1)
    torch.testing.assert_close(emb(idx), emb.reference(idx), rtol=0, atol=0)


def test_cross_layer_is_full_rank_dcn_v2():
    cross = CrossNetV2(6, num_layers=2)
    x0 = torch.randn(3, 6)
    w1, b1 = cross.layers[0].weight, cross.layers[0].bias
    w2, b2 = cross.layers[1].weight, cross.layers[1].bias
    x1 = x0 * (x0 @ w1.T + b1) + x0
    x2 = x0 * (x1 @ w2.T + b2) + x1
    torch.testing.assert_close(cross(x0), x2)
    assert w1.shape == (6, 6)


def test_user_feature_switches_drop_exactly_the_user_group():
    inputs = make_inputs(SPEC, batch_size=6)
    user_cols = [i for i, c in enumerate(SPEC.categorical) if c.group == "user"]
    cat = inputs.categorical.clone()
    cat[:, user_cols] = 1
    num = inputs.numerical.clone()
    num[:, 1] += 3.0  # user_tenure_days
    changed = _replace(inputs, categorical=cat, numerical=num)
    with_user = Pinnability(SPEC, small()).eval()
    assert (with_user(changed) - with_user(inputs)).abs().max() > 1e-5
    without = Pinnability(SPEC, small(use_user_features=False)).eval()
    torch.testing.assert_close(without(changed), without(inputs), rtol=0, atol=0)
    assert without.embedding.table.weight.shape[0] == 11 + 2  # item + context rows only
    item = inputs.categorical.clone()
    item[:, 3] = (item[:, 3] + 1) % 11
    assert (without(_replace(inputs, categorical=item)) - without(inputs)).abs().max() > 1e-5
    # the batch user embedding
    other_user = _replace(inputs, user_embedding=inputs.user_embedding + 1)
    no_pf = Pinnability(SPEC, small(use_user_embedding=False)).eval()
    torch.testing.assert_close(no_pf(other_user), no_pf(inputs), rtol=0, atol=0)
    assert (with_user(other_user) - with_user(inputs)).abs().max() > 1e-5
    assert with_user.input_dim - no_pf.input_dim == SPEC.d_user


def test_wide_sequence_feature_is_added_to_the_logits():
    model = Pinnability(SPEC, small(encoder="wdl_seq")).eval()
    no_seq = Pinnability(SPEC, small(encoder="none"))
    assert model.input_dim == no_seq.input_dim  # the pooled sequence is not crossed
    inputs = make_inputs(SPEC, batch_size=4)
    with torch.no_grad():
        model.wide.weight.zero_()
        model.wide.bias.fill_(0.5)
        base = model(inputs)
        model.wide.bias.fill_(1.5)
        torch.testing.assert_close(model(inputs) - base, torch.ones(4, 3))


def test_bad_inputs_name_the_field_feature_and_row():
    model = Pinnability(SPEC, small()).eval()
    inputs = make_inputs(SPEC, batch_size=5)
    cat = inputs.categorical.clone()
    cat[3, 1] = 7  # country has 7 values: 0..6
    with pytest.raises(ValueError, match=r"categorical\[3, 1\] \(feature 'country'\) = 7"):
        model(_replace(inputs, categorical=cat))
    num = inputs.numerical.clone()
    num[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"numerical\[2, 0\] \(feature 'item_quality'\)"):
        model(_replace(inputs, numerical=num))
    with pytest.raises(ValueError, match="user_embedding must have shape"):
        model(_replace(inputs, user_embedding=inputs.user_embedding[:, :3]))


def test_config_presets_and_from_dict():
    assert PinnabilityConfig.preset("small").num_cross_layers >= 1
    paper = PinnabilityConfig.preset("paper")
    assert paper.encoder == "transact" and paper.encoder_overrides == {}
    cfg = PinnabilityConfig.from_dict(
        {
            "preset": "small",
            "encoder": "transact",
            "encoder_overrides": {"compression": "max_pool"},
            "mlp_dims": [32, 16],
            "use_user_features": False,
        }
    )
    assert cfg.mlp_dims == (32, 16) and cfg.num_cross_layers == 1 and not cfg.use_user_features
    assert PinnabilityConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"PinnabilityConfig: unknown field\(s\) \['mlp'\]"):
        PinnabilityConfig.from_dict({"mlp": [3]})
    with pytest.raises(TypeError, match=r"PinnabilityConfig.mlp_dims\[1\]: expected an integer"):
        PinnabilityConfig.from_dict({"mlp_dims": [3, "x"]})
    with pytest.raises(
        TypeError, match="PinnabilityConfig.use_user_embedding: expected true/false"
    ):
        PinnabilityConfig.from_dict({"use_user_embedding": 1})
    with pytest.raises(ValueError, match="encoder_overrides: unknown field"):
        PinnabilityConfig(encoder="cnn", encoder_overrides={"fusion": "append"})
    with pytest.raises(ValueError, match="cross_mode"):
        PinnabilityConfig(cross_mode="side")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        PinnabilityConfig.preset("huge")


def test_torch_export_of_the_full_ranker_equals_eager():
    model = Pinnability(SPEC, small()).eval()
    inputs = make_inputs(SPEC, batch_size=8)
    batch = torch.export.Dim("batch", min=2, max=4096)
    dynamic = (RankerInputs(*({0: batch} for _ in RankerInputs._fields)),)
    exported = torch.export.export(model, (inputs,), dynamic_shapes=dynamic).module()
    torch.testing.assert_close(exported(inputs), model(inputs), rtol=1e-5, atol=1e-6)
    other = make_inputs(SPEC, batch_size=37, seed=5)  # another batch size, other values
    torch.testing.assert_close(exported(other), model(other), rtol=1e-5, atol=1e-6)


def test_measured_flops_match_a_hand_count_without_sequence():
    model = Pinnability(SPEC, small(encoder="none", num_cross_layers=2, mlp_dims=(8, 4)))
    d = model.input_dim
    assert d == 5 * 16 + 3 + 32 + 64
    macs = 2 * d * d + d * 8 + 8 * 4 + 4 * 3
    total, sequence = measure_flops(model, batch_size=4)
    assert total == 2 * macs and sequence == 0


def test_transact_flops_grow_with_the_sequence_as_counted_by_hand():
    model = Pinnability(SPEC, small())
    _, sequence = measure_flops(model, batch_size=2)
    s, d, f = 20, 96, 32
    per_layer = s * (3 * d * d + d * d + 2 * d * f) + 2 * s * s * d
    assert sequence == 2 * 2 * per_layer


def test_model_summary_cli_writes_json(tmp_path, capsys):
    path = tmp_path / "summary.json"
    assert cli_main(["model", "summary", "--preset", "small", "--json", str(path)]) == 0
    summary = json.loads(path.read_text())
    assert summary["encoder"] == "transact"
    assert summary["parameters"] > summary["embedding_parameters"] > 0
    assert summary["flops_per_example"] > summary["sequence_flops_per_example"] > 1e6
    assert "FLOPs per example" in capsys.readouterr().out


@pytest.mark.slow
def test_paper_preset_is_table_9_scale():
    from transact.models import example_feature_spec
    from transact.models.summary import summarize

    summary = summarize(example_feature_spec("paper"), PinnabilityConfig.preset("paper"))
    assert 85e6 < summary.parameters < 100e6
    assert 70e6 < summary.flops_per_example < 85e6


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = Pinnability(SPEC, small()).eval()
    inputs = make_inputs(SPEC, batch_size=8)
    cpu = model(inputs)
    gpu = model.to("cuda")(inputs.to("cuda"))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
