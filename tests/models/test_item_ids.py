"""Hashed trainable item-id embeddings: the hash, the table, and the ranker option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.model_testing import make_inputs, make_spec
from transact.data.schema import RankerInputs
from transact.models import Pinnability, PinnabilityConfig
from transact.models.item_ids import (
    HASH_COEFFICIENTS,
    HASH_PRIME,
    HashedItemEmbedding,
    hash_item_ids,
)
from transact.models.pinnability import check_ranker_inputs

SPEC = make_spec(seq_len=20)


def _python_hash(item_id: int, buckets: int) -> int:
    """The documented formula in Python's unbounded integers (no overflow possible)."""
    c3, c2, c1, c0 = HASH_COEFFICIENTS
    x = item_id % HASH_PRIME
    return ((c3 * x**3 + c2 * x**2 + c1 * x + c0) % HASH_PRIME) % buckets


def test_hash_is_the_documented_formula_without_overflow() -> None:
    ids = [0, 1, 2, 17, 65_535, 2**31 - 2, 2**31 - 1, 2**31, 2**40 + 3, 2**62]
    for buckets in (1, 7, 1000, 65_536):
        got = hash_item_ids(torch.tensor(ids, dtype=torch.int64), buckets).tolist()
        assert got == [_python_hash(i, buckets) for i in ids]
    rows = hash_item_ids(torch.arange(100_000), 1000)
    assert int(rows.min()) >= 0 and int(rows.max()) <= 999


def test_hash_spreads_neighbouring_ids_and_collides_as_chance_predicts() -> None:
    rows = hash_item_ids(torch.arange(1000), 1000).numpy()
    # neighbours (items numbered in file order) land far apart, not in neighbouring rows
    assert np.mean(np.abs(np.diff(rows)) <= 1) < 0.01
    # n consecutive ids in b buckets fill b (1 - (1 - 1/b)^n) rows, as random placement
    # does (sd ~ 10 here); a linear hash's lattice misses this by 70 at (1000, 1000)
    for n, buckets in ((1000, 1000), (1000, 1024), (5000, 4096), (100_000, 65_536)):
        distinct = np.unique(hash_item_ids(torch.arange(n), buckets).numpy()).size
        expected = buckets * (1 - (1 - 1 / buckets) ** n)
        assert abs(distinct - expected) < 4 * np.sqrt(expected * (1 - expected / buckets)) + 5, (
            n,
            buckets,
            distinct,
            expected,
        )
    # a table with many more rows than items: few collisions (n^2 / 2b ~ 0.5 pairs)
    assert np.unique(hash_item_ids(torch.arange(1000), 1_000_000).numpy()).size >= 997


def test_colliding_ids_share_a_row_and_only_read_rows_get_gradients() -> None:
    torch.manual_seed(0)
    emb = HashedItemEmbedding(buckets=5, dim=4)
    ids = torch.arange(12)
    rows = hash_item_ids(ids, 5)
    out = emb(ids)
    assert out.shape == (12, 4)
    a, b = (int(i) for i in torch.nonzero(rows == rows[0]).flatten()[:2])
    assert torch.equal(out[a], out[b])
    emb.zero_grad()
    emb(torch.tensor([3])).sum().backward()
    assert emb.table.weight.grad is not None
    touched = emb.table.weight.grad.abs().sum(1) > 0
    assert touched.tolist() == [r == int(hash_item_ids(torch.tensor([3]), 5)) for r in range(5)]
    with pytest.raises(ValueError, match="buckets=0"):
        HashedItemEmbedding(buckets=0, dim=4)


def test_option_widens_the_dcn_input_and_reads_the_candidate_id() -> None:
    off = Pinnability(SPEC, PinnabilityConfig.preset("small")).eval()
    on = Pinnability(SPEC, PinnabilityConfig.preset("small", item_id_embedding=8)).eval()
    assert on.input_dim == off.input_dim + 8
    assert off.item_id_embedding is None
    assert on.item_id_embedding is not None and on.item_id_embedding.buckets == 65_536
    x = make_inputs(SPEC, batch_size=6)
    with torch.no_grad():
        moved = x._replace(candidate_item_id=x.candidate_item_id + 1)
        assert torch.equal(off(x), off(moved))  # the paper's ranker ignores the id
        assert (on(x) - on(moved)).abs().max() > 1e-4


def test_id_embedding_learns_per_item_rates_that_content_cannot_tell_apart() -> None:
    """Items with identical content but their own click rates: only the id separates them."""
    torch.manual_seed(0)
    n_items, b = 40, 512
    rates = torch.rand(n_items)
    x = make_inputs(SPEC, batch_size=b, seed=1)
    x = x._replace(candidate_embedding=torch.zeros(b, SPEC.d_item))  # no content
    results = {}
    for dim in (0, 8):
        torch.manual_seed(0)
        cfg = PinnabilityConfig.preset("small", encoder="none", item_id_embedding=dim)
        model = Pinnability(SPEC, cfg)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(2)
        for _ in range(150):
            ids = torch.randint(0, n_items, (b,), generator=g)
            labels = (torch.rand(b, generator=g) < rates[ids]).float()
            logits = model(x._replace(candidate_item_id=ids))[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            ids = torch.arange(n_items).repeat(b // n_items + 1)[:b]
            predicted = torch.sigmoid(model(x._replace(candidate_item_id=ids))[:, 0])
        per_item = torch.zeros(n_items).index_add_(0, ids, predicted) / torch.bincount(ids)
        results[dim] = float(np.corrcoef(per_item.numpy(), rates.numpy())[0, 1])
    assert results[8] > 0.9, results
    assert abs(results[0]) < 0.5 or np.isnan(results[0]), results


def test_bad_candidate_ids_name_the_field_and_row() -> None:
    x = make_inputs(SPEC, batch_size=4)
    ids = x.candidate_item_id.clone()
    ids[2] = -1
    with pytest.raises(ValueError, match=r"candidate_item_id\[2\] = -1 is negative"):
        check_ranker_inputs(SPEC, x._replace(candidate_item_id=ids))
    with pytest.raises(ValueError, match=r"candidate_item_id must have shape \(4,\)"):
        check_ranker_inputs(SPEC, x._replace(candidate_item_id=ids[:3]))
    with pytest.raises(TypeError, match="candidate_item_id must be integer"):
        check_ranker_inputs(SPEC, x._replace(candidate_item_id=ids.float()))


def test_config_fields_validate_and_round_trip() -> None:
    with pytest.raises(ValueError, match="item_id_embedding=-1"):
        PinnabilityConfig(item_id_embedding=-1)
    with pytest.raises(ValueError, match="item_id_buckets=0"):
        PinnabilityConfig(item_id_buckets=0)
    cfg = PinnabilityConfig.preset("small", item_id_embedding=16, item_id_buckets=1000)
    assert PinnabilityConfig.from_dict(cfg.to_dict()) == cfg
    assert PinnabilityConfig.from_dict({"preset": "small", "item_id_embedding": 4}) == (
        PinnabilityConfig.preset("small", item_id_embedding=4)
    )


def test_torch_export_with_the_id_embedding_equals_eager() -> None:
    model = Pinnability(SPEC, PinnabilityConfig.preset("small", item_id_embedding=8)).eval()
    inputs = make_inputs(SPEC, batch_size=8)
    batch = torch.export.Dim("batch", min=2, max=4096)
    dynamic = (RankerInputs(*({0: batch} for _ in RankerInputs._fields)),)
    exported = torch.export.export(model, (inputs,), dynamic_shapes=dynamic).module()
    other = make_inputs(SPEC, batch_size=37, seed=5)
    torch.testing.assert_close(exported(other), model(other), rtol=1e-5, atol=1e-6)
