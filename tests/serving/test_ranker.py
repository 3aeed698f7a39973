"""ServingRanker: every inference switch against the plain path; packed transfer; GPU paths."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from transact.data.schema import FeatureSpec
from transact.models import Pinnability, PinnabilityConfig, example_ranker_inputs
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


def test_dedup_never_copies_user_rows(spec: FeatureSpec) -> None:
    ranker = ServingRanker(_model(spec), InferenceOptions())
    inputs = ranker.to_inputs(_request(spec, b=50))
    for name in ("action_types", "action_embeddings", "action_times_ms", "user_embedding"):
        t = getattr(inputs, name)
        assert t.shape[0] == 50 and t.stride(0) == 0, name
    assert ranker.fast_encoder
    plain = ServingRanker(_model(spec), InferenceOptions.plain()).to_inputs(_request(spec, b=50))
    assert plain.action_embeddings.stride(0) != 0


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
