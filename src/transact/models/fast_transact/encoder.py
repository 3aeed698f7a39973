"""The fast TransAct module: request-level dedup, the exact split layer 1, chunked layers.

A ranking request is one user and many candidates. The plain module copies the user's
sequence onto every candidate and runs the whole encoder on ``[B, S, d]`` tokens.
:class:`FastTransAct` takes the users as they are (``[U, ...]`` rows and ``user_index [B]``,
:meth:`FastTransAct.forward_users`) and computes the same function with less work:

* layer 1 by the exact per-user / per-candidate algebra of
  :mod:`transact.models.split_attention` (the user's projections and ``[S, S]`` logits
  once per request, one ``[S, S] @ [S, B * d]`` GEMM per head);
* later layers as plain fused-attention layers (``scaled_dot_product_attention``), on
  weights folded once (:mod:`.folding`);
* positions nobody may read (``transact.models.sequence.history_mask``) are never attended
  to and output 0, so they are dropped before the encoder (``compact_visible``) and the
  first-K columns are put back at their positions;
* the candidates run in chunks, on CPU spread over single-threaded workers (:mod:`.workers`).

On CPU the chunk workers share one interpreter lock, and every PyTorch op called from
Python takes it twice; two workers that both run many small ops wait on each other. So the
hot path keeps the op count per chunk low: for one user, layer 1's per-candidate work
(projections, logits, softmax denominators) runs once per worker for all its candidates,
and a chunk only does the GEMM and three element-wise passes; weights that an op would
transpose on every call are stored transposed.

Every switch falls back to the plain computation, and tests compare each against
:class:`transact.models.fast_transact.reference.ReferenceTransAct`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F

from transact.models import split_attention as layer1
from transact.models.fast_transact.folding import (
    LAYER_TENSORS,
    LayerWeights,
    fold_ffn_bias,
    fold_single_head,
    layer_weights,
)
from transact.models.fast_transact.workers import (
    CPU_CHUNK_SIZE,
    Group,
    chunk_groups,
    chunk_workers,
    run_chunk_groups,
)
from transact.models.sequence import SequenceEncoder, gather_user_rows, history_mask
from transact.models.transact import require_serving_fast_path

_FALLBACKS_LOCK = threading.Lock()  # chunk workers count into FastTransAct.fallbacks


class _Plan(NamedTuple):
    """Per-request work of :meth:`FastTransAct._plan`, shared by every chunk."""

    user_part: torch.Tensor  # [U, S', d_u] (S' = kept positions), hidden positions zeroed
    key_mask: torch.Tensor  # [U, S'] True = hidden key
    hidden: torch.Tensor  # [U, S'] True = hidden position
    candidates: torch.Tensor  # [B, d_item]
    user_index: torch.Tensor | None  # [B]; None: one user, or candidate b is user b
    weights: layer1.AttentionWeights  # layer 1's attention
    user: layer1.UserPart | None  # split layer 1's per-user part (None: plain layer 1)
    one_user_split: bool  # split layer 1 for one user: each group of chunks shares its part
    use_mask: bool
    any_hidden: bool
    scatter: torch.Tensor | None  # kept positions among the first K, when not 0..K-1
    out: torch.Tensor  # [B, out_dim], filled chunk by chunk


@dataclass(frozen=True)
class FastTransActOptions:
    """Switches of the fast path; all off gives the plain fused-attention computation.

    Args:
        dedup: encode each user's sequence once for all its candidates (the users given to
            :meth:`FastTransAct.forward_users` as ``[U, ...]`` rows); off: every candidate
            gets a copy of its user's rows, as the plain model does.
        split_first_layer: use the exact per-user / per-candidate algebra in layer 1
            (:mod:`transact.models.split_attention`).
        chunk_size: run the per-candidate layers on this many candidates at a time (0 = all
            at once); chunks keep the ``[chunk, S, d]`` activations in cache.
        compact_visible: compute only the positions someone can see: for one user the
            visible actions (hidden ones are never attended to and output 0), for several
            the prefix before the padding every row shares. Exact, and it drops the mask.
        fold_weights: fold the FFN's output bias into the LayerNorm before it
            (:func:`.folding.fold_ffn_bias`) and, with one head, run the per-candidate
            layers on folded attention weights (:func:`.folding.fold_single_head`): two
            ``d x d`` projections instead of four, and the layer input itself as the keys.
        parallel_chunks: on CPU, when the calling thread has ``n > 1`` intra-op threads
            (``torch.get_num_threads()``), run the candidate chunks on ``n`` single-threaded
            workers (:mod:`.workers`) instead of splitting every small op across ``n``
            threads. A caller at one thread (the service's concurrent forwards) runs them
            inline. Same results.
    """

    dedup: bool = True
    split_first_layer: bool = True
    chunk_size: int = CPU_CHUNK_SIZE
    compact_visible: bool = True
    fold_weights: bool = True
    parallel_chunks: bool = True

    def __post_init__(self) -> None:
        if self.chunk_size < 0:
            raise ValueError(f"FastTransActOptions.chunk_size={self.chunk_size}: must be >= 0")


class FastTransAct(SequenceEncoder):
    """Inference-only TransAct with request-level dedup and the exact split first layer.

    Built from a TransAct-shaped module (an action ``nn.Embedding``, a stack of post-norm
    relu encoder layers over concat-fused tokens, first-K + max-pool compression) with
    :meth:`from_transact` (the project's model) or :meth:`from_reference`; it copies the
    weights and never trains. Same masking rules as the model: hidden positions (padding,
    actions at/after the request) are never attended to and output 0; an empty row is 0.

    :meth:`forward_users` takes ``U`` users' sequences ``[U, ...]``, ``[B, d_item]``
    candidates and ``user_index [B]`` (the serving ranker's path: a request's user once).
    ``forward`` has the model's signature (``[B, S]`` types, ``[B, S, d_item]`` embeddings,
    ``[B, S]`` times, ``[B]`` request times, ``[B, d_item]`` candidates), one user per row.
    Output ``[B, (K + 1) * d]``.

    Example::

        fast = FastTransAct.from_transact(model.sequence_encoder)
        z = fast.forward_users(types[:1], embs[:1], times[:1], req[:1], candidates)
    """

    action_table: torch.Tensor

    def __init__(
        self,
        action_embedding: torch.Tensor,
        layers: list[LayerWeights],
        num_heads: int,
        k: int,
        options: FastTransActOptions | None = None,
    ) -> None:
        super().__init__()
        self.options = options or FastTransActOptions()
        self.num_heads = num_heads
        self.k = k
        self.register_buffer("action_table", action_embedding.detach().clone())
        self.num_layers = len(layers)
        self._eps: list[tuple[float, float]] = []
        for i, lw in enumerate(layers):
            for name in LAYER_TENSORS:
                self.register_buffer(f"l{i}_{name}", getattr(lw, name))
            self._eps.append((lw.ln1_eps, lw.ln2_eps))
        self.d_action = int(action_embedding.shape[1])
        self.d_model = int(self._w(0, "in_w").shape[1])
        self.folded = num_heads == 1 and self.options.fold_weights
        for i, lw in enumerate(layers):
            if self.folded:
                qv_w, qv_b = fold_single_head(lw)
                self.register_buffer(f"l{i}_qv_w", qv_w)
                self.register_buffer(f"l{i}_qv_b", qv_b)
            if self.options.fold_weights:
                ln1_b, ff1_b = fold_ffn_bias(lw)
                self.register_buffer(f"l{i}_ln1_b_folded", ln1_b)
                self.register_buffer(f"l{i}_ff1_b_folded", ff1_b)
                # W2^T as its own contiguous buffer: addmm's right operand without a
                # per-call transpose op (each op is a GIL round trip for the chunk workers)
                self.register_buffer(f"l{i}_ff2_wt", lw.ff2_w.t().contiguous())
        self.fallbacks = 0  # times the split layer hit softmax underflow and ran plainly

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def from_reference(cls, ref: Any, options: FastTransActOptions | None = None) -> FastTransAct:
        """Copy weights from :class:`transact.models.fast_transact.reference.ReferenceTransAct`."""
        layers = [layer_weights(layer) for layer in ref.encoder.layers]
        heads = int(ref.encoder.layers[0].self_attn.num_heads)
        return cls(ref.action_embedding.weight, layers, heads, ref.config.k, options)

    @classmethod
    def from_transact(cls, model: Any, options: FastTransActOptions | None = None) -> FastTransAct:
        """Copy weights from a ``transact.models.TransAct``; raises ``ValueError`` naming
        every config field the fast path does not compute
        (``transact.models.transact.serving_fast_path_blockers``)."""
        cfg = model.config
        require_serving_fast_path(cfg, "FastTransAct")
        layers = [layer_weights(layer) for layer in model.encoder.layers]
        return cls(model.action_embedding.weight, layers, cfg.num_heads, cfg.k, options)

    def _w(self, layer: int, name: str) -> torch.Tensor:
        return cast(torch.Tensor, getattr(self, f"l{layer}_{name}"))

    @property
    def out_dim(self) -> int:
        return (self.k + 1) * self.d_model

    # ---- forward -----------------------------------------------------------------------

    @torch.inference_mode()
    def forward(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> torch.Tensor:
        """The model's signature: row ``b`` of every input is candidate ``b`` and its own
        user (``U == B``). A request's candidates share one user: use :meth:`forward_users`."""
        return self.forward_users(
            action_types, action_embeddings, action_times_ms, request_time_ms, candidate_embedding
        )

    @torch.inference_mode()
    def forward_users(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
        user_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode ``U`` users' sequences against ``B`` candidates; returns ``[B, out_dim]``.

        Args:
            action_types / action_embeddings / action_times_ms: ``[U, S(, d_item)]``.
            request_time_ms: ``[U]``.
            candidate_embedding: ``[B, d_item]``.
            user_index: ``[B]`` int64 row of each candidate's user; ``None`` means every
                candidate belongs to user 0 when ``U == 1``, else candidate ``b`` to user ``b``.
                With ``U == 1`` every index is 0 by definition and the values are not read.
        """
        n_users = action_types.shape[0]
        n_cand = candidate_embedding.shape[0]
        request_time_ms = request_time_ms.reshape(-1)
        if user_index is None and n_users not in (1, n_cand):
            raise ValueError(
                f"user_index is required when U={n_users} users score B={n_cand} candidates"
            )
        if user_index is not None and user_index.shape != (n_cand,):
            raise ValueError(f"user_index must be [B={n_cand}], got {tuple(user_index.shape)}")
        if action_types.shape[1] < self.k:  # the output keeps K columns of the sequence
            raise ValueError(
                f"action_types has {action_types.shape[1]} positions, fewer than the "
                f"K={self.k} first columns TransAct outputs: pad the sequence to at least K"
            )
        users = [action_types, action_embeddings, action_times_ms, request_time_ms]
        if n_users == 1:
            user_index = None  # one user: every index is 0, no per-candidate gathers
        if not self.options.dedup and (n_users != n_cand or user_index is not None):
            if user_index is None:  # one user
                user_index = candidate_embedding.new_zeros(n_cand, dtype=torch.int64)
            users = [gather_user_rows(t, user_index) for t in users]
            user_index, n_users = None, n_cand  # a copy of its user's rows per candidate
        if user_index is None and n_users > 1:
            user_index = torch.arange(n_cand, device=candidate_embedding.device)
        # the buffers' dtype (fp32, or bf16 after .to(torch.bfloat16)) decides the precision,
        # not an outer autocast: the split softmax needs fp32's or bf16's exponent range
        with torch.autocast(candidate_embedding.device.type, enabled=False):
            out = self._encode(users, candidate_embedding, user_index)
        return out.to(candidate_embedding.dtype)

    def _encode(
        self,
        users: list[torch.Tensor],
        candidate_embedding: torch.Tensor,
        user_index: torch.Tensor | None,
    ) -> torch.Tensor:
        """The plan and every chunk, inline or on the chunk workers (:mod:`.workers`)."""
        n_cand = candidate_embedding.shape[0]
        workers = chunk_workers(n_cand, candidate_embedding.device, self.options.parallel_chunks)
        groups = chunk_groups(n_cand, workers, self.options.chunk_size)
        plan_request = partial(self._plan, users, candidate_embedding, user_index)
        plan = run_chunk_groups(plan_request, self._run_group, groups)
        return plan if isinstance(plan, torch.Tensor) else plan.out

    def _plan(
        self,
        users: list[torch.Tensor],
        candidate_embedding: torch.Tensor,
        user_index: torch.Tensor | None,
    ) -> _Plan | torch.Tensor:
        """The per-request part: visible positions, the user part, split layer 1's per-user
        work. ``users``: types, embeddings, times ``[U, S(, d)]``, request times ``[U]``.
        Returns the final output instead when nothing is visible (exactly 0)."""
        action_types, action_embeddings, action_times_ms, request_time_ms = users
        n_users = action_types.shape[0]
        n_cand = candidate_embedding.shape[0]
        dtype = self.action_table.dtype
        hidden = history_mask(action_types, action_times_ms, request_time_ms)
        positions = None  # original position of each kept column when columns are dropped
        if self.options.compact_visible:
            if n_users == 1:  # keep exactly the visible actions: no mask needed at all
                keep = (~hidden[0]).nonzero().squeeze(1)
                if keep.numel() == 0:  # nothing to read: the model outputs exactly 0
                    return candidate_embedding.new_zeros(n_cand, self.out_dim, dtype=dtype)
                if keep.numel() < hidden.shape[1]:
                    positions = keep
            else:  # cut the tail that every row hides (padding sits at the end)
                visible_cols = (~hidden).any(dim=0).nonzero()
                last = int(visible_cols.max()) + 1 if visible_cols.numel() else 1
                if last < hidden.shape[1]:
                    positions = torch.arange(last, device=hidden.device)
            if positions is not None:
                action_types = action_types[:, positions]
                action_embeddings = action_embeddings[:, positions]
                hidden = hidden[:, positions]
        empty = hidden.all(dim=1, keepdim=True)
        key_mask = hidden & ~empty  # an empty row attends over its zero tokens, outputs 0
        user_part = torch.cat(
            [F.embedding(action_types, self.action_table), action_embeddings.to(dtype)], dim=-1
        ).masked_fill(hidden.unsqueeze(-1), 0.0)
        candidates = candidate_embedding.to(dtype)
        # the split pays when users are shared by candidates; for U == B it only reorders work
        split = self.options.split_first_layer and (n_users == 1 or 2 * n_users <= n_cand)
        weights = layer1.AttentionWeights(
            self._w(0, "in_w"), self._w(0, "in_b"), self._w(0, "out_w"), self._w(0, "out_b"),
            self.num_heads,
        )  # fmt: skip
        scatter = None
        if positions is not None:
            m = int((positions < self.k).sum())
            if m < self.k or int(positions[m - 1]) != m - 1:
                scatter = positions[:m]
        return _Plan(
            user_part=user_part,
            key_mask=key_mask,
            hidden=hidden,
            candidates=candidates,
            user_index=user_index,
            weights=weights,
            user=layer1.user_part(user_part, key_mask, weights) if split else None,
            one_user_split=split and n_users == 1,
            # without compaction keep the mask unconditionally: no host sync (CUDA graphs)
            use_mask=bool(key_mask.any()) if self.options.compact_visible else True,
            any_hidden=bool(hidden.any()) if self.options.compact_visible else True,
            scatter=scatter,
            out=candidates.new_empty(n_cand, self.out_dim),
        )

    def _run_group(self, plan: _Plan | torch.Tensor, group: Group) -> None:
        """One worker's consecutive chunks; for one user, split layer 1's per-candidate part
        is computed once for the whole group first (fewer, larger ops than per chunk)."""
        if isinstance(plan, torch.Tensor) or not group:  # nothing visible: plan is the output
            return
        shared = None
        if plan.one_user_split:
            assert plan.user is not None
            g_lo, g_hi = group[0][0], group[-1][1]
            part = layer1.one_user_candidates(
                plan.user, plan.user_part, plan.key_mask, plan.candidates[g_lo:g_hi],
                plan.weights,
            )  # fmt: skip
            shared = (part, g_lo)
        for lo, hi in group:
            self._chunk(plan, lo, hi, shared)

    def _chunk(
        self,
        plan: _Plan,
        lo: int,
        hi: int,
        shared: tuple[layer1.OneUserCandidates, int] | None = None,
    ) -> None:
        """Candidates ``[lo, hi)``: every layer, then their rows of ``plan.out``.
        ``shared``: the group's split layer 1 and the group's first candidate."""
        first, pooled = self._candidates(plan, lo, hi, shared)
        if plan.scatter is not None:  # put the kept columns back at their positions
            full = first.new_zeros(first.shape[0], self.k, first.shape[2])
            full[:, plan.scatter] = first[:, : plan.scatter.numel()]
            first = full
        torch.cat([first.flatten(1), pooled], dim=1, out=plan.out[lo:hi])

    # ---- pieces ------------------------------------------------------------------------
    # Per-candidate activations are ``[N, S, d]`` tensors, possibly views of sequence-first
    # ``[S, N, d]`` storage (the split layer's GEMM produces that layout): per-token ops run
    # on the storage and the batched attention GEMMs read through the strides, so the
    # transpose is never copied by itself.

    def _candidates(
        self,
        plan: _Plan,
        lo: int,
        hi: int,
        shared: tuple[layer1.OneUserCandidates, int] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All layers for candidates ``[lo, hi)`` -> first K columns ``[b, <=K, d]`` and
        the max-pooled column ``[b, d]``. ``plan.any_hidden=False`` promises that
        ``plan.hidden`` is all False (after compaction), which skips the output masking."""
        user_part, key_mask, hidden = plan.user_part, plan.key_mask, plan.hidden
        use_mask, any_hidden = plan.use_mask, plan.any_hidden
        candidates = plan.candidates[lo:hi]
        idx = None if plan.user_index is None else plan.user_index[lo:hi]
        mask = key_mask if idx is None else key_mask[idx]  # [1 or b, S]
        attn_mask = mask if use_mask else None
        hid = hidden if idx is None else hidden[idx]
        x, redo = None, None
        if shared is not None:
            part, g_lo = shared
            residual, redo = layer1.one_user_chunk(part, lo - g_lo, hi - g_lo)  # [S, b, d]
            x = self._residual_ffn(0, residual).transpose(0, 1)  # [b, S, d] view
        elif plan.user is not None:  # several users (one user takes the shared path)
            assert idx is not None
            split = layer1.split_attention(
                plan.user, user_part, mask, candidates, idx, plan.weights
            )
            # LayerNorm writes the [b, S, d] residual out sequence-first, as above
            x = self._residual_ffn(0, split.residual.transpose(0, 1)).transpose(0, 1)
            if bool(split.underflow.any()):
                redo = split.underflow.nonzero().squeeze(1)
        if x is None:
            x = self._plain_first_layer(user_part, candidates, idx, hid, attn_mask, any_hidden)
        elif redo is not None:  # these candidates' split softmax underflowed: run them plainly
            with _FALLBACKS_LOCK:
                self.fallbacks += redo.numel()
            x[redo] = self._plain_first_layer(
                user_part,
                candidates[redo],
                None if idx is None else idx[redo],
                hid if idx is None else hid[redo],
                attn_mask if attn_mask is None or idx is None else attn_mask[redo],
                any_hidden,
            )
        for i in range(1, self.num_layers):
            x = self._layer(i, x, attn_mask)
        if not any_hidden:
            return x[:, : self.k], x.amax(dim=1)
        x = x.masked_fill(hid.unsqueeze(-1), 0.0)
        pooled = x.masked_fill(hid.unsqueeze(-1), float("-inf")).amax(dim=1)
        pooled = pooled.masked_fill(hid.all(dim=1, keepdim=True), 0.0)
        return x[:, : self.k], pooled

    def _plain_first_layer(
        self,
        user_part: torch.Tensor,
        candidates: torch.Tensor,
        idx: torch.Tensor | None,
        hid: torch.Tensor,
        attn_mask: torch.Tensor | None,
        any_hidden: bool,
    ) -> torch.Tensor:
        """Layer 1 on concat-fused tokens ``[u_s ; c_b]`` built per candidate -> ``[b, S, d]``."""
        n, s = candidates.shape[0], user_part.shape[1]
        rows = user_part.expand(n, -1, -1) if idx is None else user_part[idx]
        tokens = torch.cat([rows, candidates.unsqueeze(1).expand(-1, s, -1)], dim=-1)
        if any_hidden:
            tokens = tokens.masked_fill(hid.unsqueeze(-1), 0.0)
        return self._layer(0, tokens, attn_mask)

    def _layer(self, i: int, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """One post-norm encoder layer, ``x [N, S, d]`` (any strides) -> contiguous
        ``[N, S, d]``; mask ``[N|1, S]`` (True = hidden) or ``None`` when every key is
        visible. Fused attention (``scaled_dot_product_attention``), or
        :meth:`_folded_layer` with one head."""
        if self.folded:
            return self._folded_layer(i, x, key_mask)
        x = x.contiguous()
        n, s, d = x.shape
        h = self.num_heads
        qkv = F.linear(x, self._w(i, "in_w"), self._w(i, "in_b"))
        q, k, v = qkv.view(n, s, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)  # [N, h, S, dh]
        attend = None if key_mask is None else (~key_mask)[:, None, None, :]  # True = take part
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        o = o.transpose(1, 2).reshape(n, s, d)
        return self._residual_ffn(i, x + F.linear(o, self._w(i, "out_w"), self._w(i, "out_b")))

    def _folded_layer(self, i: int, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """:meth:`_layer` for one head on the folded weights of
        :func:`.folding.fold_single_head`: logits ``(x M^T + u) x^T``, attention output
        ``P (x Wvo^T + bvo)``; same shapes."""
        d = x.shape[-1]
        qv = _tokenwise_linear(x, self._w(i, "qv_w"), self._w(i, "qv_b"))  # [N, S, 2d]
        logits = torch.matmul(qv[..., :d], x.transpose(1, 2))  # [N, S, S]; keys are x itself
        if key_mask is not None:
            logits.masked_fill_(key_mask[:, None, :], float("-inf"))
        attn = torch.softmax(logits, dim=-1)
        # x + attn @ v into a fresh contiguous result (a strided `out` would split the GEMM)
        return self._residual_ffn(i, torch.baddbmm(x, attn, qv[..., d:]))

    def _residual_ffn(self, i: int, residual: torch.Tensor) -> torch.Tensor:
        """LayerNorm(residual), ReLU FFN, residual add, LayerNorm (per token, any layout)."""
        d = residual.shape[-1]
        eps1, eps2 = self._eps[i]
        if self.options.fold_weights:  # x carries the FFN's output bias (fold_ffn_bias)
            ln1_b, ff1_b, ff2_b = self._w(i, "ln1_b_folded"), self._w(i, "ff1_b_folded"), None
        else:
            ln1_b, ff1_b, ff2_b = self._w(i, "ln1_b"), self._w(i, "ff1_b"), self._w(i, "ff2_b")
        x = F.layer_norm(residual, (d,), self._w(i, "ln1_w"), ln1_b, eps1)
        hidden = F.linear(x, self._w(i, "ff1_w"), ff1_b).relu_()
        if ff2_b is None:  # x += hidden W2^T in one GEMM (beta = 1), in place: x is ours
            # and needed only for this residual, so neither an add pass nor addmm's copy
            out = x.view(-1, d).addmm_(hidden.view(-1, hidden.shape[-1]),
                                       self._w(i, "ff2_wt")).view(x.shape)  # fmt: skip
        else:
            out = F.linear(hidden, self._w(i, "ff2_w"), ff2_b).add_(x)
        return F.layer_norm(out, (d,), self._w(i, "ln2_w"), self._w(i, "ln2_b"), eps2)


def _tokenwise_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.linear`` of ``[N, S, d]`` that is contiguous or a transposed ``[S, N, d]``, run on
    the storage's own order (``F.linear`` would first copy a transposed view)."""
    if x.is_contiguous() or not x.transpose(0, 1).is_contiguous():
        return F.linear(x, weight, bias)
    return F.linear(x.transpose(0, 1), weight, bias).transpose(0, 1)
