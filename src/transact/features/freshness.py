"""Kafka freshness benchmark: produce -> Tansu broker -> processor -> store commit.

A producer process publishes events at a fixed rate; the processor (a thread of this
process, the same :func:`run_stream` as ``transact stream run``) consumes them in a
consumer group and commits to RocksDB. For every event it records three wall-clock
times (ms):

* ``created``: the Kafka message timestamp, set by the producer at ``produce()``;
* ``received``: when the consumer's ``consume()`` call handed it to the runner;
* ``committed``: when the store commit that holds it returned.

``committed - created`` is the freshness (its p50/p99/max are the headline). It splits
into ``received - created`` (producer queue and linger, broker, fetch, and waiting in
the consumer's queue behind the batch being processed) and ``committed - received``
(validate, process, commit: the single writer). The lag over time is derived from the
same times: at each instant ``t``, events created by ``t`` minus events committed by
``t`` (what Kafka calls consumer lag, measured end to end), with the age of the oldest
uncommitted event. CPU seconds of the processor, producer and broker processes and the
busy time of the whole machine (``/proc/stat``) say who used the cores, so a run on a
shared machine shows how much of it was someone else's.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from transact.features.sources import RawBatch


@dataclass(frozen=True)
class FreshnessKnobs:
    """The settings that decide freshness (the benchmark's sweep varies them).

    Args:
        linger_ms: producer ``linger.ms`` (how long librdkafka waits to fill a batch).
        consumer_batch: most messages one ``consume()`` returns (one store commit).
        poll_timeout_s: how long the consumer waits for a first message when none is
            waiting (:class:`~transact.features.kafka.KafkaSource`).
        fetch_wait_max_ms: consumer ``fetch.wait.max.ms`` (the broker's long-poll bound).
        gather_ms: how long a started batch may wait for more messages.
        partitions: partitions of the topic.
    """

    linger_ms: float = 5.0
    consumer_batch: int = 2000
    poll_timeout_s: float = 0.05
    fetch_wait_max_ms: int = 2
    gather_ms: float = 4.0
    partitions: int = 4


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": round(_pct(values, 50), 2),
        "p99_ms": round(_pct(values, 99), 2),
        "max_ms": round(float(values.max()), 2) if len(values) else float("nan"),
    }


def lag_over_time(
    created_ms: np.ndarray, committed_ms: np.ndarray, step_ms: int = 100
) -> dict[str, list[float]]:
    """Consumer lag sampled every ``step_ms`` from the per-event times (``[n]`` each).

    Returns ``t_s`` (seconds from the first event), ``lag_events`` (created by t, not yet
    committed) and ``oldest_uncommitted_ms`` (age at t of the oldest such event; 0 when
    none)."""
    if len(created_ms) == 0:
        return {"t_s": [], "lag_events": [], "oldest_uncommitted_ms": []}
    t0 = int(np.floor(created_ms.min()))
    # the last point is at or after the last commit (times may have fractions of a ms), so
    # the series always ends with every event committed
    steps = int(np.ceil((float(committed_ms.max()) - t0) / step_ms))
    grid = t0 + step_ms * np.arange(max(steps, 0) + 1)
    created_sorted = np.sort(created_ms)
    committed_sorted = np.sort(committed_ms)
    lag = np.searchsorted(created_sorted, grid, "right") - np.searchsorted(
        committed_sorted, grid, "right"
    )
    # oldest uncommitted at t: the smallest created among events with created <= t < committed
    order = np.argsort(created_ms, kind="stable")
    c_sorted, k_sorted = created_ms[order], committed_ms[order]
    oldest = np.zeros(len(grid))
    for j, t in enumerate(grid.tolist()):
        hi = np.searchsorted(c_sorted, t, "right")
        pending = np.flatnonzero(k_sorted[:hi] > t)
        oldest[j] = t - c_sorted[pending[0]] if len(pending) else 0.0
    return {
        "t_s": [round((g - t0) / 1000, 3) for g in grid.tolist()],
        "lag_events": lag.astype(int).tolist(),
        "oldest_uncommitted_ms": oldest.round(1).tolist(),
    }


def plot_lag(result: dict[str, Any], path: str) -> None:
    """Two panels over time: consumer lag (events) and the oldest uncommitted event's age."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["lag_over_time"]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    a.plot(series["t_s"], series["lag_events"], lw=1)
    a.set_ylabel("lag (events)")
    a.set_title(
        f"Kafka freshness at {result['rate_per_s']:.0f} events/s: p50 "
        f"{result['p50_ms']} ms, p99 {result['p99_ms']} ms"
    )
    b.plot(series["t_s"], series["oldest_uncommitted_ms"], lw=1, color="C1")
    b.axhline(result.get("goal_p99_ms", 100), color="k", ls="--", lw=0.8, label="goal p99")
    b.set_ylabel("oldest uncommitted (ms)")
    b.set_xlabel("seconds since the first event")
    b.legend(loc="upper right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, from ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from ``/proc/stat``."""
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0)
    return (sum(cpu[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def bench_freshness(
    workdir: str,
    events_path: str,
    rate: float,
    seconds: float,
    knobs: FreshnessKnobs | None = None,
    profile_path: str | None = None,
) -> dict[str, Any]:
    """Producer subprocess at ``rate`` -> Tansu -> processor (this process) -> RocksDB.

    Returns the freshness figures, their split by stage, the lag over time and the CPU
    use of each process (module docstring); ``{"skipped": why}`` without a broker.
    ``profile_path``: write a cProfile of the processor thread there (pstats format).
    """
    from transact.features.events import ValidationConfig
    from transact.features.kafka import (
        KafkaSource,
        KafkaUnavailableError,
        TansuBroker,
        create_topic,
    )
    from transact.features.processor import ProcessorConfig, SequenceProcessor
    from transact.features.runner import DeadLetterSink, run_stream
    from transact.features.store import RocksDBSequenceStore

    knobs = knobs or FreshnessKnobs()
    try:
        broker = TansuBroker().start()
    except KafkaUnavailableError as exc:
        return {"skipped": str(exc)}
    n = int(rate * seconds)
    created: list[int] = []
    received: list[float] = []
    committed: list[float] = []
    batches: list[tuple[float, float, int, int]] = []  # (received, committed, size, partitions)
    try:
        topic = "events"
        create_topic(broker.bootstrap, topic, knobs.partitions)
        assigned = threading.Event()
        src = KafkaSource(
            broker.bootstrap,
            topic,
            "bench",
            batch_size=knobs.consumer_batch,
            poll_timeout_s=knobs.poll_timeout_s,
            idle_exit_s=None,
            on_assignment=lambda ps: assigned.set() if ps else None,
            fetch_wait_max_ms=knobs.fetch_wait_max_ms,
            gather_s=knobs.gather_ms / 1000,
        )
        store = RocksDBSequenceStore(os.path.join(workdir, "kafka.rocksdb"))
        done = threading.Event()
        recv_at: dict[int, float] = {}

        def on_commit(batch: RawBatch, committed_ms: int) -> None:
            now = time.time() * 1000
            t_recv = recv_at.pop(id(batch), now)
            created.extend(batch.server_times_ms)
            received.extend([t_recv] * len(batch))
            committed.extend([now] * len(batch))
            batches.append((t_recv, now, len(batch), len(batch.next_offsets)))
            if len(created) >= n:
                done.set()

        class Stamped:
            """The Kafka source, noting when each batch left ``consume()``."""

            def batches(self, stored_offsets):  # type: ignore[no-untyped-def]
                for b in src.batches(stored_offsets):
                    recv_at[id(b)] = time.time() * 1000
                    yield b

            def on_committed(self, b: RawBatch) -> None:
                src.on_committed(b)

            def close(self) -> None:
                src.close()

        profiler = None

        def run() -> None:
            nonlocal profiler
            if profile_path:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            try:
                run_stream(
                    Stamped(),
                    store,
                    SequenceProcessor(ProcessorConfig()),
                    ValidationConfig(),
                    DeadLetterSink(None),
                    show_progress=False,
                    on_commit=on_commit,
                )
            finally:
                if profiler is not None:
                    profiler.disable()

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        if not assigned.wait(60):
            return {"skipped": "consumer group never assigned partitions"}
        cmd = [sys.executable, "-m", "transact.features.cli", "stream", "produce"]
        cmd += ["--events", events_path, "--bootstrap", broker.bootstrap, "--topic", topic]
        cmd += ["--rate", str(rate), "--limit", str(n), "--linger-ms", str(knobs.linger_ms)]
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        broker0 = _proc_cpu_s(broker.pid)
        busy0, wall0 = _machine_busy_s(), time.perf_counter()
        load0 = os.getloadavg()[0]
        prod = subprocess.run(
            cmd,
            capture_output=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=seconds * 5 + 60,
        )
        if prod.returncode != 0:
            return {"skipped": f"producer failed: {prod.stderr.decode()[-500:]}"}
        done.wait(60)
        wall = time.perf_counter() - wall0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        mine = {
            "processor": (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / wall,
            "producer": (kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime) / wall,
            "broker": (_proc_cpu_s(broker.pid) - broker0) / wall,
        }
        busy = (_machine_busy_s() - busy0) / wall
        src.stop()
        runner.join(10)
        cpu: dict[str, Any] = {f"{k}_cores": round(v, 3) for k, v in mine.items()}
        cpu["machine_busy_cores"] = round(busy, 3)
        cpu["others_cores"] = round(busy - sum(mine.values()), 3)
        cpu["machine_cores"] = os.cpu_count()
        cpu["load_average_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        if not runner.is_alive():
            src.close()
            store.close()
        if profiler is not None and profile_path:
            profiler.dump_stats(profile_path)
    finally:
        broker.stop()
    c = np.asarray(created, dtype=np.float64)
    r = np.asarray(received, dtype=np.float64)
    k = np.asarray(committed, dtype=np.float64)
    fresh = k - c
    b = np.asarray(batches, dtype=np.float64).reshape(-1, 4)
    return {
        "rate_per_s": rate,
        "events": len(fresh),
        **_summary(fresh),
        "goal_p99_ms": 100,
        "stages": {
            "to_consumer_ms": _summary(r - c),
            "in_processor_ms": _summary(k - r),
        },
        "batches": {
            "count": len(b),
            "mean_size": round(float(b[:, 2].mean()), 1) if len(b) else 0,
            "max_size": int(b[:, 2].max()) if len(b) else 0,
            "process_commit_ms": _summary(b[:, 1] - b[:, 0]),
            "mean_partitions": round(float(b[:, 3].mean()), 2) if len(b) else 0,
            # share of the wall time the single writer spent on batches
            "writer_busy": round(float((b[:, 1] - b[:, 0]).sum()) / (wall * 1000), 3),
        },
        "cpu": cpu,
        "knobs": asdict(knobs),
        "lag_over_time": lag_over_time(c, k),
    }
