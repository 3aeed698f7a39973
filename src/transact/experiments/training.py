"""How the experiments train a variant: the trainer's config and loss at a budget.

The schedule is the paper's (Adam, linear warm-up, cosine annealing; 4.1.2) scaled to the
budget (see docs/results.md for the scaling). No intermediate checkpoints are written:
an experiment run is short and is rerun, not resumed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from transact.data.schema import FeatureSpec, LabeledBatch
from transact.experiments.budget import ExperimentBudget


def train_config(budget: ExperimentBudget, *, seed: int, device: str, progress: bool):
    """The trainer's :class:`~transact.training.config.TrainConfig` for one variant run."""
    from transact.training.config import TrainConfig

    return TrainConfig.preset(
        "small",
        batch_size=budget.batch_size,
        max_steps=budget.train_steps,
        peak_lr=budget.peak_lr,
        warmup_steps=budget.warmup_steps,
        seed=seed,
        device=device,
        checkpoint_every_steps=0,
        keep_checkpoints=1,
        log_every_steps=max(1, budget.train_steps // 20),
        progress=progress,
    )


LOSS_TABLE = {"label_weights": "standard"}
"""The loss the experiments train with: the training stage's weighted multi-head BCE with
the ``standard`` label weights, as ``transact demo`` uses (the paper publishes only the
illustrative Table 7 matrix, not its production M; docs/results.md)."""


def loss_for(spec: FeatureSpec) -> Callable[[torch.Tensor, LabeledBatch], torch.Tensor]:
    """The ranker's weighted multi-head loss (paper Eq. 1-2) for ``spec``'s heads."""
    from transact.pipeline.run import build_loss

    return build_loss(spec, dict(LOSS_TABLE))
