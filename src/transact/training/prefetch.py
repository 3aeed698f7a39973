"""Feeding a device: batches built on a background thread, in pinned memory, copied async.

On a GPU the step is short and building a batch on the host (gathering the example rows
and their action embeddings, ``ExampleSet.batch``) is not: done in line, the device waits
for every batch. :func:`prefetch` runs the batch iterator on one background thread, a
few batches ahead, and on CUDA puts each batch in page-locked (pinned) memory so that
:func:`batch_to` copies it with ``non_blocking=True`` while the device still computes the
previous step. The order of batches is the iterator's: prefetching changes when a batch is
built, never which.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import fields, replace
from typing import Any

import torch

from transact.data.schema import LabeledBatch, RankerInputs

_END = object()


def pin_batch(batch: LabeledBatch) -> LabeledBatch:
    """The same batch with every tensor in pinned host memory (for async copies to CUDA)."""
    inputs = RankerInputs(*(t.pin_memory() for t in batch.inputs))
    rest = {
        f.name: getattr(batch, f.name).pin_memory() for f in fields(batch) if f.name != "inputs"
    }
    return replace(batch, inputs=inputs, **rest)


def batch_to(batch: LabeledBatch, device: torch.device) -> LabeledBatch:
    """Every tensor of ``batch`` on ``device`` (no copy on CPU; async from pinned memory
    on CUDA)."""
    if device.type == "cpu":
        return batch
    return batch.to(device, non_blocking=device.type == "cuda")


def prefetch(
    batches: Iterable[LabeledBatch], *, depth: int = 2, pin: bool = False
) -> Iterator[LabeledBatch]:
    """Yield ``batches`` in order, built up to ``depth`` ahead on a background thread
    (pinned when ``pin``). An error of the iterator is raised here, at its place in the
    order; closing the generator stops the thread."""
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        """Queue ``item`` unless the consumer has gone; False once it has."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(pin_batch(batch) if pin else batch):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    worker = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
