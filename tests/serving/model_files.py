"""Random ranker files for the serving tests: ``from tests.serving.model_files import ...``."""

from __future__ import annotations

from pathlib import Path

from transact.data.schema import FeatureSpec
from transact.serving.registry import publish_model
from transact.serving.synthetic import write_model_file


def publish_random(tmp: Path, models: Path, spec: FeatureSpec, version: str, seed: int) -> Path:
    """A randomly initialized "small" ranker for ``spec``, published as ``version`` under
    ``models`` (the raw file goes to ``tmp/raw-<version>/model.pt``)."""
    raw = write_model_file(tmp / f"raw-{version}" / "model.pt", spec, "small", seed)
    return publish_model(raw, models, version)
