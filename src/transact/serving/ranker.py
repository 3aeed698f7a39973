"""The served model: a trained Pinnability with every inference optimization behind a switch.

:class:`ServingRanker` wraps a copy of a trained :class:`transact.models.Pinnability` and
scores one request (one user, many candidates) per forward pass, the paper's "use the
larger batches in the original requests directly". Switches (:class:`InferenceOptions`):

* ``consolidated_lookup``: the model's one-gather categorical lookup (paper 3.4.2); off
  runs its per-feature reference lookups.
* ``single_transfer``: every input packed into one buffer, one host-to-device copy.
* ``dedup``: the user's sequence and user embedding travel once (``[1, ...]``, or
  ``[U, ...]`` for a micro-batch) with ``user_index [B]`` naming each candidate's user
  (:class:`ModelInputs`, ``Pinnability.forward(inputs, user_index)``); TransAct then
  encodes each user's sequence once (:class:`transact.models.fast_transact.FastTransAct`).
* ``split_first_layer``: the exact per-user / per-candidate algebra of TransAct layer 1.
* ``precision``: ``fp32``, or ``bf16`` / ``fp16`` autocast (score differences measured by
  ``benchmarks/bench_inference.py``).
* ``compile``: ``torch.compile`` the model (``mode="reduce-overhead"``, i.e. CUDA graphs,
  on a GPU).
* ``cuda_graphs``: the paper's CUDA graphs without a compiler: each candidate-count bucket's
  forward is captured once and replayed with one launch, its inputs written into one pinned
  buffer and moved with one copy (:class:`transact.serving.cuda_graphs.GraphedForward`).

All off is the plain path: the model's own eager forward on per-candidate copies.

A model whose sequence encoder the fast path cannot compute (a baseline encoder, or a
TransAct config off ``transact.models.transact.serving_fast_path_blockers``) keeps its own
encoder: the ranker logs a warning naming the reason once, and counts the requests it
serves so (:attr:`ServingRanker.reference_requests`, the service's
``transact_reference_path_requests_total{reason}``).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from transact.data.schema import CANDIDATE_FIELDS, RankerInputs
from transact.evaluation.calibration import Calibration
from transact.models.fast_transact import CPU_CHUNK_SIZE, FastTransAct, FastTransActOptions
from transact.models.layers import CrossNetV2
from transact.models.pinnability import Pinnability, check_ranker_inputs
from transact.models.sequence import SequenceEncoder
from transact.models.transact import TransAct, serving_fast_path_blockers
from transact.serving.cuda_graphs import GraphedForward
from transact.serving.transfer import to_device_packed, to_device_plain

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

log = logging.getLogger("transact.serving")


@dataclass(frozen=True)
class InferenceOptions:
    """Inference switches of :class:`ServingRanker` (defaults: every optimization on).

    Args:
        device: ``cpu`` or ``cuda[:i]``.
        consolidated_lookup: one gather for all categorical features.
        single_transfer: one packed host-to-device copy per request.
        dedup: send user-level inputs once and expand them on the device.
        split_first_layer: exact split of TransAct's first layer (needs ``dedup`` to pay).
        chunk_size: candidates per TransAct chunk (0 = all at once).
        compact_visible: run TransAct only on positions someone can see (exact; its
            data-dependent shapes do not suit CUDA graphs).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        compile: ``torch.compile`` the forward (``mode="reduce-overhead"`` on GPU).
        cuda_graphs: capture the forward of one request as a CUDA graph per candidate-count
            bucket and replay it (:mod:`transact.serving.cuda_graphs`); needs a CUDA
            ``device``; TransAct then runs without ``compact_visible`` and the split first
            layer (both read values on the host, which a graph cannot).
        validate_inputs: keep the model's per-row input checks (names feature and row).
        align_width: zero-pad the DCN v2 width (and the MLP's first input) to a multiple of
            this (exact: the padded coordinates stay 0). Tensor cores want multiples of 8;
            the paper preset's 1539 falls back to slow fp16 kernels on a GPU. ``None``: 64
            on CUDA, off on CPU; 1: off.
    """

    device: str = "cpu"
    consolidated_lookup: bool = True
    single_transfer: bool = True
    dedup: bool = True
    split_first_layer: bool = True
    chunk_size: int = CPU_CHUNK_SIZE
    compact_visible: bool = True
    precision: str = "fp32"
    compile: bool = False
    cuda_graphs: bool = False
    validate_inputs: bool = True
    align_width: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"InferenceOptions.precision={self.precision!r} not in {list(PRECISIONS)}"
            )
        if self.chunk_size < 0:
            raise ValueError(f"InferenceOptions.chunk_size={self.chunk_size}: must be >= 0")
        if self.cuda_graphs and not self.device.startswith("cuda"):
            raise ValueError(
                f"InferenceOptions.cuda_graphs=True needs a CUDA device, device={self.device!r}"
            )
        if self.align_width is not None and self.align_width < 1:
            raise ValueError(f"InferenceOptions.align_width={self.align_width}: must be >= 1")
        if self.cuda_graphs and self.compile:
            raise ValueError("InferenceOptions: cuda_graphs and compile are exclusive; pick one")

    @classmethod
    def plain(cls, device: str = "cpu") -> InferenceOptions:
        """Every optimization off: the reference serving path."""
        return cls(
            device=device,
            consolidated_lookup=False,
            single_transfer=False,
            dedup=False,
            split_first_layer=False,
            chunk_size=0,
            compact_visible=False,
        )


class RequestTensors(NamedTuple):
    """One request's inputs on the host: user-level rows once, candidate rows B times.

    Fields:
        categorical: ``[B, F]`` int64 local indices (user and context columns repeated).
        numerical: ``[B, N]`` float32.
        candidate_embedding: ``[B, d_item]`` float32.
        candidate_item_id: ``[B]`` int64 dense item index.
        user_embedding: ``[1, d_user]`` float32.
        action_types: ``[1, S]`` int64.
        action_embeddings: ``[1, S, d_item]`` float32.
        action_times_ms: ``[1, S]`` int64.
        request_time_ms: ``[1]`` int64.
    """

    categorical: torch.Tensor
    numerical: torch.Tensor
    candidate_embedding: torch.Tensor
    candidate_item_id: torch.Tensor
    user_embedding: torch.Tensor
    action_types: torch.Tensor
    action_embeddings: torch.Tensor
    action_times_ms: torch.Tensor
    request_time_ms: torch.Tensor


class ModelInputs(NamedTuple):
    """One forward's inputs on the device: ``model(inputs, user_index)``.

    Fields:
        inputs: ``RankerInputs`` with B candidate rows; with ``user_index`` its user-level
            fields hold one row per user, ``[U, ...]``.
        user_index: ``[B]`` int64 row of each candidate's user, or ``None`` when every
            field has B rows (the plain path's per-candidate copies).
    """

    inputs: RankerInputs
    user_index: torch.Tensor | None


class _PerFeatureLookup(nn.Module):
    """The consolidated table read with one lookup per feature (the plain path)."""

    def __init__(self, consolidated: Any) -> None:
        super().__init__()
        self.inner = consolidated

    @property
    def out_dim(self) -> int:
        return int(self.inner.out_dim)

    def forward(self, local_indices: torch.Tensor) -> torch.Tensor:
        return self.inner.reference(local_indices)


def _zero_padded(old: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    """``old`` in the top-left corner of a larger ``Linear``, zeros elsewhere (exact on
    inputs padded with zeros; the extra outputs are 0)."""
    new = nn.Linear(in_features, out_features, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        new.weight[: old.out_features, : old.in_features] = old.weight
        new.bias[: old.out_features] = old.bias
    return new


class _AlignedCross(nn.Module):
    """DCN v2 cross layers on a zero-padded width (exact; ``InferenceOptions.align_width``).

    ``x_{l+1} = x0 * (W x_l + b) + x_l`` with ``W``, ``b`` padded by zeros keeps every padded
    coordinate at 0. Returns the padded width when the next layer was padded to read it
    (``keep_padded``), else a view of the first ``D`` columns.
    """

    def __init__(self, cross: CrossNetV2, multiple: int, keep_padded: bool) -> None:
        super().__init__()
        old_layers = [cast(nn.Linear, layer) for layer in cross.layers]
        d = old_layers[0].in_features
        padded = -(-d // multiple) * multiple
        self.d, self.pad, self.keep_padded = d, padded - d, keep_padded
        self.layers = nn.ModuleList(_zero_padded(old, padded, padded) for old in old_layers)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x0 = F.pad(x0, (0, self.pad))
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x if self.keep_padded else x[:, : self.d]


def _align_cross(model: Any, multiple: int) -> None:
    """Pad ``model.cross`` (and, stacked, the MLP's first layer) to ``multiple`` columns."""
    d = model.cross.layers[0].in_features
    if d % multiple == 0:
        return
    first = model.mlp.net[0] if hasattr(model, "mlp") else None
    stacked = getattr(model.config, "cross_mode", "stacked") == "stacked"
    # stacked: the MLP's first layer is padded too and reads the padded width
    reader = first if stacked and isinstance(first, nn.Linear) and first.in_features == d else None
    model.cross = _AlignedCross(model.cross, multiple, keep_padded=reader is not None)
    if reader is not None:
        model.mlp.net[0] = _zero_padded(reader, d + model.cross.pad, reader.out_features)


def _fast_path_blocker(encoder: SequenceEncoder) -> str | None:
    """Why :class:`FastTransAct` cannot compute ``encoder`` (``None``: it can)."""
    if not isinstance(encoder, TransAct):
        return f"sequence encoder {type(encoder).__name__} is not TransAct"
    blockers = serving_fast_path_blockers(encoder.config)
    return "; ".join(blockers) if blockers else None


class ServingRanker:
    """A trained Pinnability prepared for serving; :meth:`score` ranks one request.

    Args:
        model: a trained ``transact.models.Pinnability`` (copied; the original is untouched).
        options: :class:`InferenceOptions`.
        calibration: the model's :class:`~transact.evaluation.calibration.Calibration`
            (``transact train`` writes it into ``model.pt``'s metadata), applied to every
            probability served; ``None`` serves the raw sigmoid of the logits.

    Example::

        ranker = ServingRanker(model, InferenceOptions())
        probs = ranker.score(request_tensors)       # [B, H] per-head probabilities
    """

    def __init__(
        self,
        model: Pinnability,
        options: InferenceOptions | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.options = opts = options or InferenceOptions()
        if calibration is not None and tuple(calibration.heads) != tuple(model.spec.heads):
            raise ValueError(
                f"calibration heads {list(calibration.heads)} differ from the model's "
                f"{list(model.spec.heads)}"
            )
        self.calibration = calibration
        self.device = torch.device(opts.device)
        model = copy.deepcopy(model).eval().to(self.device)
        # a graph cannot raise on values: with cuda_graphs the checks run on the host
        model.config = replace(
            model.config, validate_inputs=opts.validate_inputs and not opts.cuda_graphs
        )
        self.fast_encoder = False
        self.reference_reason: str | None = None  # why the model's own encoder serves
        self.reference_requests = 0  # requests served so, counted for the metrics
        self._count_lock = threading.Lock()
        encoder = model.sequence_encoder
        if encoder is not None and (opts.dedup or opts.split_first_layer):
            self.reference_reason = _fast_path_blocker(encoder)
            if isinstance(encoder, TransAct) and self.reference_reason is None:
                model.sequence_encoder = self._fast(encoder)
                self.fast_encoder = True
            else:
                log.warning(
                    "ServingRanker: the fast TransAct path cannot take this model (%s); its "
                    "own sequence encoder serves, every request counted in "
                    "transact_reference_path_requests_total",
                    self.reference_reason,
                )
        # exact rewrites of the lookup and the cross network by modules of other classes
        patched = cast(Any, model)
        if not opts.consolidated_lookup and model.embedding is not None:
            patched.embedding = _PerFeatureLookup(model.embedding)
        align = opts.align_width or (64 if self.device.type == "cuda" else 1)
        if align > 1 and isinstance(model.cross, CrossNetV2):
            _align_cross(model, align)
        if opts.precision != "fp32":  # cast the GEMM weights once, not at every autocast call
            for name in ("cross", "mlp", "heads", "wide"):
                if isinstance(getattr(model, name, None), nn.Module):
                    for m in getattr(model, name).modules():
                        if isinstance(m, nn.Linear):
                            m.to(PRECISIONS[opts.precision])
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.heads: tuple[str, ...] = tuple(model.spec.heads)
        self._forward: Any = model.forward
        if opts.compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._forward = torch.compile(model, mode=mode, dynamic=True)
        self.graphed: GraphedForward | None = None
        if opts.cuda_graphs:
            self.graphed = GraphedForward(
                self._graph_body, self.device, batch_fields=CANDIDATE_FIELDS
            )

    def _fast(self, encoder: TransAct) -> FastTransAct:
        """The fast copy of a TransAct the fast path supports."""
        opts = self.options
        fast = FastTransAct.from_transact(
            encoder,
            FastTransActOptions(
                dedup=opts.dedup,
                # a CUDA graph cannot read values on the host
                split_first_layer=opts.split_first_layer and not opts.cuda_graphs,
                chunk_size=opts.chunk_size,
                compact_visible=opts.compact_visible and not opts.cuda_graphs,
            ),
        ).to(self.device)
        if opts.precision != "fp32":  # bf16 keeps fp32's exponent range (split softmax)
            fast.to(torch.bfloat16)
        return fast

    @property
    def split_fallbacks(self) -> int:
        """Candidates whose split layer-1 softmax underflowed and ran plainly (0 without
        the fast encoder; ``FastTransAct.fallbacks``)."""
        encoder = self.model.sequence_encoder
        return encoder.fallbacks if isinstance(encoder, FastTransAct) else 0

    def _count_reference(self, n: int) -> None:
        if self.reference_reason is not None:
            with self._count_lock:
                self.reference_requests += n

    @torch.inference_mode()
    def _graph_body(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return self.probabilities(self.logits(self.assemble(RequestTensors(*tensors))))

    def to_inputs(self, request: RequestTensors) -> ModelInputs:
        """Move a request to the device and build its :class:`ModelInputs` (batch B)."""
        move = to_device_packed if self.options.single_transfer else to_device_plain
        return self.assemble(RequestTensors(*move(list(request), self.device)))

    def assemble(self, t: RequestTensors) -> ModelInputs:
        """:class:`ModelInputs` with batch B from a request already on the device: with
        ``dedup`` the user-level rows stay ``[1, ...]`` and ``user_index`` is 0 for every
        candidate; without, they are copied per candidate."""
        b = t.categorical.shape[0]
        if self.options.dedup:
            user_index = torch.zeros(b, dtype=torch.int64, device=t.categorical.device)
            return ModelInputs(RankerInputs(*t), user_index)
        c = CANDIDATE_FIELDS
        per_candidate = [x.expand(b, *x.shape[1:]).contiguous() for x in t[c:]]
        return ModelInputs(RankerInputs(*t[:c], *per_candidate), None)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, H]`` per-head probabilities from logits: ``sigmoid``, then the model's
        calibration when it has one (negative down-sampling undone, per-head Platt;
        ``transact.evaluation.calibration``), so a served probability is an engagement
        rate, not the down-sampled training set's."""
        p = torch.sigmoid(logits)
        return p if self.calibration is None else self.calibration.apply_torch(p)

    @torch.inference_mode()
    def logits(self, batch: ModelInputs) -> torch.Tensor:
        """``[B, H]`` float32 logits for ready :class:`ModelInputs`."""
        dtype = PRECISIONS[self.options.precision]
        if dtype is None:
            return self._forward(batch.inputs, batch.user_index).float()
        with torch.autocast(self.device.type, dtype=dtype):
            return self._forward(batch.inputs, batch.user_index).float()

    def _check_on_host(self, request: RequestTensors) -> None:
        """The model's input checks, run before a graph (which cannot raise on values)."""
        if self.options.validate_inputs:
            batch = self.assemble(request)
            check_ranker_inputs(self.model.spec, batch.inputs, batch.user_index)

    def score(self, request: RequestTensors) -> torch.Tensor:
        """``[B, H]`` per-head probabilities on the CPU for one request."""
        self._count_reference(1)
        if self.graphed is not None:
            self._check_on_host(request)
            return self.graphed(list(request))
        return self.probabilities(self.logits(self.to_inputs(request))).cpu()

    def score_many(self, requests: Sequence[RequestTensors]) -> list[torch.Tensor]:
        """Score several requests (users) in ONE forward; ``[B_i, H]`` probabilities each.

        User-level tensors are stacked ``[U, ...]`` and travel once with ``user_index
        [B]``; with ``dedup`` the model gets them so (the fast encoder encodes each user's
        sequence once for all its candidates), otherwise rows are copied per candidate.
        """
        if len(requests) == 1:
            return [self.score(requests[0])]
        self._count_reference(len(requests))
        if self.graphed is not None:  # several users stay eager; the checks stay on the host
            for r in requests:
                self._check_on_host(r)
        opts = self.options
        sizes = [int(r.categorical.shape[0]) for r in requests]
        merged = [torch.cat([r[i] for r in requests]) for i in range(len(RequestTensors._fields))]
        user_index = torch.repeat_interleave(torch.arange(len(requests)), torch.tensor(sizes))
        move = to_device_packed if opts.single_transfer else to_device_plain
        moved = move([*merged, user_index], self.device)
        t, user_index = RequestTensors(*moved[:-1]), moved[-1]
        if opts.dedup:
            batch = ModelInputs(RankerInputs(*t), user_index)
        else:
            c = CANDIDATE_FIELDS
            batch = ModelInputs(RankerInputs(*t[:c], *(x[user_index] for x in t[c:])), None)
        probs = self.probabilities(self.logits(batch)).cpu()
        return list(torch.split(probs, sizes))
