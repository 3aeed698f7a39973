from dataclasses import replace
from pathlib import Path

import pytest

from transact.data.world import PRESETS, generate_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny simulated world shared by the data tests (read-only)."""
    return generate_world(
        tmp_path_factory.mktemp("world") / "tiny",
        PRESETS["tiny"],
        seed=7,
        preset="tiny",
        progress=False,
    )


@pytest.fixture(scope="session")
def micro_config():
    """A world small enough to generate twice in a test."""
    return replace(PRESETS["tiny"], n_users=25, warmup_days=1, train_days=1, eval_days=1)
