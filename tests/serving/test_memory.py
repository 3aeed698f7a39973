"""Malloc tuning: freed activation-sized buffers are reused instead of faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from transact.serving.memory import MALLOC_ENV

# the plain TransAct forward of one 256-candidate request (~60 MB of activations freed and
# allocated again each time): minor page faults over 5 forwards after 3 warm-up forwards
_CHILD = textwrap.dedent(
    """
    import resource, sys
    import torch
    if sys.argv[1] == "tuned":
        from transact.serving.memory import keep_freed_memory
        assert keep_freed_memory()
    from transact.serving.benchmark import _sequence_batch
    from transact.models.fast_transact.reference import ReferenceTransAct, ReferenceTransActConfig

    torch.manual_seed(0)
    ref = ReferenceTransAct(ReferenceTransActConfig()).eval()
    args = _sequence_batch(256, 100, 32, distinct=False)
    with torch.no_grad():
        for _ in range(3):
            ref(*args)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            ref(*args)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str, env: dict[str, str] | None = None) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return int(out.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt only")
def test_keep_freed_memory_removes_page_faults_of_repeated_buffers() -> None:
    default = _faults("default")
    tuned = _faults("tuned")
    by_env = _faults("default", MALLOC_ENV)
    # default: freed buffers go back to the kernel and fault in again (~20,000 a forward)
    assert default > 5 * 2_000, default
    assert tuned < default / 10, (tuned, default)
    assert by_env < default / 10, (by_env, default)
