"""glibc malloc settings for a torch process: keep freed activation memory mapped.

A forward pass allocates and frees activation buffers of 1 MB to several hundred MB. With
glibc's defaults such a buffer is either its own ``mmap`` (the mmap threshold starts at
128 KiB and only adapts upwards, one free at a time, to at most 32 MiB) or, once freed at
the top of a heap, given back to the kernel (the trim threshold). Either way the next
forward touches fresh pages and pays a page fault and a zeroed page for every 4 KiB.
Measured here:

* serving: ~20,000 minor faults per plain TransAct forward of 256 candidates (about a
  quarter of its time, and most of its run-to-run spread), ~9,000 for the optimized one;
* evaluation: the plain model scoring batches of 4,096 rows (``[4096, 100, 96]`` tensors,
  157 MB each) spent more time in the kernel than in torch: 4.9 M faults and 20 s of
  system time against 15 s of user time for 20,012 rows at one thread, 2.3x slower than
  with the memory kept (``docs/performance.md``, "Training and scoring").

Raising both thresholds keeps the freed memory in the process for the next batch, as
jemalloc/tcmalloc would; it costs resident memory up to about twice the largest working
set (the heap fragments before it settles), never given back while the process runs.

Every ``transact`` command applies it at start (:func:`transact.cli.main`);
``TRANSACT_MALLOC=default`` in the environment, or ``--default-malloc`` where a command has
it (``serve``, ``bench train``), keeps glibc's defaults. The benchmarks run the plain and
the optimized path under the same allocator and record which (:func:`malloc_state`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30
"""Buffers below 1 GiB come from the heap (a plain scoring batch of 4,096 rows holds
157 MB tensors); a glibc that refuses more than its own cap gets :data:`MMAP_THRESHOLD_CAP`."""
MMAP_THRESHOLD_CAP = 32 << 20  # HEAP_MAX_SIZE / 2 on 64-bit, which some glibc versions enforce
TRIM_THRESHOLD = (1 << 31) - 1
"""mallopt's largest value (an ``int``): a heap top below 2 GiB is never given back."""
# the same settings as environment variables, for a process about to start
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
}
OPT_OUT_ENV = "TRANSACT_MALLOC"
"""``TRANSACT_MALLOC=default`` keeps glibc's defaults in every ``transact`` command."""

_state = {"tuned": False}


def keep_freed_memory() -> bool:
    """Set this process's malloc to reuse freed buffers instead of unmapping them.

    Returns True when glibc accepted both settings; False (and changes nothing) where the
    C library is not glibc (musl, macOS), which has its own allocator behaviour. Once it
    has succeeded in a process, later calls (``serve``'s and ``bench train``'s own, for
    callers that do not start through :func:`transact.cli.main`) return True at once.
    """
    if _state["tuned"]:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if not ok:
        ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_CAP) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _state["tuned"] = ok
    return ok


def opted_out(default_malloc: bool = False) -> bool:
    """Whether this process keeps glibc's defaults: ``--default-malloc`` or
    ``TRANSACT_MALLOC=default``."""
    return default_malloc or os.environ.get(OPT_OUT_ENV, "").strip().lower() == "default"


def malloc_state() -> str:
    """``"tuned"`` when :func:`keep_freed_memory` succeeded in this process, or the
    environment set :data:`MALLOC_ENV` before it started; else ``"default"``."""
    by_env = all(os.environ.get(k) for k in MALLOC_ENV)
    return "tuned" if _state["tuned"] or by_env else "default"


def inference_env(omp_wait_policy: str = "passive", tuned_malloc: bool = False) -> dict[str, str]:
    """This process's environment for a child inference process (a benchmark, a server):
    OpenMP's wait policy (``passive``/``active``; ``default`` leaves it) and, with
    ``tuned_malloc``, :data:`MALLOC_ENV`. Both are read when the child starts, before
    torch loads, which is why they travel as environment variables."""
    env = dict(os.environ)
    if omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    if tuned_malloc:
        env.update(MALLOC_ENV)
    return env
