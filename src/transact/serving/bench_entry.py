"""The serving benchmarks' command lines, defined once.

``transact bench inference`` and ``benchmarks/bench_inference.py``
(:func:`inference_main`) take the flags of :func:`add_inference_arguments` and run
:func:`run_inference`; ``transact bench service`` and ``benchmarks/bench_service.py``
(:func:`service_main`) take those of :func:`add_service_arguments` and run
:func:`run_service`. What they measure lives in
:mod:`transact.serving.benchmark` and :mod:`transact.serving.load`; this module only
parses and starts them, and imports nothing heavy (``transact --help`` builds these
parsers).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

from transact.arguments import (
    ArgumentParser,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
    run_command,
)

INFERENCE_DESCRIPTION = """\
TransAct S=100 batch 256 as one request and as 256 users (fast vs plain
nn.TransformerEncoder), the paper-preset ranker per batch of 256 with GFLOP/s against
the measured GEMM peak, and the CUDA figures when a GPU is present. Every optimized
figure is measured beside the plain one in the same run (transact.serving.benchmark)."""
SERVICE_DESCRIPTION = """\
Starts the demo service (`transact serve demo`: a random `small` model,
synthetic items and sequences) in its own process on 127.0.0.1, then an open-loop
async client sends requests of --candidates candidates at each of --rates for
--duration seconds. Reports p50/p99 latency and errors per rate and the highest
rate held with p99 < 100 ms and zero errors. Client and server share the cores:
run it on a quiet machine, and compare --plain with the default in one sitting."""
SECTIONS = ("transact", "ranker", "cuda")
OMP_WAIT_POLICIES = ("passive", "active", "default")


def add_inference_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of the inference benchmark (:func:`run_inference`)."""
    p.add_argument(
        "--json", type=output_file, default="runs/bench/inference.json",
        help="output JSON path (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS,
        help="what to measure (default: all; cuda reports 'not measured' without a GPU)",
    )  # fmt: skip
    p.add_argument("--repeats", type=positive_int, default=20, help="timed runs per variant")
    p.add_argument(
        "--threads", type=non_negative_int, default=0, help="torch threads (0 = torch's default)"
    )
    p.add_argument(
        "--omp-wait-policy", default="passive", choices=OMP_WAIT_POLICIES,
        help="OpenMP wait policy of the benchmark process (passive: sane on a shared box)",
    )  # fmt: skip
    p.add_argument(
        "--malloc", default="tuned", choices=["tuned", "default"],
        help="glibc malloc of the benchmark process, the same for plain and optimized "
        "(tuned: freed buffers are reused, not faulted in again; transact.memory)",
    )  # fmt: skip


def run_inference(args: argparse.Namespace) -> int:
    """Measure in a fresh process: OpenMP reads its wait policy and glibc its malloc
    settings when a process starts, before torch loads, so they travel as its environment
    (:func:`transact.memory.inference_env`) and the measuring process is told
    what to run by a call, not by flags again."""
    from transact.memory import inference_env

    env = inference_env(args.omp_wait_policy, tuned_malloc=args.malloc == "tuned")
    call = (
        "from transact.serving.bench_entry import measure_inference; "
        f"measure_inference({str(args.json)!r}, {tuple(args.sections)!r}, {args.repeats!r}, "
        f"{args.threads!r})"
    )
    return subprocess.run([sys.executable, "-c", call], env=env, check=False).returncode


def measure_inference(
    json_path: str, sections: Sequence[str], repeats: int, threads: int = 0
) -> None:
    """The measuring process of :func:`run_inference` (``threads`` 0: torch's default)."""
    import torch

    from transact.serving.benchmark import run_all

    if threads:
        torch.set_num_threads(threads)
    run_all(json_path, tuple(sections), repeats)


def add_service_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of the service load test (:func:`run_service`)."""
    p.add_argument(
        "--json", type=output_file, default="runs/bench/service.json",
        help="output JSON path, per-rate results (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--rates", type=positive_float, nargs="+", default=[2, 5, 10, 20, 40, 80],
        help="requests per second to try, in order; stops once a rate is saturated "
        "(default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--duration", type=positive_float, default=10.0, help="seconds per rate")
    p.add_argument(
        "--candidates", type=positive_int, default=500,
        help="candidates per request (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--plain", action="store_true", help="serve with every optimization off")
    p.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16"],
        help="model precision in the server (bf16: about 1.5x faster on AVX-512 CPUs; "
        "docs/performance.md gives its score difference)",
    )  # fmt: skip
    p.add_argument(
        "--server-threads", type=positive_int, default=2,
        help="torch threads per forward (2: the TransAct chunks of a forward run on two "
        "single-threaded workers)",
    )  # fmt: skip
    p.add_argument(
        "--omp-wait-policy", default="passive", choices=OMP_WAIT_POLICIES,
        help="OpenMP wait policy of the server process (passive: idle OpenMP threads sleep "
        "instead of spinning on the cores the client and the chunk workers need)",
    )  # fmt: skip
    p.add_argument("--default-malloc", action="store_true", help="server keeps glibc defaults")
    p.add_argument(
        "--concurrent-forwards", type=positive_int, default=1,
        help="forwards the server runs at once (e.g. 2 with --server-threads 1: one per core)",
    )  # fmt: skip


def run_service(args: argparse.Namespace) -> int:
    """Run the load test; exit status 1 when no rate met the target."""
    from transact.serving.load import run_service_benchmark

    result = run_service_benchmark(
        args.json, rates=args.rates, duration_s=args.duration, n_candidates=args.candidates,
        plain=args.plain, precision=args.precision, threads=args.server_threads,
        concurrent_forwards=args.concurrent_forwards, omp_wait_policy=args.omp_wait_policy,
        default_malloc=args.default_malloc,
    )  # fmt: skip
    return 0 if result.get("best_rate_rps") is not None else 1


def inference_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The inference benchmark as a program (``benchmarks/bench_inference.py``)."""
    parser = ArgumentParser(
        prog=prog,
        description=INFERENCE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_inference_arguments(parser)
    parser.set_defaults(handler=run_inference)
    return run_command(parser, argv)


def service_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The service load test as a program (``benchmarks/bench_service.py``)."""
    parser = ArgumentParser(
        prog=prog,
        description=SERVICE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_service_arguments(parser)
    parser.set_defaults(handler=run_service)
    return run_command(parser, argv)
