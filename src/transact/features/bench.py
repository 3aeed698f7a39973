"""Benchmark of the realtime feature path (``transact stream bench``, ``benchmarks/bench_stream.py``).

Figures (each beside a plain reference measured in the same run, as a ratio):

* ``throughput_rocksdb``: events/s through validate + dedup + store update, embedded
  RocksDB, micro-batches from a Parquet replay; reference: the one-event-at-a-time path
  (:func:`apply_event_reference`, one get and one put per event).
* ``throughput_redis``: the same into Redis (a local ``redis-server``).
* ``freshness_kafka``: p50/p99/max of (store commit time - Kafka message create time)
  while a producer process publishes at a fixed rate (10k events/s) through the Tansu
  broker, split by stage, with the consumer lag over time (JSON and a PNG beside the
  JSON) and each process's CPU use (:mod:`transact.features.freshness`).
* ``read_256``: p50/p99 latency of one ``SequenceReader.fetch`` of 256 users (S = 100);
  reference: ``fetch_reference``, the per-user decode loop.
* ``embedding_join``: ids stored + join from the item table at read time, versus item
  embeddings stored with each action (value size and read latency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transact.data.schema import ActionVocabulary, events_schema
from transact.features.flags import add_bench_arguments
from transact.features.freshness import bench_freshness, plot_lag

T0 = 1_700_000_000_000


def _events(n: int, n_users: int, n_items: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    names = np.array(ActionVocabulary().names)
    return pa.table(
        {
            "event_id": [f"b{i}" for i in range(n)],
            "user_id": rng.integers(0, n_users, n),
            "item_id": rng.integers(0, n_items, n),
            "action_type": names[rng.integers(0, len(names), n)],
            "timestamp_ms": T0 + np.sort(rng.integers(0, 6 * 3_600_000, n)),
            "surface": np.full(n, "homefeed"),
        },
        schema=events_schema(),
    )


def _pct(values: Sequence[float], q: float) -> float:
    return (
        float(np.percentile(np.asarray(values, dtype=np.float64), q))
        if len(values)
        else float("nan")
    )


def _cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _drain(path: str, store, batch_size: int) -> dict:  # type: ignore[no-untyped-def]
    from transact.features.events import ValidationConfig
    from transact.features.processor import ProcessorConfig, SequenceProcessor
    from transact.features.runner import DeadLetterSink, run_stream
    from transact.features.sources import ParquetReplaySource

    cpu0 = _cpu_s()
    summary = run_stream(
        ParquetReplaySource(path, batch_size=batch_size),
        store,
        SequenceProcessor(ProcessorConfig()),
        ValidationConfig(),
        DeadLetterSink(None),
        show_progress=False,
    )
    out = summary.to_dict()
    # CPU time of this process: less sensitive to other load on the machine than wall time
    out["events_per_cpu_s"] = round(summary.events / max(_cpu_s() - cpu0, 1e-9), 1)
    return out


def bench_throughput(workdir: str, n: int, n_users: int, n_ref: int, batch_size: int) -> dict:
    """Embedded RocksDB throughput, and the one-event reference on the first ``n_ref``."""
    from transact.features.events import ValidationConfig, columns_from_arrow
    from transact.features.processor import ProcessorConfig, apply_event_reference
    from transact.features.store import RocksDBSequenceStore

    table = _events(n, n_users, 100_000)
    path = os.path.join(workdir, "events.parquet")
    pq.write_table(table, path)
    store = RocksDBSequenceStore(os.path.join(workdir, "fast.rocksdb"))
    s = _drain(path, store, batch_size)
    store.close()
    fast = s["events_per_s"]
    # reference: validate, then one get + decode + apply + encode + put per event
    cfg = ProcessorConfig()
    ref_store = RocksDBSequenceStore(os.path.join(workdir, "ref.rocksdb"))
    t0 = time.perf_counter()
    cols, _ = columns_from_arrow(table.slice(0, n_ref), ValidationConfig(), "replay", 0, 2**62)
    for i in range(len(cols)):
        u = int(cols.user_ids[i])
        value = ref_store.get_many([u])[0]
        new, _ = apply_event_reference(
            value,
            cols.event_ids[i],
            u,
            int(cols.item_ids[i]),
            int(cols.action_ids[i]),
            int(cols.timestamps_ms[i]),
            cfg,
        )
        if new is not value and new is not None:
            ref_store.commit({u: new}, {"replay": i + 1})
    ref = n_ref / (time.perf_counter() - t0)
    ref_store.close()
    return {
        "events": n,
        "users": n_users,
        "batch_size": batch_size,
        "events_per_s": fast,
        "events_per_cpu_s": s["events_per_cpu_s"],
        "reference_events_per_s": round(ref, 1),
        "speedup_vs_reference": round(fast / ref, 2),
        "goal_events_per_s": 100_000,
        "events_path": path,
    }


def _start_redis() -> tuple[subprocess.Popen, str] | None:
    from transact.features.kafka import free_port

    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    import redis

    r = redis.Redis(port=port)
    for _ in range(100):
        try:
            r.ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    return None


def bench_redis(events_path: str, batch_size: int) -> dict:
    """Throughput of the same replay into a local ``redis-server`` (skipped if missing)."""
    from transact.features.store import RedisSequenceStore

    started = _start_redis()
    if started is None:
        return {"skipped": "redis-server not installed or did not start"}
    proc, url = started
    try:
        store = RedisSequenceStore(url, socket_timeout_s=30.0)
        s = _drain(events_path, store, batch_size)
        store.close()
    finally:
        proc.terminate()
        proc.wait(5)
    return {
        "events": s["events"],
        "batch_size": batch_size,
        "events_per_s": s["events_per_s"],
        "processor_events_per_cpu_s": s["events_per_cpu_s"],
        "note": "CPU figure counts the processor only, not redis-server",
    }


def bench_read(workdir: str, n_users: int, repeats: int) -> dict:
    """Latency of 256-user ``fetch`` on the throughput run's store vs ``fetch_reference``."""
    from transact.features.reader import SequenceReader
    from transact.features.store import RocksDBSequenceStore

    store = RocksDBSequenceStore(os.path.join(workdir, "fast.rocksdb"), read_only=True)
    reader = SequenceReader(store, seq_len=100)
    rng = np.random.default_rng(1)
    fast, ref = [], []
    real = 0
    for _ in range(repeats):
        users = rng.integers(0, n_users, 256)
        t_req = np.full(256, T0 + 10 * 3_600_000)
        t0 = time.perf_counter()
        seq = reader.fetch(users, t_req)
        fast.append((time.perf_counter() - t0) * 1000)
        real += int((seq.action_types > 0).sum())
        t0 = time.perf_counter()
        reader.fetch_reference(users, t_req)
        ref.append((time.perf_counter() - t0) * 1000)
    store.close()
    return {
        "batch": 256,
        "seq_len": 100,
        "mean_real_actions_per_user": round(real / (256 * repeats), 1),
        "p50_ms": round(_pct(fast, 50), 3),
        "p99_ms": round(_pct(fast, 99), 3),
        "reference_per_user_loop_p50_ms": round(_pct(ref, 50), 3),
        "speedup_vs_reference": round(_pct(ref, 50) / _pct(fast, 50), 2),
        "goal_ms": 5,
    }


def bench_embedding_join(workdir: str, n_users: int, repeats: int, d_item: int = 32) -> dict:
    """Full 100-action users: ids stored + gather from the item table at read time, vs.
    the item embedding stored with each action (value size, read latency of 256 users)."""
    from rocksdict import Options, Rdict

    from transact.features.codec import encode_state
    from transact.features.reader import SequenceReader
    from transact.features.store import RocksDBSequenceStore

    n_items, s_len = 100_000, 100
    rng = np.random.default_rng(2)
    table = np.concatenate(
        [
            rng.standard_normal((n_items, d_item)).astype(np.float32),
            np.zeros((1, d_item), np.float32),
        ]
    )
    ids_store = RocksDBSequenceStore(os.path.join(workdir, "ids.rocksdb"))
    fat = Rdict(os.path.join(workdir, "fat.rocksdb"), options=Options(raw_mode=True))
    ids_bytes = fat_bytes = 0
    for lo in range(0, n_users, 1000):
        updates = {}
        for u in range(lo, min(n_users, lo + 1000)):
            times = T0 - np.arange(s_len, dtype=np.int64) * 60_000
            items = rng.integers(0, n_items, s_len)
            v = encode_state(times, items, rng.integers(1, 6, s_len), [], [], [], 0)
            updates[u] = v
            fat_v = v + table[items].tobytes()
            fat[int(u).to_bytes(8, "big")] = fat_v
            ids_bytes += len(v)
            fat_bytes += len(fat_v)
        ids_store.commit(updates, {})
    reader = SequenceReader(ids_store, seq_len=s_len)
    t_req = np.full(256, T0 + 1)
    join, stored, fetch_only, fetch_ref = [], [], [], []
    for _ in range(repeats):
        users = rng.integers(0, n_users, 256)
        t0 = time.perf_counter()
        seq = reader.fetch(users, t_req)
        t1 = time.perf_counter()
        emb = np.take(table, seq.action_item_ids.numpy(), axis=0)  # PAD_ITEM -> zero row
        join.append((time.perf_counter() - t0) * 1000)
        fetch_only.append((t1 - t0) * 1000)
        t0 = time.perf_counter()
        reader.fetch_reference(users, t_req)
        fetch_ref.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        vals = cast(list[bytes], fat.get([int(u).to_bytes(8, "big") for u in users.tolist()]))
        out = np.zeros((256, s_len, d_item), np.float32)
        for r, v in enumerate(vals):
            n = int.from_bytes(v[1:3], "little")
            out[r, :n] = np.frombuffer(v, np.float32, n * d_item, 9 + 13 * n).reshape(n, d_item)
        stored.append((time.perf_counter() - t0) * 1000)
        assert emb.shape == out.shape
    fat.close()
    ids_store.close()
    return {
        "choice": "store item ids, join embeddings at read time",
        "users": n_users,
        "actions_per_user": s_len,
        "ids_value_bytes_per_user": round(ids_bytes / n_users),
        "embeddings_value_bytes_per_user": round(fat_bytes / n_users),
        "full_sequences_fetch_p50_ms": round(_pct(fetch_only, 50), 3),
        "full_sequences_fetch_p99_ms": round(_pct(fetch_only, 99), 3),
        "full_sequences_fetch_reference_p50_ms": round(_pct(fetch_ref, 50), 3),
        "join_at_read_p50_ms": round(_pct(join, 50), 3),
        "stored_embeddings_p50_ms": round(_pct(stored, 50), 3),
        "note": "stored-embedding path decodes embeddings only (no ids/types/times, no "
        "strictly-before filter): a lower bound for that design",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transact.features.bench`` (and ``benchmarks/bench_stream.py``): the
    flags of ``transact stream bench`` (:func:`add_bench_arguments`), then :func:`run`."""
    from transact.arguments import ArgumentParser, run_command

    parser = ArgumentParser(
        prog="python -m transact.features.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(parser)
    parser.set_defaults(handler=run)
    return run_command(parser, argv)


def run(args: argparse.Namespace) -> int:
    """Run every figure and write them as JSON to ``args.json``; returns the exit status."""
    n = args.events or (60_000 if args.quick else 400_000)
    n_users = 5_000 if args.quick else 20_000
    out: dict = {
        "benchmark": "stream",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "note": "timings depend on machine load; compare ratios measured in the same run",
    }
    with tempfile.TemporaryDirectory(prefix="bench_stream_") as work:
        print("throughput (RocksDB) ...", file=sys.stderr, flush=True)
        out["throughput_rocksdb"] = bench_throughput(
            work, n, n_users, n_ref=min(n, 20_000), batch_size=20_000
        )
        events_path = out["throughput_rocksdb"].pop("events_path")
        print("read latency ...", file=sys.stderr, flush=True)
        out["read_256"] = bench_read(work, n_users, repeats=50 if args.quick else 200)
        out["embedding_join"] = bench_embedding_join(
            work, min(n_users, 5000), repeats=20 if args.quick else 100
        )
        if not args.skip_redis:
            print("throughput (Redis) ...", file=sys.stderr, flush=True)
            out["throughput_redis"] = bench_redis(events_path, batch_size=20_000)
        if not args.skip_kafka:
            print("freshness (Kafka) ...", file=sys.stderr, flush=True)
            out["freshness_kafka"] = bench_freshness(
                work, events_path, args.rate, 3.0 if args.quick else 10.0
            )
            if "lag_over_time" in out["freshness_kafka"]:
                plot = os.path.splitext(args.json)[0] + "_freshness.png"
                plot_lag(out["freshness_kafka"], plot)
                out["freshness_kafka"]["lag_plot"] = plot
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
