"""Inference benchmark: TransAct fast path and the paper-preset ranker vs plain eager PyTorch.

Usage::

    python benchmarks/bench_inference.py --json runs/bench/inference.json
    python benchmarks/bench_inference.py --sections transact --repeats 10

Same as ``transact bench inference``; see ``transact.serving.benchmark`` for what each
section measures. Writes JSON (machine, timings, ratios, output differences).
"""

from __future__ import annotations

import argparse
import os
import sys

# OpenMP reads its wait policy once, when torch loads: decide it before importing torch.
# Passive (threads sleep at barriers) keeps a shared machine's timings sane; see
# docs/performance.md. `--omp-wait-policy active` restores spinning.
if "--omp-wait-policy" in sys.argv:
    _policy = sys.argv[sys.argv.index("--omp-wait-policy") + 1]
else:
    _policy = "passive"
if _policy != "default":
    os.environ["OMP_WAIT_POLICY"] = _policy.upper()

import torch  # noqa: E402

from transact.serving.benchmark import run_all  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", default="runs/bench/inference.json", help="output JSON path")
    p.add_argument("--sections", nargs="+", default=["transact", "ranker", "cuda"],
                   choices=["transact", "ranker", "cuda"])  # fmt: skip
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave default)")
    p.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", "default"],
                   help="OpenMP wait policy (set before torch loads)")  # fmt: skip
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    run_all(a.json, tuple(a.sections), a.repeats)


if __name__ == "__main__":
    main()
