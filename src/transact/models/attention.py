"""Transformer encoder layers with key masks: a fast SDPA path and a plain reference path.

``nn.TransformerEncoder`` has its own fast path that returns NaN (or drops rows) when a row
has every key masked, and it is awkward to export. This small post-norm encoder (the same
math as ``nn.TransformerEncoderLayer(batch_first=True, norm_first=False)``: self-attention,
dropout, residual, LayerNorm, ReLU FFN, dropout, residual, LayerNorm) keeps masking
explicit. ``attention="sdpa"`` calls :func:`torch.nn.functional.scaled_dot_product_attention`;
``attention="reference"`` writes softmax(QK^T / sqrt(d_head) + mask) V out by hand. A test
compares the two.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_IMPLS = ("sdpa", "reference")


def reference_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Plain masked attention: ``[B, h, S, dh]`` q/k/v and ``[B, S]`` bool key mask (True = hidden).

    Every row must keep at least one visible key (the caller guarantees it), otherwise the
    softmax is NaN exactly as in the fast path.
    """
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    scores = scores.masked_fill(key_mask[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ value


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention over ``[B, S, D]`` with a ``[B, S]`` boolean key mask.

    Args:
        d_model: model width D (divisible by ``num_heads``).
        num_heads: attention heads.
        dropout: dropout on the attention weights (training only).
        attention: ``"sdpa"`` (fast) or ``"reference"`` (plain PyTorch).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float, attention: str) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention={attention!r} not in {ATTENTION_IMPLS}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.attention = attention
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        qkv = self.in_proj(x).view(b, s, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, h, S, dh]
        p = self.dropout if self.training else 0.0
        if self.attention == "sdpa":
            # SDPA's boolean mask is True where attention is ALLOWED.
            allowed = (~key_mask)[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        else:
            out = reference_attention(q, k, v, key_mask, dropout_p=p)
        return self.out_proj(out.transpose(1, 2).reshape(b, s, d))


class EncoderLayer(nn.Module):
    """One post-norm transformer encoder layer (attention + ReLU FFN), ``[B, S, D] -> [B, S, D]``."""

    def __init__(
        self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float, attention: str
    ) -> None:
        super().__init__()
        self.self_attn = MaskedSelfAttention(d_model, num_heads, dropout, attention)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout_ffn = nn.Dropout(dropout)
        self.dropout_out = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attn(x, key_mask)))
        ffn = self.linear2(self.dropout_ffn(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout_out(ffn))


class Encoder(nn.Module):
    """A stack of :class:`EncoderLayer`; ``key_mask`` [B, S] (True = never attended to)."""

    def __init__(
        self,
        d_model: int,
        num_layers: int,
        num_heads: int,
        dim_feedforward: int,
        dropout: float,
        attention: str = "sdpa",
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, dim_feedforward, dropout, attention)
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, key_mask)
        return x
