"""glibc malloc settings for an inference process: keep freed activation memory mapped.

A forward pass allocates and frees activation buffers of 1-40 MB. With glibc's defaults
such a buffer is either its own ``mmap`` (the mmap threshold starts at 128 KiB and only
adapts upwards one free at a time) or, once freed at the top of a heap, given back to the
kernel (the trim threshold). Either way the next forward touches fresh pages and pays a
page fault and a zeroed page for every 4 KiB: measured here, ~20,000 minor faults per
plain TransAct forward of 256 candidates (about a quarter of its time, and most of its
run-to-run spread), ~9,000 for the optimized one. Raising both thresholds keeps the freed
memory in the process for the next request, as jemalloc/tcmalloc would; it costs resident
memory equal to the largest working set, which a serving process holds anyway.

``transact serve`` applies it at start (``--default-malloc`` keeps glibc's defaults) and
the benchmarks run both the plain and the optimized path under it (``--malloc``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30
# the same settings as environment variables, for a process about to start
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
}


def keep_freed_memory() -> bool:
    """Set this process's malloc to reuse freed buffers instead of unmapping them.

    Returns True when glibc accepted both settings; False (and changes nothing) where the
    C library is not glibc (musl, macOS), which has its own allocator behaviour.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    return ok


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
