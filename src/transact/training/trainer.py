"""The training loop: Adam + warm-up/cosine, clipping, mixed precision, exact resume, DDP.

One function, :func:`train`, in the spirit of nanoGPT's ``train.py``: it takes a built
model, a loss, a batch source and a :class:`~transact.training.config.TrainConfig`, and
writes everything into one run directory::

    RUN/checkpoints/step_000000200.pt   # model+optimizer+scheduler+RNG+data position
    RUN/checkpoints/step_000000200.pt.sha256   # written last: the checkpoint is complete
    RUN/metrics.csv, RUN/tensorboard/   # per-step loss, lr, grad norm, examples/s
    RUN/model.pt (+ .sha256)            # final weights + JSON metadata (models/artifact.py)
    RUN/train_summary.json

Resume (``resume=True``) restores every piece of state, including every rank's RNG
state and the position in the seeded data order, so an interrupted run ends with the same
parameters as an uninterrupted one. It takes the newest checkpoint that verifies and
says which damaged ones it skipped (``training/checkpoint.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from transact.data.schema import LabeledBatch
from transact.models.artifact import MODEL_FILE, save_model, write_torch_file
from transact.models.fast_training import (
    FastTrainingOptions,
    restore_fast_training,
    set_fast_training,
)
from transact.training.checkpoint import (
    checkpoint_path,
    load_latest_checkpoint,
    prune_checkpoints,
)
from transact.training.config import TrainConfig
from transact.training.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    init_distributed,
)
from transact.training.metrics_log import MetricsLogger
from transact.training.prefetch import batch_to, prefetch
from transact.training.schedule import warmup_cosine_scheduler

CHECKPOINT_FORMAT = 2
"""2: RNG state as tensors and metadata/config as JSON, so ``weights_only=True`` loads it."""

LossFn = Callable[[torch.Tensor, LabeledBatch], torch.Tensor]
"""``(logits [B, H], batch on device) -> scalar loss``."""


@runtime_checkable
class BatchSource(Protocol):
    """What the trainer reads: a sized example set that yields seeded, resumable batches.

    ``batches(batch_size, shuffle=True, seed=s, start=i)`` must yield the same batches
    for the same ``seed``, beginning with example ``i`` of that order (batches then start
    at ``i``, ``i + batch_size``, ...), as :class:`transact.data.examples.ExampleSet` does.
    """

    def __len__(self) -> int: ...

    def batches(
        self, batch_size: int, *, shuffle: bool = ..., seed: int = ..., start: int = ...
    ) -> Iterator[LabeledBatch]: ...


@dataclass(frozen=True)
class TrainResult:
    """What a finished run reports."""

    run_dir: Path
    steps: int
    examples: int
    final_loss: float
    wall_s: float
    resumed_from_step: int


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values (what ``weights_only=True`` loads)."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt_state), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _quiet(message: str) -> None:
    """The report of ranks other than 0: rank 0 prints the same line."""


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs CUDA; use 'bf16' on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def optimizer_step(
    model: torch.nn.Module,
    loss_fn: LossFn,
    batch: LabeledBatch,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
    params: list[torch.nn.Parameter],
    *,
    where: str = "",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch already on the model's device: forward (autocast at
    ``config.precision``), loss in fp32, backward, gradient clipping, ``optimizer.step``.
    Returns ``(loss, gradient norm before clipping)``. A non-finite loss raises
    ``FloatingPointError`` naming ``where`` before any parameter changes. The learning-rate
    schedule is the caller's (the benchmark steps without one).
    """
    device = batch.labels.device
    with _autocast(device, config.precision):
        logits = model(batch.inputs)
    loss = loss_fn(logits.float(), batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"loss is {loss.item()} at {where or 'this step'}; lower peak_lr or use fp32"
        )
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    if config.grad_clip_norm > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip_norm)
    else:
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), grad_norm


def steps_per_epoch(n_examples: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps per epoch: every rank takes one batch per step; leftovers wait.

    With ``world_size`` ranks the last ``n_batches % world_size`` batches of an epoch are
    not used in that epoch (as ``DistributedSampler(drop_last=True)``); the trainer says so.
    """
    n_batches = math.ceil(n_examples / batch_size)
    return n_batches // world_size


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def train(
    model: torch.nn.Module,
    loss_fn: LossFn,
    source: BatchSource,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    metadata: dict[str, Any] | None = None,
    dist_ctx: DistContext | None = None,
) -> TrainResult:
    """Train ``model`` on ``source`` and write checkpoints, metrics and the final model.

    Args:
        model: maps ``RankerInputs`` to ``[B, H]`` logits; built (and seeded) by the caller.
        loss_fn: ``(logits, batch) -> scalar``, e.g. the weighted multi-head BCE.
        source: the training window's examples (:class:`BatchSource`).
        config: optimizer, schedule, precision and checkpointing settings.
        run_dir: output directory (created).
        resume: continue from the newest checkpoint in ``run_dir`` when there is one.
        metadata: stored in every checkpoint and in ``model.pt`` (model config,
            FeatureSpec, data window...), so evaluation can rebuild the model.
        dist_ctx: the distributed context; default: :func:`init_distributed`.

    Returns:
        A :class:`TrainResult` (rank 0's view; every rank returns one).
    """
    ctx = dist_ctx or init_distributed(config.device)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    if ctx.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata or {})

    n_examples = len(source)
    spe = steps_per_epoch(n_examples, config.batch_size, ctx.world_size)
    if spe == 0:
        raise ValueError(
            f"training set has {n_examples} examples: fewer than one batch of "
            f"{config.batch_size} per rank for {ctx.world_size} rank(s)"
        )
    total_steps = config.max_steps or math.ceil(config.epochs * spe)
    leftover = math.ceil(n_examples / config.batch_size) - spe * ctx.world_size
    if leftover and ctx.is_main:
        print(
            f"note: the last {leftover} batch(es) of each epoch's shuffled order are not used "
            f"({math.ceil(n_examples / config.batch_size)} batches over {ctx.world_size} ranks, "
            "as DistributedSampler(drop_last=True))"
        )

    model.to(ctx.device)
    # the training forward's path (docs/training.md, "The fast training path"); put back at the end
    fast = FastTrainingOptions() if config.training_path == "fast" else None
    previous_paths = set_fast_training(model, fast)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.peak_lr,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    scheduler = warmup_cosine_scheduler(
        optimizer,
        warmup_steps=config.warmup_steps,
        total_steps=total_steps,
        min_ratio=config.min_lr_ratio,
    )
    use_scaler = config.precision == "fp16"
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=use_scaler)

    step = 0
    examples = 0
    resumed_from = 0
    report = print if ctx.is_main else _quiet  # every rank loads; rank 0 says what it took
    found = load_latest_checkpoint(ckpt_dir, ctx.device, report=report) if resume else None
    ckpt_file: Path | None = None
    if found is not None:
        state, ckpt_file = found
        _check_resumable(state, config, ctx, total_steps, ckpt_file)
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"][ctx.rank])
        step = resumed_from = int(state["step"])
        examples = int(state["examples"])
        if ctx.is_main:
            print(f"resuming from {ckpt_file} (step {step}/{total_steps})")
    else:
        # Dropout and the random time-window mask differ per rank; the weights do not
        # (DDP broadcasts rank 0's at construction).
        seed_everything(config.seed * 1009 + ctx.rank)

    ddp_model: torch.nn.Module = model
    if ctx.distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    ddp_model.train()

    logger = MetricsLogger(run_dir, resume_step=step) if ctx.is_main else None
    from tqdm import tqdm

    bar = tqdm(
        total=total_steps,
        initial=step,
        desc=f"train {run_dir.name}",
        unit="step",
        disable=not (config.progress and ctx.is_main),
        dynamic_ncols=True,
    )
    t_start = time.perf_counter()
    t_last, ex_last = t_start, examples
    last_loss = float("nan")
    params = [p for p in model.parameters() if p.requires_grad]

    last_saved = [resumed_from if ckpt_file is not None else -1]

    def save_checkpoint() -> None:
        last_saved[0] = step
        rng_states = all_gather_objects(_rng_state(), ctx)
        if ctx.is_main:
            write_torch_file(
                {
                    "format": CHECKPOINT_FORMAT,
                    "step": step,
                    "examples": examples,
                    "data_position": {
                        "epoch": step // spe,
                        "batch_in_epoch": (step % spe) * ctx.world_size,
                        "batch_size": config.batch_size,
                        "steps_per_epoch": spe,
                    },
                    "total_steps": total_steps,
                    "world_size": ctx.world_size,
                    "model": _unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng_states,
                    "train_config_json": json.dumps(config.to_dict()),
                    "metadata_json": json.dumps(metadata),
                },
                checkpoint_path(ckpt_dir, step),
            )
            prune_checkpoints(ckpt_dir, config.keep_checkpoints)
        barrier(ctx)

    try:
        while step < total_steps:
            epoch, pos = divmod(step, spe)
            batches = source.batches(
                config.batch_size,
                shuffle=True,
                seed=config.seed * 1_000_003 + epoch,
                start=min(pos * ctx.world_size * config.batch_size, n_examples),
            )
            mine: Iterator[LabeledBatch] = itertools.islice(batches, ctx.rank, None, ctx.world_size)
            if ctx.device.type == "cuda":  # build the next batches while the device computes
                mine = prefetch(mine, depth=2, pin=True)
            for batch in mine:
                if pos >= spe or step >= total_steps:
                    break
                batch = batch_to(batch, ctx.device)
                lr = float(scheduler.get_last_lr()[0])
                loss, grad_norm = optimizer_step(
                    ddp_model, loss_fn, batch, optimizer, scaler, config, params,
                    where=f"step {step} (epoch {epoch}, batch {pos}) on rank {ctx.rank}",
                )  # fmt: skip
                scheduler.step()
                step += 1
                pos += 1
                examples += int(batch.labels.shape[0]) * ctx.world_size
                last_loss = float(loss.detach())

                if step % config.log_every_steps == 0 or step == total_steps:
                    mean_loss = all_reduce_mean(last_loss, ctx)
                    now = time.perf_counter()
                    rate = (examples - ex_last) / max(now - t_last, 1e-9)
                    t_last, ex_last = now, examples
                    if logger is not None:
                        logger.log(
                            {
                                "step": step,
                                "epoch": step / spe,
                                "loss": mean_loss,
                                "lr": lr,
                                "grad_norm": float(grad_norm),
                                "examples": examples,
                                "examples_per_s": rate,
                                "wall_s": now - t_start,
                            }
                        )
                    bar.set_postfix(loss=f"{mean_loss:.4f}", ex_s=f"{rate:,.0f}", lr=f"{lr:.2e}")
                bar.update(1)
                if config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
                    save_checkpoint()
        if last_saved[0] != step:
            save_checkpoint()
    finally:
        bar.close()
        if logger is not None:
            logger.close()
        restore_fast_training(previous_paths)

    wall = time.perf_counter() - t_start
    if ctx.is_main:
        save_model(
            run_dir / MODEL_FILE,
            _unwrap(model),
            {**metadata, "trained": {"step": step, "train_config": config.to_dict()}},
        )
        summary = {
            "steps": step,
            "examples": examples,
            "final_loss": last_loss,
            "wall_s": wall,
            "resumed_from_step": resumed_from,
            "world_size": ctx.world_size,
            "steps_per_epoch": spe,
            "train_config": config.to_dict(),
        }
        tmp = run_dir / "train_summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, default=str))
        tmp.replace(run_dir / "train_summary.json")
    barrier(ctx)
    return TrainResult(
        run_dir=run_dir,
        steps=step,
        examples=examples,
        final_loss=last_loss,
        wall_s=wall,
        resumed_from_step=resumed_from,
    )


def _check_resumable(
    state: dict[str, Any],
    config: TrainConfig,
    ctx: DistContext,
    total_steps: int,
    path: Path,
) -> None:
    """Refuse to resume when the data order or schedule would differ from the original."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')} != {CHECKPOINT_FORMAT}")
    problems = []
    if state["world_size"] != ctx.world_size:
        problems.append(f"world_size {state['world_size']} -> {ctx.world_size}")
    if state["total_steps"] != total_steps:
        problems.append(f"total_steps {state['total_steps']} -> {total_steps}")
    old = json.loads(state["train_config_json"])
    old.setdefault("training_path", "plain")  # checkpoints from before the fast path
    for key in ("batch_size", "seed", "peak_lr", "warmup_steps", "precision", "training_path"):
        if old[key] != getattr(config, key):
            problems.append(f"{key} {old[key]!r} -> {getattr(config, key)!r}")
    if problems:
        raise ValueError(
            f"cannot resume {path}: the run changed ({'; '.join(problems)}); "
            "start a new run directory or restore the settings"
        )
