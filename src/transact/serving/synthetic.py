"""A self-contained serving environment for tests, benchmarks and ``transact serve --demo``.

Random item features, an in-memory realtime sequence store that can be switched "down",
and a randomly initialized Pinnability saved like a trained ``model.pt`` (with
``transact.models.artifact.save_model``, as ``transact train``), so the service, its hot
reload and its benchmarks run without generated data or a training run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from transact.data.schema import PAD_ITEM, FeatureSpec, SequenceTensors
from transact.serving.features import ItemFeatures


class InMemorySequences:
    """``SequenceSource`` over random per-user histories; ``down = True`` simulates an outage.

    Args:
        spec: the FeatureSpec (seq_len, action vocabulary).
        n_items: item ids drawn from ``0..n_items-1``.
        seed: RNG seed; user ``u``'s history is a function of ``(seed, u)``.
        max_history: most actions a user has (default 2 * seq_len).
    """

    def __init__(
        self, spec: FeatureSpec, n_items: int, seed: int = 0, max_history: int | None = None
    ) -> None:
        self.seq_len = spec.seq_len
        self.n_actions = spec.actions.size
        self.n_items = n_items
        self.seed = seed
        self.max_history = max_history or 2 * spec.seq_len
        self.down = False

    def fetch(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> SequenceTensors:
        if self.down:
            from transact.features.store import StoreUnavailableError

            raise StoreUnavailableError("in-memory sequence store is down (simulated)")
        users = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        times = np.asarray(request_time_ms, dtype=np.int64).reshape(-1)
        b, s = users.shape[0], self.seq_len
        types = np.zeros((b, s), np.int64)
        items = np.full((b, s), PAD_ITEM, np.int64)
        at = np.zeros((b, s), np.int64)
        for row, (u, t) in enumerate(zip(users.tolist(), times.tolist(), strict=True)):
            rng = np.random.default_rng([self.seed, u])
            n = int(rng.integers(0, self.max_history + 1))
            k = min(n, s)
            types[row, :k] = rng.integers(1, self.n_actions, k)
            items[row, :k] = rng.integers(0, self.n_items, k)
            at[row, :k] = t - np.cumsum(rng.integers(1_000, 3_600_000, k))
        return SequenceTensors(
            torch.from_numpy(types), torch.from_numpy(items), torch.from_numpy(at)
        )


def synthetic_items(spec: FeatureSpec, n_items: int, seed: int = 0) -> ItemFeatures:
    """Random item features for every item-group feature of ``spec``."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(0, 1, (n_items, spec.d_item)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cats = {
        c.name: rng.integers(0, c.cardinality, n_items).astype(np.int64)
        for c in spec.categorical
        if c.group == "item"
    }
    nums = {
        n.name: rng.normal(0, 1, n_items).astype(np.float32)
        for n in spec.numerical
        if n.group == "item"
    }
    return ItemFeatures(emb, cats, nums)


def write_model_file(
    path: str | Path, spec: FeatureSpec, preset: str = "small", seed: int = 0
) -> Path:
    """Save a randomly initialized Pinnability as a ``transact train`` ``model.pt``."""
    from transact.models import Pinnability, PinnabilityConfig
    from transact.models.artifact import save_model

    torch.manual_seed(seed)
    config = PinnabilityConfig.preset(preset)
    model = Pinnability(spec, config).eval()
    with torch.no_grad():  # make the batch-norm statistics non-trivial
        norm = model.numerical_norm
        if norm is not None and norm.running_mean is not None:
            norm.running_mean.normal_(0, 0.1)
    save_model(path, model, {"feature_spec": spec.to_dict(), "model_config": config.to_dict()})
    return Path(path)
