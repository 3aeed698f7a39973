"""The realtime operator as an Apache Flink job (PyFlink DataStream API).

A deployment that outgrows one ``transact stream run`` process per Kafka partition runs
this job instead. It is the same operator, not a re-implementation: parsing and
validation are :func:`transact.features.events.columns_from_json`, and the per-user rules
(filter, dedup, lateness, out-of-order insertion, latest ``capacity`` actions) are
:class:`transact.features.processor.SequenceProcessor` applied to one event at a time
against the user's value held in Flink keyed state. The value is the store's own
``codec.py`` bytes, so the job's output is byte for byte what the embedded processor
commits (``tests/features/test_flink_job.py`` checks it in Flink's local mini-cluster).

Dataflow::

    file:PATH   FileSource(text lines) -> key_by(0) NumberLines (offset = line number)
    kafka:TOPIC Kafka table (raw value + partition/offset/timestamp metadata)
        -> ValidateEvents (stateless; rejects -> dead-letter side output)
        -> key_by(user_id) -> UpdateUserSequence (ValueState: value bytes + version;
                              late events -> dead-letter side output)
        -> FileSink OUTPUT/upserts (versioned whole values, see flink_output.py)
    dead letters (both side outputs) -> FileSink OUTPUT/dead_letters

Exactly-once: checkpoints (``--checkpoint-interval-ms``, mode EXACTLY_ONCE) snapshot the
source position (file split offset or Kafka partition offsets), the line counter and
every user's value together, and the ``FileSink`` publishes part files only when the
checkpoint that covers them completes. A failure restores all three to the last
checkpoint, the same guarantee as the embedded store's one atomic write of values and
offsets. Production keeps state in RocksDB with incremental checkpoints
(``--state-backend rocksdb --checkpoint-dir s3://...``).

This module needs PyFlink, which cannot share the project venv (docs/realtime.md):
build ``.venv-flink`` with ``make flink-env`` and run
``.venv-flink/bin/python -m transact.features.flink_job --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
from pyflink.common import Configuration, Row, Types, WatermarkStrategy
from pyflink.common.serialization import Encoder
from pyflink.datastream import (
    CheckpointingMode,
    DataStream,
    OutputTag,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.file_system import (
    BucketAssigner,
    FileSink,
    FileSource,
    OutputFileConfig,
    RollingPolicy,
    StreamFormat,
)
from pyflink.datastream.functions import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from transact.features.events import EventColumns, ValidationConfig, columns_from_json
from transact.features.flags import add_operator_arguments, configs_from_args
from transact.features.flink_output import (
    DEAD_LETTERS_DIR,
    UPSERTS_DIR,
    read_dead_letters,
    read_upserts,
    upsert_record,
)
from transact.features.processor import ProcessorConfig, SequenceProcessor

# A raw message and where it came from (the inputs of columns_from_json).
RAW_MESSAGE = Types.ROW_NAMED(
    ["source", "offset", "server_time_ms", "message"],
    [Types.STRING(), Types.LONG(), Types.LONG(), Types.STRING()],
)
# A validated event (one row of EventColumns).
VALID_EVENT = Types.ROW_NAMED(
    ["event_id", "user_id", "item_id", "action_id", "timestamp_ms", "source", "offset"],
    [
        Types.STRING(),
        Types.LONG(),
        Types.LONG(),
        Types.LONG(),
        Types.LONG(),
        Types.STRING(),
        Types.LONG(),
    ],
)
DEAD_LETTERS = OutputTag("dead-letters", Types.STRING())


class NumberLines(KeyedProcessFunction):
    """File input: give each line its line number as offset (what ``JsonLinesSource``
    does), from a checkpointed counter, and the wall clock as server time.

    Runs keyed by a constant at parallelism 1 after a single-file source, so the counter
    is keyed state (checkpointed and restored with the source's position).
    """

    def __init__(self, source_key: str) -> None:
        self.source_key = source_key

    def open(self, runtime_context: RuntimeContext) -> None:
        self.next_offset = runtime_context.get_state(
            ValueStateDescriptor("next_offset", Types.LONG())
        )

    def process_element(self, line: str, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        offset = self.next_offset.value() or 0
        self.next_offset.update(offset + 1)
        yield Row(
            source=self.source_key,
            offset=offset,
            server_time_ms=int(time.time() * 1000),
            message=line,
        )


class ValidateEvents(ProcessFunction):
    """Parse and validate one message with the embedded processor's code; rejects go to
    the ``DEAD_LETTERS`` side output as ``DeadLetter.to_json()`` lines."""

    def __init__(self, validation: ValidationConfig) -> None:
        self.validation = validation

    def process_element(self, raw: Row, ctx: ProcessFunction.Context) -> Iterator[object]:
        cols, letters = columns_from_json(
            [raw.message], self.validation, [raw.source], [raw.offset], [raw.server_time_ms]
        )
        for letter in letters:
            yield DEAD_LETTERS, letter.to_json()
        if len(cols):
            yield Row(
                event_id=cols.event_ids[0],
                user_id=int(cols.user_ids[0]),
                item_id=int(cols.item_ids[0]),
                action_id=int(cols.action_ids[0]),
                timestamp_ms=int(cols.timestamps_ms[0]),
                source=cols.sources[0],
                offset=int(cols.offsets[0]),
            )


class UpdateUserSequence(KeyedProcessFunction):
    """Keyed by user: apply one event to the user's value with ``SequenceProcessor``.

    State per user: ``value`` (the ``codec.py`` bytes the store would hold) and
    ``version`` (how many times it changed). Emits an ``upsert_record`` line per change;
    late events go to the ``DEAD_LETTERS`` side output with the processor's own record.
    Outcomes are counted in Flink metrics ``events_<outcome>`` (the embedded processor's
    ``transact_stream_events_total{outcome}``).
    """

    def __init__(self, config: ProcessorConfig) -> None:
        self.config = config

    def open(self, runtime_context: RuntimeContext) -> None:
        self.processor = SequenceProcessor(self.config)
        self.value = runtime_context.get_state(
            ValueStateDescriptor("value", Types.PRIMITIVE_ARRAY(Types.BYTE()))
        )
        self.version = runtime_context.get_state(ValueStateDescriptor("version", Types.LONG()))
        self.metrics = runtime_context.get_metrics_group()
        self.counters: dict[str, object] = {}

    def process_element(self, event: Row, ctx: KeyedProcessFunction.Context) -> Iterator[object]:
        cols = EventColumns(
            [event.event_id],
            np.array([event.user_id], dtype=np.int64),
            np.array([event.item_id], dtype=np.int64),
            np.array([event.action_id], dtype=np.int64),
            np.array([event.timestamp_ms], dtype=np.int64),
            np.array([event.offset], dtype=np.int64),
            [event.source],
        )
        stored = self.value.value()
        result = self.processor.process(cols, lambda users: [stored])
        for outcome, n in result.outcomes.items():
            if n:
                self._count(outcome, n)
        for letter in result.dead_letters:
            yield DEAD_LETTERS, letter.to_json()
        new_value = result.updates.get(event.user_id)
        if new_value is not None:
            version = (self.version.value() or 0) + 1
            self.value.update(new_value)
            self.version.update(version)
            yield upsert_record(event.user_id, version, new_value, event.source, event.offset)

    def _count(self, outcome: str, n: int) -> None:
        counter = self.counters.get(outcome)
        if counter is None:
            counter = self.counters[outcome] = self.metrics.counter(f"events_{outcome}")
        counter.inc(n)  # type: ignore[attr-defined]


def file_messages(env: StreamExecutionEnvironment, path: str, source_key: str) -> DataStream:
    """JSON lines of one file as ``RAW_MESSAGE`` rows, offsets = line numbers (0-based)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no events file {path!r} (file: takes one JSON-lines file)")
    source = FileSource.for_record_stream_format(
        StreamFormat.text_line_format(), os.path.abspath(path)
    ).build()
    lines = env.from_source(source, WatermarkStrategy.no_watermarks(), "events-file")
    lines = lines.set_parallelism(1)  # one file, one reader: line order is the stream order
    return (
        lines.key_by(lambda _line: 0, key_type=Types.INT())
        .process(NumberLines(source_key), output_type=RAW_MESSAGE)
        .name("number-lines")
        .set_parallelism(1)
    )


def kafka_messages(
    env: StreamExecutionEnvironment, topic: str, bootstrap: str, group: str
) -> DataStream:
    """Kafka messages as ``RAW_MESSAGE`` rows: source ``kafka/<topic>/<partition>``, the
    Kafka offset, and the message timestamp as server time (as ``KafkaSource`` in
    kafka.py). Uses the Kafka SQL connector because its metadata columns carry the
    partition, offset and timestamp that the DataStream ``KafkaSource`` (value only)
    drops. Needs the ``flink-sql-connector-kafka`` jar (``--kafka-jar``); not part of the
    PyPI package, so the tests do not run this path.
    """
    from pyflink.table import StreamTableEnvironment

    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(
        f"""
        CREATE TABLE kafka_events (
            message STRING,
            `partition` INT METADATA VIRTUAL,
            `offset` BIGINT METADATA VIRTUAL,
            `timestamp` TIMESTAMP_LTZ(3) METADATA VIRTUAL
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{topic}',
            'properties.bootstrap.servers' = '{bootstrap}',
            'properties.group.id' = '{group}',
            'properties.auto.offset.reset' = 'earliest',
            'scan.startup.mode' = 'group-offsets',
            'format' = 'raw'
        )"""
    )
    rows = t_env.to_data_stream(t_env.from_path("kafka_events"))
    prefix = f"kafka/{topic}/"
    return rows.map(
        lambda r: Row(
            source=prefix + str(r["partition"]),
            offset=r["offset"],
            server_time_ms=int(r["timestamp"].timestamp() * 1000),
            message=r["message"],
        ),
        output_type=RAW_MESSAGE,
    ).name("kafka-metadata")


def build_job(
    env: StreamExecutionEnvironment,
    messages: DataStream,
    output_dir: str,
    validation: ValidationConfig,
    processor: ProcessorConfig,
    source_parallelism: int,
) -> None:
    """Add validate -> key_by(user) -> update -> sinks to ``env`` for ``messages``.

    ``ValidateEvents`` runs at ``source_parallelism`` (that of ``messages``) on a forward
    edge, so a user's events reach ``UpdateUserSequence`` in source order (one file, or
    one Kafka partition: producers key messages by user id).
    """
    validated = (
        messages.forward()  # fails at submission if the parallelism differs: order would break
        .process(ValidateEvents(validation), output_type=VALID_EVENT)
        .name("validate")
        .set_parallelism(source_parallelism)
    )
    upserts = (
        validated.key_by(lambda e: e.user_id, key_type=Types.LONG())
        .process(UpdateUserSequence(processor), output_type=Types.STRING())
        .name("update-user-sequence")
    )
    dead_letters = validated.get_side_output(DEAD_LETTERS).union(
        upserts.get_side_output(DEAD_LETTERS)
    )
    upserts.sink_to(_jsonl_sink(os.path.join(output_dir, UPSERTS_DIR), "upserts")).name(
        "upserts-sink"
    )
    dead_letters.sink_to(
        _jsonl_sink(os.path.join(output_dir, DEAD_LETTERS_DIR), "dead-letters")
    ).name("dead-letters-sink")


def _uri(path: str) -> str:
    """Local paths absolute; URIs (s3://, hdfs://) as given."""
    return path if "://" in path else os.path.abspath(path)


def _jsonl_sink(path: str, prefix: str) -> FileSink:
    """Exactly-once JSON-lines files: part files roll, and are published, at checkpoints."""
    return (
        FileSink.for_row_format(_uri(path), Encoder.simple_string_encoder())
        .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
        .with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
        .with_output_file_config(
            OutputFileConfig.builder().with_part_prefix(prefix).with_part_suffix(".jsonl").build()
        )
        .build()
    )


EPILOG = """\
sources:
  file:PATH     one JSON-lines file (offsets = line numbers, as `transact stream run
                --source stdin` numbers them); the job ends at the end of the file
  kafka:TOPIC   a Kafka topic (needs --kafka-jar: flink-sql-connector-kafka for this
                Flink version, not shipped on PyPI); runs until cancelled

output (see transact/features/flink_output.py):
  OUTPUT/upserts/*.jsonl       {"user_id", "version", "value": base64 codec.py bytes, ...}
  OUTPUT/dead_letters/*.jsonl  the DeadLetter records `transact stream run` writes
  --store SPEC                 after a bounded run, load the final values into a
                               RocksDB path or redis:// store (what the ranker reads)

environment: PyFlink cannot live in the project venv; build .venv-flink with
`make flink-env` (Java 17 + apache-flink + this package) and run this module with
.venv-flink/bin/python. On a cluster: `flink run --python flink_job.py` with the same
arguments, the package and its venv shipped with -pyarch/-pyexec (docs/realtime.md).

examples:
  .venv-flink/bin/python -m transact.features.flink_job --source file:events.jsonl \\
      --output runs/flink --store runs/flink/seq.rocksdb
  .venv-flink/bin/python -m transact.features.flink_job --source kafka:events \\
      --bootstrap kafka:9092 --group seq --kafka-jar flink-sql-connector-kafka.jar \\
      --output s3://bucket/seq --state-backend rocksdb --checkpoint-dir s3://bucket/ckpt
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m transact.features.flink_job",
        description=(
            "Run the realtime sequence operator (validate, dedup, lateness, latest-N "
            "sequence per user) as a PyFlink DataStream job, exactly once via checkpoints."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", required=True, help="file:PATH | kafka:TOPIC")
    p.add_argument("--output", required=True, help="output directory (upserts/, dead_letters/)")
    p.add_argument("--store", default=None, help="load final values into this store at the end")
    p.add_argument("--source-key", default="file", help="file: offset key in dead letters")
    p.add_argument("--parallelism", type=int, default=2, help="parallelism of the keyed operator")
    p.add_argument("--checkpoint-interval-ms", type=int, default=1000)
    p.add_argument("--checkpoint-dir", default=None, help="durable checkpoint URI (file://, s3://)")
    p.add_argument(
        "--restart-attempts", type=int, default=3, help="restarts from the last checkpoint"
    )
    p.add_argument("--state-backend", choices=("hashmap", "rocksdb"), default="hashmap")
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="kafka: bootstrap servers")
    p.add_argument("--group", default="transact-flink", help="kafka: consumer group id")
    p.add_argument("--kafka-jar", default=None, help="kafka: flink-sql-connector-kafka jar")
    add_operator_arguments(p)  # the processor's rules: the flags of `transact stream run`
    return p.parse_args(argv)


def make_environment(args: argparse.Namespace) -> StreamExecutionEnvironment:
    """A streaming environment with exactly-once checkpoints and the chosen state backend
    (run in-process this is Flink's local mini-cluster; under `flink run`, the cluster)."""
    conf = Configuration()
    # Python workers run this interpreter (the one with PyFlink and transact), not `python`
    # from PATH; a cluster run sets its own with -pyexec.
    conf.set_string("python.executable", sys.executable)
    conf.set_string("restart-strategy.type", "fixed-delay")
    conf.set_string("restart-strategy.fixed-delay.attempts", str(args.restart_attempts))
    conf.set_string("restart-strategy.fixed-delay.delay", "1 s")
    conf.set_string("state.backend.type", args.state_backend)
    if args.state_backend == "rocksdb":
        conf.set_string("execution.checkpointing.incremental", "true")
    if args.checkpoint_dir:
        conf.set_string("execution.checkpointing.dir", args.checkpoint_dir)
    if args.kafka_jar:
        conf.set_string("pipeline.jars", "file://" + os.path.abspath(args.kafka_jar))
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(args.parallelism)
    env.enable_checkpointing(args.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the job; for a bounded (file) source print a JSON summary when it ends."""
    import pyflink.version

    args = parse_args(argv)
    validation, processor = configs_from_args(args)
    env = make_environment(args)
    if args.source.startswith("file:"):
        messages = file_messages(env, args.source.removeprefix("file:"), args.source_key)
        source_parallelism = 1
    elif args.source.startswith("kafka:"):
        if not args.kafka_jar:
            print(
                "--source kafka:TOPIC needs --kafka-jar (flink-sql-connector-kafka)",
                file=sys.stderr,
            )
            return 2
        messages = kafka_messages(
            env, args.source.removeprefix("kafka:"), args.bootstrap, args.group
        )
        source_parallelism = args.parallelism
    else:
        print(f"--source must be file:PATH or kafka:TOPIC, got {args.source!r}", file=sys.stderr)
        return 2
    build_job(env, messages, args.output, validation, processor, source_parallelism)
    start = time.perf_counter()
    env.execute("transact-sequences")
    seconds = time.perf_counter() - start
    if "://" in args.output:  # a remote file system: the job's output stays there
        print(json.dumps({"output": args.output, "job_seconds": round(seconds, 3)}), flush=True)
        return 0
    values = read_upserts(args.output)
    summary = {
        "pyflink": pyflink.version.__version__,
        "users": len(values),
        "dead_letters": dict(
            sorted(Counter(d.reason for d in read_dead_letters(args.output)).items())
        ),
        "job_seconds": round(seconds, 3),
    }
    if args.store:
        from transact.features.store import open_store

        store = open_store(args.store, timeout_s=30.0)
        try:
            store.commit(values, {})
        finally:
            store.close()
        summary["store"] = args.store
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
