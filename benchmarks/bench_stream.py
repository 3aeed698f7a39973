"""Stream benchmark: throughput (RocksDB, Redis), Kafka freshness, 256-user read latency.

Thin wrapper over :mod:`transact.features.bench` (also ``transact stream bench``).

    python benchmarks/bench_stream.py --json runs/bench/bench_stream.json [--quick]
"""

import sys

from transact.features.bench import main

if __name__ == "__main__":
    sys.exit(main())
