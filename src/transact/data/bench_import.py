"""Benchmark: importing a generated short-video log (rows/s and peak memory).

``transact bench import`` and ``benchmarks/bench_import.py`` run :func:`main`.

Generates an impression log of ``--rows`` rows (:mod:`transact.data.shortvideo`, in a
temporary folder, deleted afterwards) and imports it with
:func:`~transact.data.adapters.import_impressions` in a child process, twice: at a tenth
of the size and at full size, so the JSON shows whether peak memory grows with the log
(it should not: the importer holds one spill bucket and one day). The plain reference,
measured in the same run, is what bounded memory avoids: reading the whole log into
memory as one Arrow table (no processing at all). Each child's peak resident memory is
its own ``ru_maxrss`` (``os.wait4``). The issue's goal: >= 1M rows/s and < 4 GB.

Example::

    python benchmarks/bench_import.py --json runs/bench/import.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transact.arguments import ArgumentParser, output_file, positive_int, run_command
from transact.data.spill_sizes import BUCKET_ROWS
from transact.memory import MALLOC_ENV, opted_out

GOAL_ROWS_PER_S = 1_000_000
GOAL_PEAK_MB = 4096
ROWS_PER_USER = 360  # ShortVideoConfig defaults: 10 days x 1 session x 3 requests x 12 videos

_IMPORT = """
import sys, time
from transact.data.adapters import ImpressionColumns, ItemRepresentation, import_impressions
labels = (("is_click", "click"), ("long_view", "long_view"), ("is_like", "like"),
          ("is_hate", "hate"))
t0 = time.perf_counter()
import_impressions(sys.argv[1], sys.argv[2], ImpressionColumns(labels=labels, item="video_id",
                   time="time_ms"), negative=("hate",), main_positive="like",
                   item_repr=ItemRepresentation("genre"), bucket_rows=int(sys.argv[3]))
print(time.perf_counter() - t0)
"""
_READ_ALL = """
import sys, time
import pyarrow.parquet as pq
t0 = time.perf_counter()
table = pq.read_table(sys.argv[1])
table.column("user_id").to_numpy(); table.column("time_ms").to_numpy()
print(time.perf_counter() - t0)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's flags."""
    parser.add_argument(
        "--rows", type=positive_int, default=10_000_000, help="log rows (default 10^7)"
    )
    parser.add_argument(
        "--memory-rows",
        type=positive_int,
        default=BUCKET_ROWS,
        help=f"the importer's spill bucket: rows held at once (default {BUCKET_ROWS:,}, the "
        "importer's)",
    )
    parser.add_argument("--json", type=output_file, default=None, help="write the results here")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the temporary log goes (default: /tmp)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags of :func:`add_arguments` and :func:`run` the benchmark."""
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return run_command(parser, argv)


def _child(code: str, *args: str) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; its wall time (printed) and peak RSS. The child
    runs under the allocator a ``transact`` command would (:func:`_child_malloc`)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if _child_malloc() == "tuned":
        env.update(MALLOC_ENV)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {err.decode()[-2000:]}")
    return {"seconds": float(out.decode().split()[-1]), "peak_rss_mb": usage.ru_maxrss / 1024}


def _child_malloc() -> str:
    """``tuned`` (:data:`transact.memory.MALLOC_ENV`, as ``transact data import`` runs)
    unless ``TRANSACT_MALLOC=default``."""
    return "default" if opted_out() else "tuned"


def _log(workdir: Path, rows: int) -> tuple[Path, int, float]:
    from transact.data.shortvideo import ShortVideoConfig, write_shortvideo_log

    path = workdir / f"log-{rows}.parquet"
    config = ShortVideoConfig(n_users=max(1, rows // ROWS_PER_USER), n_videos=20_000)
    t0 = time.perf_counter()
    n = write_shortvideo_log(path, config, users_per_chunk=5_000)
    return path, n, time.perf_counter() - t0


def measure(rows: int, memory_rows: int, workdir: Path) -> dict[str, Any]:
    """Generate, import at a tenth and at full size, and read the whole log (reference)."""
    out: dict[str, Any] = {"sizes": []}
    for size in (max(rows // 10, 1), rows):
        log, n, gen_s = _log(workdir, size)
        world = workdir / f"world-{size}"
        got = _child(_IMPORT, str(log), str(world), str(memory_rows))
        out["sizes"].append(
            {
                "rows": n,
                "generate_s": round(gen_s, 2),
                "import_s": round(got["seconds"], 3),
                "rows_per_s": round(n / got["seconds"]),
                "peak_rss_mb": round(got["peak_rss_mb"], 1),
                "log_mb": round(log.stat().st_size / 2**20, 1),
                "world_mb": round(
                    sum(f.stat().st_size for f in world.rglob("*") if f.is_file()) / 2**20, 1
                ),
            }
        )
        if size == rows:
            ref = _child(_READ_ALL, str(log))
            out["reference_read_all"] = {
                "what": "pyarrow.parquet.read_table of the whole log (no processing)",
                "seconds": round(ref["seconds"], 3),
                "rows_per_s": round(n / ref["seconds"]),
                "peak_rss_mb": round(ref["peak_rss_mb"], 1),
            }
        shutil.rmtree(world)
        log.unlink()
    full, small = out["sizes"][-1], out["sizes"][0]
    ref = out["reference_read_all"]
    out.update(
        {
            "rows": full["rows"],
            "rows_per_s": full["rows_per_s"],
            "peak_rss_mb": full["peak_rss_mb"],
            "memory_rows": memory_rows,
            "goal": {"rows_per_s": GOAL_ROWS_PER_S, "peak_rss_mb": GOAL_PEAK_MB},
            "meets_goal": full["rows_per_s"] >= GOAL_ROWS_PER_S
            and full["peak_rss_mb"] < GOAL_PEAK_MB,
            "ratios": {
                "peak_full_over_tenth": round(full["peak_rss_mb"] / small["peak_rss_mb"], 2),
                "peak_over_reference_read_all": round(full["peak_rss_mb"] / ref["peak_rss_mb"], 2),
                "time_over_reference_read_all": round(
                    full["import_s"] / max(ref["seconds"], 1e-9), 1
                ),
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average": os.getloadavg(),
                "malloc": _child_malloc(),
            },  # fmt: skip
        }
    )
    return out


def run(args: argparse.Namespace) -> int:
    """Measure, print and (with ``--json``) write the figures; 0 whether or not the goal
    is met (the JSON says which)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-import-", dir=args.workdir))
    try:
        result = measure(args.rows, args.memory_rows, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
