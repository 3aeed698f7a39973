"""``transact serve ...`` (the ranking service) and ``transact bench inference|service``."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from transact.arguments import (
    UserError,
    directory_or_new,
    existing_dir,
    existing_file,
    existing_path,
    float_range,
    int_range,
    non_negative_float,
    non_negative_int,
    output_dir,
    port,
    positive_int,
)
from transact.data.bench_import import __doc__ as IMPORT_DOC
from transact.data.bench_import import add_arguments as add_import_arguments
from transact.data.bench_import import run as run_import
from transact.serving.bench_entry import (
    INFERENCE_DESCRIPTION,
    SERVICE_DESCRIPTION,
    add_inference_arguments,
    add_service_arguments,
    run_inference,
    run_service,
)

SERVE_EPILOG = """\
The service loads the newest verified version in --models (see `transact serve publish`),
polls for new ones every --watch-interval seconds and swaps them in atomically; a version
with a bad checksum or a different FeatureSpec is refused with a REFUSED log line and the
previous one keeps serving. With no version yet (a missing or empty --models) it starts
anyway and answers 503 until one is published.

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
        "--chunk-size", type=non_negative_int, default=None,
        help="TransAct candidates per chunk (0 = all at once; default 24 on CPU, 0 on GPU)",
    )  # fmt: skip
    g.add_argument(
        "--threads", type=non_negative_int, default=0, help="torch threads (0 = default)"
    )


def _add_service_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=8080)
    p.add_argument("--max-candidates", type=positive_int, default=2000)
    p.add_argument("--max-body-bytes", type=int_range(1024), default=1_000_000)
    p.add_argument(
        "--item-cache-rows", type=non_negative_int, default=100_000, help="in-memory LRU rows"
    )
    p.add_argument(
        "--item-cache-dir", type=output_dir, default=None,
        help="on-disk RocksDB tier (default: off)",
    )  # fmt: skip
    p.add_argument(
        "--watch-interval", type=non_negative_float, default=30.0, help="seconds; 0 = no reload"
    )
    p.add_argument(
        "--admin-token-file", type=existing_file, default=None,
        help="file whose first line is the admin token (else $TRANSACT_ADMIN_TOKEN); "
        "without one, POST /v1/admin/reload does not exist (docs/serving.md, threat model)",
    )  # fmt: skip
    p.add_argument(
        "--concurrent-forwards", type=positive_int, default=1,
        help="forward passes run at once (e.g. 2 with --threads 1 on a 2-core box)",
    )  # fmt: skip
    p.add_argument(
        "--micro-batch-ms", type=float_range(0.0, 1000.0), default=0.0,
        help="merge concurrent requests into one forward, waiting up to this long (0 = off)",
    )  # fmt: skip
    p.add_argument(
        "--default-malloc", action="store_true",
        help="keep glibc's malloc defaults (default: keep freed activation memory for the "
        "next request instead of faulting it in again; see transact.memory)",
    )  # fmt: skip
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )


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
    run.add_argument(
        "--models", type=directory_or_new, required=True,
        help="directory of published versions (may be empty or not exist yet: 503 until one is)",
    )  # fmt: skip
    run.add_argument("--data", type=existing_dir, required=True, help="data dir with items.parquet")
    run.add_argument(
        "--sequence-store", type=sequence_store, default=None,
        help="RocksDB path or redis://... URL",
    )  # fmt: skip
    run.add_argument(
        "--user-embeddings", type=existing_dir, default=None, help="dated user-embedding dir"
    )
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
    demo.add_argument("--n-items", type=positive_int, default=10_000)
    demo.add_argument("--workdir", type=output_dir, default="runs/serve-demo")
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
    pub.add_argument("model", type=existing_path, help="model.pt or its run directory")
    pub.add_argument("--models", type=output_dir, required=True)
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
        description=INFERENCE_DESCRIPTION,
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_inference_arguments(inf)
    inf.set_defaults(handler=run_inference)
    # the data stage's importer benchmark (transact.data.bench_import) under the same command
    imp = bsub.add_parser(
        "import",
        help="importing a generated 10^7-row short-video log: rows/s and peak memory",
        description=IMPORT_DESCRIPTION,
        epilog="example:\n  transact bench import --json runs/bench/import.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_import_arguments(imp)
    imp.set_defaults(handler=run_import)
    svc = bsub.add_parser(
        "service",
        help="end-to-end load test of the service on 127.0.0.1 (async client)",
        description=SERVICE_DESCRIPTION,
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_service_arguments(svc)
    svc.set_defaults(handler=run_service)
    _register_bench_train(bsub)
    bench.set_defaults(handler=lambda _a: (bench.print_help(), 2)[1])


IMPORT_DESCRIPTION = (IMPORT_DOC or "").split("Example::")[0].strip()


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
    """The inference switches; a bad combination raises ValueError naming the field."""
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
    return InferenceOptions(
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        chunk_size=chunk,
    )


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
        raise UserError(
            f"admin token (--admin-token-file or $TRANSACT_ADMIN_TOKEN): {exc}"
        ) from None
    # the model, item tables and caches built so far are long-lived: move them out of the
    # collector's reach, or every full collection walks them all in the middle of a request
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    parts.registry.stop()
    return 0


def _start(args: argparse.Namespace) -> None:
    """Logging, and the process's malloc tuned for serving (unless --default-malloc)."""
    from transact.memory import keep_freed_memory, opted_out

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if not opted_out(args.default_malloc) and not keep_freed_memory():
        logging.getLogger(__name__).warning("malloc not tuned: not glibc")


def sequence_store(text: str) -> str:
    """``--sequence-store``: a redis:// URL, or an existing RocksDB directory (read only)."""
    if not text.startswith(("redis://", "rediss://", "unix://")):
        existing_dir(text.removeprefix("rocksdb://"))
    return text


def build_service(args: argparse.Namespace):  # -> ServiceParts
    """The engine of ``transact serve run`` from its flags, without HTTP.

    The sequence reader and the user embeddings are built for the served FeatureSpec
    (its ``seq_len`` and ``d_user``) by :func:`transact.serving.service.build_engine`, so
    a service started before any model version is published builds them then."""
    from transact.data.io import ItemTable, UserTable
    from transact.embeddings.store import DatedUserEmbeddings
    from transact.features.reader import SequenceReader
    from transact.features.store import open_store
    from transact.serving.features import ItemFeatures, UserTableAttributes
    from transact.serving.service import build_engine

    options, config = _options(args), _config(args)  # bad flags fail before any loading
    items = ItemTable.load(args.data)
    user_attributes = None
    if (args.data / "users.parquet").exists():
        user_attributes = UserTableAttributes(UserTable.load(args.data))
    store = open_store(args.sequence_store, read_only=True) if args.sequence_store else None
    if not args.models.is_dir():
        logging.getLogger(__name__).warning(
            "--models %s does not exist yet: answering 503 until a version is published there",
            args.models,
        )
    return build_engine(
        args.models,
        lambda spec: ItemFeatures.from_item_table(items, spec),
        sequences=None
        if store is None
        else lambda spec: SequenceReader(store, seq_len=spec.seq_len),
        user_embeddings=None
        if args.user_embeddings is None
        else lambda spec: DatedUserEmbeddings(args.user_embeddings, d_user=spec.d_user),
        user_attributes=user_attributes,
        options=options,
        config=config,
        item_cache_rows=args.item_cache_rows,
        item_cache_dir=args.item_cache_dir,
    )


def _run(args: argparse.Namespace) -> int:
    _start(args)
    return _serve(build_service(args), args)


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
    options, config = _options(args), _config(args)  # bad flags fail before any work
    _start(args)
    return _serve(build_demo(args.workdir, args.preset, args.n_items, options, config), args)


def _publish(args: argparse.Namespace) -> int:
    from transact.serving.registry import publish_model

    dest = publish_model(args.model, args.models, args.version)
    print(f"published {dest}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
