"""Malloc tuning: freed activation-sized buffers are reused instead of faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from transact.memory import MALLOC_ENV, OPT_OUT_ENV

# the plain TransAct forward of one 256-candidate request (~60 MB of activations freed and
# allocated again each time): minor page faults over 5 forwards after 3 warm-up forwards
_CHILD = textwrap.dedent(
    """
    import resource, sys
    import torch
    if sys.argv[1] == "tuned":
        from transact.memory import keep_freed_memory
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


def _run_child(code: str, mode: str, env: dict[str, str] | None = None) -> str:
    """``code`` in a fresh interpreter with argument ``mode``; its stdout. The child starts
    without this process's malloc settings or opt-out, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV and k != OPT_OUT_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code, mode], capture_output=True, text=True, check=True,
        env={**clean, **(env or {})},
    )  # fmt: skip
    return out.stdout


def _faults(mode: str, env: dict[str, str] | None = None) -> int:
    return int(_run_child(_CHILD, mode, env).strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt only")
def test_keep_freed_memory_removes_page_faults_of_repeated_buffers() -> None:
    default = _faults("default")
    tuned = _faults("tuned")
    by_env = _faults("default", MALLOC_ENV)
    # default: freed buffers go back to the kernel and fault in again (~20,000 a forward)
    assert default > 5 * 2_000, default
    assert tuned < default / 10, (tuned, default)
    assert by_env < default / 10, (by_env, default)


# a plain scoring batch of 4,096 rows holds [4096, 100, 96] fp32 tensors (157 MB): above
# glibc's largest adaptive mmap threshold (32 MiB), so with its defaults every batch maps
# them afresh. The child prepares itself as `transact COMMAND` would, then counts the
# minor faults of two such buffers allocated and freed 10 times (after 8 to settle the heap).
_BIG_CHILD = textwrap.dedent(
    """
    import argparse, resource, sys
    import torch
    from transact.cli import prepare_process
    from transact.memory import malloc_state

    prepare_process(argparse.Namespace(default_malloc=sys.argv[1] == "flag"))
    def batch():
        x = torch.ones(4096, 100, 96)
        y = x * 2
        del x, y
    for _ in range(8):
        batch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        batch()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, malloc_state())
    """
)


def _big_faults(mode: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    faults, state = _run_child(_BIG_CHILD, mode, env).split()
    return int(faults), state


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt only")
def test_every_command_keeps_scoring_sized_buffers_unless_told_not_to() -> None:
    tuned, tuned_state = _big_faults("none")
    flag, flag_state = _big_faults("flag")
    env, env_state = _big_faults("none", {OPT_OUT_ENV: "default"})
    pages = 2 * 4096 * 100 * 96 * 4 // 4096  # two buffers' 4 KiB pages per batch
    # glibc's defaults: every batch faults in both buffers again
    assert flag > 10 * pages * 0.9, (flag, pages)
    assert env > 10 * pages * 0.9, (env, pages)
    assert (flag_state, env_state) == ("default", "default")
    # tuned: the freed buffers are reused (the heap may still move one buffer once)
    assert tuned <= pages, (tuned, pages)
    assert tuned_state == "tuned"


def test_malloc_state_and_the_opt_out_read_the_process_and_its_environment(monkeypatch):
    from transact import memory

    monkeypatch.setattr(memory, "_state", {"tuned": False})
    for key in (*MALLOC_ENV, OPT_OUT_ENV):
        monkeypatch.delenv(key, raising=False)
    assert memory.malloc_state() == "default"
    assert not memory.opted_out() and memory.opted_out(default_malloc=True)
    monkeypatch.setenv(OPT_OUT_ENV, " Default ")
    assert memory.opted_out()
    monkeypatch.setenv(OPT_OUT_ENV, "tuned")
    assert not memory.opted_out()
    for key, value in MALLOC_ENV.items():  # a child started with the settings in its env
        monkeypatch.setenv(key, value)
    assert memory.malloc_state() == "tuned"


def test_keep_freed_memory_sets_glibc_once_per_process(monkeypatch):
    from transact import memory

    monkeypatch.setattr(memory, "_state", {"tuned": True})

    def no_libc(*_args: object) -> None:
        raise AssertionError("tuned already: the C library is not loaded again")

    monkeypatch.setattr(memory.ctypes, "CDLL", no_libc)
    assert memory.keep_freed_memory()
    # not tuned yet: the library is loaded (here it cannot be, so nothing changes)
    monkeypatch.setattr(memory, "_state", {"tuned": False})
    loads: list[object] = []

    def missing_libc(*args: object) -> None:
        loads.append(args)
        raise OSError("no C library here")

    monkeypatch.setattr(memory.ctypes, "CDLL", missing_libc)
    assert not memory.keep_freed_memory()
    assert len(loads) == 1
    assert memory._state == {"tuned": False}
