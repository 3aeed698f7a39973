"""The exact per-user / per-candidate split of TransAct's first attention layer.

With concat early fusion the first layer's token of candidate ``b`` at position ``s`` is
``x[b, s] = [u_s ; c_b]``: the user's part ``u_s`` (action-type ‖ item embedding, width
``d_u``) and the candidate ``c_b`` (width ``d_c``). Everything linear in it splits:

* ``Q/K/V[b, s] = W_u u_s + W_c c_b + bias``: the user projection ``[S, d_u] x [d_u, 3d]``
  runs once per user, the candidate projection ``[B, d_c] x [d_c, 3d]`` once per candidate.
* Logits ``q[b,s].k[b,t] = Qu_s.Ku_t + Qc_b.Ku_t + (terms constant in t)``; the constant
  terms cancel in the softmax over t, so the logits are ``A[s,t] + G[b,t]`` with ``A``
  ``[S, S]`` once per user and ``G`` ``[B, S]``.
* ``softmax_t(A + G) = exp(A - max) * exp(G - max) / D[b, s]``: the attention over S is
  still per candidate (nothing is approximated), but for one user it becomes ONE
  ``[S, S] @ [S, B * d]`` GEMM.
* The candidate's value ``Vc_b`` passes through the softmax unchanged (rows sum to 1), and
  the output projection folds into the user values, ``Vu' = Vu Wo^T``.

So the attention block's residual ``x + MHA(x)`` is ``[u_s ; c_b] + Wo Vc_b + bo +
sum_h (E_h @ (g_h * Vu'_h)) / (E_h @ g_h)``. A denominator can underflow when the user-only
and the candidate maxima sit ~70 logits apart; every function reports the candidates that
did (``underflow``) so that the caller recomputes them plainly.

It lives in ``models/`` because it is model math, not serving plumbing: the serving fast
path (:mod:`transact.models.fast_transact`) runs it per request, and training may run it
per request of a batch (candidates of one request share the user's sequence). Two entry
points:

* :func:`user_part` + :func:`split_attention`: any number of users, ``user_index [B]`` naming
  each candidate's user. Out-of-place ops only: autograd-friendly (tested: same gradients
  as the plain layer).
* :func:`user_part` + :func:`one_user_candidates` + :func:`one_user_chunk`: one user's many
  candidates, the candidate work once and one GEMM per head and chunk. Inference only: it
  writes into preallocated outputs and updates in place to keep the op count per chunk low.

Tensor names: ``U`` users, ``B`` candidates, ``S`` positions, ``H`` heads of width ``dh``,
``d = d_u + d_c`` the model width.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from transact.models.attention import MaskedSelfAttention

UNDERFLOW = 1e-30
"""Softmax denominators below this count as underflowed: the candidate is recomputed plainly."""


class AttentionWeights(NamedTuple):
    """Layer 1's packed self-attention weights (``nn.MultiheadAttention`` layout).

    Fields:
        in_w: ``[3d, d]`` query, key and value projections stacked by rows; columns
            ``[:d_u]`` read the user part of the token, ``[d_u:]`` the candidate.
        in_b: ``[3d]``.
        out_w: ``[d, d]`` output projection.
        out_b: ``[d]``.
        num_heads: attention heads ``H`` (``d`` divisible by it).
    """

    in_w: torch.Tensor
    in_b: torch.Tensor
    out_w: torch.Tensor
    out_b: torch.Tensor
    num_heads: int

    @classmethod
    def of(cls, attention: MaskedSelfAttention) -> AttentionWeights:
        """The weights of a :class:`MaskedSelfAttention` (its live parameters: gradients
        flow into them)."""
        in_proj, out_proj = attention.in_proj, attention.out_proj
        return cls(
            in_proj.weight, in_proj.bias, out_proj.weight, out_proj.bias, attention.num_heads
        )


class UserPart(NamedTuple):
    """The per-user half of layer 1 (:func:`user_part`), computed once per user.

    Fields:
        e: ``[U, H, S, S]`` ``exp(A - max_t A)``, 0 at hidden keys.
        k_u: ``[U, H, S, dh]`` the user keys ``Ku`` (with the key bias).
        v_fold: ``[U, H, S, d]`` the user values through the output projection, ``Vu Wo^T``.
    """

    e: torch.Tensor
    k_u: torch.Tensor
    v_fold: torch.Tensor


def user_part(
    user_tokens: torch.Tensor, key_mask: torch.Tensor, weights: AttentionWeights
) -> UserPart:
    """Layer 1's per-user work: ``[U, S, d_u]`` user tokens -> :class:`UserPart`.

    ``key_mask [U, S]`` is True at keys nobody may attend to; every row must keep at least
    one visible key (an empty history attends over its zero tokens, as the model does).
    """
    n_users, s, d_u = user_tokens.shape
    d, h = weights.out_w.shape[0], weights.num_heads
    dh = d // h
    qkv_u = F.linear(user_tokens, weights.in_w[:, :d_u], weights.in_b)  # [U, S, 3d]
    q_u, k_u, v_u = qkv_u.view(n_users, s, 3, h, dh).permute(2, 0, 3, 1, 4).unbind(0)
    a = torch.matmul(q_u, k_u.transpose(-1, -2)) / math.sqrt(dh)  # [U, H, S, S]
    a = a.masked_fill(key_mask[:, None, None, :], float("-inf"))
    e = torch.exp(a - a.amax(dim=-1, keepdim=True))
    v_fold = torch.matmul(v_u, weights.out_w.view(d, h, dh).permute(1, 2, 0))  # [U, H, S, d]
    return UserPart(e, k_u, v_fold)


def candidate_projections(
    candidates: torch.Tensor, d_u: int, weights: AttentionWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer 1's candidate part ``c_b`` of the token ``[u_s ; c_b]``: the queries
    ``[B, H, dh]`` and ``Wo v_c + bo`` ``[B, d]`` (the projection biases sit in the user part)."""
    d, h = weights.out_w.shape[0], weights.num_heads
    qkv_c = F.linear(candidates, weights.in_w[:, d_u:])  # [B, 3d]
    q_c = qkv_c[:, :d].view(candidates.shape[0], h, d // h)
    return q_c, F.linear(qkv_c[:, 2 * d :], weights.out_w, weights.out_b)


class SplitAttention(NamedTuple):
    """What :func:`split_attention` returns.

    Fields:
        residual: ``[B, S, d]`` the attention block's ``x + MHA(x)`` (before the
            LayerNorm), with ``x`` the concat-fused token.
        underflow: ``[B]`` bool, True where a softmax denominator underflowed: that
            candidate's rows of ``residual`` are garbage and must be recomputed plainly.
    """

    residual: torch.Tensor
    underflow: torch.Tensor


def split_attention(
    user: UserPart,
    user_tokens: torch.Tensor,
    key_mask: torch.Tensor,
    candidates: torch.Tensor,
    user_index: torch.Tensor,
    weights: AttentionWeights,
) -> SplitAttention:
    """Layer 1's attention block for candidates of several users, from the split parts.

    Args:
        user: :func:`user_part` of the ``U`` users.
        user_tokens: ``[U, S, d_u]`` the users' token parts (hidden positions zeroed).
        key_mask: ``[B, S]`` bool, each candidate's key mask: its user's row of the mask
            given to :func:`user_part`, or one that hides more (a per-example training
            time window): the hidden keys' weights are 0 either way, and the user-only max
            stays a valid softmax shift.
        candidates: ``[B, d_c]``.
        user_index: ``[B]`` int64, the row of each candidate's user in ``user``.
        weights: the layer's :class:`AttentionWeights`.

    Returns :class:`SplitAttention` with ``residual [B, S, d]``. Out-of-place: autograd
    takes it like the plain layer (it costs ``[B, H, S, d]`` activations, the plain layer's
    ``[B, S, 3d]`` projections are not formed).
    """
    d_u = user_tokens.shape[2]
    q_c, c_out = candidate_projections(candidates, d_u, weights)
    g = torch.einsum("bhe,bhte->bht", q_c, user.k_u[user_index]) / math.sqrt(q_c.shape[2])
    g = g.masked_fill(key_mask[:, None, :], float("-inf"))  # [B, H, S]
    g = torch.exp(g - g.amax(dim=-1, keepdim=True))
    e_b = user.e[user_index]  # [B, H, S, S]
    denom = torch.matmul(e_b, g.unsqueeze(-1))  # [B, H, S, 1]
    underflow = (denom < UNDERFLOW).flatten(1).any(dim=1)
    num = torch.matmul(e_b, g.unsqueeze(-1) * user.v_fold[user_index])  # [B, H, S, d]
    attended = (num / denom).sum(dim=1) + c_out.unsqueeze(1)  # [B, S, d]
    tokens = torch.cat(
        [user_tokens[user_index], candidates.unsqueeze(1).expand(-1, user_tokens.shape[1], -1)],
        dim=-1,
    )
    return SplitAttention(attended + tokens, underflow)


class OneUserCandidates(NamedTuple):
    """One user's layer 1 for a run of candidates (:func:`one_user_candidates`), everything
    but the per-chunk GEMM; :func:`one_user_chunk` slices column ranges of it.

    Fields:
        user_rows: ``[S, 1, d]`` the token's user part ``[u_s ; 0]``.
        cand_rows: ``[1, B, d]`` ``[0 ; c_b] + Wo v_c + bo``.
        heads: per head ``(E [S, S], exp'd candidate logits [S, B, 1], folded user values
            [S, 1, d], softmax denominators [S, B, 1])``.
        underflow: ``[B]`` bool, or ``None`` when no candidate's denominator underflowed.
    """

    user_rows: torch.Tensor
    cand_rows: torch.Tensor
    heads: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    underflow: torch.Tensor | None


def one_user_candidates(
    user: UserPart,
    user_tokens: torch.Tensor,
    key_mask: torch.Tensor,
    candidates: torch.Tensor,
    weights: AttentionWeights,
) -> OneUserCandidates:
    """One user's layer-1 candidate work for ``B`` candidates at once: the candidate
    projections, the exp'd candidate logits, the softmax denominators and the underflow
    check (``user_tokens [1, S, d_u]``, ``key_mask [1, S]``, ``candidates [B, d_c]``).

    Done once for a run of chunks instead of per chunk: per chunk the same work took ~45
    small ops, and on CPU every op called from Python is an interpreter-lock round trip
    that parallel chunk workers wait on. Inference only (updates in place).
    """
    d_u = user_tokens.shape[2]
    d, h = weights.out_w.shape[0], weights.num_heads
    q_c, cand_rows = candidate_projections(candidates, d_u, weights)
    cand_rows[:, d_u:] += candidates  # [0 ; c_b] + Wo v_c + bo
    e, k_u, v_fold = user.e[0], user.k_u[0], user.v_fold[0]
    g = torch.einsum("bhe,hte->hbt", q_c, k_u) / math.sqrt(q_c.shape[2])  # [H, B, S]
    g = g.masked_fill(key_mask[0][None, None, :], float("-inf"))
    g = torch.exp(g - g.amax(dim=-1, keepdim=True)).transpose(1, 2).contiguous()  # [H, S, B]
    denom = torch.matmul(e, g)  # [H, S, B]
    underflow = (denom < UNDERFLOW).any(dim=1).any(dim=0)
    g, denom = g.unsqueeze(-1), denom.unsqueeze(-1)
    return OneUserCandidates(
        user_rows=F.pad(user_tokens[0], (0, d - d_u)).unsqueeze(1),
        cand_rows=cand_rows.unsqueeze(0),
        heads=[(e[i], g[i], v_fold[i].unsqueeze(1), denom[i]) for i in range(h)],
        underflow=underflow if bool(underflow.any()) else None,
    )


def one_user_chunk(
    part: OneUserCandidates, lo: int, hi: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Layer 1's attention block for candidates ``[lo, hi)`` of ``part`` -> ``(residual,
    redo)``: the residual ``[u_s ; c_b] + Wo v_c + bo + sum_h (E @ (g * Vu')) / D`` as
    ``[S, b, d]`` (sequence-first: the layout the one ``[S, S] x [S, b d]`` GEMM per head
    writes), and ``redo`` ``[r]`` int64, the chunk's candidates whose softmax underflowed
    (``None`` when none did). Inference only (writes in place).
    """
    sa = torch.add(part.user_rows, part.cand_rows[:, lo:hi])  # [S, b, d]
    s, n, d = sa.shape
    for e, g, v_fold, denom in part.heads:
        weighted = torch.empty_like(sa)  # [S, b, d] whatever the inputs' strides
        torch.mul(g[:, lo:hi], v_fold, out=weighted)
        num = torch.mm(e, weighted.view(s, n * d)).view(s, n, d)
        sa.addcdiv_(num, denom[:, lo:hi])
    redo = None
    if part.underflow is not None:
        redo = part.underflow[lo:hi].nonzero().squeeze(1)
        if redo.numel() == 0:
            redo = None
    return sa, redo
