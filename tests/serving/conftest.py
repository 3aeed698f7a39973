from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.serving.model_files import publish_random
from transact.data.schema import FeatureSpec
from transact.models import example_feature_spec
from transact.serving.ranker import InferenceOptions
from transact.serving.service import ServiceParts, build_engine
from transact.serving.synthetic import InMemorySequences, synthetic_items

N_ITEMS = 300


@pytest.fixture(scope="session")
def spec() -> FeatureSpec:
    return replace(example_feature_spec("small"), seq_len=20)


@pytest.fixture()
def service(tmp_path: Path, spec: FeatureSpec) -> ServiceParts:
    models = tmp_path / "models"
    publish_random(tmp_path, models, spec, "v1", seed=1)
    return build_engine(
        models,
        synthetic_items(spec, N_ITEMS, seed=0),
        sequences=InMemorySequences(spec, N_ITEMS, seed=0),
        options=InferenceOptions(chunk_size=16),
        item_cache_rows=50,
        item_cache_dir=tmp_path / "items.rocksdb",
    )
