"""TransAct inference fast path: request-level dedup and exact first-layer algebra.

A ranking request is one user and many candidates. The plain module copies the user's
sequence onto every candidate and runs the whole encoder on ``[B, S, d]`` tokens. With
concat early fusion the first layer's token is ``x[b, s] = [u_s ; c_b]`` (user action part
``u_s`` of size d_action + d_item, candidate part ``c_b``), so everything linear in it
splits into a per-user part and a per-candidate part:

* ``Q/K/V[b, s] = W_u u_s + W_c c_b + bias``: the user projection ``[S, d_u] x [d_u, 3d]``
  is done once per request, the candidate projection ``[B, d_item] x [d_item, 3d]`` once
  per candidate.
* Attention logits ``q[b,s].k[b,t] = Qu_s.Ku_t + Qc_b.Ku_t + (terms constant in t)``; the
  constant terms cancel in the softmax over t, so the logits are ``A[s,t] + G[b,t]`` with
  ``A`` ``[S, S]`` once per request and ``G`` ``[B, S]``.
* ``softmax_t(A + G) = exp(A - max) * exp(G - max) / sum``: the attention over S is still
  per candidate (nothing is approximated), but it becomes ONE ``[S, S] @ [S, B * d]`` GEMM.
* The value part ``Vc_b`` passes through the softmax unchanged (rows sum to 1), and the
  output projection is folded into the user values ``Vu' = Vu Wo^T`` before the GEMM.

Later layers see per-candidate tokens and run as plain fused-attention layers
(``scaled_dot_product_attention``). Positions nobody may read (padding, actions at or after
the request) are never attended to and output 0, so they are dropped before the encoder
(``compact_visible``) and the first-K columns are put back at their positions. On CPU the
candidates run in chunks of 24, and a caller with several intra-op threads hands the chunks
to as many single-threaded workers (``parallel_chunks``): one task per worker, each with a
run of consecutive chunks, the first one computing the per-request plan before its chunks.

On CPU the chunk workers share one interpreter lock, and every PyTorch op called from
Python takes it twice; two workers that both run many small ops wait on each other. So the
hot path keeps the op count per chunk low: for one user, layer 1's per-candidate work
(projections, logits, softmax denominators) runs once per worker for all its candidates,
and a chunk only does the GEMM and three element-wise passes; weights that an op would
transpose on every call are stored transposed.

Every switch falls back to the plain computation, and tests compare each against
:class:`transact.serving.reference.ReferenceTransAct`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from transact.serving.reference import hidden_positions

_LAYER_TENSORS = (
    "in_w", "in_b", "out_w", "out_b", "ff1_w", "ff1_b",
    "ff2_w", "ff2_b", "ln1_w", "ln1_b", "ln2_w", "ln2_b",
)  # fmt: skip
_UNDERFLOW = 1e-30  # softmax denominators below this fall back to the plain layer
_SHARED_USERS = threading.local()  # per-thread: users of a micro-batch (see shared_users)
_POOLS: dict[int, ThreadPoolExecutor] = {}  # chunk workers by count, shared by all modules
_POOLS_LOCK = threading.Lock()
_FALLBACKS_LOCK = threading.Lock()
_MIN_CHUNK_PER_WORKER = 16  # below this many candidates per worker, run the chunks inline
CPU_CHUNK_SIZE = 24  # candidates per chunk on CPU: [24, S, d] activations stay in a 1 MB L2


def _single_threaded() -> None:
    """Pool-thread initializer: this thread runs every op on itself (one intra-op thread)."""
    torch.get_num_threads()  # PyTorch's lazy per-thread init first, or it would undo the next line
    torch.set_num_threads(1)


def _chunk_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` single-threaded chunk workers (started once).

    ``torch.set_num_threads`` also sets the process default that threads started later take
    up, so once every worker has set its own count to 1 the caller's count is put back.
    """
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            caller_threads = torch.get_num_threads()
            pool = ThreadPoolExecutor(
                workers, thread_name_prefix="fast-transact-chunk", initializer=_single_threaded
            )
            started = threading.Barrier(workers + 1)
            for _ in range(workers):  # one task per thread: each blocks until all started
                pool.submit(started.wait)
            started.wait()
            torch.set_num_threads(caller_threads)
            _POOLS[workers] = pool
        return pool


def _in_worker(fn: Any, *args: Any) -> Any:
    """Run ``fn`` on a chunk worker with the caller's modes: inference mode and autocast are
    per thread, and the buffers' dtype, not an outer autocast, decides the precision."""
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        return fn(*args)


class _SharedLayer1(NamedTuple):
    """One user's split layer 1 for a worker's run of candidates, computed once before its
    chunks; a chunk ``[lo, hi)`` (relative to the run) slices column ranges of it and runs
    one GEMM per head (see :meth:`FastTransAct._split_candidates`)."""

    user_rows: torch.Tensor  # [S, 1, d]: token [u_s ; 0]
    cand_rows: torch.Tensor  # [1, B, d]: [0 ; c_b] + Wo v_c + bo
    heads: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    # per head: E [S, S], exp'd candidate logits [S, B, 1], folded user values [S, 1, d],
    # softmax denominators [S, B, 1]
    bad: torch.Tensor | None  # [B] True = the split softmax underflowed (None: none did)


class _Plan(NamedTuple):
    """Per-request work of :meth:`FastTransAct._plan`, shared by every chunk."""

    user_part: torch.Tensor  # [U, S', d_u] (S' = kept positions)
    key_mask: torch.Tensor  # [U, S'] True = hidden key
    hidden: torch.Tensor  # [U, S'] True = hidden position
    candidates: torch.Tensor  # [B, d_item]
    user_index: torch.Tensor | None
    prep: dict[str, torch.Tensor] | None  # split layer 1's per-user part
    one_user_split: bool  # split layer 1 for one user: each group of chunks shares its part
    use_mask: bool
    any_hidden: bool
    scatter: torch.Tensor | None  # kept positions among the first K, when not 0..K-1
    out: torch.Tensor  # [B, out_dim], filled chunk by chunk


@dataclass(frozen=True)
class FastTransActOptions:
    """Switches of the fast path; all off gives the plain fused-attention computation.

    Args:
        dedup: when a batch is one user's candidates (inputs expanded from one row, or
            ``user_index`` given), encode the user's sequence once instead of per row.
        split_first_layer: use the exact per-user / per-candidate algebra in layer 1
            (needs concat early fusion; ignored otherwise).
        chunk_size: run the per-candidate layers on this many candidates at a time (0 = all
            at once); chunks keep the ``[chunk, S, d]`` activations in cache.
        compact_visible: compute only the positions someone can see: for one user the
            visible actions (hidden ones are never attended to and output 0), for several
            the prefix before the padding every row shares. Exact, and it drops the mask.
        fold_weights: fold the FFN's output bias into the LayerNorm before it
            (:func:`_fold_ffn_bias`) and, with one head, run the per-candidate layers on
            folded attention weights (:func:`_fold_single_head`): two ``d x d`` projections
            instead of four, and the layer input itself as the keys. Exact algebra.
        parallel_chunks: on CPU, when the calling thread has ``n > 1`` intra-op threads
            (``torch.get_num_threads()``), run the candidate chunks on ``n`` single-threaded
            workers (chunk count rounded up to a multiple of ``n``) instead of splitting
            every small op across ``n`` threads: no fork/join per op. A caller at one
            thread (the service's concurrent forwards) runs them inline. Same results.
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


@dataclass
class _LayerWeights:
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


def _layer_weights(layer: Any) -> _LayerWeights:
    """Weights of a post-norm relu encoder layer: ``nn.TransformerEncoderLayer`` or the
    project's ``transact.models.attention.EncoderLayer`` (``self_attn.in_proj`` Linear)."""
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
    return _LayerWeights(
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


def _fold_single_head(lw: _LayerWeights) -> tuple[torch.Tensor, torch.Tensor]:
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


def _tokenwise_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.linear`` of ``[N, S, d]`` that is contiguous or a transposed ``[S, N, d]``, run on
    the storage's own order (``F.linear`` would first copy a transposed view)."""
    if x.is_contiguous() or not x.transpose(0, 1).is_contiguous():
        return F.linear(x, weight, bias)
    return F.linear(x.transpose(0, 1), weight, bias).transpose(0, 1)


def _fold_ffn_bias(lw: _LayerWeights) -> tuple[torch.Tensor, torch.Tensor]:
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


class FastTransAct(nn.Module):
    """Inference-only TransAct with request-level dedup and the exact split first layer.

    Built from a TransAct-shaped module (an action ``nn.Embedding``, a stack of post-norm
    relu encoder layers over concat-fused tokens, first-K + max-pool compression) with
    :meth:`from_transact` (the project's model) or :meth:`from_reference`; it copies the
    weights and never trains. Same masking rules as the model: hidden positions (padding,
    actions at/after the request) are never attended to and output 0; an empty row is 0.

    ``forward`` has the model's signature (``[B, S]`` types, ``[B, S, d_item]``
    embeddings, ``[B, S]`` times, ``[B]`` request times, ``[B, d_item]`` candidates) and
    detects a batch whose sequence tensors are one row expanded (stride 0, as the service
    builds them), which it encodes once. :meth:`forward_users` takes ``U`` distinct users
    and ``user_index [B]`` explicitly. Output ``[B, (K + 1) * d]``.

    Example::

        fast = FastTransAct.from_transact(model.sequence_encoder)
        z = fast.forward_users(types[:1], embs[:1], times[:1], req[:1], candidates)
    """

    action_table: torch.Tensor

    def __init__(
        self,
        action_embedding: torch.Tensor,
        layers: list[_LayerWeights],
        n_heads: int,
        latest_k: int,
        options: FastTransActOptions | None = None,
    ) -> None:
        super().__init__()
        self.options = options or FastTransActOptions()
        self.n_heads = n_heads
        self.latest_k = latest_k
        self.register_buffer("action_table", action_embedding.detach().clone())
        self.n_layers = len(layers)
        self._eps: list[tuple[float, float]] = []
        for i, lw in enumerate(layers):
            for name in _LAYER_TENSORS:
                self.register_buffer(f"l{i}_{name}", getattr(lw, name))
            self._eps.append((lw.ln1_eps, lw.ln2_eps))
        self.d_action = int(action_embedding.shape[1])
        self.d_model = int(self._w(0, "in_w").shape[1])
        self.folded = n_heads == 1 and self.options.fold_weights
        for i, lw in enumerate(layers):
            if self.folded:
                qv_w, qv_b = _fold_single_head(lw)
                self.register_buffer(f"l{i}_qv_w", qv_w)
                self.register_buffer(f"l{i}_qv_b", qv_b)
            if self.options.fold_weights:
                ln1_b, ff1_b = _fold_ffn_bias(lw)
                self.register_buffer(f"l{i}_ln1_b_folded", ln1_b)
                self.register_buffer(f"l{i}_ff1_b_folded", ff1_b)
                # W2^T as its own contiguous buffer: addmm's right operand without a
                # per-call transpose op (each op is a GIL round trip for the chunk workers)
                self.register_buffer(f"l{i}_ff2_wt", lw.ff2_w.t().contiguous())
        self.fallbacks = 0  # times the split layer hit softmax underflow and ran plainly

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def from_reference(cls, ref: Any, options: FastTransActOptions | None = None) -> FastTransAct:
        """Copy weights from :class:`transact.serving.reference.ReferenceTransAct`."""
        layers = [_layer_weights(layer) for layer in ref.encoder.layers]
        heads = int(ref.encoder.layers[0].self_attn.num_heads)
        return cls(ref.action_embedding.weight, layers, heads, ref.config.latest_k, options)

    @classmethod
    def from_transact(cls, model: Any, options: FastTransActOptions | None = None) -> FastTransAct:
        """Copy weights from a ``transact.models.TransAct`` with concat fusion, no positional
        encoding and ``first_k_max_pool``; raises naming the unsupported config field."""
        cfg = model.config
        for field, want in (
            ("fusion", "concat"),
            ("positional_encoding", "none"),
            ("compression", "first_k_max_pool"),
            ("use_action_types", True),
            ("attend_action_types", ()),
        ):
            if getattr(cfg, field) != want:
                raise ValueError(
                    f"FastTransAct: TransActConfig.{field}={getattr(cfg, field)!r}, need {want!r}"
                )
        layers = [_layer_weights(layer) for layer in model.encoder.layers]
        return cls(model.action_embedding.weight, layers, cfg.num_heads, cfg.k, options)

    def _w(self, layer: int, name: str) -> torch.Tensor:
        return cast(torch.Tensor, getattr(self, f"l{layer}_{name}"))

    @property
    def out_dim(self) -> int:
        return (self.latest_k + 1) * self.d_model

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
        shared = getattr(_SHARED_USERS, "by_module", {}).get(id(self))
        if shared is not None and shared[4].shape[0] == candidate_embedding.shape[0]:
            types, embs, times, req, user_index = shared
            return self.forward_users(types, embs, times, req, candidate_embedding, user_index)
        request_time_ms = request_time_ms.reshape(-1)
        one_user = (
            self.options.dedup
            and action_types.shape[0] > 1
            and action_types.stride(0) == 0
            and action_embeddings.stride(0) == 0
            and action_times_ms.stride(0) == 0
            and request_time_ms.stride(0) == 0
        )
        if one_user:
            action_types, action_embeddings = action_types[:1], action_embeddings[:1]
            action_times_ms, request_time_ms = action_times_ms[:1], request_time_ms[:1]
        return self.forward_users(
            action_types, action_embeddings, action_times_ms, request_time_ms, candidate_embedding
        )

    @contextlib.contextmanager
    def shared_users(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        user_index: torch.Tensor,
    ) -> Iterator[None]:
        """Within the block, :meth:`forward` (called by the ranker with placeholder sequence
        tensors) encodes these ``U`` users' sequences for candidates ``user_index [B]``.

        This is how a micro-batch of several requests reaches TransAct through the ranker's
        unchanged forward without copying each user's sequence per candidate. Per thread.
        """
        table = getattr(_SHARED_USERS, "by_module", None)
        if table is None:
            table = _SHARED_USERS.by_module = {}
        table[id(self)] = (
            action_types,
            action_embeddings,
            action_times_ms,
            request_time_ms,
            user_index,
        )
        try:
            yield
        finally:
            table.pop(id(self), None)

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
        """
        n_users = action_types.shape[0]
        n_cand = candidate_embedding.shape[0]
        if user_index is None:
            if n_users not in (1, n_cand):
                raise ValueError(
                    f"user_index is required when U={n_users} users score B={n_cand} candidates"
                )
            if n_users == n_cand and n_users > 1:
                user_index = torch.arange(n_cand, device=candidate_embedding.device)
        elif user_index.shape != (n_cand,):
            raise ValueError(f"user_index must be [B={n_cand}], got {tuple(user_index.shape)}")
        if action_types.shape[1] < self.latest_k:  # the output keeps K columns of the sequence
            raise ValueError(
                f"action_types has {action_types.shape[1]} positions, fewer than the "
                f"K={self.latest_k} first columns TransAct outputs: pad the sequence to at least K"
            )
        # the buffers' dtype (fp32, or bf16 after .to(torch.bfloat16)) decides the precision,
        # not an outer autocast: the split softmax needs fp32's or bf16's exponent range
        with torch.autocast(candidate_embedding.device.type, enabled=False):
            out = self._encode(
                action_types,
                action_embeddings,
                action_times_ms,
                request_time_ms,
                candidate_embedding,
                user_index,
            )
        return out.to(candidate_embedding.dtype)

    def _encode(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
        user_index: torch.Tensor | None,
    ) -> torch.Tensor:
        args = (action_types, action_embeddings, action_times_ms, request_time_ms,
                candidate_embedding, user_index)  # fmt: skip
        workers = self._chunk_workers(candidate_embedding)
        groups = self._chunk_groups(candidate_embedding.shape[0], workers)
        if workers == 1:
            plan = self._plan(*args)
            if isinstance(plan, torch.Tensor):
                return plan
            self._run_group(plan, groups[0])
            return plan.out
        # Everything runs on the workers, the per-request plan too (an op on the caller's
        # own threads would leave its OpenMP team spinning, by default for milliseconds, on
        # the cores the workers need). One task per worker: the first computes the plan and
        # then its group, the others wait for the plan: one thread wake-up between them,
        # not a round trip through the caller. Tasks are queued first-in first-out and only
        # a follower waits, on a leader dequeued before it, so concurrent callers cannot
        # deadlock the pool.
        pool = _chunk_pool(workers)
        ready, box = threading.Event(), cast(list[Any], [])
        tasks = [pool.submit(_in_worker, self._lead, args, groups[0], ready, box)]
        tasks += [pool.submit(_in_worker, self._follow, group, ready, box) for group in groups[1:]]
        for task in tasks:
            task.result()  # the leader's error, if the plan failed
        plan = box[0]
        return plan if isinstance(plan, torch.Tensor) else plan.out

    def _lead(
        self, args: tuple[Any, ...], group: list[tuple[int, int]], ready: threading.Event,
        box: list[Any],
    ) -> None:  # fmt: skip
        """Worker task: the plan into ``box``, then this worker's group of chunks."""
        try:
            box.append(self._plan(*args))
        finally:
            ready.set()  # on an error too: the followers find the box empty and return
        self._run_group(box[0], group)

    def _follow(self, group: list[tuple[int, int]], ready: threading.Event, box: list[Any]) -> None:
        """Worker task: wait for the leader's plan, then this worker's group of chunks."""
        ready.wait()
        if box:
            self._run_group(box[0], group)

    def _chunk_groups(self, n_cand: int, workers: int) -> list[list[tuple[int, int]]]:
        """``[lo, hi)`` of each chunk, grouped by worker: one group of ``chunk_size``
        chunks inline; with workers, a multiple of ``workers`` chunks of (almost) equal
        size, consecutive ones per worker, so that none waits on a short last chunk."""
        step = self.options.chunk_size or n_cand
        if workers == 1:
            return [[(lo, min(lo + step, n_cand)) for lo in range(0, n_cand, step)]]
        n_chunks = -(-n_cand // step)
        n_chunks = -(-n_chunks // workers) * workers
        edges = [i * n_cand // n_chunks for i in range(n_chunks + 1)]
        bounds = list(zip(edges[:-1], edges[1:], strict=True))
        per = n_chunks // workers
        return [bounds[w * per : (w + 1) * per] for w in range(workers)]

    def _plan(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
        user_index: torch.Tensor | None,
    ) -> _Plan | torch.Tensor:
        """The per-request part: visible positions, the user part, split layer 1's per-user
        work. Returns the final output instead when nothing is visible (exactly 0)."""
        n_users = action_types.shape[0]
        n_cand = candidate_embedding.shape[0]
        dtype = self.action_table.dtype
        hidden = hidden_positions(action_types, action_times_ms, request_time_ms.reshape(-1))
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
        scatter = None
        if positions is not None:
            m = int((positions < self.latest_k).sum())
            if m < self.latest_k or int(positions[m - 1]) != m - 1:
                scatter = positions[:m]
        return _Plan(
            user_part=user_part,
            key_mask=key_mask,
            hidden=hidden,
            candidates=candidates,
            user_index=user_index,
            prep=self._split_prep(user_part, key_mask) if split else None,
            one_user_split=split and n_users == 1,
            # without compaction keep the mask unconditionally: no host sync (CUDA graphs)
            use_mask=bool(key_mask.any()) if self.options.compact_visible else True,
            any_hidden=bool(hidden.any()) if self.options.compact_visible else True,
            scatter=scatter,
            out=candidates.new_empty(n_cand, self.out_dim),
        )

    def _run_group(self, plan: _Plan | torch.Tensor, group: list[tuple[int, int]]) -> None:
        """One worker's consecutive chunks; for one user, split layer 1's per-candidate part
        is computed once for the whole group first (fewer, larger ops than per chunk)."""
        if isinstance(plan, torch.Tensor) or not group:  # nothing visible: plan is the output
            return
        shared = None
        if plan.one_user_split:
            assert plan.prep is not None
            g_lo, g_hi = group[0][0], group[-1][1]
            part = self._split_candidates(
                plan.prep, plan.user_part, plan.candidates[g_lo:g_hi], plan.key_mask
            )
            shared = (part, g_lo)
        for lo, hi in group:
            self._chunk(plan, lo, hi, shared)

    def _chunk(
        self, plan: _Plan, lo: int, hi: int, shared: tuple[_SharedLayer1, int] | None = None
    ) -> None:
        """Candidates ``[lo, hi)``: every layer, then their rows of ``plan.out``.
        ``shared``: the group's split layer 1 and the group's first candidate."""
        first, pooled = self._candidates(plan, lo, hi, shared)
        if plan.scatter is not None:  # put the kept columns back at their positions
            full = first.new_zeros(first.shape[0], self.latest_k, first.shape[2])
            full[:, plan.scatter] = first[:, : plan.scatter.numel()]
            first = full
        torch.cat([first.flatten(1), pooled], dim=1, out=plan.out[lo:hi])

    def _chunk_workers(self, candidates: torch.Tensor) -> int:
        """How many single-threaded workers run the chunks (1 = inline, this thread)."""
        if not self.options.parallel_chunks or candidates.device.type != "cpu":
            return 1
        n_cand = candidates.shape[0]
        workers = torch.get_num_threads()
        if workers < 2 or n_cand < 2 * _MIN_CHUNK_PER_WORKER:
            return 1
        return min(workers, n_cand // _MIN_CHUNK_PER_WORKER)

    # ---- pieces ------------------------------------------------------------------------
    # Per-candidate activations are ``[N, S, d]`` tensors, possibly views of sequence-first
    # ``[S, N, d]`` storage (the split layer's GEMM produces that layout): per-token ops run
    # on the storage and the batched attention GEMMs read through the strides, so the
    # transpose is never copied by itself.

    def _candidates(
        self, plan: _Plan, lo: int, hi: int, shared: tuple[_SharedLayer1, int] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All layers for candidates ``[lo, hi)`` -> first K columns ``[b, <=K, d]`` and
        the max-pooled column ``[b, d]``. ``plan.any_hidden=False`` promises that
        ``plan.hidden`` is all False (after compaction), which skips the output masking."""
        user_part, key_mask, hidden, prep = plan.user_part, plan.key_mask, plan.hidden, plan.prep
        use_mask, any_hidden = plan.use_mask, plan.any_hidden
        candidates = plan.candidates[lo:hi]
        idx = None if plan.user_index is None else plan.user_index[lo:hi]
        mask = key_mask if idx is None else key_mask[idx]  # [1 or b, S]
        attn_mask = mask if use_mask else None
        hid = hidden if idx is None else hidden[idx]
        x, redo = None, None
        if shared is not None:
            part, g_lo = shared
            x, redo = self._shared_first_layer(part, lo - g_lo, hi - g_lo)
            x = x.transpose(0, 1)  # [b, S, d] view of the [S, b, d] result
        elif prep is not None:  # several users (one user takes the shared path)
            assert idx is not None
            x, redo = self._split_first_layer(prep, user_part, candidates, mask, idx)
            x = x.transpose(0, 1)
        if x is None:
            x = self._plain_first_layer(user_part, candidates, idx, hid, attn_mask, any_hidden)
        elif redo is not None:  # these candidates' split softmax underflowed: run them plainly
            with _FALLBACKS_LOCK:  # chunk workers count into it (a module lock: deepcopy)
                self.fallbacks += redo.numel()
            x[redo] = self._plain_first_layer(
                user_part,
                candidates[redo],
                None if idx is None else idx[redo],
                hid if idx is None else hid[redo],
                attn_mask if attn_mask is None or idx is None else attn_mask[redo],
                any_hidden,
            )
        for i in range(1, self.n_layers):
            x = self._layer(i, x, attn_mask)
        if not any_hidden:
            return x[:, : self.latest_k], x.amax(dim=1)
        x = x.masked_fill(hid.unsqueeze(-1), 0.0)
        pooled = x.masked_fill(hid.unsqueeze(-1), float("-inf")).amax(dim=1)
        pooled = pooled.masked_fill(hid.all(dim=1, keepdim=True), 0.0)
        return x[:, : self.latest_k], pooled

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
        h = self.n_heads
        qkv = F.linear(x, self._w(i, "in_w"), self._w(i, "in_b"))
        q, k, v = qkv.view(n, s, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)  # [N, h, S, dh]
        attend = None if key_mask is None else (~key_mask)[:, None, None, :]  # True = take part
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        o = o.transpose(1, 2).reshape(n, s, d)
        return self._residual_ffn(i, x + F.linear(o, self._w(i, "out_w"), self._w(i, "out_b")))

    def _folded_layer(self, i: int, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """:meth:`_layer` for one head on the folded weights of :func:`_fold_single_head`:
        logits ``(x M^T + u) x^T``, attention output ``P (x Wvo^T + bvo)``; same shapes."""
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
        if self.options.fold_weights:  # x carries the FFN's output bias (_fold_ffn_bias)
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

    def _split_prep(
        self, user_part: torch.Tensor, key_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-user work of layer 1, done once per request: ``[U, S, d_u]`` -> ``E``, ``Ku``, ``Vu'``."""
        n_users, s, d_u = user_part.shape
        d, h = self.d_model, self.n_heads
        dh = d // h
        in_w, in_b = self._w(0, "in_w"), self._w(0, "in_b")
        qkv_u = F.linear(user_part, in_w[:, :d_u], in_b)  # [U, S, 3d]
        q_u, k_u, v_u = qkv_u.view(n_users, s, 3, h, dh).permute(2, 0, 3, 1, 4).unbind(0)
        a = torch.matmul(q_u, k_u.transpose(-1, -2)) / math.sqrt(dh)  # [U, H, S, S]
        a = a.masked_fill(key_mask[:, None, None, :], float("-inf"))
        e = torch.exp(a - a.amax(dim=-1, keepdim=True))
        out_w = self._w(0, "out_w")
        v_fold = torch.matmul(v_u, out_w.view(d, h, dh).permute(1, 2, 0))  # [U, H, S, d]
        return {"e": e, "k_u": k_u, "v_fold": v_fold}

    def _candidate_projections(
        self, candidates: torch.Tensor, d_u: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer 1's candidate part ``c_b`` of the token ``[u_s ; c_b]``: the queries
        ``[B, H, dh]`` and ``Wo v_c + bo`` ``[B, d]`` (the biases sit in the user part)."""
        d, h = self.d_model, self.n_heads
        qkv_c = F.linear(candidates, self._w(0, "in_w")[:, d_u:])  # [B, 3d]
        q_c = qkv_c[:, :d].view(candidates.shape[0], h, d // h)
        return q_c, F.linear(qkv_c[:, 2 * d :], self._w(0, "out_w"), self._w(0, "out_b"))

    def _split_candidates(
        self,
        prep: dict[str, torch.Tensor],
        user_part: torch.Tensor,
        candidates: torch.Tensor,
        key_mask: torch.Tensor,
    ) -> _SharedLayer1:
        """One user's split layer 1, everything but the per-chunk GEMM, for ``B``
        candidates at once: the candidate projections, the exp'd candidate logits, the
        softmax denominators and the underflow check. Done per chunk, the same work took
        ~45 small ops in every chunk (:meth:`_shared_first_layer` now takes ~10)."""
        d_u = user_part.shape[2]
        d, h = self.d_model, self.n_heads
        q_c, cand_rows = self._candidate_projections(candidates, d_u)
        cand_rows[:, d_u:] += candidates  # [0 ; c_b] + Wo v_c + bo
        e, k_u, v_fold = prep["e"][0], prep["k_u"][0], prep["v_fold"][0]
        g = torch.einsum("bhe,hte->hbt", q_c, k_u) / math.sqrt(q_c.shape[2])  # [H, B, S]
        g = g.masked_fill(key_mask[0][None, None, :], float("-inf"))
        g = torch.exp(g - g.amax(dim=-1, keepdim=True)).transpose(1, 2).contiguous()  # [H, S, B]
        denom = torch.matmul(e, g)  # [H, S, B]
        bad = (denom < _UNDERFLOW).any(dim=1).any(dim=0)
        g, denom = g.unsqueeze(-1), denom.unsqueeze(-1)
        return _SharedLayer1(
            user_rows=F.pad(user_part[0], (0, d - d_u)).unsqueeze(1),
            cand_rows=cand_rows.unsqueeze(0),
            heads=[(e[i], g[i], v_fold[i].unsqueeze(1), denom[i]) for i in range(h)],
            bad=bad if bool(bad.any()) else None,
        )

    def _shared_first_layer(
        self, shared: _SharedLayer1, lo: int, hi: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer 1 for candidates ``[lo, hi)`` of one user -> ``([S, b, d], redo)`` as
        :meth:`_split_first_layer`: the residual ``[u_s ; c_b] + Wo v_c + bo``, then per
        head ``(E @ (exp(G) * Vu')) / denominator`` as one ``[S, S] x [S, b d]`` GEMM."""
        sa = torch.add(shared.user_rows, shared.cand_rows[:, lo:hi])  # [S, b, d]
        s, n, d = sa.shape
        for e, g, v_fold, denom in shared.heads:
            weighted = torch.empty_like(sa)  # [S, b, d] whatever the inputs' strides
            torch.mul(g[:, lo:hi], v_fold, out=weighted)
            num = torch.mm(e, weighted.view(s, n * d)).view(s, n, d)
            sa.addcdiv_(num, denom[:, lo:hi])
        redo = None
        if shared.bad is not None:
            redo = shared.bad[lo:hi].nonzero().squeeze(1)
            if redo.numel() == 0:
                redo = None
        return self._residual_ffn(0, sa), redo

    def _split_first_layer(
        self,
        prep: dict[str, torch.Tensor],
        user_part: torch.Tensor,
        candidates: torch.Tensor,
        key_mask: torch.Tensor,
        idx: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer 1 for candidates of several users (``idx [b]``: each one's user) from
        per-user and per-candidate parts -> ``([S, b, d], redo)``.

        ``redo`` lists the candidates (``[r]`` int64, or ``None``) whose split softmax
        denominator fell below ``_UNDERFLOW`` (it takes logit gaps of ~70 between the
        user-only and the candidate maxima): their columns of the result are garbage and
        the caller recomputes them with the plain layer.
        """
        d_u = user_part.shape[2]
        q_c, c_out = self._candidate_projections(candidates, d_u)
        e, k_u, v_fold = prep["e"], prep["k_u"], prep["v_fold"]
        g = torch.einsum("bhe,bhte->bht", q_c, k_u[idx]) / math.sqrt(q_c.shape[2])  # [b, H, S]
        g = g.masked_fill(key_mask[:, None, :], float("-inf"))
        g = torch.exp(g - g.amax(dim=-1, keepdim=True))
        e_b = e[idx]  # [b, H, S, S]
        denom = torch.matmul(e_b, g.unsqueeze(-1))  # [b, H, S, 1]
        bad = (denom < _UNDERFLOW).flatten(1).any(dim=1)
        num = torch.matmul(e_b, g.unsqueeze(-1) * v_fold[idx])  # [b, H, S, d]
        sa = num.div_(denom).sum(dim=1)  # [b, S, d]
        sa.add_(c_out.unsqueeze(1))
        sa[..., :d_u].add_(user_part[idx])
        sa[..., d_u:].add_(candidates.unsqueeze(1))
        sa = sa.transpose(0, 1)  # LayerNorm below writes it out as [S, b, d]
        redo = bad.nonzero().squeeze(1) if bool(bad.any()) else None
        return self._residual_ffn(0, sa), redo
