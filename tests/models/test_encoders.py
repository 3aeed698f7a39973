import pytest
import torch

from tests.models.model_testing import (
    HOUR,
    REQUEST_MS,
    full_history,
    make_inputs,
    make_spec,
    sequence_args,
)
from transact.models import (
    SEQUENCE_ENCODERS,
    SequenceEncoder,
    TransAct,
    build_sequence_encoder,
)

SPEC = make_spec(seq_len=20)
ENCODERS = [n for n in SEQUENCE_ENCODERS if n != "none"]


@pytest.mark.parametrize("name", ENCODERS)
def test_every_encoder_follows_the_interface(name):
    enc = build_sequence_encoder(name, SPEC)
    assert isinstance(enc, SequenceEncoder)
    inputs = make_inputs(SPEC, batch_size=5)
    out = enc.eval()(*sequence_args(inputs))
    assert out.shape == (5, enc.out_dim)
    assert torch.isfinite(out).all()
    assert out[0].abs().max() == 0 or name in ("bst", "bst_positive")  # row 0: empty history
    torch.testing.assert_close(enc(*sequence_args(inputs)), out, rtol=0, atol=0)


@pytest.mark.parametrize("name", ENCODERS)
def test_every_encoder_ignores_padding_and_future_actions(name):
    types, emb, times, request, cand = full_history(3, 20)
    types[:, 15:] = 0
    times[:, 15:] = 0
    times[:, 0] = REQUEST_MS + HOUR  # future
    types[:, 3] = SPEC.actions.id("repin")  # positive, so every encoder reads it
    enc = build_sequence_encoder(name, SPEC).eval()
    base = enc(types, emb, times, request, cand)
    emb2 = emb.clone()
    emb2[:, 15:] = 5.0
    emb2[:, 0] = -5.0
    torch.testing.assert_close(enc(types, emb2, times, request, cand), base, rtol=0, atol=1e-6)
    emb3 = emb.clone()
    emb3[:, 3] += 1.0  # a readable action is read
    assert (enc(types, emb3, times, request, cand) - base).abs().max() > 1e-5


@pytest.mark.parametrize("name", ENCODERS)
def test_gradients_reach_every_encoder_parameter(name):
    # a short window so the 20-hour history is never hidden whole
    window = {"time_window_max_ms": 5 * HOUR} if name == "transact" else {}
    enc = build_sequence_encoder(name, SPEC, **window).train()
    if not list(enc.parameters()):  # average pooling has nothing to learn
        assert name in ("avg_pool", "wdl_seq")
        return
    args = full_history(4, 20)
    enc(*args).square().sum().backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_paper_baseline_hyperparameters():
    cnn = build_sequence_encoder("cnn", SPEC)
    assert (cnn.conv.out_channels, cnn.conv.kernel_size, cnn.conv.stride) == (256, (4,), (1,))
    for name, cls in (("rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM)):
        enc = build_sequence_encoder(name, SPEC)
        assert isinstance(enc.rnn, cls)
        assert (enc.rnn.hidden_size, enc.rnn.num_layers, enc.out_dim) == (256, 2, 256)
    vanilla = build_sequence_encoder("vanilla_transformer", SPEC)
    c = vanilla.config
    assert (c.num_layers, c.dim_feedforward, c.use_action_types, c.fusion) == (2, 32, False, "none")
    assert c.d_model == 32
    bst = build_sequence_encoder("bst", SPEC).config
    assert (bst.fusion, bst.positional_encoding, bst.compression) == (
        "append",
        "linear_age",
        "all_cols",
    )
    assert not bst.use_action_types and bst.attend_action_types == ()
    positive = build_sequence_encoder("bst_positive", SPEC).config
    assert positive.attend_action_types == SPEC.actions.positive_ids()
    assert build_sequence_encoder("wdl_seq", SPEC).wide
    assert not build_sequence_encoder("avg_pool", SPEC).wide
    assert build_sequence_encoder("none", SPEC) is None


def test_average_pooling_is_the_mean_of_readable_embeddings():
    types, emb, times, request, cand = full_history(2, 20)
    types[0, 6:] = 0
    times[1, :2] = REQUEST_MS  # hidden
    out = build_sequence_encoder("avg_pool", SPEC)(types, emb, times, request, cand)
    torch.testing.assert_close(out[0], emb[0, :6].mean(0))
    torch.testing.assert_close(out[1], emb[1, 2:].mean(0))


def test_recurrent_encoder_matches_a_plain_per_row_loop():
    inputs = make_inputs(SPEC, batch_size=6, seed=4)
    types, emb, times, request, cand = sequence_args(inputs)
    times = times.clone()
    times[2, 0] = REQUEST_MS + 1  # hide the newest action of row 2
    for name in ("rnn", "lstm"):
        enc = build_sequence_encoder(name, SPEC).eval()
        out = enc(types, emb, times, request, cand)
        for row in range(6):
            readable = (types[row] != 0) & (times[row] < REQUEST_MS)
            seq = emb[row][readable].flip(0)  # oldest -> newest
            if len(seq) == 0:
                assert out[row].abs().max() == 0
                continue
            _, state = enc.rnn(seq[None])
            h = state[0] if isinstance(state, tuple) else state
            torch.testing.assert_close(out[row], h[-1, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_recurrent_dense_path_equals_the_packed_one_with_gradients(name):
    from transact.models.fast_training import FastTrainingOptions

    inputs = make_inputs(SPEC, batch_size=7, seed=5)
    types, emb, times, request, cand = sequence_args(inputs)
    types, times = types.clone(), times.clone()
    times[2, 0] = REQUEST_MS + 1  # row 2: the newest action hidden
    types[3, 4:] = 0  # row 3: a short history, so the rows' lengths differ
    types[4] = 0  # row 4: nothing to read
    lengths = ((types != 0) & (times < REQUEST_MS)).sum(1)
    assert lengths.min() == 0 and len(set(lengths.tolist())) >= 3
    torch.manual_seed(0)
    packed_enc = build_sequence_encoder(name, SPEC).train()
    dense_enc = build_sequence_encoder(name, SPEC).train()
    dense_enc.load_state_dict(packed_enc.state_dict())
    dense_enc.fast_training = FastTrainingOptions()
    calls = []
    dense_enc.rnn.register_forward_hook(lambda m, a, o: calls.append(type(a[0]).__name__))
    packed_enc.rnn.register_forward_hook(lambda m, a, o: calls.append(type(a[0]).__name__))
    weights = torch.randn(7, packed_enc.out_dim)
    outs = []
    for enc in (packed_enc, dense_enc):
        out = enc(types, emb, times, request, cand)
        (out * weights).sum().backward()
        outs.append(out)
    assert calls == ["PackedSequence", "Tensor"]  # each took the path it should
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    assert outs[0][4].abs().max() == 0 and outs[0][3].abs().max() > 0
    for (pname, p), q in zip(packed_enc.named_parameters(), dense_enc.parameters(), strict=True):
        assert p.grad is not None and p.grad.abs().max() > 0, pname
        torch.testing.assert_close(
            q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=lambda m, n=pname: f"{n}: {m}"
        )
    # inference runs the dense path too, on the rows' own lengths
    with torch.no_grad():
        torch.testing.assert_close(packed_enc.eval()(types, emb, times, request, cand), outs[0])


def test_bst_positive_reads_only_positive_actions():
    types, emb, times, request, cand = full_history(2, 20)
    impression = SPEC.actions.id("impression")
    types[:, :4] = impression
    enc = build_sequence_encoder("bst_positive", SPEC).eval()
    base = enc(types, emb, times, request, cand)
    emb2 = emb.clone()
    emb2[:, :4] = 3.0
    torch.testing.assert_close(enc(types, emb2, times, request, cand), base, rtol=0, atol=0)
    everything = build_sequence_encoder("bst", SPEC).eval()
    assert (
        everything(types, emb2, times, request, cand) - everything(*full_history(2, 20))
    ).abs().max() > 0


def test_encoders_without_action_types_ignore_them():
    types, emb, times, request, cand = full_history(2, 20)
    other = torch.where(types == 1, 2, 1)
    for name in ("vanilla_transformer", "avg_pool", "cnn", "lstm"):
        enc = build_sequence_encoder(name, SPEC).eval()
        torch.testing.assert_close(
            enc(other, emb, times, request, cand), enc(types, emb, times, request, cand)
        )
    transact = build_sequence_encoder("transact", SPEC).eval()
    assert (
        transact(other, emb, times, request, cand) - transact(types, emb, times, request, cand)
    ).abs().max() > 1e-4


def test_registry_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown sequence encoder 'gru'"):
        build_sequence_encoder("gru", SPEC)
    with pytest.raises(ValueError, match=r"encoder 'cnn': unknown override\(s\) \['fusion'\]"):
        build_sequence_encoder("cnn", SPEC, fusion="append")
    enc = build_sequence_encoder("transact", SPEC, compression="max_pool", fusion="append")
    assert isinstance(enc, TransAct) and enc.out_dim == 64
    assert build_sequence_encoder("cnn", SPEC, channels=8).out_dim == 8
    # TOML gives lists and checks types: overrides are converted and checked per field
    from_toml = build_sequence_encoder("transact", SPEC, attend_action_types=[2, 3])
    assert from_toml.config.attend_action_types == (2, 3)
    with pytest.raises(TypeError, match="override.num_layers: expected an integer, got '2'"):
        build_sequence_encoder("transact", SPEC, num_layers="2")


@pytest.mark.parametrize("name", ENCODERS)
def test_forward_users_equals_forward_on_each_candidates_user_rows(name):
    """``forward_users``: U users' rows once, ``user_index [B]`` per candidate, equals the
    forward on every candidate's copy of its user's rows."""
    enc = build_sequence_encoder(name, SPEC).eval()
    inputs = make_inputs(SPEC, batch_size=3, seed=4)
    types, emb, times, request, _ = sequence_args(inputs)
    cand = torch.randn(7, SPEC.d_item, generator=torch.Generator().manual_seed(1))
    user_index = torch.tensor([2, 0, 1, 1, 2, 2, 0])
    with torch.no_grad():
        want = enc(types[user_index], emb[user_index], times[user_index], request[user_index], cand)
        got = enc.forward_users(types, emb, times, request, cand, user_index)
        one = enc.forward_users(
            types[1:2], emb[1:2], times[1:2], request[1:2], cand, user_index * 0
        )
        want_one = enc(
            *(t[1:2].expand(7, *t.shape[1:]) for t in (types, emb, times, request)), cand
        )
    # an encoder that does not read the candidate encodes each user once: the same values
    # from GEMMs over fewer rows, equal to float rounding
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(one, want_one, rtol=1e-6, atol=1e-6)


def test_effective_overrides_keep_only_what_changes_the_encoder():
    from transact.models.encoders import effective_overrides, sequence_encoder_config

    spec = make_spec()
    day = sequence_encoder_config("transact", spec).time_window_max_ms
    assert day == 24 * 3600 * 1000
    assert effective_overrides("transact", spec, {"time_window_max_ms": day}) == {}
    assert effective_overrides("transact", spec, {"time_window_max_ms": day, "dropout": 0.3}) == {
        "dropout": 0.3
    }
    # the vanilla transformer's own default (no action types) is not an override either
    vanilla = sequence_encoder_config("vanilla_transformer", spec)
    assert effective_overrides("vanilla_transformer", spec, {"use_action_types": False}) == {}
    assert not vanilla.use_action_types
    assert effective_overrides("lstm", spec, {"seq_len": spec.seq_len}) == {}
    with pytest.raises(ValueError, match="unknown override"):
        effective_overrides("transact", spec, {"no_such_field": 1})
