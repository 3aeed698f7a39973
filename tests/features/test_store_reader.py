import json

import numpy as np
import pytest
import torch

from tests.features.event_logs import T0, action_ids, make_events
from transact.data.schema import PAD_ITEM, SequenceSource
from transact.data.sequences import build_sequences
from transact.features.codec import decode_state
from transact.features.events import ValidationConfig, columns_from_arrow
from transact.features.processor import ProcessorConfig, SequenceProcessor
from transact.features.reader import SequenceReader, empty_sequences
from transact.features.store import (
    CommitConflictError,
    RedisSequenceStore,
    RocksDBSequenceStore,
    StoreUnavailableError,
    open_store,
)


@pytest.fixture(params=["rocksdb", "redis"])
def store(request, tmp_path):
    if request.param == "rocksdb":
        s = RocksDBSequenceStore(str(tmp_path / "seq.rocksdb"))
    else:
        s = RedisSequenceStore(request.getfixturevalue("fresh_redis"))
    yield s
    s.close()


def test_commit_writes_values_and_offsets_together(store):
    assert store.get_many([1, 2]) == [None, None]
    store.commit({1: b"a", 2: b"b"}, {"kafka/t/0": 10, "kafka/t/1": 3})
    store.commit({2: b"c"}, {"kafka/t/1": 7})
    assert store.get_many([2, 1, 9]) == [b"c", b"a", None]
    assert store.offsets() == {"kafka/t/0": 10, "kafka/t/1": 7}
    keys = [k for k, _ in store.dump()]
    assert keys == sorted(keys) and len(keys) == 4


def test_redis_commit_is_optimistic_when_another_writer_got_there_first(fresh_redis):
    a, b = RedisSequenceStore(fresh_redis), RedisSequenceStore(fresh_redis)
    a.commit({1: b"v0"}, {"p": 1})
    read = dict(zip([1], a.get_many([1]), strict=True))
    b.commit({1: b"v-from-b"}, {"p": 2}, expected={1: b"v0"})
    with pytest.raises(CommitConflictError):
        a.commit({1: b"v-from-a", 2: b"x"}, {"p": 9}, expected=read)
    assert a.get_many([1, 2]) == [b"v-from-b", None] and a.offsets() == {"p": 2}
    a.commit({1: b"v2"}, {"p": 3}, expected={1: b"v-from-b"})
    assert a.get_many([1]) == [b"v2"]


def test_redis_read_for_update_then_commit_detects_a_write_in_between(fresh_redis):
    a, b = RedisSequenceStore(fresh_redis), RedisSequenceStore(fresh_redis)
    a.commit({1: b"v0"}, {})
    read = dict(zip([1, 2], a.read_for_update([1, 2]), strict=True))
    assert read == {1: b"v0", 2: None}
    b.commit({2: b"from-b"}, {})  # lands between a's read and a's commit
    with pytest.raises(CommitConflictError):
        a.commit({1: b"from-a"}, {"p": 1}, expected=read)
    assert a.get_many([1, 2]) == [b"v0", b"from-b"] and a.offsets() == {}
    read = dict(zip([1, 2], a.read_for_update([1, 2]), strict=True))
    a.commit({1: b"from-a"}, {"p": 1}, expected=read)  # no writer in between: succeeds
    assert a.get_many([1]) == [b"from-a"] and a.offsets() == {"p": 1}


def test_redis_and_rocksdb_hold_the_same_bytes_for_the_same_stream(tmp_path, fresh_redis):
    table = make_events(3000, n_users=40, seed=3, jitter_ms=2000)
    stores = [RocksDBSequenceStore(str(tmp_path / "r")), RedisSequenceStore(fresh_redis)]
    proc = SequenceProcessor(ProcessorConfig())
    for s in stores:
        for a in range(0, 3000, 700):
            cols, _ = columns_from_arrow(
                table.slice(a, 700), ValidationConfig(), "replay", a, T0 * 2
            )
            s.commit(proc.process(cols, s.get_many).updates, {"replay": a + 700})
    dumps = [list(s.dump()) for s in stores]
    assert len(dumps[0]) == 41 and dumps[0] == dumps[1]
    for s in stores:
        s.close()


def _replay_with_requests(table, store, proc, requests):
    """Feed events in log order; answer each request when the stream reaches its time."""
    reader = SequenceReader(store, seq_len=proc.config.capacity)
    times = table.column("timestamp_ms").to_numpy()
    out = []
    pos = 0
    for users, t in requests:
        end = int(np.searchsorted(times, t, side="left"))
        if end > pos:
            cols, letters = columns_from_arrow(
                table.slice(pos, end - pos), ValidationConfig(), "replay", pos, 2**62
            )
            assert not letters
            res = proc.process(cols, store.get_many)
            assert not res.dead_letters
            store.commit(res.updates, {"replay": end})
            pos = end
        out.append(reader.fetch(users, np.full(len(users), t)))
    return out


def test_read_path_equals_offline_builder_train_serve_consistency(tmp_path):
    # time-ordered log (as the data stage writes it) with duplicate timestamps
    table = make_events(20_000, n_users=60, n_items=500, seed=7, span_ms=2_000_000)
    store = RocksDBSequenceStore(str(tmp_path / "seq"))
    proc = SequenceProcessor(ProcessorConfig(capacity=100))  # default actions: engagements
    included = sorted(proc.config.included_ids())
    rng = np.random.default_rng(0)
    req_times = np.sort(rng.integers(T0, T0 + 2_100_000, 12))
    requests = [(rng.integers(0, 70, 256), int(t)) for t in req_times]
    online = _replay_with_requests(table, store, proc, requests)
    args = (
        table.column("user_id").to_numpy(),
        table.column("item_id").to_numpy(),
        action_ids(table),
        table.column("timestamp_ms").to_numpy(),
    )
    n_real = 0
    for (users, t), got in zip(requests, online, strict=True):
        want = build_sequences(
            *args, users, np.full(len(users), t), seq_len=100, include_actions=included
        )
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        n_real += int((got.action_types > 0).sum())
    assert n_real > 40_000  # the comparison covered full sequences, not just padding
    store.close()


def test_fetch_contract_strictly_before_padding_and_one_buffer(tmp_path):
    store = RocksDBSequenceStore(str(tmp_path / "seq"))
    proc = SequenceProcessor(ProcessorConfig(capacity=5))
    table = make_events(40, n_users=2, seed=2)
    cols, _ = columns_from_arrow(table, ValidationConfig(), "replay", 0, 2**62)
    store.commit(proc.process(cols, store.get_many).updates, {"replay": 40})
    reader = SequenceReader(store, seq_len=8)
    assert isinstance(reader, SequenceSource)
    st0 = decode_state(store.get_many([0])[0])
    t_mid = int(st0.times_ms[2])
    seq = reader.fetch(np.array([0, 0, 99]), np.array([t_mid, 2**62, t_mid]))
    assert seq.action_types.shape == (3, 8)
    # strictly before t_mid: the two newer entries and the one AT t_mid are skipped
    np.testing.assert_array_equal(seq.action_times_ms[0, :2].numpy(), st0.times_ms[3:5])
    assert (seq.action_times_ms[0, :2] < t_mid).all() and seq.action_types[0, 2:].eq(0).all()
    assert seq.action_types[1, :5].gt(0).all() and seq.action_types[1, 5:].eq(0).all()
    assert seq.action_types[2].eq(0).all() and seq.action_item_ids[2].eq(PAD_ITEM).all()
    buf = SequenceReader.buffer_of(seq)
    assert buf.shape == (3, 3, 8) and buf.is_contiguous()
    assert buf[1].data_ptr() == seq.action_item_ids.data_ptr()
    with pytest.raises(ValueError, match="request_time_ms"):
        reader.fetch(np.array([1, 2]), np.array([1]))
    e = empty_sequences(4, 8)
    assert e.action_types.eq(0).all() and e.action_item_ids.eq(PAD_ITEM).all()
    store.close()


def test_store_unavailable_raises_typed_error(tmp_path):
    bad = tmp_path / "file"
    bad.write_text("not a database directory")
    with pytest.raises(StoreUnavailableError, match="cannot open"):
        open_store(str(bad / "db"))
    from transact.features.kafka import free_port

    dead = RedisSequenceStore(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=0.2)
    reader = SequenceReader(dead)
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        reader.fetch(np.array([1]), np.array([T0]))
    with pytest.raises(StoreUnavailableError):
        dead.commit({1: b"x"}, {})


def test_redis_going_down_mid_service_raises_typed_error(tmp_path):
    import shutil
    import subprocess

    from transact.features.kafka import free_port

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        import time

        store = RedisSequenceStore(f"redis://127.0.0.1:{port}/0", socket_timeout_s=0.3)
        for _ in range(100):
            try:
                store.commit({5: b"v"}, {})
                break
            except StoreUnavailableError:
                time.sleep(0.05)
        assert store.get_many([5]) == [b"v"]
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(StoreUnavailableError):
        SequenceReader(store).fetch(np.array([5]), np.array([T0]))


def test_vectorized_fetch_equals_per_user_reference(tmp_path):
    store = RocksDBSequenceStore(str(tmp_path / "seq"))
    proc = SequenceProcessor(ProcessorConfig(capacity=30))
    table = make_events(5000, n_users=80, seed=9, jitter_ms=100_000)
    cols, _ = columns_from_arrow(table, ValidationConfig(), "replay", 0, 2**62)
    store.commit(proc.process(cols, store.get_many).updates, {})
    rng = np.random.default_rng(4)
    for seq_len in (1, 7, 30, 45):
        reader = SequenceReader(store, seq_len=seq_len)
        users = rng.integers(0, 90, 300)  # some users never seen
        t_req = rng.integers(T0 - 10, T0 + 3_700_000, 300)
        got, want = reader.fetch(users, t_req), reader.fetch_reference(users, t_req)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert int((got.action_types > 0).sum()) > 0
    assert reader.fetch(np.zeros(0, np.int64), np.zeros(0, np.int64)).action_types.shape == (0, 45)
    store.close()


def test_read_only_store_follows_a_live_writer(tmp_path):
    path = str(tmp_path / "seq")
    writer = RocksDBSequenceStore(path)
    writer.commit({1: b"v1"}, {"replay": 1})
    reader = open_store(path, read_only=True)
    assert reader.get_many([1, 2]) == [b"v1", None]
    writer.commit({2: b"v2"}, {"replay": 2})
    import time

    time.sleep(0.02)  # > catch_up_interval_s
    assert reader.get_many([1, 2]) == [b"v1", b"v2"]
    reader.close()
    writer.close()
    with pytest.raises(StoreUnavailableError, match="no database directory"):
        open_store(str(tmp_path / "missing"), read_only=True)


def test_sharded_rocksdb_per_partition_ownership_routing_and_reads(tmp_path):
    from transact.features import events as ev
    from transact.features.runner import DeadLetterSink, commit_batch
    from transact.features.sources import RawBatch
    from transact.features.store import ShardedRocksDBStore, user_partition

    root, n = str(tmp_path / "shards"), 4
    table = make_events(3000, n_users=60, seed=12)
    rows = table.to_pylist()
    parts = user_partition(table.column("user_id").to_numpy(), n)
    a = open_store(f"shards://{root}:{n}")  # a writer owns nothing until assigned
    assert isinstance(a, ShardedRocksDBStore) and a.partitions == []
    a.set_partitions([0, 1])
    b = ShardedRocksDBStore(root, n, partitions=[2, 3])
    with pytest.raises(StoreUnavailableError, match="cannot open"):
        ShardedRocksDBStore(root, n, partitions=[1])  # RocksDB's lock: one owner per shard
    proc, vcfg = SequenceProcessor(ProcessorConfig()), ValidationConfig()

    def batch_of(idx, wrong=False):
        batch = RawBatch(next_offsets={})
        for i in idx:
            p = (int(parts[i]) + 1) % n if wrong else int(parts[i])
            key = f"kafka/t/{p}"
            batch.messages.append(json.dumps(rows[i]).encode())
            batch.sources.append(key)
            batch.offsets.append(i)
            batch.server_times_ms.append(2**62)
            batch.next_offsets[key] = i + 1
        return batch

    owned_a = [i for i in range(3000) if parts[i] in (0, 1)]
    owned_b = [i for i in range(3000) if parts[i] in (2, 3)]
    sink = DeadLetterSink(None)
    commit_batch(batch_of(owned_a[:1000]), proc, vcfg, a, sink)
    commit_batch(batch_of(owned_b), proc, vcfg, b, sink)
    # a rebalance moves partition 1 from a to b; b resumes it from the shard's offset
    a.set_partitions([0])
    b.set_partitions([1, 2, 3])
    assert b.offsets()["kafka/t/1"] == max(i for i in owned_a[:1000] if parts[i] == 1) + 1
    rest = owned_a[1000:]
    commit_batch(batch_of([i for i in rest if parts[i] == 0]), proc, vcfg, a, sink)
    commit_batch(batch_of([i for i in rest if parts[i] == 1]), proc, vcfg, b, sink)
    # events of a user on a partition that is not the user's: dead-lettered, not stored
    letters, _ = commit_batch(
        batch_of([i for i in owned_b if parts[i] == 2][:5], wrong=True), proc, vcfg, b, sink
    )
    assert [d.reason for d in letters] == [ev.WRONG_PARTITION] * 5
    with pytest.raises(ValueError, match="Kafka partition offsets only"):
        b.commit({}, {"replay": 1})

    reader_store = open_store(f"shards://{root}:{n}", read_only=True)
    assert sorted(k for k in reader_store.offsets()) == [f"kafka/t/{p}" for p in range(n)]
    users = np.arange(70)
    t_req = np.full(70, T0 + 10**8)
    got = SequenceReader(reader_store).fetch(users, t_req)
    want = build_sequences(
        table.column("user_id").to_numpy(),
        table.column("item_id").to_numpy(),
        action_ids(table),
        table.column("timestamp_ms").to_numpy(),
        users,
        t_req,
        include_actions=sorted(proc.config.included_ids()),
    )
    for x, y in zip(got, want, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert int((got.action_types > 0).sum()) > 1000
    for s in (reader_store, a, b):
        s.close()
