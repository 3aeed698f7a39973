"""Crash-safe, verified checkpoints, and resume from the newest intact one.

A checkpoint ``step_000000200.pt`` is written with
:func:`transact.models.artifact.write_torch_file`: temp file, fsync, atomic rename, then
the checksum ``step_000000200.pt.sha256`` LAST. A reader therefore never sees a torn file
under its final name, and a file whose checksum is missing or wrong (a crash between the
two renames, a disk fault, a truncated copy, junk) is detected before it is used.
:func:`load_latest_checkpoint` takes the newest checkpoint that verifies and loads, and
says which ones it skipped and why. Checkpoints hold only tensors and plain containers
(the trainer stores RNG state as tensors and the metadata as JSON), so they load with
``torch.load(weights_only=True)``: a checkpoint file cannot run code.

Stale temp files from a killed writer are ignored by :func:`list_checkpoints` and removed
by :func:`prune_checkpoints`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from transact.models.artifact import ArtifactError, checksum_path, read_torch_file

_CKPT = re.compile(r"^step_(\d{9})\.pt$")


def checkpoint_path(directory: str | Path, step: int) -> Path:
    """``directory/step_<step, 9 digits>.pt``."""
    return Path(directory) / f"step_{step:09d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """Checkpoint files in ``directory`` as ``(step, path)``, oldest first (not verified)."""
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
    """The newest checkpoint file (not verified; see :func:`load_latest_checkpoint`), or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints; delete older ones (with their checksum files)
    and stale temp files of other processes."""
    directory = Path(directory)
    for _, p in list_checkpoints(directory)[:-keep]:
        p.unlink(missing_ok=True)
        checksum_path(p).unlink(missing_ok=True)
    for p in directory.glob(".step_*.pt*.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid != str(os.getpid()):
            p.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify (checksum) and load one checkpoint; ``ArtifactError`` names what is wrong."""
    state, _ = read_torch_file(path, map_location=map_location)
    return state


def load_latest_checkpoint(
    directory: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    report: Callable[[str], None] = print,
) -> tuple[dict[str, Any], Path] | None:
    """The newest checkpoint in ``directory`` that verifies and loads, with its path.

    Damaged checkpoints (no checksum, wrong checksum, unreadable, or content the safe
    loader refuses) are skipped, newest first; ``report`` gets one line per skipped file
    and the one it falls back to. Returns None when there is no checkpoint at all.

    Raises:
        ValueError: every checkpoint is damaged (the message lists each with its reason);
            resuming from none of them is not done silently.
    """
    found = list_checkpoints(directory)
    problems: list[str] = []
    for _, path in reversed(found):
        try:
            state = load_checkpoint(path, map_location)
        except ArtifactError as exc:
            problems.append(str(exc))
            report(f"checkpoint {path.name} is damaged ({exc}); skipping it")
            continue
        if problems:
            report(f"falling back to {path.name}, the newest intact checkpoint")
        return state, path
    if problems:
        raise ValueError(
            f"cannot resume from {directory}: every checkpoint is damaged:\n  "
            + "\n  ".join(problems)
        )
    return None
