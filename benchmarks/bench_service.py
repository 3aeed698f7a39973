"""Service load test: 500-candidate requests at rising rates against `transact serve demo`.

Thin wrapper over :func:`transact.serving.bench_entry.service_main`, the same program as
``transact bench service`` (same flags, see ``--help``; the measurement is
:mod:`transact.serving.load`). Reports p50/p99 per rate and the highest rate held with
p99 < 100 ms and zero errors (``small`` preset); run it with and without ``--plain`` to
compare the optimized service with the plain one::

    python benchmarks/bench_service.py --json runs/bench/service.json
    python benchmarks/bench_service.py --json runs/bench/service_plain.json --plain
"""

import sys

from transact.serving.bench_entry import service_main

if __name__ == "__main__":
    sys.exit(service_main())
