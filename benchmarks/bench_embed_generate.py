"""Benchmark: daily user-embedding generation throughput (users/s) and memory.

Thin wrapper over :mod:`transact.embeddings.bench` (what it measures, its flags: ``--help``)::

    python benchmarks/bench_embed_generate.py --json runs/bench/bench_embed_generate.json
"""

import sys

from transact.embeddings.bench import main

if __name__ == "__main__":
    sys.exit(main())
