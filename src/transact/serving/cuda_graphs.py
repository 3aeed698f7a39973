"""CUDA graphs for one request's forward (paper 3.4.2, "CUDA graphs").

At serving batch sizes the GPU finishes the ranker's kernels long before the host has
launched them: the paper-preset ranker eager on an H100 spends ~5 ms of host time per
256-candidate request on ~1 ms of GPU work (``docs/performance.md``). A CUDA graph records
the whole forward once and replays it with one launch.

A graph replays fixed shapes and fixed addresses, so :class:`GraphedForward` keeps, per
*bucket* (the candidate count rounded up to a power of two, at least ``min_bucket``, and the
shapes of the other dimensions):

* one pinned host buffer and one device buffer with the same packed layout
  (:mod:`transact.serving.transfer`): a request writes its rows into the host buffer, ONE
  copy moves it to the device (the paper's "combine memory copies");
* the graph of ``forward`` on views of the device buffer, and its output.

Rows past the request's candidate count hold whatever an earlier request left there (zeros
at first): inference rows are independent (batch norm in eval mode), and only the first
``B`` output rows are read. The forward must not synchronise with the host, so the
serving ranker captures TransAct without the data-dependent compaction and without the
split first layer's underflow check (both read values on the host).

On a CPU the same class runs ``forward`` eagerly on the same static buffers, so the
bucketing and padding are tested without a GPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from transact.serving.transfer import layout_of, unpack


def bucket_size(n: int, min_bucket: int = 64) -> int:
    """The static batch a request of ``n`` candidates runs in: the next power of two."""
    if n < 1:
        raise ValueError(f"bucket_size: n={n} candidates, need at least 1")
    return max(min_bucket, 1 << (n - 1).bit_length())


def graph_buckets(max_rows: int, min_bucket: int = 64) -> list[int]:
    """Every bucket a request of 1..``max_rows`` candidates can fall in, smallest first."""
    out = [bucket_size(1, min_bucket)]
    while out[-1] < max_rows:
        out.append(out[-1] * 2)
    return out


@dataclass
class _Graph:
    host_views: list[torch.Tensor]
    host: torch.Tensor
    device_buffer: torch.Tensor
    device_views: list[torch.Tensor]
    graph: Any  # torch.cuda.CUDAGraph, or None on CPU
    out: torch.Tensor | None
    lock: threading.Lock


class GraphedForward:
    """Run ``forward(inputs) -> [B, H]`` through captured CUDA graphs, one per bucket.

    Args:
        forward: takes the list of input tensors (on ``device``; the first ``batch_fields``
            have the candidate count as their first dimension, the rest are per request)
            and returns a ``[B, ...]`` tensor. Called on static buffers: it must not keep
            references to its inputs' values nor synchronise with the host.
        device: ``cuda[:i]`` captures graphs; ``cpu`` runs ``forward`` eagerly on the same
            buffers (for tests).
        batch_fields: how many leading inputs are per candidate.
        min_bucket: the smallest static batch.
        warmup: eager runs on a side stream before each capture (cuBLAS/cuDNN set up
            their workspaces outside the graph).

    Example::

        graphed = GraphedForward(lambda xs: model(*xs), "cuda", batch_fields=3)
        scores = graphed(host_tensors)        # [B, H] on the CPU
    """

    def __init__(
        self,
        forward: Callable[[list[torch.Tensor]], torch.Tensor],
        device: str | torch.device,
        batch_fields: int,
        min_bucket: int = 64,
        warmup: int = 3,
    ) -> None:
        self.forward = forward
        self.device = torch.device(device)
        self.batch_fields = batch_fields
        self.min_bucket = min_bucket
        self.warmup = warmup
        self.captures = 0
        self._graphs: dict[tuple[Any, ...], _Graph] = {}
        self._lock = threading.Lock()
        self._pool = torch.cuda.graph_pool_handle() if self.device.type == "cuda" else None

    def _key(self, tensors: Sequence[torch.Tensor]) -> tuple[Any, ...]:
        b = int(tensors[0].shape[0])
        for i, t in enumerate(tensors[: self.batch_fields]):
            if t.shape[0] != b:
                raise ValueError(
                    f"GraphedForward: input {i} has {t.shape[0]} rows, input 0 has {b}"
                )
        padded = bucket_size(b, self.min_bucket)
        return tuple(
            (t.dtype, (padded, *t.shape[1:]) if i < self.batch_fields else tuple(t.shape))
            for i, t in enumerate(tensors)
        )

    def _build(self, key: tuple[Any, ...]) -> _Graph:
        layout = layout_of(key)
        cuda = self.device.type == "cuda"
        host = torch.zeros(layout.nbytes, dtype=torch.uint8, pin_memory=cuda)
        device_buffer = host if not cuda else torch.zeros_like(host, device=self.device)
        g = _Graph(unpack(host, layout), host, device_buffer, unpack(device_buffer, layout),
                   None, None, threading.Lock())  # fmt: skip
        if cuda:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(self.warmup):
                    self.forward(g.device_views)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            g.graph = torch.cuda.CUDAGraph()
            # thread_local: other threads keep serving (an older model version during a hot
            # reload) while this one captures
            with torch.cuda.graph(g.graph, pool=self._pool, capture_error_mode="thread_local"):
                g.out = self.forward(g.device_views)
            self.captures += 1
        return g

    def graph_for(self, tensors: Sequence[torch.Tensor]) -> _Graph:
        key = self._key(tensors)
        with self._lock:
            if key not in self._graphs:
                self._graphs[key] = self._build(key)
            return self._graphs[key]

    @property
    def buckets(self) -> list[int]:
        """The static batch sizes captured so far."""
        return sorted({int(k[0][1][0]) for k in self._graphs})

    def __call__(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """``forward`` of the host ``tensors``' first ``B`` rows, on the CPU."""
        g = self.graph_for(tensors)
        b = int(tensors[0].shape[0])
        with g.lock:  # one request at a time per bucket: the buffers are shared
            for i, (view, t) in enumerate(zip(g.host_views, tensors, strict=True)):
                (view[:b] if i < self.batch_fields else view).copy_(t)
            if g.graph is None:
                return self.forward(g.device_views)[:b].clone()
            g.device_buffer.copy_(g.host, non_blocking=True)
            g.graph.replay()
            assert g.out is not None
            return g.out[:b].to("cpu")  # waits for the replay


__all__ = ["GraphedForward", "bucket_size", "graph_buckets"]
