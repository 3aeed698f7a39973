"""Parameter counts and measured FLOPs per example (paper Appendix C, Table 9).

FLOPs are measured with :class:`torch.utils.flop_counter.FlopCounterMode` on one eval
forward pass over random inputs (matmuls, convolutions and attention count; elementwise ops
do not, as in Table 9's convention of counting multiply-adds in dense layers). Attention is
switched to the plain reference path while counting, so every attention matmul is seen
whatever backend SDPA would pick.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from transact.data.schema import FeatureSpec
from transact.models.attention import MaskedSelfAttention
from transact.models.examples import example_ranker_inputs
from transact.models.pinnability import Pinnability, PinnabilityConfig


@dataclass(frozen=True)
class ModelSummary:
    """What ``transact model summary`` prints.

    Fields:
        parameters: trainable parameters in total.
        embedding_parameters: of which in the consolidated categorical table.
        flops_per_example: measured forward FLOPs / batch size.
        sequence_flops_per_example: of which inside the sequence encoder.
        input_dim: width of the DCN input.
    """

    preset: str
    encoder: str
    parameters: int
    embedding_parameters: int
    flops_per_example: float
    sequence_flops_per_example: float
    input_dim: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure_flops(model: Pinnability, batch_size: int = 8, seed: int = 0) -> tuple[float, float]:
    """(total, sequence-encoder) forward FLOPs per example, measured on random inputs."""
    inputs = example_ranker_inputs(model.spec, batch_size, seed=seed)
    was_training = model.training
    attention = [m for m in model.modules() if isinstance(m, MaskedSelfAttention)]
    saved = [m.attention for m in attention]
    model.eval()
    try:
        for m in attention:
            m.attention = "reference"
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(inputs)
        total = counter.get_total_flops()
        sequence = 0
        if model.sequence_encoder is not None:
            per_module = counter.get_flop_counts()
            for name, counts in per_module.items():
                if name.endswith("sequence_encoder"):
                    sequence = sum(counts.values())
    finally:
        for m, a in zip(attention, saved, strict=True):
            m.attention = a
        model.train(was_training)
    return total / batch_size, sequence / batch_size


def summarize(spec: FeatureSpec, config: PinnabilityConfig, preset: str = "custom") -> ModelSummary:
    """Build the ranker for ``spec``/``config`` and measure it."""
    model = Pinnability(spec, config)
    flops, seq_flops = measure_flops(model)
    emb = count_parameters(model.embedding) if model.embedding is not None else 0
    return ModelSummary(
        preset=preset,
        encoder=config.encoder,
        parameters=count_parameters(model),
        embedding_parameters=emb,
        flops_per_example=flops,
        sequence_flops_per_example=seq_flops,
        input_dim=model.input_dim,
    )
