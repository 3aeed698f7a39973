"""Inference benchmark: TransAct fast path and the paper-preset ranker vs plain eager PyTorch.

Thin wrapper over :func:`transact.serving.bench_entry.inference_main`, the same program as
``transact bench inference`` (same flags, see ``--help``); what each section measures is in
:mod:`transact.serving.benchmark`. Writes JSON (machine, timings, ratios, output
differences)::

    python benchmarks/bench_inference.py --json runs/bench/inference.json
    python benchmarks/bench_inference.py --sections transact --repeats 10
"""

import sys

from transact.serving.bench_entry import inference_main

if __name__ == "__main__":
    sys.exit(inference_main())
