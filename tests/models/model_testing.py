"""Hand-built FeatureSpec and random inputs shared by the model tests."""

from __future__ import annotations

import torch

from transact.data.schema import CategoricalFeature, FeatureSpec, NumericalFeature, RankerInputs
from transact.models.examples import example_ranker_inputs

REQUEST_MS = 1_700_000_000_000
HOUR = 3_600_000


def make_spec(seq_len: int = 100) -> FeatureSpec:
    return FeatureSpec(
        categorical=(
            CategoricalFeature("user_state", 4, group="user"),
            CategoricalFeature("country", 7, group="user"),
            CategoricalFeature("gender", 3, group="user"),
            CategoricalFeature("item_category", 11, group="item"),
            CategoricalFeature("surface", 2, group="context"),
        ),
        numerical=(
            NumericalFeature("item_quality", group="item"),
            NumericalFeature("user_tenure_days", group="user"),
            NumericalFeature("hour", group="context"),
        ),
        d_item=32,
        d_user=64,
        seq_len=seq_len,
    )


def make_inputs(spec: FeatureSpec, batch_size: int = 6, seed: int = 0) -> RankerInputs:
    """Random inputs; row 0 has an empty history, the others 1..seq_len actions."""
    return example_ranker_inputs(spec, batch_size, seed=seed, request_time_ms=REQUEST_MS)


def sequence_args(inputs: RankerInputs) -> tuple[torch.Tensor, ...]:
    return (
        inputs.action_types,
        inputs.action_embeddings,
        inputs.action_times_ms,
        inputs.request_time_ms,
        inputs.candidate_embedding,
    )


def full_history(batch_size: int, seq_len: int, d_item: int = 32, seed: int = 0):
    """Every position a real action, one per hour back from REQUEST_MS (newest first)."""
    g = torch.Generator().manual_seed(seed)
    types = torch.randint(1, 6, (batch_size, seq_len), generator=g)
    emb = torch.randn(batch_size, seq_len, d_item, generator=g)
    ages = (torch.arange(seq_len) + 1) * HOUR
    times = (REQUEST_MS - ages).expand(batch_size, seq_len).clone()
    request = torch.full((batch_size,), REQUEST_MS)
    cand = torch.randn(batch_size, d_item, generator=g)
    return types, emb, times, request, cand
