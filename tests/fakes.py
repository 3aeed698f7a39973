"""The test suite's fakes, imported one way: ``from tests.fakes import FakeExampleSet``.

* :class:`FakeExampleSet`: a synthetic example set in the trainer's ``BatchSource`` shape
  (the one fake of :class:`transact.data.examples.ExampleSet`), whose labels only a
  model that reads the sequence can predict.
* :class:`FakeRanker`, :func:`make_model`, :func:`bce_loss`: a tiny ranker and loss, so
  trainer tests run in seconds.
* :func:`fake_backend`: the experiments' real ``PaperBackend`` over fake example sets.
* :class:`FakeBackend`: a stand-in for the whole backend, whose variants rank with a
  known quality (for the experiment runner's tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from transact.data.schema import MS_PER_DAY, LabeledBatch, RankerInputs
from transact.models import example_feature_spec, example_ranker_inputs

if TYPE_CHECKING:  # the experiments' fakes import their stage lazily: trainer tests stay light
    from transact.experiments.runner import ScoredVariant
    from transact.experiments.spec import Variant

HEADS = ("click", "repin", "hide")


class FakeExampleSet:
    """``n`` examples of the "small" example FeatureSpec; the labels follow the type of the
    user's most recent action, so only a sequence model beats the base rates.

    The rows of a request share its user's fields (sequence, request time), as in the real
    example set. Side features carry no signal (constant categoricals, zero numericals and user
    embedding), actions lie two days apart (the training-only 24 h time-window mask hides
    none). Batches follow :class:`transact.data.examples.ExampleSet`: a seeded order,
    ``start`` an example offset of that order, ``batch(rows)`` for given rows.

    Args:
        n: examples.
        seq_len: sequence length |S| of the feature spec.
        seed: inputs and labels.
        items_per_request: consecutive examples per request (two requests per user).
        fail_after_batches: raise ``KeyboardInterrupt`` instead of the batch after that
            many (a simulated crash).

    Attributes: ``feature_spec``, ``inputs`` (``RankerInputs`` ``[n, ...]``), ``labels``
    and ``gt_probs`` ``[n, 3]``, ``served``: ``(seed, batch index)`` of every batch yielded.
    """

    def __init__(
        self,
        n: int = 512,
        seq_len: int = 8,
        seed: int = 0,
        items_per_request: int = 10,
        fail_after_batches: int | None = None,
    ) -> None:
        spec = replace(example_feature_spec("small"), seq_len=seq_len, d_user=8)
        self.feature_spec = spec
        x = example_ranker_inputs(spec, n, seed=seed, max_history=seq_len)
        first = (torch.arange(n) // items_per_request) * items_per_request  # request's 1st row
        x = x._replace(
            action_types=x.action_types[first],
            action_embeddings=x.action_embeddings[first],
            request_time_ms=x.request_time_ms[first],
        )
        valid = x.action_types > 0
        ages = (torch.arange(seq_len) + 1) * 2 * MS_PER_DAY
        times = torch.where(
            valid, x.request_time_ms[:, None] - ages[None, :], torch.zeros_like(ages)
        )
        self.inputs = x = x._replace(
            action_times_ms=times,
            categorical=torch.ones_like(x.categorical),
            numerical=torch.zeros_like(x.numerical),
            user_embedding=torch.zeros_like(x.user_embedding),
        )
        recent = x.action_types[:, 0]
        signal = torch.where(recent >= 3, 1.5, -1.5) * (recent > 0)
        g = torch.Generator().manual_seed(seed + 1)
        self.gt_probs = torch.stack(
            [
                torch.sigmoid(2 * signal - 2.0),
                torch.sigmoid(3 * signal - 3.0),
                torch.sigmoid(-3 * signal - 4.0),
            ],
            dim=1,
        )
        self.labels = (torch.rand(self.gt_probs.shape, generator=g) < self.gt_probs).float()
        self.request_ids = torch.arange(n) // items_per_request
        self.user_ids = self.request_ids // 2
        self.is_core = (self.user_ids % 3) != 0
        self.fail_after_batches = fail_after_batches
        self.served: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0, start: int = 0
    ) -> Iterator[LabeledBatch]:
        n = len(self)
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
        for a in range(start, n, batch_size):
            if self.fail_after_batches is not None and len(self.served) >= self.fail_after_batches:
                raise KeyboardInterrupt("simulated crash")
            self.served.append((seed, a // batch_size))
            yield self.batch(order[a : a + batch_size])

    def batch(self, rows: np.ndarray | torch.Tensor) -> LabeledBatch:
        """The :class:`LabeledBatch` of example rows ``[B]``."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        return LabeledBatch(
            inputs=RankerInputs(*(t[idx] for t in self.inputs)),
            labels=self.labels[idx],
            user_ids=self.user_ids[idx],
            request_ids=self.request_ids[idx],
            item_ids=idx.clone(),
            is_core=self.is_core[idx],
            top_interest=torch.zeros(len(idx), dtype=torch.long),
            gt_probs=self.gt_probs[idx],
        )


class FakeRanker(torch.nn.Module):
    """An MLP over the candidate embedding and the most recent action's type, with dropout
    so the RNG state matters (what a resumed run must restore). ``[B]`` rows -> ``[B, 3]``."""

    def __init__(self) -> None:
        super().__init__()
        spec = example_feature_spec("small")
        self.n_action_types = spec.actions.size
        self.net = torch.nn.Sequential(
            torch.nn.Linear(spec.d_item + self.n_action_types, 16),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(16, len(HEADS)),
        )

    def forward(self, inputs: RankerInputs) -> torch.Tensor:
        recent = torch.nn.functional.one_hot(inputs.action_types[:, 0], self.n_action_types)
        return self.net(torch.cat([inputs.candidate_embedding, recent.float()], dim=1))


def bce_loss(logits: torch.Tensor, batch: LabeledBatch) -> torch.Tensor:
    """Unweighted binary cross-entropy over the heads: the trainer's ``loss(logits, batch)``."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)


def make_model(seed: int = 0) -> FakeRanker:
    """A :class:`FakeRanker` initialized from ``seed``."""
    torch.manual_seed(seed)
    return FakeRanker()


class FakePrepared:
    """A ``PreparedDataset`` stand-in whose example sets are :class:`FakeExampleSet` s."""

    name = "fake"
    data_dir = Path("/nonexistent")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def example_sets(
        self, *, seq_len: int, negative_ratio: float, user_embeddings: Any, seed: int
    ) -> tuple[FakeExampleSet, FakeExampleSet]:
        return (
            FakeExampleSet(3000, seq_len, seed=1, items_per_request=5),
            FakeExampleSet(2000, seq_len, seed=2, items_per_request=5),
        )


def fake_backend(budget: Any, tmp_path: Path, with_embeddings: bool = False) -> Any:
    """The experiments' ``PaperBackend`` over :class:`FakePrepared` (no world to generate)."""
    from transact.experiments.backend import PaperBackend

    backend = PaperBackend("fake", budget, work_dir=tmp_path, progress=False)
    backend._data = FakePrepared()
    # the calibration slice: impressions of the same distribution, not down-sampled
    calib = FakeExampleSet(1500, backend.max_seq_len, seed=3, items_per_request=5)
    backend._calibration = (calib, None, {"examples": len(calib), "days": 1.0})
    if with_embeddings:
        backend._user_embeddings = object()  # example sets carry their own user embeddings
    else:
        backend._user_embeddings_reason = "the fake dataset has none"
    return backend


@dataclass
class FakeBackend:
    """Scores = quality * ground truth + (1 - quality) * noise; quality per variant key.

    ``unavailable`` keys raise :class:`VariantUnavailable`; ``calls`` counts trainings;
    ``ground_truth=False`` hides the probabilities (a real log: no expected HIT@3).
    """

    quality: dict[str, float]
    unavailable: set[str] = field(default_factory=set)
    n_users: int = 400
    requests_per_user: int = 4
    items_per_request: int = 12
    heads: tuple[str, ...] = HEADS
    utility: dict[str, float] = field(
        default_factory=lambda: {"click": 1.0, "repin": 5.0, "hide": -20.0}
    )
    calls: list[tuple[str, int]] = field(default_factory=list)
    ground_truth: bool = True
    roles: dict[str, str] = field(default_factory=dict)  # paper column -> this fake's head

    def __post_init__(self) -> None:
        rng = np.random.default_rng(123)
        n = self.n_users * self.requests_per_user * self.items_per_request
        self.user_ids = np.repeat(
            np.arange(self.n_users), self.requests_per_user * self.items_per_request
        )
        self.request_ids = np.repeat(
            np.arange(self.n_users * self.requests_per_user), self.items_per_request
        )
        self.is_core = (self.user_ids % 3) != 0
        gt = np.stack([rng.beta(1, 12, n), rng.beta(1, 25, n), rng.beta(1, 60, n)], axis=1).astype(
            np.float64
        )
        self.gt = gt
        self.labels = (rng.random((n, 3)) < gt).astype(np.int8)

    def describe(self) -> dict[str, Any]:
        return {"name": "fake", "impressions": len(self.user_ids)}

    def train_and_score(self, variant: Variant, seed: int) -> ScoredVariant:
        from transact.evaluation.predictions import Predictions
        from transact.experiments.runner import ScoredVariant, VariantUnavailable

        self.calls.append((variant.key, seed))
        if variant.key in self.unavailable:
            raise VariantUnavailable(f"{variant.key} needs something the fake lacks")
        q = self.quality.get(variant.key, 0.5)
        noise = np.random.default_rng(seed).random(self.gt.shape) * self.gt.mean(axis=0)
        scores = q * self.gt + (1 - q) * noise
        n = len(self.user_ids)
        preds = Predictions(
            heads=self.heads,
            scores=scores,
            labels=self.labels,
            user_ids=self.user_ids,
            request_ids=self.request_ids,
            item_ids=np.arange(n),
            is_core=self.is_core,
            top_interest=np.zeros(n, dtype=np.int64),
            gt_probs=self.gt if self.ground_truth else np.full_like(self.gt, np.nan),
        )
        return ScoredVariant(preds, None)

    def forward_latency_ms(self, variant: Variant, batch_size: int) -> float:
        return 1.0 + self.quality.get(variant.key, 0.5)
