"""Weight folding of the fast path: the encoder layers' weights, copied and rearranged once.

:func:`layer_weights` copies a post-norm ReLU encoder layer (the project's
``transact.models.attention.EncoderLayer`` or ``nn.TransformerEncoderLayer``) into plain
tensors; :func:`fold_single_head` and :func:`fold_ffn_bias` rewrite them into fewer
operations with the same value (exact algebra, products formed in float64). The encoder
(:mod:`transact.models.fast_transact.encoder`) registers the results as buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LAYER_TENSORS = (
    "in_w", "in_b", "out_w", "out_b", "ff1_w", "ff1_b",
    "ff2_w", "ff2_b", "ln1_w", "ln1_b", "ln2_w", "ln2_b",
)  # fmt: skip


@dataclass
class LayerWeights:
    """One post-norm encoder layer as plain tensors (``d`` model width, ``f`` FFN width)."""

    in_w: torch.Tensor  # [3d, d]
    in_b: torch.Tensor  # [3d]
    out_w: torch.Tensor  # [d, d]
    out_b: torch.Tensor  # [d]
    ff1_w: torch.Tensor  # [f, d]
    ff1_b: torch.Tensor
    ff2_w: torch.Tensor  # [d, f]
    ff2_b: torch.Tensor
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    ln1_eps: float
    ln2_eps: float


def layer_weights(layer: Any) -> LayerWeights:
    """Copies of the weights of a post-norm relu encoder layer: ``nn.TransformerEncoderLayer``
    or the project's ``transact.models.attention.EncoderLayer`` (``self_attn.in_proj``
    Linear). Raises ``ValueError`` naming what the fast path does not compute."""
    if getattr(layer, "norm_first", False):
        raise ValueError("FastTransAct: encoder layer has norm_first=True; only post-norm is fused")
    act = getattr(layer, "activation", F.relu)
    if act is not F.relu and not isinstance(act, nn.ReLU):
        raise ValueError(f"FastTransAct: encoder activation {act!r} is not relu")
    attn = layer.self_attn
    if hasattr(attn, "in_proj"):
        in_w, in_b = attn.in_proj.weight, attn.in_proj.bias
    else:
        in_w, in_b = attn.in_proj_weight, attn.in_proj_bias
    if in_w is None or in_b is None:
        raise ValueError("FastTransAct: self-attention needs packed in_proj weights with bias")
    return LayerWeights(
        in_w=in_w.detach().clone(),
        in_b=in_b.detach().clone(),
        out_w=attn.out_proj.weight.detach().clone(),
        out_b=attn.out_proj.bias.detach().clone(),
        ff1_w=layer.linear1.weight.detach().clone(),
        ff1_b=layer.linear1.bias.detach().clone(),
        ff2_w=layer.linear2.weight.detach().clone(),
        ff2_b=layer.linear2.bias.detach().clone(),
        ln1_w=layer.norm1.weight.detach().clone(),
        ln1_b=layer.norm1.bias.detach().clone(),
        ln2_w=layer.norm2.weight.detach().clone(),
        ln2_b=layer.norm2.bias.detach().clone(),
        ln1_eps=float(layer.norm1.eps),
        ln2_eps=float(layer.norm2.eps),
    )


def fold_single_head(lw: LayerWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a one-head attention's four projections into two, ``[2d, d]`` and ``[2d]``.

    With ``q = Wq x + bq`` etc., the logit ``q_s . k_t / sqrt(d)`` is
    ``x_s^T (Wq^T Wk / sqrt(d)) x_t + (Wk^T bq / sqrt(d)) . x_t`` plus terms that do not
    depend on the key ``t`` and so cancel in the softmax: the query becomes
    ``M x_s + u`` and the key is ``x_t`` itself. Attention rows sum to 1, so the output
    projection moves inside: ``Wo (sum_t p_t v_t) + bo = sum_t p_t (Wo Wv x_t + Wo bv + bo)``.
    Rows ``[:d]`` of the result give the folded query, ``[d:]`` the folded value. The
    products are formed in float64, so the only change is the order of rounding.
    """
    d = lw.out_w.shape[0]
    w, b = lw.in_w.double(), lw.in_b.double()
    w_q, w_k, w_v = w[:d], w[d : 2 * d], w[2 * d :]
    b_q, b_v = b[:d], b[2 * d :]
    scale = 1.0 / math.sqrt(d)
    out_w, out_b = lw.out_w.double(), lw.out_b.double()
    qv_w = torch.cat([w_k.t() @ w_q * scale, out_w @ w_v])
    qv_b = torch.cat([w_k.t() @ b_q * scale, out_w @ b_v + out_b])
    return qv_w.to(lw.in_w.dtype).contiguous(), qv_b.to(lw.in_b.dtype)


def fold_ffn_bias(lw: LayerWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the FFN's output bias ``b2`` into the LayerNorm before the FFN: ``(ln1_b, ff1_b)``.

    The FFN half of a post-norm layer is ``y = LN2(x + W2 relu(W1 x + b1) + b2)`` with
    ``x = LN1(r)``. With ``x' = x + b2`` (LN1's bias plus ``b2``) it is
    ``LN2(x' + W2 relu(W1 x' + (b1 - W1 b2)))``: the same value without the bias pass
    over every token that ``W2 h + b2`` costs.
    """
    b2 = lw.ff2_b.double()
    ln1_b = lw.ln1_b.double() + b2
    ff1_b = lw.ff1_b.double() - lw.ff1_w.double() @ b2
    return ln1_b.to(lw.ln1_b.dtype), ff1_b.to(lw.ff1_b.dtype)
