"""The trainer's configuration: a frozen dataclass with presets and field-by-field checks.

The paper (4.1.2) trains with Adam, a linear warm-up of 5000 steps to a peak learning
rate of 0.0048, cosine annealing afterwards, and batches of 12,000 examples. The ``paper``
preset is exactly that; ``small`` and ``tiny`` scale batch, warm-up and peak down for 2
CPU cores (docs/training.md says how and why).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("fp32", "bf16", "fp16")
TRAINING_PATHS = ("fast", "plain")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained.

    Args:
        batch_size: examples per optimizer step and process (DDP: per rank).
        epochs: passes over the training window; ignored when ``max_steps`` > 0.
        max_steps: optimizer steps to take; 0 means ``epochs`` x steps per epoch.
        peak_lr: learning rate at the end of warm-up (paper: 0.0048).
        warmup_steps: linear warm-up steps from 0 to ``peak_lr`` (paper: 5000).
        min_lr_ratio: the cosine ends at ``min_lr_ratio * peak_lr``.
        adam_beta1 / adam_beta2 / adam_eps / weight_decay: Adam's settings.
        grad_clip_norm: clip the global gradient norm to this (0 = off).
        seed: seeds model init, data order, dropout and the random time-window mask.
        precision: ``fp32``, ``bf16`` (autocast on CPU or CUDA) or ``fp16`` (CUDA only,
            with a gradient scaler).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        training_path: ``fast`` computes the sequence encoder's training forward with
            ``transact.models.fast_training`` (visible positions only, cheaper dropout
            masks: the same model and loss, a different dropout random stream; see
            docs/training.md), ``plain`` with the model's own forward.
        checkpoint_every_steps: write a checkpoint every N steps (0 = only at the end).
        keep_checkpoints: how many recent checkpoints to keep on disk.
        log_every_steps: TensorBoard/CSV logging period in steps.
        progress: show a tqdm bar (rank 0 only).
    """

    batch_size: int = 12000
    epochs: float = 1.0
    max_steps: int = 0
    peak_lr: float = 0.0048
    warmup_steps: int = 5000
    min_lr_ratio: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip_norm: float = 1.0
    seed: int = 0
    precision: str = "fp32"
    device: str = "auto"
    training_path: str = "fast"
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 2
    log_every_steps: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        errors = validate_fields(self)
        if errors:
            raise ValueError("invalid TrainConfig:\n  " + "\n  ".join(errors))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """``paper`` (4.1.2 verbatim), ``small`` (the demo, 2 CPU cores) or ``tiny`` (tests)."""
        presets: dict[str, dict[str, Any]] = {
            "paper": {},
            # The demo on 2 CPU cores: batch 12000 -> 512, one pass, warm-up 5000 -> 50 steps
            # (about 12% of the run), peak lr 0.0048 -> 0.002 (docs/training.md says why).
            "small": {
                "batch_size": 512,
                "epochs": 1.0,
                "peak_lr": 0.002,
                "warmup_steps": 50,
                "checkpoint_every_steps": 100,
            },
            "tiny": {
                "batch_size": 64,
                "epochs": 1.0,
                "peak_lr": 0.003,
                "warmup_steps": 5,
                "checkpoint_every_steps": 10,
                "progress": False,
            },
        }
        if name not in presets:
            raise KeyError(f"unknown TrainConfig preset {name!r}; known: {sorted(presets)}")
        return cls(**{**presets[name], **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "train") -> TrainConfig:
        """Build from a TOML table; ``preset = NAME`` picks the base, other keys override.

        Unknown keys and wrongly typed values raise one error listing every bad field as
        ``[where].field``.
        """
        d = dict(d)
        preset = d.pop("preset", None)
        names = {f.name: f for f in dataclasses.fields(cls)}
        errors = [
            f"[{where}].{k}: unknown field (known: {sorted(names)})" for k in d if k not in names
        ]
        for k, v in d.items():
            if k in names:
                want = type(getattr(cls(), k)) if k != "epochs" else float
                ok = isinstance(v, want) or (want is float and isinstance(v, int))
                if isinstance(v, bool) and want is not bool:
                    ok = False
                if not ok:
                    errors.append(f"[{where}].{k}: expected {want.__name__}, got {v!r}")
        if errors:
            raise ValueError("invalid config:\n  " + "\n  ".join(errors))
        try:
            return cls.preset(preset, **d) if preset else cls(**d)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"[{where}]: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate_fields(c: TrainConfig) -> list[str]:
    """Every violated constraint of ``c`` as ``field: reason`` (empty when valid)."""
    errors = []

    def need(cond: bool, field: str, why: str) -> None:
        if not cond:
            errors.append(f"{field}: {why}, got {getattr(c, field)!r}")

    need(c.batch_size >= 1, "batch_size", "must be >= 1")
    need(c.epochs > 0, "epochs", "must be > 0")
    need(c.max_steps >= 0, "max_steps", "must be >= 0")
    need(c.peak_lr > 0, "peak_lr", "must be > 0")
    need(c.warmup_steps >= 0, "warmup_steps", "must be >= 0")
    need(0 <= c.min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1]")
    need(0 <= c.adam_beta1 < 1, "adam_beta1", "must be in [0, 1)")
    need(0 <= c.adam_beta2 < 1, "adam_beta2", "must be in [0, 1)")
    need(c.adam_eps > 0, "adam_eps", "must be > 0")
    need(c.weight_decay >= 0, "weight_decay", "must be >= 0")
    need(c.grad_clip_norm >= 0, "grad_clip_norm", "must be >= 0 (0 = off)")
    need(c.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}")
    need(c.device in DEVICES, "device", f"must be one of {DEVICES}")
    need(c.training_path in TRAINING_PATHS, "training_path", f"must be one of {TRAINING_PATHS}")
    need(c.checkpoint_every_steps >= 0, "checkpoint_every_steps", "must be >= 0")
    need(c.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
    need(c.log_every_steps >= 1, "log_every_steps", "must be >= 1")
    return errors
