"""The model-cost benchmark's timed parts (transact.models.bench), at a tiny batch."""

from transact.models.bench import bench_attention, bench_lookup


def test_attention_and_lookup_figures_are_measured_beside_their_references() -> None:
    attention = bench_attention(batch_size=4, repeats=1, device="cpu")
    for key in ("sdpa_eval_ms", "reference_eval_ms", "sdpa_train_step_ms"):
        assert attention[key] > 0
    ratio = attention["reference_eval_ms"] / attention["sdpa_eval_ms"]
    assert abs(attention["eval_ratio_reference_over_sdpa"] - ratio) < 1e-12
    lookup = bench_lookup(batch_size=4, repeats=2, device="cpu")
    assert lookup["consolidated_ms"] > 0 and lookup["per_feature_ms"] > 0
