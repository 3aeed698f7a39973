"""Feature assembly: item-table mapping, user attributes, degraded sources, column placement."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from transact.data.schema import FeatureSpec
from transact.serving.features import (
    BadRequest,
    FeatureAssembler,
    ItemFeatures,
    ItemFeatureStore,
    UserTableAttributes,
)
from transact.serving.synthetic import InMemorySequences, synthetic_items

NOW = int(time.time() * 1000)


def test_from_item_table_reads_item_group_features_by_name(spec: FeatureSpec) -> None:
    n = 6
    table = SimpleNamespace(
        embeddings_np=np.arange(n * spec.d_item, dtype=np.float32).reshape(n, spec.d_item),
        item_category=np.arange(n),
        item_top_interest=np.arange(n)[::-1].copy(),
        item_quality=np.linspace(0, 1, n).astype(np.float32),
        item_age_days=np.full(n, 3.0, np.float32),
    )
    f = ItemFeatures.from_item_table(table, spec)
    assert (f.categorical["item_category"] == np.arange(n) + 1).all()  # 0 = missing
    assert (f.numerical["item_age_days"] == 3.0).all()
    del table.item_age_days
    with pytest.raises(ValueError, match="item_age_days"):
        ItemFeatures.from_item_table(table, spec)


def test_columns_by_group_and_degraded_embedding(spec: FeatureSpec) -> None:
    items = synthetic_items(spec, 50, seed=1)
    store = ItemFeatureStore(items, spec, memory_rows=10)

    class BrokenEmbeddings:
        d_user = spec.d_user

        def lookup(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> np.ndarray:
            raise ConnectionError("embedding service down")

    users = SimpleNamespace(
        codes={
            "user_state": np.array([2, 3]),
            "country": np.array([7, 9]),
            "gender": np.array([1, 2]),
        },
        rows=lambda ids: (
            np.array([{10: 0, 11: 1}[int(i)] for i in ids])
            if all(int(i) in (10, 11) for i in ids)
            else (_ for _ in ()).throw(ValueError("unknown user"))
        ),
    )
    asm = FeatureAssembler(
        spec, store, InMemorySequences(spec, 50), BrokenEmbeddings(), UserTableAttributes(users)
    )
    out = asm.assemble(11, np.array([4, 8]), NOW, {"surface": 2, "hour_of_day": 5})
    t = out.tensors
    assert out.degraded == ["user_embedding"]
    assert float(t.user_embedding.abs().sum()) == 0.0
    col = spec.categorical_index
    assert t.categorical[:, col("country")].tolist() == [9, 9]
    assert t.categorical[:, col("surface")].tolist() == [2, 2]
    assert t.categorical[:, col("item_category")].tolist() == [
        int(items.categorical["item_category"][4]),
        int(items.categorical["item_category"][8]),
    ]
    assert np.allclose(t.candidate_embedding.numpy(), items.embeddings[[4, 8]])
    visible = t.action_types[0] != 0
    assert int(visible.sum()) > 0
    assert (t.action_embeddings[0, ~visible] == 0).all()
    unknown_user = asm.assemble(99, np.array([1]), NOW, {})  # not in the table: all missing
    assert int(unknown_user.tensors.categorical[0, col("country")]) == 0
    with pytest.raises(BadRequest) as e:
        asm.assemble(11, np.array([1, 50]), NOW, {})
    assert e.value.field == "candidates[1]"


def test_hour_of_day_follows_the_request_time_unless_sent(spec: FeatureSpec) -> None:
    asm = FeatureAssembler(spec, ItemFeatureStore(synthetic_items(spec, 20), spec))
    col = spec.categorical_index("hour_of_day")
    t_13h = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000 + 13 * 3_600_000 + 5
    derived = asm.assemble(1, np.array([0, 1]), t_13h, {}).tensors.categorical[:, col]
    assert derived.tolist() == [14, 14]  # UTC hour + 1, as the training builder writes it
    sent = asm.assemble(1, np.array([0]), t_13h, {"hour_of_day": 3}).tensors.categorical[:, col]
    assert sent.tolist() == [3]
    # the last hour of the UTC day is index 24: the example spec's vocabulary holds it
    t_23h = t_13h + 10 * 3_600_000
    assert asm.assemble(1, np.array([0]), t_23h, {}).tensors.categorical[:, col].tolist() == [24]
