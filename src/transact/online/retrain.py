"""Retraining an arm from scratch on a sliding window of its logs (paper 3.4.1, 4.4.3).

A retrain is the offline pipeline run on the logs the experiment wrote: the window's
training dir (:func:`transact.online.logs.training_dir`), the examples of
``pipeline.run.build_examples`` with the arm's run config (the one recorded in its
``model.pt``), ``pipeline.run.train_run`` from scratch, and the new ``model.pt`` loaded as
it would be deployed. ``steps`` caps the optimizer steps (the retrain's training budget;
0 keeps the run config's) so that the CPU cost of retraining is explicit; the wall and
CPU time of every retrain are reported.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transact.data.schema import UserEmbeddingSource
from transact.online.scoring import ServedModel, load_served
from transact.pipeline.calibrate import calibrate_run
from transact.pipeline.run import build_examples, train_run
from transact.pipeline.run_config import RunConfig, run_config_from_dict
from transact.pipeline.windows import Window
from transact.serving.ranker import InferenceOptions


def run_config_of(metadata: dict[str, Any], source: str) -> RunConfig:
    """The run config a model was trained with (its ``model.pt`` metadata)."""
    raw = metadata.get("run_config")
    if not isinstance(raw, dict):
        raise ValueError(
            f"{source}: the model records no run config, so it cannot be retrained; "
            "retrain it with `transact train` or serve it --retrain fixed"
        )
    return run_config_from_dict(raw, source=f"{source} (run_config)")


@dataclass(frozen=True)
class RetrainRecord:
    """One retrain: who, when, on what, and what it cost.

    Fields:
        design / arm: the experiment design (``buckets`` or ``paired``) and the arm.
        day: the online day whose midnight it happened at (the model serves from then).
        window_start_ms / window_end_ms: the training window ``[start, end)``.
        users: users whose impressions were examples (None: every user's logs).
        examples / steps: training examples and optimizer steps.
        final_loss: the last logged training loss.
        wall_s / cpu_s: time of building examples and training.
        model: the new model's directory, relative to the experiment's output directory;
            ``reused_from`` names the retrain it reuses
            (a paired arm on pooled logs trains on the same data as its bucket arm).
    """

    design: str
    arm: str
    day: int
    window_start_ms: int
    window_end_ms: int
    users: int | None
    examples: int
    steps: int
    final_loss: float
    wall_s: float
    cpu_s: float
    model: str
    reused_from: str | None = None

    def to_dict(self, *, timings: bool = True) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not timings:
            out.pop("wall_s")
            out.pop("cpu_s")
        return out


def retrain(
    config: RunConfig,
    data_dir: str | Path,
    window: Window,
    out_dir: str | Path,
    options: InferenceOptions,
    *,
    steps: int = 0,
    device: str = "cpu",
    user_embeddings: UserEmbeddingSource | None = None,
) -> tuple[ServedModel, dict[str, Any]]:
    """Train ``config`` from scratch on ``window`` of ``data_dir`` into ``out_dir``.

    Returns the new model as served and ``{"examples", "steps", "final_loss", "wall_s",
    "cpu_s"}``.
    """
    wall0, cpu0 = time.perf_counter(), time.process_time()
    examples = build_examples(
        data_dir, window, config, evaluation=False, user_embeddings=user_embeddings
    )
    train_config = dataclasses.replace(
        config.train, progress=False, device=device, max_steps=steps or config.train.max_steps
    )
    result = train_run(
        config,
        examples,
        examples.feature_spec,
        out_dir,
        train_config=train_config,
        metadata={
            "data": {
                "dir": str(data_dir),
                "start_ms": window.start_ms,
                "end_ms": window.end_ms,
                "n_examples": len(examples),
            }
        },
    )
    # calibrated like every trained run (transact train): served probabilities are rates
    calibrate_run(
        out_dir,
        data_dir,
        window.start_ms,
        window.end_ms,
        train_set=examples,
        seq_len=config.data.seq_len,
        user_embeddings=user_embeddings,
        batch_size=config.data.eval_batch_size,
        device=device,
    )
    served = load_served(out_dir, options)
    return served, {
        "examples": len(examples),
        "steps": result.steps,
        "final_loss": float(result.final_loss),
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
    }
