"""``FeatureAssembler.assemble_many`` (the batched path) equals ``assemble`` per request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pytest
import torch

from transact.data.schema import FeatureSpec
from transact.serving.features import BadRequest, FeatureAssembler, ItemFeatureStore
from transact.serving.ranker import RequestTensors
from transact.serving.synthetic import InMemorySequences, synthetic_items

N_ITEMS = 200


class Attributes:
    """User attributes by user id; user 13 fails."""

    def attributes(self, user_id: int) -> Mapping[str, float]:
        if user_id == 13:
            raise RuntimeError("attribute store timeout")
        return {"user_state": 1 + user_id % 3, "gender": 1 + user_id % 2, "country": 3}


class Embeddings:
    """``d`` values per user; user 7's are not finite."""

    def __init__(self, d: int) -> None:
        self.d_user = d

    def lookup(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> np.ndarray:
        out = (np.asarray(user_ids)[:, None] * 0.1 + np.arange(self.d_user)).astype(np.float32)
        out[np.asarray(user_ids) == 7] = np.nan
        return out


def _requests(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    users = rng.choice([3, 7, 13, 21, 3, 40], n)  # repeated users, one failing, one NaN
    times = 1_767_000_000_000 + rng.integers(0, 86_400_000, n)
    sizes = rng.integers(1, 12, n)
    offsets = np.r_[0, np.cumsum(sizes)]
    items = rng.integers(0, N_ITEMS, int(offsets[-1]))
    return users, times, offsets, items


def _assembler(spec: FeatureSpec, sequences: InMemorySequences | None) -> FeatureAssembler:
    # the sequences draw items from 0..N_ITEMS+49: some actions are on unknown items
    store = ItemFeatureStore(synthetic_items(spec, N_ITEMS, seed=1), spec, memory_rows=64)
    return FeatureAssembler(spec, store, sequences, Embeddings(spec.d_user), Attributes())


@pytest.mark.parametrize("store_down", [False, True])
def test_assemble_many_equals_assemble_per_request(spec: FeatureSpec, store_down: bool) -> None:
    spec = replace(spec, d_user=6)
    sequences = InMemorySequences(spec, N_ITEMS + 50, seed=2)
    sequences.down = store_down
    assembler = _assembler(spec, sequences)
    users, times, offsets, items = _requests(np.random.default_rng(0), 40)
    context = {"surface": 1}
    many = assembler.assemble_many(users, times, offsets, items, context)
    assert len(many) == len(users)
    degraded_seen = set()
    for r, got in enumerate(many):
        want = assembler.assemble(
            int(users[r]), items[offsets[r] : offsets[r + 1]], int(times[r]), context
        )
        assert got.degraded == want.degraded, r
        degraded_seen.update(got.degraded)
        for name in RequestTensors._fields:
            a, b = getattr(got.tensors, name), getattr(want.tensors, name)
            assert a.dtype == b.dtype and a.shape == b.shape, (r, name)
            assert torch.equal(a, b), (r, name)
    expected = {"user_attributes", "user_embedding", "action_items"}
    if store_down:
        expected = {"user_attributes", "user_embedding", "realtime_sequence"}
    assert degraded_seen == expected


def test_assemble_many_without_a_store_and_with_a_client_hour(spec: FeatureSpec) -> None:
    assembler = _assembler(spec, None)
    users, times, offsets, items = _requests(np.random.default_rng(1), 5)
    many = assembler.assemble_many(users, times, offsets, items, {"hour_of_day": 5})
    col = spec.categorical_index("hour_of_day")
    for r, got in enumerate(many):
        assert "realtime_sequence" in got.degraded
        assert (got.tensors.categorical[:, col] == 5).all(), r


def test_assemble_many_names_the_request_of_an_unknown_item(spec: FeatureSpec) -> None:
    assembler = _assembler(spec, None)
    users, times, offsets, items = _requests(np.random.default_rng(2), 6)
    items[offsets[4] + 1] = N_ITEMS + 3
    with pytest.raises(BadRequest, match=r"requests\[4\]\.candidates\[1\]"):
        assembler.assemble_many(users, times, offsets, items)
    with pytest.raises(ValueError, match="offsets"):
        assembler.assemble_many(users, times, offsets[:-1], items)
