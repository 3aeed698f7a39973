"""Online-simulator benchmark: simulated impressions/s on the demo world, 14 days, two models.

Thin wrapper over :mod:`transact.online.bench` (also ``transact bench online``).

    python benchmarks/bench_online.py --json runs/bench/online.json [--demo runs/demo]
"""

import sys

from transact.online.bench import main

if __name__ == "__main__":
    sys.exit(main())
