"""Benchmark: offline realtime-sequence builder vs the plain per-query Python reference.

Thin wrapper over :mod:`transact.data.bench` (what it measures, its flags: ``--help``)::

    python benchmarks/bench_sequence_builder.py --json runs/bench/bench_sequence_builder.json
"""

import sys

from transact.data.bench import main

if __name__ == "__main__":
    sys.exit(main())
