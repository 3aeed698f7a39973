"""From a world/log directory and a run config to a trained model on disk.

The glue every front end shares (``transact train``, ``transact evaluate``, ``transact
demo``, the experiments): example sets for a window, the Pinnability model and its loss
built from a :class:`~transact.pipeline.run_config.RunConfig`, and training. It talks to
the stages below only through their public names (``transact.data.examples``,
``transact.models``, ``transact.training``). A trained run is read back with
:func:`transact.models.artifact.load_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from transact.data.schema import FeatureSpec, LabeledBatch
from transact.pipeline.run_config import RunConfig
from transact.pipeline.windows import Window
from transact.training.config import TrainConfig
from transact.training.trainer import BatchSource, LossFn, TrainResult, seed_everything, train


def build_examples(
    data_dir: str | Path,
    window: Window,
    config: RunConfig,
    *,
    evaluation: bool,
    user_embeddings: Any = None,
) -> Any:
    """The example set of ``window``: training (optionally down-sampled) or evaluation.

    Evaluation sets are the randomized requests only and never down-sampled (4.2.1). The
    labels are those of ``config``'s heads (``[heads] names``, checked against the
    dataset's vocabulary and label actions; default: every label action).
    """
    from transact.data.examples import build_example_set
    from transact.data.io import load_manifest

    manifest = load_manifest(data_dir)
    heads = config.heads.resolve_names(manifest.actions, manifest.heads)
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
        heads=heads,
    )


def build_model(spec: FeatureSpec, model_table: dict[str, Any]) -> torch.nn.Module:
    """``Pinnability(spec, PinnabilityConfig.from_dict(model_table))``."""
    from transact.models import Pinnability, PinnabilityConfig

    return Pinnability(spec, PinnabilityConfig.from_dict(dict(model_table)))


def build_loss(
    spec: FeatureSpec,
    loss_table: dict[str, Any],
    label_weights: dict[str, dict[str, float]] | None = None,
) -> LossFn:
    """The weighted multi-head BCE of ``[loss]`` as a trainer loss ``(logits, batch)``;
    ``label_weights`` is M by action name (``[heads.label_weights]``), if given."""
    from transact.training.loss import LossConfig

    module = LossConfig.from_dict(dict(loss_table)).build(spec, label_weights)

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
    config and the FeatureSpec as JSON metadata, which
    :func:`transact.models.artifact.load_model` needs. The run config is recorded with
    its ``[heads]`` resolved against ``feature_spec`` (names, every utility weight, M by
    name), so evaluation and serving rank with the weights the run was given.
    """
    from transact.models import PinnabilityConfig

    config = config.resolved(feature_spec.actions, feature_spec.heads)
    if tuple(config.heads.names or ()) != tuple(feature_spec.heads):
        raise ValueError(
            f"heads.names {list(config.heads.names or ())} differ from the examples' heads "
            f"{list(feature_spec.heads)}; build the examples with this run config"
        )
    tc = train_config or config.train
    seed_everything(tc.seed)
    model = build_model(feature_spec, config.model)
    loss_fn = build_loss(feature_spec, config.loss, _label_weights(config))
    md = {
        "run_config": config.to_dict(),
        "model_config": PinnabilityConfig.from_dict(dict(config.model)).to_dict(),
        "feature_spec": feature_spec.to_dict(),
        **(metadata or {}),
    }
    return train(model, loss_fn, train_set, tc, out_dir, resume=resume, metadata=md)


def _label_weights(config: RunConfig) -> dict[str, dict[str, float]] | None:
    lw = config.heads.label_weights
    return None if lw is None else {h: dict(row) for h, row in lw.items()}
