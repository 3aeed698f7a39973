"""Chunk-worker scheduling of the fast path: which candidates run where, on which threads.

On CPU the candidates run in chunks (``[chunk, S, d]`` activations stay in a core's L2).
A caller with ``n > 1`` intra-op threads hands the chunks to ``n`` single-threaded workers
(:func:`chunk_pool`) instead of splitting every small op across ``n`` threads: no
fork/join per op. One task per worker, each with a run of consecutive chunks
(:func:`chunk_groups`); the first task computes the per-request plan before its chunks and
the others wait for it (:func:`run_chunk_groups`). The chunk workers share one
interpreter lock, so the encoder keeps its op count per chunk low.

Nothing here knows TransAct: the encoder (:mod:`transact.models.fast_transact.encoder`)
passes its plan and chunk functions in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

CPU_CHUNK_SIZE = 24  # candidates per chunk on CPU: [24, S, d] activations stay in a 1 MB L2
MIN_CHUNK_PER_WORKER = 16  # below this many candidates per worker, run the chunks inline

Group = list[tuple[int, int]]  # one worker's consecutive chunks, [lo, hi) each
Plan = TypeVar("Plan")

_POOLS: dict[int, ThreadPoolExecutor] = {}  # chunk workers by count, shared by all modules
_POOLS_LOCK = threading.Lock()


def _single_threaded() -> None:
    """Pool-thread initializer: this thread runs every op on itself (one intra-op thread)."""
    torch.get_num_threads()  # PyTorch's lazy per-thread init first, or it would undo the next line
    torch.set_num_threads(1)


def chunk_pool(workers: int) -> ThreadPoolExecutor:
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


def chunk_workers(n_cand: int, device: torch.device, parallel: bool) -> int:
    """How many single-threaded workers run ``n_cand`` candidates' chunks (1 = inline, on
    the calling thread): the caller's intra-op thread count on CPU, at most one per
    ``MIN_CHUNK_PER_WORKER`` candidates; 1 on a GPU or with ``parallel`` off."""
    if not parallel or device.type != "cpu":
        return 1
    workers = torch.get_num_threads()
    if workers < 2 or n_cand < 2 * MIN_CHUNK_PER_WORKER:
        return 1
    return min(workers, n_cand // MIN_CHUNK_PER_WORKER)


def chunk_groups(n_cand: int, workers: int, chunk_size: int) -> list[Group]:
    """``[lo, hi)`` of each chunk, grouped by worker: one group of ``chunk_size`` chunks
    inline (0 = one chunk); with workers, a multiple of ``workers`` chunks of (almost)
    equal size, consecutive ones per worker, so that none waits on a short last chunk."""
    step = chunk_size or n_cand
    if workers == 1:
        return [[(lo, min(lo + step, n_cand)) for lo in range(0, n_cand, step)]]
    n_chunks = -(-n_cand // step)
    n_chunks = -(-n_chunks // workers) * workers
    edges = [i * n_cand // n_chunks for i in range(n_chunks + 1)]
    bounds = list(zip(edges[:-1], edges[1:], strict=True))
    per = n_chunks // workers
    return [bounds[w * per : (w + 1) * per] for w in range(workers)]


def _in_worker(fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn`` on a chunk worker with the caller's modes: inference mode and autocast are
    per thread, and the buffers' dtype, not an outer autocast, decides the precision."""
    with torch.inference_mode(), torch.autocast("cpu", enabled=False):
        fn(*args)


def run_chunk_groups(
    plan: Callable[[], Plan], run_group: Callable[[Plan, Group], None], groups: list[Group]
) -> Plan:
    """``plan()`` once, then ``run_group(plan, group)`` for every group; returns the plan.

    One group runs on the calling thread. Several run on :func:`chunk_pool` workers, the
    plan too (an op on the caller's own threads would leave its OpenMP team spinning, by
    default for milliseconds, on the cores the workers need). One task per worker: the
    first computes the plan and then its group, the others wait for the plan: one thread
    wake-up between them, not a round trip through the caller. Tasks are queued first-in
    first-out and only a follower waits, on a leader dequeued before it, so concurrent
    callers cannot deadlock the pool. The leader's error is raised here.
    """
    if len(groups) == 1:
        made = plan()
        run_group(made, groups[0])
        return made
    pool = chunk_pool(len(groups))
    ready = threading.Event()
    box: list[Plan] = []  # the leader's plan (a list append is atomic)

    def lead(group: Group) -> None:
        try:
            box.append(plan())
        finally:
            ready.set()  # on an error too: the followers find the box empty and return
        run_group(box[0], group)

    def follow(group: Group) -> None:
        ready.wait()
        if box:
            run_group(box[0], group)

    tasks = [pool.submit(_in_worker, lead, groups[0])]
    tasks += [pool.submit(_in_worker, follow, group) for group in groups[1:]]
    for task in tasks:
        task.result()
    return box[0]
