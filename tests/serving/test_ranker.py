"""ServingRanker: every inference switch against the plain path; packed transfer; GPU paths."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from transact.data.schema import CANDIDATE_FIELDS, FeatureSpec, RankerInputs
from transact.models import Pinnability, PinnabilityConfig, example_ranker_inputs
from transact.serving.cuda_graphs import GraphedForward, bucket_size, graph_buckets
from transact.serving.ranker import InferenceOptions, RequestTensors, ServingRanker
from transact.serving.transfer import pack, to_device_packed, to_device_plain, unpack

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _model(spec: FeatureSpec) -> Pinnability:
    torch.manual_seed(0)
    model = Pinnability(spec, PinnabilityConfig.preset("small")).eval()
    with torch.no_grad():
        model.numerical_norm.running_mean.normal_()
    return model


def _request(spec: FeatureSpec, b: int = 37, user_row: int = 4) -> RequestTensors:
    x = example_ranker_inputs(spec, b, seed=3)
    r = slice(user_row, user_row + 1)
    return RequestTensors(
        x.categorical,
        x.numerical,
        x.candidate_embedding,
        x.candidate_item_id,
        x.user_embedding[r],
        x.action_types[r],
        x.action_embeddings[r],
        x.action_times_ms[r],
        x.request_time_ms[r],
    )


def _model_probs(model: Pinnability, req: RequestTensors) -> torch.Tensor:
    b = req.categorical.shape[0]
    inputs = example_ranker_inputs(model.spec, 1)._replace(
        categorical=req.categorical,
        numerical=req.numerical,
        candidate_embedding=req.candidate_embedding,
        candidate_item_id=req.candidate_item_id,
        **{
            k: getattr(req, k).expand(b, *getattr(req, k).shape[1:]).contiguous()
            for k in (
                "user_embedding",
                "action_types",
                "action_embeddings",
                "action_times_ms",
                "request_time_ms",
            )
        },
    )
    with torch.no_grad():
        return torch.sigmoid(model(inputs))


SWITCHES = [
    InferenceOptions(),
    InferenceOptions.plain(),
    replace(InferenceOptions.plain(), consolidated_lookup=True),
    replace(InferenceOptions.plain(), single_transfer=True),
    replace(InferenceOptions.plain(), dedup=True),
    replace(InferenceOptions.plain(), dedup=True, split_first_layer=True),
    replace(InferenceOptions.plain(), split_first_layer=True),
    replace(InferenceOptions(), chunk_size=0),
    replace(InferenceOptions(), validate_inputs=False),
    replace(InferenceOptions(), compact_visible=False),
]


@pytest.mark.parametrize("options", SWITCHES, ids=lambda o: repr(o)[17:90])
def test_each_switch_matches_the_model(spec: FeatureSpec, options: InferenceOptions) -> None:
    model = _model(spec)
    req = _request(spec)
    want = _model_probs(model, req)
    got = ServingRanker(model, options).score(req)
    assert got.shape == want.shape == (37, len(spec.heads))
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()


@pytest.mark.parametrize("options", SWITCHES[:3], ids=lambda o: repr(o)[17:90])
def test_item_id_embedding_serves_like_the_model(
    spec: FeatureSpec, options: InferenceOptions
) -> None:
    torch.manual_seed(0)
    config = PinnabilityConfig.preset("small", item_id_embedding=8, item_id_buckets=64)
    model = Pinnability(spec, config).eval()
    req = _request(spec)
    want = _model_probs(model, req)
    got = ServingRanker(model, options).score(req)
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()
    # the candidate's id reaches the model: other ids, other scores
    other = req._replace(candidate_item_id=req.candidate_item_id + 1)
    assert (ServingRanker(model, options).score(other) - got).abs().max() > 1e-4


def test_dedup_sends_the_user_once_with_an_explicit_index(spec: FeatureSpec) -> None:
    ranker = ServingRanker(_model(spec), InferenceOptions())
    batch = ranker.to_inputs(_request(spec, b=50))
    for name in ("action_types", "action_embeddings", "action_times_ms", "user_embedding"):
        assert getattr(batch.inputs, name).shape[0] == 1, name
    assert batch.inputs.candidate_embedding.shape[0] == 50
    assert batch.user_index is not None and torch.equal(batch.user_index, torch.zeros(50).long())
    assert ranker.fast_encoder and ranker.reference_reason is None
    plain = ServingRanker(_model(spec), InferenceOptions.plain()).to_inputs(_request(spec, b=50))
    assert plain.user_index is None
    assert plain.inputs.action_embeddings.shape[0] == 50
    assert plain.inputs.action_embeddings.stride(0) != 0  # a copy per candidate


@pytest.mark.parametrize(
    ("encoder", "overrides", "reason"),
    [
        ("lstm", {}, "sequence encoder RecurrentEncoder is not TransAct"),
        ("transact", {"fusion": "append"}, "TransActConfig.fusion='append': need 'concat'"),
    ],
)
def test_model_off_the_fast_path_is_served_by_its_own_encoder_logged_and_counted(
    spec: FeatureSpec,
    encoder: str,
    overrides: dict,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    torch.manual_seed(0)
    cfg = PinnabilityConfig.preset("small", encoder=encoder, encoder_overrides=overrides)
    model = Pinnability(spec, cfg).eval()
    with caplog.at_level("WARNING", logger="transact.serving"):
        ranker = ServingRanker(model, InferenceOptions())
    assert ranker.reference_reason == reason
    assert not ranker.fast_encoder
    assert type(ranker.model.sequence_encoder) is type(model.sequence_encoder)
    assert [r.getMessage() for r in caplog.records if reason in r.getMessage()]
    requests = [_request(spec, b=b, user_row=u) for b, u in ((9, 1), (4, 3))]
    assert torch.allclose(ranker.score(requests[0]), _model_probs(model, requests[0]), atol=1e-5)
    for req, got in zip(requests, ranker.score_many(requests), strict=True):
        assert torch.allclose(got, _model_probs(model, req), atol=1e-5)
    assert ranker.reference_requests == 3
    plain = ServingRanker(model, InferenceOptions.plain())  # plain by choice: no fallback
    assert plain.reference_reason is None
    plain.score(requests[0])
    assert plain.reference_requests == 0


def test_model_forward_takes_users_once_with_a_checked_index(spec: FeatureSpec) -> None:
    """``Pinnability.forward(inputs, user_index)``: U user rows, B candidate rows."""
    model = _model(spec)
    x = example_ranker_inputs(spec, 6, seed=3)
    user_fields = RankerInputs._fields[CANDIDATE_FIELDS:]  # user_embedding, action_*, ...
    users = x._replace(**{k: getattr(x, k)[1:3] for k in user_fields})  # two distinct users
    index = torch.tensor([0, 1, 1, 0, 1, 0])
    per_candidate = x._replace(**{k: getattr(users, k)[index] for k in user_fields})
    with torch.no_grad():
        want = model(per_candidate)
        assert torch.allclose(model(users, index), want, atol=1e-6)
        assert not torch.allclose(model(users, torch.zeros_like(index)), want, atol=1e-3)
        with pytest.raises(ValueError, match=r"user_index\[2\] = 2 is outside 0..1"):
            model(users, torch.tensor([0, 1, 2, 0, 1, 0]))
        with pytest.raises(ValueError, match=r"user_index must have shape \(6,\)"):
            model(users, index[:5])
        with pytest.raises(ValueError, match="RankerInputs.action_types has 6 rows"):
            model(users._replace(action_types=x.action_types), index)


def test_reduced_precision_scores_stay_close(spec: FeatureSpec) -> None:
    model = _model(spec)
    req = _request(spec)
    want = _model_probs(model, req)
    got = ServingRanker(model, InferenceOptions(precision="bf16")).score(req)
    diff = (got - want).abs().max().item()
    assert 0 < diff < 0.02, diff  # bf16 differs, but well below any ranking-relevant gap


def test_pack_roundtrip_keeps_dtypes_shapes_and_values() -> None:
    g = torch.Generator().manual_seed(0)
    tensors = [
        torch.randint(-5, 5, (3, 7), generator=g),
        torch.randn(2, 5, 3, generator=g),
        torch.randn(4, 6, generator=g)[:, ::2],  # non-contiguous
        torch.tensor([1_700_000_000_123]),
        torch.zeros(0, 4),
        torch.randn(5, generator=g).to(torch.bfloat16),
    ]
    buffer, layout = pack(tensors)
    assert buffer.dtype == torch.uint8 and buffer.dim() == 1
    out = unpack(buffer, layout)
    for a, b in zip(tensors, out, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        assert b.data_ptr() % 16 == 0 or b.numel() == 0
    for a, b in zip(to_device_plain(tensors, "cpu"), to_device_packed(tensors, "cpu"), strict=True):
        assert torch.equal(a, b)


@cuda
@pytest.mark.cuda
def test_cuda_optimized_path_matches_plain(spec: FeatureSpec) -> None:
    model = _model(spec)
    req = _request(spec)
    want = _model_probs(model, req)
    got = ServingRanker(model, InferenceOptions(device="cuda")).score(req)
    assert torch.allclose(got, want, atol=1e-4)
    fp16 = ServingRanker(model, InferenceOptions(device="cuda", precision="fp16")).score(req)
    assert (fp16 - want).abs().max() < 0.02


@cuda
@pytest.mark.cuda
def test_cuda_packed_transfer_is_one_copy() -> None:
    tensors = [torch.randn(3, 4), torch.arange(10), torch.randn(2, 2, 2)]
    out = to_device_packed(tensors, "cuda")
    assert all(t.is_cuda for t in out)
    storages = {t.untyped_storage().data_ptr() for t in out}
    assert len(storages) == 1
    for a, b in zip(tensors, out, strict=True):
        assert torch.equal(a, b.cpu())


@pytest.mark.parametrize(
    "options",
    [InferenceOptions(), InferenceOptions.plain(), InferenceOptions(dedup=False)],
    ids=str,
)
def test_score_many_equals_one_forward_per_request(
    spec: FeatureSpec, options: InferenceOptions
) -> None:
    model = _model(spec)
    ranker = ServingRanker(model, options)
    requests = [_request(spec, b=b, user_row=u) for b, u in ((5, 1), (12, 4), (1, 0), (30, 7))]
    merged = ranker.score_many(requests)
    assert [m.shape[0] for m in merged] == [5, 12, 1, 30]
    for req, got in zip(requests, merged, strict=True):
        assert torch.allclose(got, _model_probs(model, req), atol=1e-5)


def _graph_ready_ranker(
    spec: FeatureSpec, device: str = "cpu"
) -> tuple[Pinnability, ServingRanker]:
    model = _model(spec)
    opts = InferenceOptions(device=device, split_first_layer=False, compact_visible=False,
                            chunk_size=0, validate_inputs=False)  # fmt: skip
    return model, ServingRanker(model, opts)


def test_graphed_forward_pads_to_buckets_and_ignores_stale_rows(spec: FeatureSpec) -> None:
    model, ranker = _graph_ready_ranker(spec)
    graphed = GraphedForward(ranker._graph_body, "cpu", batch_fields=3, min_bucket=16)
    # 40 rows of one user, then 33 of another in the same 64-row bucket: rows 33..39 of
    # the static buffer still hold the first request's values
    for b, user in ((40, 4), (33, 7), (16, 2), (65, 5), (1, 3)):
        req = _request(spec, b=b, user_row=min(user, b - 1))
        got = graphed(list(req))
        assert got.shape == (b, len(spec.heads))
        assert torch.allclose(got, _model_probs(model, req), atol=1e-5)
    assert graphed.buckets == [16, 64, 128]
    assert bucket_size(1) == 64 and bucket_size(64) == 64 and bucket_size(65) == 128
    with pytest.raises(ValueError, match="n=0"):
        bucket_size(0)


def test_graphed_forward_rejects_mismatched_rows(spec: FeatureSpec) -> None:
    _, ranker = _graph_ready_ranker(spec)
    graphed = GraphedForward(ranker._graph_body, "cpu", batch_fields=3)
    req = list(_request(spec, b=10))
    req[1] = req[1][:9]
    with pytest.raises(ValueError, match="input 1 has 9 rows, input 0 has 10"):
        graphed(req)


def test_cuda_graphs_option_is_validated() -> None:
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        InferenceOptions(cuda_graphs=True)
    with pytest.raises(ValueError, match="exclusive"):
        InferenceOptions(device="cuda", cuda_graphs=True, compile=True)


@cuda
@pytest.mark.cuda
def test_cuda_graphs_match_plain_path_across_buckets(spec: FeatureSpec) -> None:
    model = _model(spec)
    ranker = ServingRanker(model, InferenceOptions(device="cuda", cuda_graphs=True))
    assert ranker.graphed is not None
    for b, user in ((37, 4), (20, 6), (64, 1), (300, 5), (37, 2)):
        req = _request(spec, b=b, user_row=min(user, b - 1))
        assert torch.allclose(ranker.score(req), _model_probs(model, req), atol=1e-4)
    assert ranker.graphed.buckets == [64, 512]
    assert ranker.graphed.captures == 2
    fp16 = ServingRanker(model, InferenceOptions(device="cuda", cuda_graphs=True, precision="fp16"))
    req = _request(spec, b=37)
    assert (fp16.score(req) - _model_probs(model, req)).abs().max() < 0.02


@pytest.mark.parametrize("cross_mode", ["stacked", "parallel"])
def test_align_width_pads_the_cross_network_exactly(spec: FeatureSpec, cross_mode: str) -> None:
    torch.manual_seed(0)
    cfg = replace(PinnabilityConfig.preset("small"), cross_mode=cross_mode)
    model = Pinnability(spec, cfg).eval()
    width = model.cross.layers[0].in_features
    assert width % 64 != 0  # otherwise there is nothing to pad
    ranker = ServingRanker(model, InferenceOptions(align_width=64))
    padded = ranker.model.cross.layers[0].in_features
    assert padded % 64 == 0 and width < padded < width + 64
    if cross_mode == "stacked":
        assert ranker.model.mlp.net[0].in_features == padded
    for b, user in ((37, 4), (5, 1)):
        req = _request(spec, b=b, user_row=user)
        assert torch.allclose(ranker.score(req), _model_probs(model, req), atol=1e-5)
    off = ServingRanker(model, InferenceOptions())  # CPU default: no padding
    assert off.model.cross.layers[0].in_features == width
    with pytest.raises(ValueError, match="align_width=0"):
        InferenceOptions(align_width=0)


def test_half_precision_casts_gemm_weights_once(spec: FeatureSpec) -> None:
    model = _model(spec)
    ranker = ServingRanker(model, InferenceOptions(precision="bf16"))
    assert ranker.model.cross.layers[0].weight.dtype == torch.bfloat16
    assert ranker.model.heads.weight.dtype == torch.bfloat16
    assert ranker.model.numerical_norm.running_mean.dtype == torch.float32
    req = _request(spec)
    assert (ranker.score(req) - _model_probs(model, req)).abs().max() < 0.02


def test_smoke_check_captures_every_bucket_up_to_max_candidates(spec: FeatureSpec) -> None:
    from transact.serving.service import smoke_check

    _, ranker = _graph_ready_ranker(spec)
    ranker.graphed = GraphedForward(ranker._graph_body, "cpu", batch_fields=3)  # CPU stand-in
    out = smoke_check(ranker, max_candidates=300)
    assert out.shape == (2, len(spec.heads)) and torch.isfinite(out).all()
    assert ranker.graphed.buckets == [64, 128, 256, 512] == graph_buckets(300)
    assert graph_buckets(64) == [64] and graph_buckets(65) == [64, 128]


def test_graphed_ranker_checks_inputs_on_the_host(spec: FeatureSpec) -> None:
    """A graph cannot raise on values, so with graphs the checks run before the replay."""
    model = _model(spec)
    ranker = ServingRanker(model, InferenceOptions(split_first_layer=False, compact_visible=False))
    ranker.model.config = replace(ranker.model.config, validate_inputs=False)  # as on CUDA
    ranker.graphed = GraphedForward(ranker._graph_body, "cpu", batch_fields=3)  # CPU stand-in
    req = _request(spec, b=12)
    bad = req.categorical.clone()
    bad[5, 0] = spec.categorical[0].cardinality  # one past the end of feature 0
    with pytest.raises(ValueError, match=r"categorical\[5, 0\]"):
        ranker.score(req._replace(categorical=bad))
    with pytest.raises(ValueError, match=r"categorical\[5, 0\]"):
        ranker.score_many([req, req._replace(categorical=bad)])
    assert ranker.graphed.buckets == []  # nothing reached the graph


def test_service_metrics_count_the_reference_path_by_reason(spec: FeatureSpec) -> None:
    """``/metrics`` reads the served ranker's counts at scrape time."""
    from types import SimpleNamespace

    from prometheus_client import generate_latest

    from transact.serving.engine import ServiceMetrics

    torch.manual_seed(0)
    cfg = PinnabilityConfig.preset("small", encoder="cnn")
    ranker = ServingRanker(Pinnability(spec, cfg).eval(), InferenceOptions())
    for _ in range(2):
        ranker.score(_request(spec, b=5))
    stats = SimpleNamespace(lookups=0, memory_hits=0, disk_hits=0, misses=0)
    assembler = SimpleNamespace(items=SimpleNamespace(cache=SimpleNamespace(stats=stats)))
    engine = SimpleNamespace(
        built_assembler=lambda: assembler,
        registry=SimpleNamespace(
            reloads=1, refusals=0, current=lambda: SimpleNamespace(ranker=ranker)
        ),
    )
    text = generate_latest(ServiceMetrics(engine).registry).decode()  # type: ignore[arg-type]
    reason = "sequence encoder CNNEncoder is not TransAct"
    assert f'transact_reference_path_requests_total{{reason="{reason}"}} 2.0' in text
    assert "transact_split_layer_fallbacks_total 0.0" in text
