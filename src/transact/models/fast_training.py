"""TransAct's fast training forward: visible positions only, one candidate projection per
example, cheap dropout masks.

:meth:`TransAct.forward <transact.models.transact.TransAct.forward>` runs the encoder on all
|S| positions of every example, hidden ones included. In training the same function is
computed with less work when the encoder's ``fast_training`` options are set (the trainer
sets them, ``TrainConfig.training_path = "fast"``); three rewrites, each exact up to float
rounding (same parameters, same loss, same gradients):

1. **Only visible positions.** A hidden position (padding, an action at or after the
   request, one inside the random time window, a filtered action type) is never a key and
   its output column is zeroed before compression: it contributes nothing to the output.
   Each example keeps its visible positions, in their order; the examples are sorted by
   how many they keep and cut into a few buckets (:func:`plan_buckets`), each padded to its
   longest row. On the demo world an example keeps 76 of 100 positions on average, 59 under
   the 24 h time window. An example with nothing visible outputs exactly 0, as in the plain
   forward, and is not computed at all.
2. **Layer 1's candidate projection once per example** (concat fusion, no positional
   encoding): the token is ``[u_s ; c_b]``, so ``W [u_s ; c_b] + b = W_u u_s + (W_c c_b +
   b)``: the candidate's third of the input projection is computed once per example, not
   at every position (the serving path's split, :mod:`transact.models.split_attention`,
   at the scale of one example).
3. **Dropout masks from numpy's SFC64 bit generator** (CPU): ``keep = bits32 >= round(p *
   2^32)`` with 32-bit uniform integers, so the keep probability is ``1 - p`` to 2^-32
   (torch's float ``bernoulli_`` resolves 2^-24). torch's CPU ``bernoulli_`` took 18% of a
   plain training step; these masks cost about a fifth of that. The generator is seeded
   once per forward from torch's RNG, so a run stays a pure function of its seed and
   resumes bit-identically. The masks are the same distribution as the plain forward's, a
   different random stream: with dropout on, the two forwards are equal in distribution,
   not value by value. On CUDA ``F.dropout`` draws them (``dropout_rng="auto"``).

The random time window is drawn by :meth:`TransAct.sequence_mask`, the same call as the
plain forward makes, so with the same RNG state both hide the same actions; with dropout 0
the two forwards agree to float rounding (``tests/models/test_fast_training.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F

from transact.models.attention import EncoderLayer
from transact.models.sequence import SequenceEncoder

if TYPE_CHECKING:
    from transact.models.transact import TransAct

DROPOUT_RNGS = ("auto", "numpy", "torch")
BUCKET_OVERHEAD_MACS = 40e6
"""A bucket's fixed cost in multiply-adds (its ~60 ops forward and backward, ~1 ms on one
core): :func:`plan_buckets` starts a new bucket only when padding saves more than this."""


@dataclass(frozen=True)
class FastTrainingOptions:
    """Switches of the fast training forward; every one keeps the model's function.

    Args:
        compact: keep only each example's visible positions (rewrite 1); off runs every
            position with the key mask, as the plain forward.
        max_buckets: at most this many buckets of examples of similar visible length.
        dropout_rng: ``numpy`` (SFC64 bits, CPU), ``torch`` (``F.dropout``), or ``auto``:
            numpy on CPU, torch on other devices.
    """

    compact: bool = True
    max_buckets: int = 8
    dropout_rng: str = "auto"

    def __post_init__(self) -> None:
        if self.max_buckets < 1:
            raise ValueError(f"FastTrainingOptions.max_buckets={self.max_buckets}: must be >= 1")
        if self.dropout_rng not in DROPOUT_RNGS:
            raise ValueError(
                f"FastTrainingOptions.dropout_rng={self.dropout_rng!r} not in {DROPOUT_RNGS}"
            )


def set_fast_training(
    model: torch.nn.Module, options: FastTrainingOptions | None
) -> list[tuple[SequenceEncoder, FastTrainingOptions | None]]:
    """Set ``fast_training`` on every sequence encoder in ``model`` (``None``: the plain
    forward); returns each encoder's previous value, for :func:`restore_fast_training`."""
    previous = []
    for module in model.modules():
        if isinstance(module, SequenceEncoder):
            previous.append((module, module.fast_training))
            module.fast_training = options
    return previous


def restore_fast_training(
    previous: list[tuple[SequenceEncoder, FastTrainingOptions | None]],
) -> None:
    """Undo :func:`set_fast_training`."""
    for module, options in previous:
        module.fast_training = options


class Dropout:
    """The dropout masks of one forward: ``drop(x)`` is ``x`` with each element zeroed with
    probability ``p`` and the rest scaled by ``1 / (1 - p)``.

    With ``rng="numpy"`` the masks come from one SFC64 generator seeded from torch's RNG when
    the object is made (one torch draw per forward); ``"torch"`` calls ``F.dropout``.
    """

    def __init__(self, p: float, rng: str) -> None:
        self.p = p
        self.scale = 1.0 / (1.0 - p) if p < 1 else 0.0
        self.bits: np.random.Generator | None = None
        if p > 0 and rng == "numpy":
            seed = int(torch.randint(0, 2**62, (1,)))
            self.bits = np.random.Generator(np.random.SFC64(seed))
            self.threshold = np.uint32(min(round(p * 2**32), 2**32 - 1))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0:
            return x
        if self.bits is None:
            return F.dropout(x, self.p, training=True)
        return x * self.mask(x)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """``[x.shape]`` float mask of 0 and ``1 / (1 - p)`` (fp32 unless ``x`` is fp32/64)."""
        assert self.bits is not None
        n = x.numel()
        raw = self.bits.bit_generator.random_raw((n + 1) // 2)
        keep = torch.from_numpy(raw.view(np.uint32)[:n] >= self.threshold).view(x.shape)
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        return keep.to(device=x.device, dtype=dtype).mul_(self.scale)


def plan_buckets(
    counts: list[int], d_model: int, dim_feedforward: int, max_buckets: int
) -> list[tuple[int, int]]:
    """Cut examples sorted by visible length (``counts``, descending, all >= 1) into at most
    ``max_buckets`` runs ``[lo, hi)``, each padded to its first (longest) row.

    Minimizes the estimated multiply-adds per layer, ``rows * (L * (4 d^2 + 2 d f) + 2 d
    L^2)`` per bucket of longest row ``L``, plus :data:`BUCKET_OVERHEAD_MACS` per bucket, by
    dynamic programming over cut points every ``len(counts) / 32`` rows.
    """
    n = len(counts)
    if n == 0:
        return []
    per_token = 4 * d_model**2 + 2 * d_model * dim_feedforward
    step = max(1, math.ceil(n / 32))
    cuts = [*range(0, n, step), n]

    def cost(i: int, j: int) -> float:
        length = counts[cuts[i]]
        rows = cuts[j] - cuts[i]
        return rows * (length * per_token + 2 * d_model * length**2) + BUCKET_OVERHEAD_MACS

    m = len(cuts)
    inf = float("inf")
    # plans[k][j]: the cheapest cost of rows [0, cuts[j]) in k buckets; back[k-1][j] its last cut
    plans = [[0.0 if j == 0 else inf for j in range(m)]]
    back: list[list[int]] = []
    for _ in range(max_buckets):
        prev = plans[-1]
        cur = [inf] * m
        arg = [0] * m
        for j in range(1, m):
            for i in range(j):
                if prev[i] < inf:
                    c = prev[i] + cost(i, j)
                    if c < cur[j]:
                        cur[j], arg[j] = c, i
        plans.append(cur)
        back.append(arg)
    k = min(range(1, max_buckets + 1), key=lambda kk: plans[kk][m - 1])
    bounds = []
    j = m - 1
    while k > 0:
        i = back[k - 1][j]
        bounds.append((cuts[i], cuts[j]))
        j, k = i, k - 1
    return bounds[::-1]


class _Bucket(NamedTuple):
    """Examples ``rows`` [n] with their kept ``positions`` [n, L] (original indices,
    visible first, ascending) and ``pad`` [n, L] (True = not one of the row's positions)."""

    rows: torch.Tensor
    positions: torch.Tensor
    pad: torch.Tensor


def fast_training_forward(
    encoder: TransAct,
    action_types: torch.Tensor,
    action_embeddings: torch.Tensor,
    action_times_ms: torch.Tensor,
    request_time_ms: torch.Tensor,
    candidate_embedding: torch.Tensor,
    options: FastTrainingOptions,
) -> torch.Tensor:
    """``encoder``'s training forward on checked inputs (``[B, S]`` types, ``[B, S, d_item]``
    embeddings, ``[B, S]`` times, ``[B]`` request times, ``[B, d_item]`` candidates) ->
    ``[B, out_dim]``, the same function as the plain forward, computed on visible positions.
    """
    cfg = encoder.config
    masked = encoder.sequence_mask(action_types, action_times_ms, request_time_ms)  # [B, S]
    b = masked.shape[0]
    if cfg.fusion == "append":  # the candidate token, always visible
        masked = torch.cat([masked, masked.new_zeros(b, 1)], dim=1)
    device = candidate_embedding.device
    rng = options.dropout_rng
    if rng == "auto":
        rng = "numpy" if device.type == "cpu" else "torch"
    dropout = Dropout(cfg.dropout, rng)
    split = cfg.fusion == "concat" and cfg.positional_encoding == "none"
    tokens = None
    if not split:  # positions, append token: the model's own token builder, then gather
        tokens = encoder.fused_tokens(
            action_types, action_embeddings, action_times_ms, request_time_ms,
            candidate_embedding,
        )  # fmt: skip
    buckets, n_empty, order = _buckets(masked, options, cfg.d_model, cfg.dim_feedforward)
    if not buckets:  # nothing visible anywhere: exactly 0 (the plain forward's fallback)
        return candidate_embedding.new_zeros(b, encoder.out_dim)
    outputs = []
    for bucket in buckets:
        if tokens is not None:
            x = tokens[bucket.rows[:, None], bucket.positions]
            x = _encode(encoder, x, None, bucket.pad, dropout)
        else:
            x = _encode_concat(
                encoder, action_types, action_embeddings, candidate_embedding, bucket, dropout
            )
        outputs.append(_compress(encoder, x, bucket, masked.shape[1]))
    if n_empty:  # nothing visible: exactly 0 (the plain forward's fallback output)
        outputs.append(outputs[0].new_zeros(n_empty, encoder.out_dim))
    out_sorted = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    return out_sorted.index_select(0, torch.argsort(order))


def _buckets(
    masked: torch.Tensor, options: FastTrainingOptions, d_model: int, dim_feedforward: int
) -> tuple[list[_Bucket], int, torch.Tensor]:
    """The buckets of examples with something visible, the number without, and the row
    order (buckets' rows, then the empty ones)."""
    b, s = masked.shape
    counts = (~masked).sum(dim=1)
    order = torch.argsort(counts, descending=True, stable=True)
    sorted_counts = counts[order].tolist()
    n_visible = sum(1 for c in sorted_counts if c > 0)
    n_empty = b - n_visible
    if not options.compact:
        if n_visible == 0:
            return [], n_empty, order
        rows = order[:n_visible]
        positions = torch.arange(s, device=masked.device).expand(n_visible, s)
        return [_Bucket(rows, positions, masked[rows])], n_empty, order
    bounds = plan_buckets(sorted_counts[:n_visible], d_model, dim_feedforward, options.max_buckets)
    # visible positions first, each group in its original (newest-first) order
    by_visibility = torch.argsort(masked.to(torch.uint8), dim=1, stable=True)
    buckets = []
    for lo, hi in bounds:
        rows = order[lo:hi]
        length = sorted_counts[lo]
        positions = by_visibility[rows, :length]
        pad = torch.arange(length, device=masked.device) >= counts[rows].unsqueeze(1)
        buckets.append(_Bucket(rows, positions, pad))
    return buckets, n_empty, order


def _encode_concat(
    encoder: TransAct,
    action_types: torch.Tensor,
    action_embeddings: torch.Tensor,
    candidate_embedding: torch.Tensor,
    bucket: _Bucket,
    dropout: Dropout,
) -> torch.Tensor:
    """Concat fusion without positional encoding: layer 1's projection split into the user
    part per position and the candidate part per example (rewrite 2)."""
    rows, positions = bucket.rows[:, None], bucket.positions
    candidates = candidate_embedding[bucket.rows]  # [n, d_c]
    n, length = positions.shape
    parts = []
    if encoder.action_embedding is not None:
        parts.append(encoder.action_embedding(action_types[rows, positions]))
    parts.append(action_embeddings[rows, positions].to(candidates.dtype))
    parts.append(candidates[:, None, :].expand(n, length, candidates.shape[1]))
    x = torch.cat(parts, dim=-1)  # [n, L, d]: the tokens [u_s ; c_b]
    d_u = x.shape[2] - candidates.shape[1]
    proj = cast(EncoderLayer, encoder.encoder.layers[0]).self_attn.in_proj
    # x[..., :d_u] is a strided view; the GEMM reads it in place
    qkv = F.linear(x[..., :d_u], proj.weight[:, :d_u]) + F.linear(
        candidates, proj.weight[:, d_u:], proj.bias
    ).unsqueeze(1)
    return _encode(encoder, x, qkv, bucket.pad, dropout)


def _encode(
    encoder: TransAct,
    x: torch.Tensor,
    first_qkv: torch.Tensor | None,
    pad: torch.Tensor,
    dropout: Dropout,
) -> torch.Tensor:
    """Every encoder layer on ``x [n, L, d]`` with key mask ``pad [n, L]``; layer 1's input
    projection given as ``first_qkv [n, L, 3d]`` when computed split."""
    # the key mask as an additive bias [n, 1, L] (-inf at hidden keys), the attention
    # GEMM's initial value: no separate masking pass over the [n, L, L] logits
    bias = None
    if bool(pad.any()):
        bias = torch.zeros(pad.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill_(pad, float("-inf")).unsqueeze(1)
    for i, layer in enumerate(encoder.encoder.layers):
        x = _layer(cast(EncoderLayer, layer), x, first_qkv if i == 0 else None, bias, dropout)
    return x


def _layer(
    layer: EncoderLayer,
    x: torch.Tensor,
    qkv: torch.Tensor | None,
    bias: torch.Tensor | None,
    dropout: Dropout,
) -> torch.Tensor:
    """:class:`EncoderLayer`'s function with its parameters: post-norm self-attention with
    dropout on the weights and the output, then the ReLU FFN with two dropouts. ``bias``
    ``[n, 1, L]``: 0 at visible keys, -inf at hidden ones (``None``: every key visible)."""
    attn = layer.self_attn
    n, length, d = x.shape
    h = attn.num_heads
    if qkv is None:
        qkv = F.linear(x, attn.in_proj.weight, attn.in_proj.bias)
    q, k, v = qkv.split(d, dim=-1)
    scale = 1.0 / math.sqrt(d // h)
    if h == 1:
        if bias is None:
            scores = torch.bmm(q, k.transpose(1, 2)).mul_(scale)
        else:
            scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale)  # [n, L, L]
        weights = dropout(torch.softmax(scores, dim=-1))
        o = torch.bmm(weights, v)
    else:
        q, k, v = (t.reshape(n, length, h, d // h).transpose(1, 2) for t in (q, k, v))
        scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale)  # [n, h, L, L]
        if bias is not None:
            scores = scores + bias.unsqueeze(1)
        weights = dropout(torch.softmax(scores, dim=-1))
        o = torch.matmul(weights, v).transpose(1, 2).reshape(n, length, d)
    x = layer.norm1(x + dropout(attn.out_proj(o)))
    hidden = dropout(F.relu(layer.linear1(x)))
    return layer.norm2(x + dropout(layer.linear2(hidden)))


def _compress(encoder: TransAct, out: torch.Tensor, bucket: _Bucket, n_tokens: int) -> torch.Tensor:
    """Table 4's compression of a bucket's encoder output ``[n, L, d]`` (only the kept
    positions) -> ``[n, out_dim]``, equal to the plain forward's on the full, zero-filled
    ``[n, S', d]``."""
    cfg = encoder.config
    c = cfg.compression
    needs_pool = c in ("max_pool", "first_k_max_pool", "all_cols_max_pool")
    pooled = None
    if needs_pool:
        pooled = out.masked_fill(bucket.pad.unsqueeze(-1), float("-inf")).max(dim=1).values
        if c == "max_pool":
            return pooled
    cols = cfg.k if c in ("first_k_cols", "first_k_max_pool") else n_tokens
    if c == "first_col":
        cols = 1
    head = _leading_columns(out, bucket, cols)  # [n, cols, d]
    if c in ("random_col", "random_k_cols"):
        return head[:, encoder.random_cols].flatten(1)
    if pooled is not None:
        return torch.cat([head.flatten(1), pooled], dim=1)
    return head.flatten(1) if c != "first_col" else head[:, 0]


def _leading_columns(out: torch.Tensor, bucket: _Bucket, cols: int) -> torch.Tensor:
    """The output at original positions ``0..cols-1``, ``[n, cols, d]``, zero where a
    position is hidden: kept positions are ascending, so those below ``cols`` are among the
    first ``cols`` kept ones and are scattered to where they came from."""
    n, length, d = out.shape
    m = min(length, cols)
    positions = bucket.positions[:, :m]
    valid = (positions < cols) & ~bucket.pad[:, :m]
    if (
        m == cols
        and bool(valid.all())
        and bool((positions == torch.arange(m, device=out.device)).all())
    ):
        return out[:, :cols]  # the first positions are all visible: nothing moves
    values = out[:, :m].masked_fill(~valid.unsqueeze(-1), 0.0)
    target = torch.where(valid, positions, cols)  # invalid ones go to a spare column
    full = out.new_zeros(n, cols + 1, d).scatter(1, target.unsqueeze(-1).expand(n, m, d), values)
    return full[:, :cols]
