from pathlib import Path

import pytest

from tests.online.worlds import make_world, train_tiny


@pytest.fixture(scope="session")
def online_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60-user world of 4 offline days shared by the online tests (read-only)."""
    return make_world(tmp_path_factory.mktemp("online") / "world")


@pytest.fixture(scope="session")
def online_models(online_world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two trained runs on it: Pinnability without sequence and with TransAct (a few steps)."""
    root = tmp_path_factory.mktemp("online-models")
    return {
        "baseline": train_tiny(online_world, root / "baseline", "baseline_small"),
        "transact": train_tiny(online_world, root / "transact", "transact_small"),
    }
