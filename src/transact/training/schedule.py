"""Learning-rate schedule of the paper (4.1.2): linear warm-up to a peak, then cosine."""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(
    step: int, *, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> float:
    """Multiplier of the peak learning rate for optimizer step ``step`` (0-based).

    Rises linearly from ``1 / warmup_steps`` at step 0 to 1 at step ``warmup_steps - 1``
    (never exactly 0, which would waste a step), then follows a half cosine from 1 down
    to ``min_ratio`` at ``total_steps``; stays at ``min_ratio`` after that.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    warmup_steps: int,
    total_steps: int,
    min_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`warmup_cosine_factor` to the optimizer's lr.

    Its state (``last_epoch``) goes into checkpoints, so a resumed run continues on the
    same curve.
    """

    def factor(step: int) -> float:
        return warmup_cosine_factor(
            step, warmup_steps=warmup_steps, total_steps=total_steps, min_ratio=min_ratio
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
