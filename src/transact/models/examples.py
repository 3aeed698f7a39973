"""Hand-made feature specs and random ranker inputs for summaries, tests and benchmarks."""

from __future__ import annotations

import torch

from transact.data.schema import (
    MS_PER_DAY,
    CategoricalFeature,
    FeatureSpec,
    NumericalFeature,
    RankerInputs,
)

SCALES = ("small", "paper")


def example_feature_spec(scale: str = "small") -> FeatureSpec:
    """A hand-made FeatureSpec for summaries, tests and benchmarks.

    ``small``: a few user/item/context features like the simulator's. ``paper``: large
    hashed id features so that ``PinnabilityConfig.preset("paper")`` lands near Table 9's
    92M parameters (most of a production ranker's parameters are embedding rows).
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; known: {list(SCALES)}")
    categorical = [
        CategoricalFeature("user_state", 5, group="user"),
        CategoricalFeature("country", 30, group="user"),
        CategoricalFeature("gender", 4, group="user"),
        CategoricalFeature("item_category", 64, group="item"),
        CategoricalFeature("item_top_interest", 32, group="item"),
        CategoricalFeature("surface", 4, group="context"),
        CategoricalFeature("hour_of_day", 25, group="context"),  # UTC hour + 1, 0 = missing
    ]
    numerical = [
        NumericalFeature("item_quality", group="item"),
        NumericalFeature("item_age_days", group="item"),
        NumericalFeature("user_tenure_days", group="user"),
    ]
    if scale == "paper":
        categorical += [
            CategoricalFeature("user_id_hash", 800_000, group="user"),
            CategoricalFeature("item_id_hash", 800_000, group="item"),
            CategoricalFeature("board_id_hash", 300_000, group="item"),
            CategoricalFeature("creator_id_hash", 150_000, group="item"),
            CategoricalFeature("query_interest_hash", 5_000, group="context"),
        ]
    return FeatureSpec(categorical=tuple(categorical), numerical=tuple(numerical))


def example_ranker_inputs(
    spec: FeatureSpec,
    batch_size: int,
    seed: int = 0,
    request_time_ms: int = 1_700_000_000_000,
    max_history: int | None = None,
) -> RankerInputs:
    """Random but well-formed ``RankerInputs`` for ``spec`` (CPU tensors).

    Each row gets a random history length in ``0..max_history`` (default seq_len; row 0
    is always empty, a brand-new user), actions newest first with strictly earlier times
    (up to 3 days before the request), random real action types, padding at the end
    (type 0, zero embedding, time 0).
    """
    g = torch.Generator().manual_seed(seed)
    b, s = batch_size, spec.seq_len
    cards = torch.tensor([c.cardinality for c in spec.categorical], dtype=torch.long)
    categorical = (torch.rand(b, len(cards), generator=g) * cards).long()
    numerical = torch.randn(b, len(spec.numerical), generator=g)
    candidate = torch.randn(b, spec.d_item, generator=g)
    user = torch.randn(b, spec.d_user, generator=g)
    limit = s if max_history is None else min(max_history, s)
    lengths = torch.randint(0, limit + 1, (b,), generator=g)
    lengths[0] = 0
    valid = torch.arange(s)[None, :] < lengths[:, None]
    action_types = torch.randint(1, spec.actions.size, (b, s), generator=g) * valid
    gaps = torch.randint(1, 3 * MS_PER_DAY // max(s, 1), (b, s), generator=g)
    ages = torch.cumsum(gaps, dim=1)  # increasing age = older, newest first
    request = torch.full((b,), request_time_ms, dtype=torch.long)
    action_times = torch.where(valid, request[:, None] - ages, torch.zeros_like(ages))
    action_embeddings = torch.randn(b, s, spec.d_item, generator=g) * valid[:, :, None]
    candidate_item_id = torch.randint(0, 1_000_000, (b,), generator=g)  # drawn last: the
    # draws above stay what they were before the field existed
    return RankerInputs(
        categorical=categorical,
        numerical=numerical,
        candidate_embedding=candidate,
        candidate_item_id=candidate_item_id,
        user_embedding=user,
        action_types=action_types,
        action_embeddings=action_embeddings,
        action_times_ms=action_times,
        request_time_ms=request,
    )
