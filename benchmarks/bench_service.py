"""Service load test: 500-candidate requests at rising rates against `transact serve demo`.

Usage::

    python benchmarks/bench_service.py --json runs/bench/service.json
    python benchmarks/bench_service.py --json runs/bench/service_plain.json --plain

Same as ``transact bench service``; see ``transact.serving.load``. Reports p50/p99 per rate
and the highest rate held with p99 < 100 ms and zero errors (``small`` preset). Run it with
and without ``--plain`` to compare the optimized service with the plain one.
"""

from __future__ import annotations

import argparse

from transact.serving.load import run_service_benchmark


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", default="runs/bench/service.json")
    p.add_argument("--rates", type=float, nargs="+", default=[2, 5, 10, 20, 40, 80])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--candidates", type=int, default=500)
    p.add_argument("--plain", action="store_true")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--server-threads", type=int, default=2, help="torch threads per forward")
    p.add_argument("--concurrent-forwards", type=int, default=1)
    a = p.parse_args()
    run_service_benchmark(
        a.json, a.rates, a.duration, a.candidates, plain=a.plain, precision=a.precision,
        threads=a.server_threads, concurrent_forwards=a.concurrent_forwards,
    )  # fmt: skip


if __name__ == "__main__":
    main()
