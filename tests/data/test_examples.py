import itertools

import numpy as np
import pytest
import torch

from transact.data.examples import ExampleSet, build_example_set, build_split
from transact.data.io import ItemTable, load_event_arrays, load_manifest
from transact.data.schema import PAD_ACTION, PAD_ITEM, LabeledBatch
from transact.data.sequences import build_sequences_reference


@pytest.fixture(scope="module")
def train(tiny_world):
    return build_split(tiny_world, "train", seq_len=20, negative_ratio=2.0, seed=1)


@pytest.fixture(scope="module")
def evalset(tiny_world):
    return build_split(tiny_world, "eval", seq_len=20)


def test_no_leakage_order_and_padding(train):
    req_t = train.request_times_ms[:, None]
    real = train.seq_types != PAD_ACTION
    assert (train.seq_times_ms[real] < np.broadcast_to(req_t, real.shape)[real]).all()
    # newest first among real actions
    t = np.where(real, train.seq_times_ms, np.iinfo(np.int64).min)
    assert (t[:, :-1] >= t[:, 1:]).all()
    # padding only at the end, with PAD_ITEM and time 0
    assert not (~real[:, :-1] & real[:, 1:]).any()
    assert (train.seq_items[~real] == PAD_ITEM).all() and (train.seq_times_ms[~real] == 0).all()
    assert real.any(axis=1).mean() > 0.5


def test_sequences_match_the_reference_builder(tiny_world, train):
    vocab = load_manifest(tiny_world).actions
    ev = load_event_arrays(tiny_world)
    keep = [vocab.id(a) for a in ("closeup", "click", "repin", "hide")]
    rows = np.random.default_rng(0).choice(train.n_requests, 60, replace=False)
    ref = build_sequences_reference(
        ev.user_ids.tolist(), ev.item_ids.tolist(), ev.action_types.tolist(), ev.times_ms.tolist(),
        train.request_user_ids[rows].tolist(), train.request_times_ms[rows].tolist(), 20, keep,
    )  # fmt: skip
    assert np.array_equal(ref.action_types.numpy(), train.seq_types[rows])
    assert np.array_equal(ref.action_item_ids.numpy(), train.seq_items[rows])
    assert np.array_equal(ref.action_times_ms.numpy(), train.seq_times_ms[rows])
    assert not np.isin(train.seq_types, [vocab.id("impression")]).any()


def test_negative_downsampling_ratio(tiny_world, train):
    pos = train.labels.any(axis=1)
    assert (~pos).sum() == round(2.0 * pos.sum())
    assert train.meta["positives"] == pos.sum()
    full = build_split(tiny_world, "train", seq_len=5)
    assert len(full) == train.meta["impressions_in_range"]
    assert full.labels.any(axis=1).sum() == pos.sum()  # every positive kept
    other = build_split(tiny_world, "train", seq_len=5, negative_ratio=2.0, seed=2)
    assert len(other) == len(train) and not np.array_equal(other.item_ids, train.item_ids)
    with pytest.raises(ValueError, match="never down-sampled"):
        build_split(tiny_world, "eval", negative_ratio=1.0)


def test_eval_is_randomized_only_and_in_range(tiny_world, evalset):
    m = load_manifest(tiny_world)
    assert evalset.randomized.all()
    assert (evalset.request_times_ms >= m.eval_start_ms).all()
    assert (evalset.request_times_ms < m.eval_end_ms).all()
    everything = build_example_set(tiny_world, m.eval_start_ms, m.eval_end_ms, seq_len=5)
    assert everything.randomized.mean() < 0.5 and len(everything) > 2 * len(evalset)


def test_batches_are_deterministic_resumable_and_gathered(tiny_world, train):
    b1 = list(itertools.islice(train.batches(100, shuffle=True, seed=5), 5))
    b2 = list(itertools.islice(train.batches(100, shuffle=True, seed=5), 5))
    sizes = [len(b.labels) for b in train.batches(len(train) // 3 + 1, shuffle=False)]
    assert sum(sizes) == len(train) and len(sizes) == 3
    assert all(torch.equal(x.item_ids, y.item_ids) for x, y in zip(b1, b2, strict=True))
    other = next(train.batches(100, shuffle=True, seed=6))
    assert not torch.equal(other.item_ids, b1[0].item_ids)
    resumed = list(train.batches(100, shuffle=True, seed=5, start=300))
    assert torch.equal(resumed[0].item_ids, b1[3].item_ids)
    b = b1[0]
    assert isinstance(b, LabeledBatch)
    spec = train.feature_spec
    n = len(b.labels)
    assert b.inputs.action_embeddings.shape == (n, 20, spec.d_item)
    assert b.inputs.categorical.shape == (n, len(spec.categorical))
    assert b.inputs.user_embedding.shape == (n, 0)
    table = ItemTable.load(tiny_world).embedding_table()
    seq_items = torch.from_numpy(
        train.seq_items[
            train.example_request[train.example_order(shuffle=True, seed=5)[:100]]
        ].astype(np.int64)
    )
    assert torch.equal(b.inputs.action_embeddings, table[seq_items])
    assert torch.equal(b.inputs.candidate_embedding, table[b.item_ids])
    assert torch.equal(b.inputs.candidate_item_id, b.item_ids)  # the id embedding's input
    assert (b.inputs.action_embeddings[b.inputs.action_types == 0] == 0).all()
    card = torch.tensor([c.cardinality for c in spec.categorical])
    assert (b.inputs.categorical >= 0).all() and (b.inputs.categorical < card).all()
    assert (b.inputs.categorical[:, spec.categorical_index("hour_of_day")] >= 1).all()
    items = ItemTable.load(tiny_world)
    j = spec.numerical.index(next(n for n in spec.numerical if n.name == "log_popularity"))
    expect = np.log(items.popularity[b.item_ids.numpy()])
    assert np.allclose(b.inputs.numerical[:, j].numpy(), expect, atol=1e-5)
    assert b.labels.dtype == torch.float32 and set(b.labels.unique().tolist()) <= {0.0, 1.0}


def test_save_load_round_trip(tmp_path, train):
    train.save(tmp_path / "ex")
    back = ExampleSet.load(tmp_path / "ex")
    assert back.feature_spec == train.feature_spec and back.meta == train.meta
    a = next(train.batches(64, shuffle=True, seed=1))
    b = next(back.batches(64, shuffle=True, seed=1))
    for x, y in zip(a.inputs, b.inputs, strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.labels, b.labels)
    mm = ExampleSet.load(tmp_path / "ex", mmap=True)
    assert torch.equal(next(mm.batches(64, shuffle=True, seed=1)).labels, a.labels)


class _FakeUserEmbeddings:
    d_user = 4

    def lookup(self, user_ids, request_time_ms):
        return np.stack(
            [user_ids, request_time_ms // 86_400_000, user_ids * 0, user_ids * 0 + 1], 1
        ).astype(np.float32)


def test_user_embeddings_are_looked_up_per_request(tiny_world):
    m = load_manifest(tiny_world)
    ex = build_example_set(
        tiny_world, m.eval_start_ms, m.eval_end_ms, seq_len=4, user_embeddings=_FakeUserEmbeddings()
    )
    assert ex.feature_spec.d_user == 4
    b = next(ex.batches(50, shuffle=False))
    assert torch.equal(b.inputs.user_embedding[:, 0].long(), b.user_ids)
