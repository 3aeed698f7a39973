"""From a world/log directory and a run config to a trained model on disk, and back.

The glue every front end shares (``transact train``, ``transact demo``, the experiments):
time-window parsing, example sets for a window, building the Pinnability model and its
loss from a :class:`~transact.training.run_config.RunConfig`, training, and loading a
trained ``model.pt`` again for evaluation or serving. It talks to the data and model
stages only through their public names (``transact.data.examples.build_example_set``,
``transact.models.Pinnability``, ``transact.training.loss.LossConfig``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from transact.data.schema import FeatureSpec, LabeledBatch
from transact.training.config import TrainConfig
from transact.training.run_config import RunConfig
from transact.training.trainer import BatchSource, LossFn, TrainResult, seed_everything, train


def parse_time_ms(value: str | int) -> int:
    """``2026-01-15``, ``2026-01-15T06:00`` (UTC unless an offset is given) or epoch ms."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"time {value!r}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM or epoch milliseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def format_time_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start_ms, end_ms)`` of requests."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ValueError(
                f"window end {format_time_ms(self.end_ms)} is not after start "
                f"{format_time_ms(self.start_ms)}"
            )

    def __str__(self) -> str:
        return f"[{format_time_ms(self.start_ms)}, {format_time_ms(self.end_ms)})"


def resolve_window(
    data_dir: str | Path, split: str, start: str | int | None = None, end: str | int | None = None
) -> Window:
    """The window to use: ``start``/``end`` when given, else the manifest's ``split``.

    ``split`` is ``train`` or ``eval`` (the world's weeks 1-2 and week 3, paper 4.1.1).
    Sliding-window retraining passes explicit ``start``/``end``.
    """
    from transact.data.io import load_manifest

    manifest = load_manifest(data_dir)
    if split == "train":
        default = (manifest.train_start_ms, manifest.train_end_ms)
    elif split == "eval":
        default = (manifest.eval_start_ms, manifest.eval_end_ms)
    else:
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    return Window(
        parse_time_ms(start) if start is not None else default[0],
        parse_time_ms(end) if end is not None else default[1],
    )


def build_examples(
    data_dir: str | Path,
    window: Window,
    config: RunConfig,
    *,
    evaluation: bool,
    user_embeddings: Any = None,
) -> Any:
    """The example set of ``window``: training (optionally down-sampled) or evaluation.

    Evaluation sets are the randomized requests only and never down-sampled (4.2.1).
    """
    from transact.data.examples import build_example_set

    data = config.data
    return build_example_set(
        data_dir,
        window.start_ms,
        window.end_ms,
        seq_len=data.seq_len,
        negative_ratio=None if evaluation or data.negative_ratio == 0 else data.negative_ratio,
        randomized_only=True if evaluation else data.train_randomized_only,
        user_embeddings=user_embeddings,
        seed=data.seed,
    )


def build_model(spec: FeatureSpec, model_table: dict[str, Any]) -> torch.nn.Module:
    """``Pinnability(spec, PinnabilityConfig.from_dict(model_table))``."""
    from transact.models import Pinnability, PinnabilityConfig

    return Pinnability(spec, PinnabilityConfig.from_dict(dict(model_table)))


def build_loss(spec: FeatureSpec, loss_table: dict[str, Any]) -> LossFn:
    """The weighted multi-head BCE of ``[loss]`` as a trainer loss ``(logits, batch)``."""
    from transact.training.loss import LossConfig

    module = LossConfig.from_dict(dict(loss_table)).build(spec)

    def loss_fn(logits: torch.Tensor, batch: LabeledBatch) -> torch.Tensor:
        module.to(logits.device)
        return module(logits, batch.labels, batch.inputs.categorical)

    return loss_fn


def train_run(
    config: RunConfig,
    train_set: BatchSource,
    feature_spec: FeatureSpec,
    out_dir: str | Path,
    *,
    resume: bool = False,
    metadata: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
) -> TrainResult:
    """Build model and loss from ``config`` and train on ``train_set`` into ``out_dir``.

    ``model.pt`` in ``out_dir`` then holds the weights with the run config, the model
    config and the FeatureSpec, which :func:`load_trained_model` needs.
    """
    from transact.models import PinnabilityConfig

    tc = train_config or config.train
    seed_everything(tc.seed)
    model = build_model(feature_spec, config.model)
    loss_fn = build_loss(feature_spec, config.loss)
    md = {
        "run_config": config.to_dict(),
        "model_config": PinnabilityConfig.from_dict(dict(config.model)).to_dict(),
        "feature_spec": feature_spec.to_dict(),
        **(metadata or {}),
    }
    return train(model, loss_fn, train_set, tc, out_dir, resume=resume, metadata=md)


def model_file(path: str | Path) -> Path:
    """``RUN/model.pt`` for a run directory, or the file itself."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def load_trained_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, FeatureSpec, dict[str, Any]]:
    """Rebuild a trained Pinnability from ``model.pt`` (or its run dir), in eval mode.

    Returns ``(model, feature_spec, metadata)``.
    """
    from transact.models import Pinnability, PinnabilityConfig

    file = model_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no trained model (run `transact train` first)")
    saved = torch.load(file, map_location=device, weights_only=False)
    md = saved.get("metadata", {})
    for key in ("feature_spec", "model_config"):
        if key not in md:
            raise ValueError(f"{file}: metadata has no {key!r}; not written by transact train")
    spec = FeatureSpec.from_dict(md["feature_spec"])
    model = Pinnability(spec, PinnabilityConfig.from_dict(dict(md["model_config"])))
    model.load_state_dict(saved["model"])
    model.to(device).eval()
    return model, spec, md
