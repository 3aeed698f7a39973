"""Training and scoring benchmark: the fast training path and the optimized scoring against
the plain ones, on the same batches, in one run.

Usage::

    python benchmarks/bench_train.py --json runs/bench/train.json
    python benchmarks/bench_train.py --json runs/bench/encoders.json --encoders lstm,bst --steps 5

Same as ``transact bench train``; the flags and what each figure means are in
``transact.pipeline.benchmark``. Writes JSON (machine, arms, speed-ups, loss differences).
"""

from __future__ import annotations

import argparse

from transact.pipeline.benchmark import EPILOG, add_arguments, run_from_args


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)
    return run_from_args(p.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
