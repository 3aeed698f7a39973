"""Small worlds and trained runs for the online simulator's tests (imported, not fixtures)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from transact.data.world import PRESETS, WorldConfig, generate_world

TINY = replace(PRESETS["tiny"], n_users=60, warmup_days=1, train_days=2, eval_days=1)
"""60 users, 4 offline days: an online day takes about a second."""


def make_world(path: Path, config: WorldConfig = TINY, seed: int = 1) -> Path:
    return generate_world(path, config, seed=seed, preset="tiny", progress=False)


def train_tiny(
    world: Path, out: Path, config_name: str, steps: int = 6, user_embeddings: Any = None
) -> Path:
    """A run of a shipped config on the world's training window, ``steps`` steps of 64
    (a hybrid model when ``user_embeddings``, a ``UserEmbeddingSource``, is given)."""
    from transact.pipeline.run import build_examples, train_run
    from transact.pipeline.run_config import load_run_config, shipped_config_path
    from transact.pipeline.windows import resolve_window

    config = load_run_config(
        shipped_config_path(config_name),
        {"train": {"preset": "tiny", "max_steps": steps, "batch_size": 64, "progress": False},
         "data": {"seq_len": 20}},
    )  # fmt: skip
    window = resolve_window(world, "train")
    examples = build_examples(
        world, window, config, evaluation=False, user_embeddings=user_embeddings
    )
    metadata = {"data": {"dir": str(world), "start_ms": window.start_ms, "end_ms": window.end_ms}}
    train_run(config, examples, examples.feature_spec, out, metadata=metadata)
    return out
