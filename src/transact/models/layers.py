"""Building blocks of the Pinnability ranker: consolidated embedding lookup, DCN v2, MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConsolidatedEmbedding(nn.Module):
    """All categorical features in ONE table with per-feature row offsets (paper 3.4.2).

    Feature ``f`` with cardinality ``c_f`` owns rows ``offset_f .. offset_f + c_f - 1``; a
    ``[B, F]`` tensor of local indices becomes one gather ``table[local + offsets]`` and a
    reshape to ``[B, F * dim]``, instead of F separate lookups (F kernels on a GPU).
    :meth:`reference` does the F separate lookups for tests.

    Args:
        cardinalities: rows per feature, in column order.
        dim: embedding size shared by every feature.
    """

    offsets: torch.Tensor
    cardinalities: torch.Tensor

    def __init__(self, cardinalities: Sequence[int], dim: int) -> None:
        super().__init__()
        if not cardinalities:
            raise ValueError("ConsolidatedEmbedding needs at least one feature")
        sizes = torch.tensor(list(cardinalities), dtype=torch.long)
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes)
        self.register_buffer("cardinalities", sizes)
        self.dim = dim
        self.table = nn.Embedding(int(sizes.sum()), dim)
        nn.init.normal_(self.table.weight, std=dim**-0.5)

    @property
    def out_dim(self) -> int:
        return len(self.cardinalities) * self.dim

    def forward(self, local_indices: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` local indices -> ``[B, F * dim]`` (one gather)."""
        return self.table(local_indices + self.offsets).flatten(1)

    def reference(self, local_indices: torch.Tensor) -> torch.Tensor:
        """Plain per-feature lookups (one per feature), same result as :meth:`forward`."""
        parts = []
        for f in range(local_indices.shape[1]):
            start = int(self.offsets[f])
            rows = self.table.weight[start : start + int(self.cardinalities[f])]
            parts.append(nn.functional.embedding(local_indices[:, f], rows))
        return torch.cat(parts, dim=1)


class CrossNetV2(nn.Module):
    """Full-rank DCN v2 cross layers: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l``, ``[B, D] -> [B, D]``.

    Args:
        dim: input width D (each layer holds a D x D matrix).
        num_layers: number of cross layers.
    """

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        linears = [nn.Linear(dim, dim) for _ in range(num_layers)]
        for layer in linears:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(linears)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class MLP(nn.Module):
    """Fully connected ReLU layers with dropout, ``[B, D] -> [B, dims[-1]]`` (identity if empty)."""

    def __init__(self, in_dim: int, dims: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for d in dims:
            layers += [nn.Linear(in_dim, d), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = d
        self.net = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
