"""``transact serve ...`` (the ranking service) and ``transact bench inference|service``."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

SERVE_EPILOG = """\
The service loads the newest verified version in --models (see `transact serve publish`),
polls for new ones every --watch-interval seconds and swaps them in atomically; a version
with a bad checksum or a different FeatureSpec is refused with a REFUSED log line and the
previous one keeps serving.

endpoints:
  POST /v1/rank    {"user_id": 7, "candidates": [3, 9, 4], "request_time_ms": ..., "context": {}}
  GET  /healthz, /readyz, /metrics (Prometheus), /docs (OpenAPI)
  POST /v1/admin/reload   only with an admin token (--admin-token-file or
                          $TRANSACT_ADMIN_TOKEN), header 'Authorization: Bearer <token>'

examples:
  transact serve demo --port 8080                       # random model + synthetic items
  transact serve publish runs/train/model.pt --models runs/models --version 2026-11-26
  transact serve run --models runs/models --data runs/world \\
      --sequence-store runs/stream/seq.rocksdb --port 8080
  curl -s localhost:8080/v1/rank -d '{"user_id": 7, "candidates": [1, 2, 3]}' \\
      -H 'content-type: application/json'
"""

BENCH_EPILOG = """\
examples:
  transact bench train --json runs/bench/train.json
  transact bench inference --json runs/bench/inference.json
  transact bench inference --sections transact --repeats 10 --json runs/bench/transact.json
  transact bench service --json runs/bench/service.json --rates 5 10 20 40
"""


def _add_inference_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inference switches (all on by default; --plain turns all off)")
    g.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    g.add_argument("--plain", action="store_true", help="no optimization: the reference path")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the forward (mode reduce-overhead on GPU)")  # fmt: skip
    g.add_argument(
        "--cuda-graphs", action="store_true",
        help="capture each candidate-count bucket's forward as a CUDA graph and replay it "
        "(GPU only; the fastest GPU path, with --precision fp16: docs/performance.md)",
    )  # fmt: skip
    g.add_argument(
        "--chunk-size", type=int, default=None,
        help="TransAct candidates per chunk (0 = all at once; default 24 on CPU, 0 on GPU)",
    )  # fmt: skip
    g.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")


def _add_service_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-candidates", type=int, default=2000)
    p.add_argument("--max-body-bytes", type=int, default=1_000_000)
    p.add_argument("--item-cache-rows", type=int, default=100_000, help="in-memory LRU rows")
    p.add_argument("--item-cache-dir", default=None, help="on-disk RocksDB tier (default: off)")
    p.add_argument("--watch-interval", type=float, default=30.0, help="seconds; 0 = no reload")
    p.add_argument(
        "--admin-token-file", default=None,
        help="file whose first line is the admin token (else $TRANSACT_ADMIN_TOKEN); "
        "without one, POST /v1/admin/reload does not exist (docs/serving.md, threat model)",
    )  # fmt: skip
    p.add_argument(
        "--concurrent-forwards", type=int, default=1,
        help="forward passes run at once (e.g. 2 with --threads 1 on a 2-core box)",
    )  # fmt: skip
    p.add_argument(
        "--micro-batch-ms", type=float, default=0.0,
        help="merge concurrent requests into one forward, waiting up to this long (0 = off)",
    )  # fmt: skip
    p.add_argument(
        "--default-malloc", action="store_true",
        help="keep glibc's malloc defaults (default: keep freed activation memory for the "
        "next request instead of faulting it in again; see transact.serving.memory)",
    )  # fmt: skip
    p.add_argument("--log-level", default="info")


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="the ranking service: HTTP API, hot reload, inference optimizations",
        description=(
            "Serve Pinnability + TransAct over HTTP (FastAPI + uvicorn): one forward pass per "
            "request over all candidates, ranked by S = sum_h u_h f_h, with the paper's "
            "serving optimizations (3.4.2) each behind a switch."
        ),
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = serve.add_subparsers(dest="serve_command", metavar="SUBCOMMAND")
    run = sub.add_parser(
        "run",
        help="serve published model versions with the real feature stores",
        description="Serve the models in --models with items from --data and the given stores.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--models", required=True, help="directory of published versions")
    run.add_argument("--data", required=True, help="data dir with items.parquet")
    run.add_argument("--sequence-store", default=None, help="RocksDB path or redis://... URL")
    run.add_argument("--user-embeddings", default=None, help="dated user-embedding dir")
    _add_service_flags(run)
    _add_inference_flags(run)
    run.set_defaults(handler=_run)

    demo = sub.add_parser(
        "demo",
        help="serve a random model over synthetic items and sequences (no data needed)",
        description="A self-contained service for trying the API and load tests.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--preset", default="small", choices=["small", "paper"])
    demo.add_argument("--n-items", type=int, default=10_000)
    demo.add_argument("--workdir", default="runs/serve-demo")
    _add_service_flags(demo)
    _add_inference_flags(demo)
    demo.set_defaults(handler=_demo)

    pub = sub.add_parser(
        "publish",
        help="copy a trained model.pt into a models dir with its checksum",
        description="Publish a `transact train` model.pt as a servable version.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pub.add_argument("model", help="model.pt or its run directory")
    pub.add_argument("--models", required=True)
    pub.add_argument("--version", required=True, help="version name, e.g. a date")
    pub.set_defaults(handler=_publish)
    serve.set_defaults(handler=lambda _a: (serve.print_help(), 2)[1])

    bench = subparsers.add_parser(
        "bench",
        help="benchmarks: inference (fast vs plain) and the service under load",
        description="Benchmarks that write JSON; every optimized figure beside a plain one.",
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bsub = bench.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
    inf = bsub.add_parser(
        "inference",
        help="TransAct module and paper-preset ranker: optimized vs plain eager PyTorch",
        description=(
            "TransAct S=100 batch 256 as one request and as 256 users (fast vs plain "
            "nn.TransformerEncoder), the paper-preset ranker per batch of 256 with GFLOP/s "
            "against the measured GEMM peak, and the CUDA figures when a GPU is present."
        ),
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inf.add_argument("--json", required=True, help="output JSON path")
    inf.add_argument("--sections", nargs="+", default=["transact", "ranker", "cuda"],
                     choices=["transact", "ranker", "cuda"])  # fmt: skip
    inf.add_argument("--repeats", type=int, default=20)
    inf.add_argument("--threads", type=int, default=0)
    inf.add_argument(
        "--omp-wait-policy", default="passive", choices=["passive", "active", "default"],
        help="OpenMP wait policy of the benchmark process (passive: sane on a shared box)",
    )  # fmt: skip
    inf.add_argument(
        "--malloc", default="tuned", choices=["tuned", "default"],
        help="glibc malloc of the benchmark process, the same for plain and optimized "
        "(tuned: freed buffers are reused, not faulted in again; transact.serving.memory)",
    )  # fmt: skip
    inf.set_defaults(handler=_bench_inference)
    svc = bsub.add_parser(
        "service",
        help="end-to-end load test of the service on 127.0.0.1 (async client)",
        description=(
            "Starts the demo service (`transact serve demo`: a random `small` model,\n"
            "synthetic items and sequences) in its own process on 127.0.0.1, then an open-loop\n"
            "async client sends requests of --candidates candidates at each of --rates for\n"
            "--duration seconds. Reports p50/p99 latency and errors per rate and the highest\n"
            "rate held with p99 < 100 ms and zero errors. Client and server share the cores:\n"
            "run it on a quiet machine, and compare --plain with the default in one sitting."
        ),
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    svc.add_argument("--json", required=True, help="output JSON path (per-rate results)")
    svc.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[2, 5, 10, 20, 40, 80],
        help="requests per second to try, in order; stops once a rate is saturated "
        "(default: %(default)s)",
    )
    svc.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    svc.add_argument(
        "--candidates", type=int, default=500, help="candidates per request (default: 500)"
    )
    svc.add_argument("--plain", action="store_true", help="serve with every optimization off")
    svc.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="model precision in the server (bf16: about 1.5x faster on AVX-512 CPUs; "
        "docs/performance.md gives its score difference)",
    )
    svc.add_argument(
        "--server-threads", type=int, default=2,
        help="torch threads per forward (2: the TransAct chunks of a forward run on two "
        "single-threaded workers)",
    )  # fmt: skip
    svc.add_argument(
        "--omp-wait-policy", default="passive", choices=["passive", "active", "default"],
        help="OpenMP wait policy of the server process (passive: idle OpenMP threads sleep "
        "instead of spinning on the cores the client and the chunk workers need)",
    )  # fmt: skip
    svc.add_argument("--default-malloc", action="store_true", help="server keeps glibc defaults")
    svc.add_argument(
        "--concurrent-forwards",
        type=int,
        default=1,
        help="forwards the server runs at once (e.g. 2 with --server-threads 1: one per core)",
    )
    svc.set_defaults(handler=_bench_service)
    _register_bench_train(bsub)
    bench.set_defaults(handler=lambda _a: (bench.print_help(), 2)[1])


def _register_bench_train(bsub: argparse._SubParsersAction) -> None:
    """``transact bench train``: its flags are the library's (``pipeline/benchmark.py``)."""
    from transact.pipeline.benchmark import EPILOG, add_arguments

    train = bsub.add_parser(
        "train",
        help="training steps and scoring: the fast paths vs the plain ones, same batches",
        description=(
            "Times training steps of the small Pinnability ranker (|S| = 100, batch 512) with "
            "the plain trainer and the fast training path on the same batches, and scoring "
            "of the evaluation week plain vs optimized: examples/s, speed-up, share of the "
            "measured fp32 GEMM peak, loss and score differences (docs/performance.md, "
            "'Training and scoring')."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(train)
    train.set_defaults(handler=_bench_train)


def _bench_train(args: argparse.Namespace) -> int:
    from transact.pipeline.benchmark import run_from_args

    return run_from_args(args)


def _options(args: argparse.Namespace):  # -> InferenceOptions
    from transact.models.fast_transact import CPU_CHUNK_SIZE
    from transact.serving.ranker import InferenceOptions

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.plain:
        return InferenceOptions.plain(device=args.device)
    chunk = args.chunk_size
    if chunk is None:  # on a GPU every chunk costs launches
        chunk = 0 if args.device.startswith("cuda") else CPU_CHUNK_SIZE
    try:
        return InferenceOptions(
            device=args.device,
            precision=args.precision,
            compile=args.compile,
            cuda_graphs=args.cuda_graphs,
            chunk_size=chunk,
        )
    except ValueError as exc:  # a bad flag combination: say which, no traceback
        raise SystemExit(f"transact: {exc}") from None


def _config(args: argparse.Namespace):  # -> ServiceConfig
    from transact.serving.engine import ServiceConfig

    return ServiceConfig(
        max_candidates=args.max_candidates,
        max_body_bytes=args.max_body_bytes,
        max_concurrent_forwards=args.concurrent_forwards,
        micro_batch_wait_ms=args.micro_batch_ms,
    )


def _serve(parts, args: argparse.Namespace) -> int:  # noqa: ANN001
    import uvicorn

    from transact.serving.app import create_app, load_admin_token

    if args.watch_interval > 0:
        parts.registry.watch(args.watch_interval)
    try:
        app = create_app(parts.engine, admin_token=load_admin_token(args.admin_token_file))
    except (OSError, ValueError) as exc:  # unreadable file, empty or short token
        raise SystemExit(f"transact: {exc}") from None
    # the model, item tables and caches built so far are long-lived: move them out of the
    # collector's reach, or every full collection walks them all in the middle of a request
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    parts.registry.stop()
    return 0


def _start(args: argparse.Namespace) -> None:
    """Logging, and the process's malloc tuned for serving (unless --default-malloc)."""
    from transact.serving.memory import keep_freed_memory

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if not args.default_malloc and not keep_freed_memory():
        logging.getLogger(__name__).warning("malloc not tuned: not glibc")


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from transact.data.io import ItemTable
    from transact.serving.features import ItemFeatures
    from transact.serving.service import build_engine

    _start(args)
    items = ItemTable.load(args.data)
    user_attributes = None
    if (Path(args.data) / "users.parquet").exists():
        from transact.data.io import UserTable
        from transact.serving.features import UserTableAttributes

        user_attributes = UserTableAttributes(UserTable.load(args.data))
    sequences = None
    if args.sequence_store:
        from transact.features.reader import SequenceReader
        from transact.features.store import open_store

        sequences = SequenceReader(open_store(args.sequence_store, read_only=True))
    user_embeddings = None
    if args.user_embeddings:
        from transact.embeddings.store import DatedUserEmbeddings

        user_embeddings = DatedUserEmbeddings(args.user_embeddings)
    parts = build_engine(
        args.models,
        lambda spec: ItemFeatures.from_item_table(items, spec),
        sequences=sequences,
        user_embeddings=user_embeddings,
        user_attributes=user_attributes,
        options=_options(args),
        config=_config(args),
        item_cache_rows=args.item_cache_rows,
        item_cache_dir=args.item_cache_dir,
    )
    if sequences is not None:
        sequences.seq_len = parts.engine.assembler.spec.seq_len
    if user_embeddings is not None:
        user_embeddings.d_user = parts.engine.assembler.spec.d_user
    return _serve(parts, args)


def build_demo(workdir: str, preset: str, n_items: int, options, config):  # noqa: ANN001
    """The demo service: a random model published as v1, synthetic items and sequences."""
    from pathlib import Path

    from transact.models import example_feature_spec
    from transact.serving.registry import list_versions, publish_model
    from transact.serving.service import build_engine
    from transact.serving.synthetic import InMemorySequences, synthetic_items, write_model_file

    spec = example_feature_spec(preset)
    root = Path(workdir)
    if not list_versions(root / "models"):
        raw = write_model_file(root / "raw" / "model.pt", spec, preset, seed=0)
        publish_model(raw, root / "models", "demo-v1")
    return build_engine(
        root / "models",
        synthetic_items(spec, n_items),
        sequences=InMemorySequences(spec, n_items),
        options=options,
        config=config,
    )


def _demo(args: argparse.Namespace) -> int:
    _start(args)
    parts = build_demo(args.workdir, args.preset, args.n_items, _options(args), _config(args))
    return _serve(parts, args)


def _publish(args: argparse.Namespace) -> int:
    from transact.serving.registry import publish_model

    dest = publish_model(args.model, args.models, args.version)
    print(f"published {dest}")
    return 0


def _bench_inference(args: argparse.Namespace) -> int:
    """Runs benchmarks/bench_inference.py's logic in a fresh process: OpenMP's wait policy
    must be set before torch loads, and this process has loaded it already."""
    import subprocess

    from transact.serving.memory import inference_env

    env = inference_env(args.omp_wait_policy, tuned_malloc=args.malloc == "tuned")
    cmd = [
        sys.executable, "-m", "transact.serving.benchmark", "--json", args.json,
        "--repeats", str(args.repeats), "--threads", str(args.threads),
        "--sections", *args.sections,
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, check=False).returncode


def _bench_service(args: argparse.Namespace) -> int:
    from transact.serving.load import run_service_benchmark

    result = run_service_benchmark(
        args.json, rates=args.rates, duration_s=args.duration, n_candidates=args.candidates,
        plain=args.plain, precision=args.precision, threads=args.server_threads,
        concurrent_forwards=args.concurrent_forwards, omp_wait_policy=args.omp_wait_policy,
        default_malloc=args.default_malloc,
    )  # fmt: skip
    return 0 if result.get("best_rate_rps") is not None else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
