"""Benchmark: importing a generated 10^7-row short-video log (rows/s, peak memory).

Thin wrapper over :mod:`transact.data.bench_import` (what it measures, its flags: ``--help``)::

    python benchmarks/bench_import.py --json runs/bench/import.json
"""

import sys

from transact.data.bench_import import main

if __name__ == "__main__":
    sys.exit(main())
