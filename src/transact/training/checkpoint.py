"""Crash-safe checkpoints: write to a temp file, fsync, then atomically rename.

A reader therefore sees either the previous complete checkpoint or the new complete one,
never a torn file, whatever moment the process is killed at (SIGKILL included). Stale
temp files from a killed writer are ignored by :func:`latest_checkpoint` and removed by
:func:`prune_checkpoints`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

_CKPT = re.compile(r"^step_(\d{9})\.pt$")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (temp file in the same dir + fsync + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:09d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``directory`` as ``(step, path)``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _CKPT.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints; delete older ones and stale temp files."""
    directory = Path(directory)
    for _, p in list_checkpoints(directory)[:-keep]:
        p.unlink(missing_ok=True)
    for p in directory.glob(".step_*.pt.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid != str(os.getpid()):
            p.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by the trainer (plain dicts, tensors and numpy RNG state)."""
    return torch.load(path, map_location=map_location, weights_only=False)
