"""Model cost benchmark: FLOPs/parameters per preset, and fast paths against their references.

Thin wrapper over :mod:`transact.models.bench` (what it measures, its flags: ``--help``)::

    python benchmarks/bench_model_flops.py --json runs/bench/bench_model_flops.json
"""

import sys

from transact.models.bench import main

if __name__ == "__main__":
    sys.exit(main())
