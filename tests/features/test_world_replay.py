"""Backfill from the data stage's simulated world: every event valid, and the read path
equals the sequences the training examples are built from, at every logged request."""

from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import torch

from transact.data.examples import DEFAULT_SEQUENCE_ACTIONS
from transact.data.io import load_event_arrays
from transact.data.sequences import SequenceBuilder
from transact.data.world import PRESETS, generate_world
from transact.features.events import ValidationConfig
from transact.features.processor import ProcessorConfig, SequenceProcessor
from transact.features.reader import SequenceReader
from transact.features.runner import DeadLetterSink, run_stream
from transact.features.sources import ParquetReplaySource, event_files
from transact.features.store import RocksDBSequenceStore


def test_world_backfill_matches_training_sequences_at_logged_requests(tmp_path):
    cfg = replace(PRESETS["tiny"], n_users=25, warmup_days=1, train_days=1, eval_days=1)
    world = generate_world(tmp_path / "world", cfg, seed=3, progress=False)
    # capacity large enough to hold every action, so reads at past request times are exact
    proc = SequenceProcessor(ProcessorConfig(capacity=60_000))
    store = RocksDBSequenceStore(str(tmp_path / "seq"))
    summary = run_stream(
        ParquetReplaySource(str(world)),
        store,
        proc,
        ValidationConfig(n_items=cfg.n_items),
        DeadLetterSink(None),
        show_progress=False,
    )
    assert summary.outcomes["invalid"] == 0 and summary.outcomes["late"] == 0
    n_events = sum(pq.ParquetFile(f).metadata.num_rows for f in event_files(str(world)))
    assert summary.events == n_events
    assert summary.outcomes["accepted"] + summary.outcomes["filtered_action"] == n_events

    imp = pq.read_table(str(world / "impressions"), columns=["user_id", "request_time_ms"])
    users = imp.column("user_id").to_numpy().astype(np.int64)
    times = imp.column("request_time_ms").to_numpy().astype(np.int64)
    pick = np.random.default_rng(0).choice(len(users), size=min(2048, len(users)), replace=False)
    users, times = users[pick], times[pick]
    ev = load_event_arrays(world, actions=DEFAULT_SEQUENCE_ACTIONS)
    builder = SequenceBuilder(ev.user_ids, ev.item_ids, ev.action_types, ev.times_ms, seq_len=100)
    got = SequenceReader(store, seq_len=100).fetch(users, times)
    want = builder.fetch(users, times)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert int((got.action_types > 0).sum()) > 1000
    store.close()
