"""A fake backend: a synthetic evaluation week whose variants rank with known quality."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from transact.evaluation.predictions import Predictions
from transact.experiments.runner import ScoredVariant, VariantUnavailable
from transact.experiments.spec import Variant

HEADS = ("click", "repin", "hide")


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


@pytest.fixture
def fake_backend_factory():
    return FakeBackend
