"""Train/serve consistency on a simulated world: the features the service assembles for a
logged request (realtime store, item table, user table, request time) equal the training
examples the data stage builds for it, and the service scores them like the model does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from transact.data.schema import RankerInputs
from transact.serving.features import ItemFeatures, UserTableAttributes
from transact.serving.ranker import InferenceOptions
from transact.serving.registry import load_verified, publish_model
from transact.serving.service import build_engine
from transact.serving.synthetic import write_model_file


def test_served_features_equal_training_examples(tmp_path: Path) -> None:
    examples = pytest.importorskip("transact.data.examples")
    from transact.data.io import ItemTable, UserTable, load_manifest
    from transact.data.world import PRESETS, generate_world
    from transact.features.events import ValidationConfig
    from transact.features.processor import ProcessorConfig, SequenceProcessor
    from transact.features.reader import SequenceReader
    from transact.features.runner import DeadLetterSink, run_stream
    from transact.features.sources import ParquetReplaySource
    from transact.features.store import RocksDBSequenceStore

    cfg = replace(PRESETS["tiny"], n_users=25, warmup_days=1, train_days=1, eval_days=1)
    world = generate_world(tmp_path / "world", cfg, seed=3, progress=False)
    store = RocksDBSequenceStore(str(tmp_path / "seq"))
    run_stream(
        ParquetReplaySource(str(world)),
        store,
        SequenceProcessor(ProcessorConfig(capacity=60_000)),
        ValidationConfig(n_items=cfg.n_items),
        DeadLetterSink(None),
        show_progress=False,
    )
    m = load_manifest(world)
    ex = examples.build_example_set(world, m.eval_start_ms, m.eval_end_ms, seq_len=20)
    spec = ex.feature_spec
    publish_model(write_model_file(tmp_path / "raw" / "model.pt", spec), tmp_path / "m", "v1")
    items = ItemTable.load(world)
    parts = build_engine(
        tmp_path / "m",
        lambda s: ItemFeatures.from_item_table(items, s),
        sequences=SequenceReader(store, seq_len=spec.seq_len),
        user_attributes=UserTableAttributes(UserTable.load(world)),
        options=InferenceOptions(),
    )
    surface = spec.categorical_index("surface")
    ranker = parts.registry.current().ranker
    plain_model = load_verified(tmp_path / "m" / "v1", InferenceOptions.plain()).ranker.model
    full = next(iter(ex.batches(len(ex), shuffle=False)))
    checked = 0
    for r in np.linspace(0, ex.n_requests - 1, 6).astype(int).tolist():
        rows = np.flatnonzero(ex.example_request == r)
        if rows.size == 0:
            continue
        user, t = int(ex.request_user_ids[r]), int(ex.request_times_ms[r])
        got = parts.assembler.assemble(
            user, ex.item_ids[rows], t, {"surface": int(ex.categorical[rows[0], surface])}
        )
        assert got.degraded == []
        g = got.tensors
        assert (g.categorical.numpy() == ex.categorical[rows]).all()
        assert np.allclose(g.numerical.numpy(), ex.numerical[rows], atol=1e-6)
        assert (g.action_types[0].numpy() == ex.seq_types[r]).all()
        assert (g.action_times_ms[0].numpy() == ex.seq_times_ms[r]).all()
        want_emb = ex.item_embeddings[ex.seq_items[r]]
        assert np.allclose(g.action_embeddings[0].numpy(), want_emb, atol=1e-6)
        assert np.allclose(g.candidate_embedding.numpy(), ex.item_embeddings[ex.item_ids[rows]])
        assert (g.candidate_item_id.numpy() == ex.item_ids[rows]).all()
        # the optimized service scores them like the plain model scores the training rows
        training_rows = RankerInputs(*(t[torch.from_numpy(rows)] for t in full.inputs))
        with torch.no_grad():
            want = torch.sigmoid(plain_model(training_rows))
        assert torch.allclose(ranker.score(g), want, atol=1e-5)
        checked += 1
    assert checked >= 3
    store.close()
