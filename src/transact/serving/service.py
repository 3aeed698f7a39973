"""Wiring: feature sources + model registry + engine + app, from paths or a demo world.

:func:`build_engine` is what ``transact serve`` calls; tests and ``benchmarks/
bench_service.py`` call it with the synthetic environment of
:mod:`transact.serving.synthetic`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeAlias, TypeVar

import torch

from transact.data.schema import FeatureSpec, SequenceSource, UserEmbeddingSource
from transact.serving.cuda_graphs import graph_buckets
from transact.serving.engine import RankingEngine, ServiceConfig
from transact.serving.features import (
    FeatureAssembler,
    ItemFeatures,
    ItemFeatureStore,
    UserAttributeSource,
)
from transact.serving.ranker import InferenceOptions, RequestTensors, ServingRanker
from transact.serving.registry import ModelRegistry, list_versions

log = logging.getLogger("transact.serving")

T = TypeVar("T")
# a feature source, or a function building it for the served FeatureSpec (its seq_len,
# d_user, feature names), called once that spec is known
PerSpec: TypeAlias = T | Callable[[FeatureSpec], T]


def smoke_request(spec: FeatureSpec, n_candidates: int = 2) -> RequestTensors:
    """A tiny all-missing request (empty sequence) used to check a model before serving it."""
    b, s = n_candidates, spec.seq_len
    return RequestTensors(
        categorical=torch.zeros(b, len(spec.categorical), dtype=torch.int64),
        numerical=torch.zeros(b, len(spec.numerical)),
        candidate_embedding=torch.zeros(b, spec.d_item),
        candidate_item_id=torch.zeros(b, dtype=torch.int64),
        user_embedding=torch.zeros(1, spec.d_user),
        action_types=torch.zeros(1, s, dtype=torch.int64),
        action_embeddings=torch.zeros(1, s, spec.d_item),
        action_times_ms=torch.zeros(1, s, dtype=torch.int64),
        request_time_ms=torch.tensor([1_700_000_000_000]),
    )


def smoke_check(ranker: ServingRanker, max_candidates: int | None = None) -> torch.Tensor:
    """Score :func:`smoke_request` with ``ranker`` (the registry's pre-swap check).

    With CUDA graphs, also capture every candidate-count bucket up to ``max_candidates``
    here, before the version takes traffic, so that no request waits for a capture."""
    out = ranker.score(smoke_request(ranker.model.spec))
    if ranker.graphed is not None and max_candidates:
        for b in graph_buckets(max_candidates, ranker.graphed.min_bucket):
            ranker.score(smoke_request(ranker.model.spec, b))
    return out


@dataclass
class ServiceParts:
    engine: RankingEngine
    registry: ModelRegistry

    @property
    def assembler(self) -> FeatureAssembler:
        """The engine's feature assembler (raises ``ModelNotReady`` before the first model)."""
        return self.engine.assembler


def _for_spec(source: PerSpec[T], spec: FeatureSpec) -> T:
    return source(spec) if callable(source) else source


def build_engine(
    models_dir: str | Path,
    items: PerSpec[ItemFeatures],
    spec: FeatureSpec | None = None,
    sequences: PerSpec[SequenceSource] | None = None,
    user_embeddings: PerSpec[UserEmbeddingSource] | None = None,
    user_attributes: PerSpec[UserAttributeSource] | None = None,
    options: InferenceOptions | None = None,
    config: ServiceConfig | None = None,
    item_cache_rows: int = 100_000,
    item_cache_dir: str | Path | None = None,
) -> ServiceParts:
    """Load the newest verified model version in ``models_dir`` and build the engine.

    ``spec`` defaults to the FeatureSpec of the newest version that verifies; every later
    version must match it. Each feature source may be a function of that spec (the item
    table's columns are read by the spec's feature names, the sequence reader returns
    ``spec.seq_len`` positions, the user embeddings have ``spec.d_user`` values), called
    once the spec is known. With no loadable version yet (a missing or empty
    ``models_dir``), the engine still builds and answers ``ModelNotReady`` (HTTP 503) until
    the registry loads one; the sources are built then.
    """
    options = options or InferenceOptions()
    config = config or ServiceConfig()
    registry = ModelRegistry(
        models_dir,
        options,
        expected_spec=spec,
        smoke=partial(smoke_check, max_candidates=config.max_candidates),
    )

    def assembler_for(served: FeatureSpec) -> FeatureAssembler:
        store = ItemFeatureStore(
            _for_spec(items, served), served, memory_rows=item_cache_rows, disk_path=item_cache_dir
        )
        return FeatureAssembler(
            served,
            store,
            _for_spec(sequences, served) if sequences is not None else None,
            _for_spec(user_embeddings, served) if user_embeddings is not None else None,
            _for_spec(user_attributes, served) if user_attributes is not None else None,
        )

    handle = registry.reload()
    if handle is None:
        log.warning(
            "%s: no loadable model version yet (published: %s); answering 503 until one "
            "is published and loaded",
            models_dir,
            list_versions(models_dir),
        )
        return ServiceParts(RankingEngine(registry, assembler_for, config), registry)
    engine = RankingEngine(registry, assembler_for(handle.spec), config)
    return ServiceParts(engine, registry)
