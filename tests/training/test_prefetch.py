"""Batches built ahead on a background thread (``training/prefetch.py``): the same batches
in the same order, an iterator's error raised at its place, pinned copies on CUDA."""

import threading

import pytest
import torch

from tests.fakes import FakeExampleSet
from transact.training.prefetch import batch_to, pin_batch, prefetch


def test_prefetch_yields_the_same_batches_in_order():
    data = FakeExampleSet(n=100)
    direct = list(data.batches(16, shuffle=True, seed=3))
    ahead = list(prefetch(data.batches(16, shuffle=True, seed=3), depth=2))
    assert len(ahead) == len(direct) == 7
    for a, b in zip(ahead, direct, strict=True):
        torch.testing.assert_close(a.item_ids, b.item_ids)
        torch.testing.assert_close(a.inputs.action_types, b.inputs.action_types)


def test_an_iterator_error_is_raised_after_the_batches_before_it():
    data = FakeExampleSet(n=100, fail_after_batches=3)
    got = []
    with pytest.raises(KeyboardInterrupt, match="simulated crash"):
        for batch in prefetch(data.batches(10), depth=2):
            got.append(int(batch.item_ids[0]))
    assert got == [0, 10, 20]


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "batch-prefetch"]


def test_closing_the_generator_stops_the_thread():
    # its own thread, by name: other tests' threads may start or end meanwhile
    before = _prefetch_threads()
    it = prefetch(FakeExampleSet(n=1000).batches(10), depth=1)
    next(it)
    started = [t for t in _prefetch_threads() if t not in before]
    assert len(started) == 1 and started[0].is_alive()
    it.close()
    assert not started[0].is_alive()
    with pytest.raises(ValueError, match="depth must be >= 1"):
        next(prefetch([], depth=0))


def test_batch_to_cpu_is_the_same_batch():
    batch = FakeExampleSet(n=20).batch(torch.arange(5))
    assert batch_to(batch, torch.device("cpu")) is batch


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pinned_batches_reach_cuda_unchanged():
    batch = FakeExampleSet(n=20).batch(torch.arange(8))
    pinned = pin_batch(batch)
    assert pinned.labels.is_pinned() and pinned.inputs.action_embeddings.is_pinned()
    on_gpu = batch_to(pinned, torch.device("cuda"))
    torch.cuda.synchronize()
    assert on_gpu.labels.device.type == "cuda"
    torch.testing.assert_close(
        on_gpu.inputs.action_embeddings.cpu(), batch.inputs.action_embeddings
    )
