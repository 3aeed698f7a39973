from dataclasses import replace

import pytest

from transact.data.world import PRESETS, World


@pytest.fixture(scope="module")
def tiny():
    """The tiny world's static part (environments built on it are cheap)."""
    return World.build(PRESETS["tiny"], seed=11)


@pytest.fixture(scope="module")
def small_config():
    """Tiny, with fewer users: several environments run a few days each in a test."""
    return replace(PRESETS["tiny"], n_users=60)
