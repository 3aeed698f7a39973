"""How an arm scores a round: a model through the serving code, or a world policy.

:class:`ModelScorer` is the ranking service without HTTP: the round's requests of the
arm's users are assembled by the service's ``FeatureAssembler`` (sequences read from the
arm's store with ``SequenceReader``, item features from the item table, user attributes
from the user table, batch user embeddings from the dated store), scored by the service's
``ServingRanker.score_many`` (one forward per at most ``max_forward_candidates``
candidates, user-level tensors sent once per user), and ranked by the service's score
``S = sum_h u_h f_h``. :class:`PolicyScorer` serves one of the world's policies
(production, oracle, random) instead.

A model is loaded the way it is deployed (:func:`load_served`): a trained run
(``RUN/model.pt``, read by ``models.artifact``), or a published version verified by the
serving registry (checksum, signature when a key is set, FeatureSpec, smoke request).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from transact.data.io import ItemTable
from transact.data.schema import FeatureSpec, SequenceSource, UserEmbeddingSource
from transact.data.world import OracleRanker, ProductionRanker, RandomRanker
from transact.data.world.env import Requests, WorldEnv
from transact.models.artifact import read_model
from transact.pipeline.calibrate import calibration_of
from transact.serving.features import (
    FeatureAssembler,
    ItemFeatures,
    ItemFeatureStore,
    UserAttributeSource,
)
from transact.serving.ranker import InferenceOptions, ServingRanker
from transact.serving.registry import RECORD_FILE, ModelRegistry, load_verified
from transact.serving.service import smoke_check


def candidate_rows(requests: Requests, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of the requests ``rows``: ``(offsets [len(rows) + 1], index [n])``,
    ``index`` pointing into the round's ``[N]`` candidate arrays."""
    starts, ends = requests.offsets[rows], requests.offsets[rows + 1]
    sizes = ends - starts
    offsets = np.zeros(rows.size + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    index = np.repeat(starts - offsets[:-1], sizes) + np.arange(int(offsets[-1]))
    return offsets, index


class Scorer(Protocol):
    """Scores the candidates of some of a round's requests (higher is shown first)."""

    def score(self, env: WorldEnv, requests: Requests, rows: np.ndarray) -> np.ndarray:
        """``[n]`` scores of the candidates of requests ``rows``, in candidate order."""
        ...


class PolicyScorer:
    """One of the world's policies: ``production``, ``oracle`` or ``random``."""

    def __init__(self, name: str, utility: Mapping[str, float] | None = None) -> None:
        policies: dict[str, Any] = {
            "production": ProductionRanker(),
            "oracle": OracleRanker(dict(utility) if utility else None),
            "random": RandomRanker(),
        }
        if name not in policies:
            raise ValueError(f"unknown world policy {name!r}; known {sorted(policies)}")
        self.name = name
        self.policy = policies[name]

    def score(self, env: WorldEnv, requests: Requests, rows: np.ndarray) -> np.ndarray:
        # the policies key their draws by request and slot, so scoring the whole round
        # and keeping the rows gives each request the scores it would get alone
        return np.asarray(self.policy.score(env, requests))[candidate_rows(requests, rows)[1]]


@dataclass
class ScoringStats:
    """What a model scorer did: requests, candidates, forwards, degraded requests and the
    time split (assembly: feature assembly; forward: the model)."""

    requests: int = 0
    candidates: int = 0
    forwards: int = 0
    degraded: Counter = field(default_factory=Counter)
    assembly_s: float = 0.0
    forward_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "candidates": self.candidates,
            "forwards": self.forwards,
            "degraded": dict(sorted(self.degraded.items())),
        }


class ModelScorer:
    """A served model scoring through the service's feature assembly and ranker.

    Args:
        ranker: the served model (:func:`load_served`).
        assembler: the feature sources, built for the model's FeatureSpec.
        utility: ``u_h`` per head of ``S = sum_h u_h f_h`` (heads missing weigh 0).
        context: context features every request sends (the surface).
        max_forward_candidates: candidates per ``score_many`` forward at most.
        per_request: the plain reference path: each request assembled alone
            (``FeatureAssembler.assemble``) and scored alone (``ServingRanker.score``), as
            the HTTP service does; the batched path is tested equal to it.
    """

    def __init__(
        self,
        ranker: ServingRanker,
        assembler: FeatureAssembler,
        utility: Mapping[str, float],
        context: Mapping[str, float] | None = None,
        max_forward_candidates: int = 16_384,
        per_request: bool = False,
    ) -> None:
        self.ranker = ranker
        self.assembler = assembler
        heads = list(ranker.heads)
        self.utility = torch.tensor([float(utility.get(h, 0.0)) for h in heads])
        self.context = dict(context or {})
        self.max_forward_candidates = max_forward_candidates
        self.per_request = per_request
        self.stats = ScoringStats()

    def score(self, env: WorldEnv, requests: Requests, rows: np.ndarray) -> np.ndarray:
        offsets, index = candidate_rows(requests, rows)
        if index.size == 0:
            return np.zeros(0)
        if self.per_request:
            return self._score_per_request(requests, rows, offsets, index)
        t0 = time.perf_counter()
        assembled = self.assembler.assemble_many(
            requests.user_ids[rows],
            requests.request_times_ms[rows],
            offsets,
            requests.item_ids[index],
            self.context,
        )
        t1 = time.perf_counter()
        for a in assembled:
            self.stats.degraded.update(a.degraded)
        scores = np.empty(index.size)
        start = 0
        while start < len(assembled):  # forwards of at most max_forward_candidates
            stop = start + 1
            while (
                stop < len(assembled)
                and offsets[stop + 1] - offsets[start] <= self.max_forward_candidates
            ):
                stop += 1
            probs = self.ranker.score_many([a.tensors for a in assembled[start:stop]])
            flat = torch.cat(probs) if len(probs) > 1 else probs[0]
            scores[offsets[start] : offsets[stop]] = (flat @ self.utility).numpy()
            self.stats.forwards += 1
            start = stop
        self.stats.assembly_s += t1 - t0
        self.stats.forward_s += time.perf_counter() - t1
        self.stats.requests += int(rows.size)
        self.stats.candidates += int(index.size)
        return scores

    def _score_per_request(
        self, requests: Requests, rows: np.ndarray, offsets: np.ndarray, index: np.ndarray
    ) -> np.ndarray:
        scores = np.empty(index.size)
        for i, r in enumerate(rows.tolist()):
            t0 = time.perf_counter()
            items = requests.item_ids[index[offsets[i] : offsets[i + 1]]]
            assembled = self.assembler.assemble(
                int(requests.user_ids[r]), items, int(requests.request_times_ms[r]), self.context
            )
            t1 = time.perf_counter()
            probs = self.ranker.score(assembled.tensors)
            scores[offsets[i] : offsets[i + 1]] = (probs @ self.utility).numpy()
            self.stats.degraded.update(assembled.degraded)
            self.stats.assembly_s += t1 - t0
            self.stats.forward_s += time.perf_counter() - t1
            self.stats.forwards += 1
        self.stats.requests += int(rows.size)
        self.stats.candidates += int(index.size)
        return scores


@dataclass(frozen=True)
class ServedModel:
    """A model loaded as it is deployed: the ranker, its FeatureSpec, its metadata."""

    ranker: ServingRanker
    spec: FeatureSpec
    metadata: dict[str, Any]
    source: str
    sha256: str


def load_served(path: str | Path, options: InferenceOptions) -> ServedModel:
    """Load a trained run (``RUN`` or ``RUN/model.pt``), a published version
    (``MODELS/<version>``, verified by the registry's checks) or the newest verified
    version of a models directory, as a :class:`ServedModel`."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such model (a run directory, model.pt or version)")
    if p.is_dir() and (p / RECORD_FILE).exists():
        handle = load_verified(p, options, smoke=smoke_check)
        artifact = read_model(p, expected_sha256=handle.sha256)
        return ServedModel(handle.ranker, handle.spec, artifact.metadata, str(p), handle.sha256)
    if p.is_dir() and not (p / "model.pt").exists():
        registry = ModelRegistry(p, options, smoke=smoke_check)
        served = registry.reload()
        if served is None:
            raise ValueError(f"{p}: neither a run (model.pt) nor a models directory with a version")
        artifact = read_model(p / served.version, expected_sha256=served.sha256)
        return ServedModel(
            served.ranker, served.spec, artifact.metadata, str(p / served.version), served.sha256
        )
    artifact = read_model(p)
    model = artifact.build()
    calibration = calibration_of(artifact.metadata, source=f"{p}: calibration")
    return ServedModel(
        ServingRanker(model, options, calibration), artifact.feature_spec(), artifact.metadata,
        str(p), artifact.sha256,
    )  # fmt: skip


def model_scorer(
    served: ServedModel,
    items: ItemTable,
    sequences: SequenceSource,
    user_attributes: UserAttributeSource,
    user_embeddings: UserEmbeddingSource | None,
    utility: Mapping[str, float],
    context: Mapping[str, float],
    max_forward_candidates: int,
    per_request: bool = False,
) -> ModelScorer:
    """The :class:`ModelScorer` of ``served`` over the given feature sources (the item
    features read from the world's item table by the model's FeatureSpec; the item cache
    holds the whole catalog in memory)."""
    features = ItemFeatures.from_item_table(items, served.spec)
    store = ItemFeatureStore(features, served.spec, memory_rows=features.n_items)
    assembler = FeatureAssembler(served.spec, store, sequences, user_embeddings, user_attributes)
    return ModelScorer(
        served.ranker, assembler, utility, context, max_forward_candidates, per_request
    )
