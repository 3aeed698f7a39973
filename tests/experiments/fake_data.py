"""A synthetic dataset in the experiments' PreparedDataset shape, for backend tests.

Labels depend on the type of the user's most recent action, so a sequence model can beat
the no-sequence baseline.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transact.data.schema import MS_PER_DAY, LabeledBatch, RankerInputs
from transact.models import example_feature_spec, example_ranker_inputs


class FakeExampleSet:
    def __init__(self, n: int, seq_len: int, seed: int, items_per_request: int = 10) -> None:
        spec = replace(example_feature_spec("small"), seq_len=seq_len, d_user=8)
        self.feature_spec = spec
        self.inputs = example_ranker_inputs(spec, n, seed=seed, max_history=seq_len)
        x = self.inputs
        # actions two days apart, so the training-only 24 h time-window mask hides none
        valid = x.action_types > 0
        ages = (torch.arange(seq_len) + 1) * 2 * MS_PER_DAY
        times = torch.where(
            valid, x.request_time_ms[:, None] - ages[None, :], torch.zeros_like(ages)
        )
        # no per-row random side features to memorize: the sequence is the only signal
        self.inputs = x = x._replace(
            action_times_ms=times,
            categorical=torch.ones_like(x.categorical),
            numerical=torch.zeros_like(x.numerical),
            user_embedding=torch.zeros_like(x.user_embedding),
        )
        # the most recent action's type drives the labels: only a sequence model sees it
        recent = x.action_types[:, 0]
        signal = torch.where(recent >= 3, 1.5, -1.5) * (recent > 0)
        g = torch.Generator().manual_seed(seed + 1)
        probs = torch.stack(
            [
                torch.sigmoid(2 * signal - 2.0),
                torch.sigmoid(3 * signal - 3.0),
                torch.sigmoid(-3 * signal - 4.0),
            ],
            dim=1,
        )
        self.gt_probs = probs
        self.labels = (torch.rand(probs.shape, generator=g) < probs).float()
        self.request_ids = torch.arange(n) // items_per_request
        self.user_ids = self.request_ids // 2
        self.is_core = (self.user_ids % 3) != 0

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, start: int = 0):
        n = len(self)
        order = (
            torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            if shuffle
            else torch.arange(n)
        )
        for b in range(start, (n + batch_size - 1) // batch_size):
            idx = order[b * batch_size : (b + 1) * batch_size]
            yield LabeledBatch(
                inputs=RankerInputs(*(t[idx] for t in self.inputs)),
                labels=self.labels[idx],
                user_ids=self.user_ids[idx],
                request_ids=self.request_ids[idx],
                item_ids=idx.clone(),
                is_core=self.is_core[idx],
                top_interest=torch.zeros(len(idx), dtype=torch.long),
                gt_probs=self.gt_probs[idx],
            )


class FakePrepared:
    name = "fake"
    data_dir = Path("/nonexistent")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def example_sets(self, *, seq_len: int, negative_ratio: float, user_embeddings: Any, seed: int):
        return FakeExampleSet(3000, seq_len, seed=1), FakeExampleSet(2000, seq_len, seed=2)


def fake_backend(budget, tmp_path, with_embeddings: bool = False):
    from transact.experiments.backend import PaperBackend

    backend = PaperBackend("fake", budget, work_dir=tmp_path, progress=False)
    backend._data = FakePrepared()
    # the calibration slice: impressions of the same distribution, not down-sampled
    calib = FakeExampleSet(1500, backend.max_seq_len, seed=3)
    backend._calibration = (calib, None, {"examples": len(calib), "days": 1.0})
    if with_embeddings:
        backend._user_embeddings = object()  # example sets carry their own user embeddings
    else:
        backend._user_embeddings_reason = "the fake dataset has none"
    return backend


__all__ = ["FakeExampleSet", "FakePrepared", "fake_backend", "np"]
