"""Sequence stores: RocksDB embedded (default) and Redis networked, behind one interface.

Keys: ``u/<user id, 8 bytes big-endian>`` holds the user's value (:mod:`codec`);
``o/<source key>`` holds the next offset to read from that source (8 bytes little-endian).
:meth:`SequenceStore.commit` writes a micro-batch's user values AND its offsets in one
atomic write (a RocksDB ``WriteBatch``; a Redis ``MULTI``/``EXEC``), which is what makes
a crash at any point followed by a restart from the stored offsets exactly-once in
effect.

Readers get :class:`StoreUnavailableError` for any failure to reach the store, so the
ranking service can catch one type and degrade (serve without realtime features).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

_OFFSET = struct.Struct("<q")
USER_PREFIX = b"u/"
OFFSET_PREFIX = b"o/"


class StoreUnavailableError(RuntimeError):
    """The sequence store cannot be reached or opened; callers may degrade gracefully."""


class CommitConflictError(RuntimeError):
    """Another writer changed a user this batch read (Redis with several processors):
    nothing was written; re-read and re-process the batch."""


def user_key(user_id: int) -> bytes:
    """Store key of a user (big-endian, so RocksDB iterates users in id order)."""
    if user_id < 0:
        raise ValueError(f"user_id must be >= 0, got {user_id}")
    return USER_PREFIX + user_id.to_bytes(8, "big")


@runtime_checkable
class SequenceStore(Protocol):
    """Where user states and source offsets live."""

    def get_many(self, user_ids: Sequence[int]) -> list[bytes | None]:
        """Values of ``user_ids`` in order, ``None`` for users never seen."""
        ...

    def commit(
        self,
        updates: dict[int, bytes],
        offsets: dict[str, int],
        expected: dict[int, bytes | None] | None = None,
    ) -> None:
        """Atomically write user values and the next offsets of sources.

        ``expected`` holds the values the batch was computed from; a store shared by
        several writers raises :class:`CommitConflictError` (and writes nothing) when one
        of them changed since.
        """
        ...

    def offsets(self) -> dict[str, int]:
        """Every stored source offset (``source key -> next offset``)."""
        ...

    def dump(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) in key order: the store's logical content, for comparisons."""
        ...

    def close(self) -> None: ...


class RocksDBSequenceStore:
    """The embedded store: one RocksDB (via ``rocksdict``) directory, raw bytes keys/values.

    Args:
        path: the database directory (created if missing).
        read_only: open for reading next to a live writer process: a RocksDB *secondary*
            instance (its own small directory, a temporary one unless ``secondary_path``
            is given) that catches up with the writer's log before a read when more than
            ``catch_up_interval_s`` passed since the last catch-up (~0.5 ms each), so
            serving sees commits within that interval. A plain read-only open would be
            frozen at open time.
        secondary_path: where the secondary instance keeps its files.
        catch_up_interval_s: see ``read_only``.
    """

    def __init__(
        self,
        path: str,
        read_only: bool = False,
        secondary_path: str | None = None,
        catch_up_interval_s: float = 0.01,
    ) -> None:
        from rocksdict import AccessType, Options, Rdict

        self.path = path
        self.read_only = read_only
        self.catch_up_interval_s = catch_up_interval_s
        self._last_catch_up = 0.0
        self._tmp_secondary: str | None = None
        opts = Options(raw_mode=True)
        try:
            if read_only:
                if not os.path.isdir(path):
                    raise FileNotFoundError(f"no database directory {path!r}")
                if secondary_path is None:
                    secondary_path = self._tmp_secondary = tempfile.mkdtemp(prefix="seq-secondary-")
                opts.set_max_open_files(-1)  # required by secondary instances
                access = AccessType.secondary(secondary_path)
            else:
                opts.create_if_missing(True)
                access = AccessType.read_write()
            self._db = Rdict(path, options=opts, access_type=access)
        except Exception as exc:  # rocksdict raises plain Exception subclasses
            raise StoreUnavailableError(
                f"cannot open RocksDB sequence store at {path!r}: {exc}"
            ) from exc

    def catch_up(self) -> None:
        """Secondary instance: apply the writer's newest commits now."""
        if self.read_only:
            self._db.try_catch_up_with_primary()
            self._last_catch_up = time.monotonic()

    def get_many(self, user_ids: Sequence[int]) -> list[bytes | None]:
        try:
            if (
                self.read_only
                and time.monotonic() - self._last_catch_up >= self.catch_up_interval_s
            ):
                self.catch_up()
            return cast(list[bytes | None], self._db.get([user_key(int(u)) for u in user_ids]))
        except Exception as exc:
            raise StoreUnavailableError(
                f"RocksDB sequence store {self.path!r} read failed: {exc}"
            ) from exc

    def commit(
        self,
        updates: dict[int, bytes],
        offsets: dict[str, int],
        expected: dict[int, bytes | None] | None = None,
    ) -> None:
        # ``expected`` is not checked: RocksDB's LOCK file makes this process the only
        # writer, so nothing can change between the batch's read and this write.
        from rocksdict import WriteBatch

        wb = WriteBatch(raw_mode=True)
        for u, v in updates.items():
            wb.put(user_key(u), v)
        for src, off in offsets.items():
            wb.put(OFFSET_PREFIX + src.encode(), _OFFSET.pack(off))
        self._db.write(wb)

    def offsets(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k, v in self._db.items(from_key=OFFSET_PREFIX):
            key, value = cast(bytes, k), cast(bytes, v)  # raw mode: always bytes
            if not key.startswith(OFFSET_PREFIX):
                break
            out[key[len(OFFSET_PREFIX) :].decode()] = _OFFSET.unpack(value)[0]
        return out

    def dump(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self._db.items()

    def close(self) -> None:
        self._db.close()
        if self._tmp_secondary is not None:
            shutil.rmtree(self._tmp_secondary, ignore_errors=True)


class RedisSequenceStore:
    """The networked store: Redis strings for users, a hash for offsets, MULTI/EXEC commits.

    Args:
        url: ``redis://host:port/db``.
        namespace: key prefix, so several stores can share one Redis.
        socket_timeout_s: per-call timeout (the read path's latency bound when Redis hangs).
    """

    def __init__(
        self, url: str, namespace: str = "transact", socket_timeout_s: float = 1.0
    ) -> None:
        import redis

        self.url = url
        self._prefix = namespace.encode() + b":"
        self._offsets_key = self._prefix + b"offsets"
        self._redis = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._watch: tuple[Any, frozenset[int]] | None = None

    def _key(self, user_id: int) -> bytes:
        return self._prefix + user_key(int(user_id))

    def get_many(self, user_ids: Sequence[int]) -> list[bytes | None]:
        if len(user_ids) == 0:
            return []
        try:
            return cast(list[bytes | None], self._redis.mget([self._key(u) for u in user_ids]))
        except self._errors as exc:
            raise StoreUnavailableError(
                f"Redis sequence store {self.url} unreachable: {exc}"
            ) from exc

    def read_for_update(self, user_ids: Sequence[int]) -> list[bytes | None]:
        """``WATCH`` the users, then read them: the :meth:`commit` that follows (with
        ``expected`` covering these users) needs no second read to detect other writers."""
        self._release_watch()
        keys = [self._key(u) for u in user_ids]
        pipe = self._redis.pipeline(transaction=True)
        try:
            values: list[bytes | None] = []
            if keys:
                pipe.watch(*keys)
                values = cast(list[bytes | None], pipe.mget(keys))
        except self._errors as exc:
            pipe.reset()
            raise StoreUnavailableError(
                f"Redis sequence store {self.url} unreachable: {exc}"
            ) from exc
        self._watch = (pipe, frozenset(int(u) for u in user_ids))
        return values

    def _release_watch(self) -> None:
        if self._watch is not None:
            self._watch[0].reset()
            self._watch = None

    def commit(
        self,
        updates: dict[int, bytes],
        offsets: dict[str, int],
        expected: dict[int, bytes | None] | None = None,
    ) -> None:
        """MULTI/EXEC of the values and offsets. With ``expected`` the commit is optimistic:
        if the users were read by :meth:`read_for_update` they are already WATCHed; else
        they are WATCHed now and compared with ``expected``. A write by another processor
        in between aborts EXEC -> :class:`CommitConflictError`, nothing written.
        """
        import redis

        watched = self._watch
        self._watch = None
        try:
            if watched is not None and expected and set(expected) <= watched[1]:
                pipe = watched[0]
            else:
                if watched is not None:
                    watched[0].reset()
                pipe = self._redis.pipeline(transaction=True)
                if expected:
                    keys = [self._key(u) for u in expected]
                    pipe.watch(*keys)
                    current = pipe.mget(keys)
                    if list(current) != list(expected.values()):
                        pipe.reset()
                        raise CommitConflictError("a user changed since the batch read it")
            with pipe:
                if pipe.watching:
                    pipe.multi()
                if updates:
                    pipe.mset({self._key(u): v for u, v in updates.items()})
                if offsets:
                    pipe.hset(
                        self._offsets_key, mapping={k: _OFFSET.pack(v) for k, v in offsets.items()}
                    )
                pipe.execute()
        except redis.exceptions.WatchError as exc:
            raise CommitConflictError("a user changed between WATCH and EXEC") from exc
        except self._errors as exc:
            raise StoreUnavailableError(
                f"Redis sequence store {self.url} unreachable: {exc}"
            ) from exc

    def offsets(self) -> dict[str, int]:
        try:
            raw = cast(dict[bytes, bytes], self._redis.hgetall(self._offsets_key))
        except self._errors as exc:
            raise StoreUnavailableError(
                f"Redis sequence store {self.url} unreachable: {exc}"
            ) from exc
        return {k.decode(): _OFFSET.unpack(v)[0] for k, v in raw.items()}

    def dump(self) -> Iterator[tuple[bytes, bytes]]:
        offsets = cast(dict[bytes, bytes], self._redis.hgetall(self._offsets_key))
        for k, v in sorted(offsets.items()):
            yield OFFSET_PREFIX + k, v  # "o/" sorts before "u/", as in RocksDB
        keys = sorted(
            cast(list[bytes], list(self._redis.scan_iter(match=self._prefix + b"u/*", count=1000)))
        )
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            values = cast(list[bytes | None], self._redis.mget(chunk))
            for k, value in zip(chunk, values, strict=True):
                if value is not None:
                    yield k[len(self._prefix) :], value

    def close(self) -> None:
        self._release_watch()
        self._redis.close()


def user_partition(user_ids: np.ndarray, n_partitions: int) -> np.ndarray:
    """``[B]`` Kafka partition of each user's events: messages keyed by ``str(user_id)``
    with librdkafka's default partitioner (``consistent_random``: CRC-32 of the key modulo
    the partition count; checked against a broker in the tests)."""
    return np.fromiter(
        (zlib.crc32(str(int(u)).encode()) % n_partitions for u in np.asarray(user_ids).tolist()),
        dtype=np.int64,
        count=len(user_ids),
    )


class ShardedRocksDBStore:
    """One RocksDB per Kafka partition (``root/p<k>``): processors in a consumer group each
    write the shards of the partitions they own, the reader opens them all.

    Each shard holds the users whose events go to its partition plus that partition's
    offset, committed in one write batch, so exactly-once holds per partition; a batch
    spanning partitions is one atomic write per shard. Only Kafka offsets
    (``kafka/<topic>/<k>``) can be stored. Events of a user that arrive on a partition this
    processor does not own, or on a partition that is not the user's, are dead-lettered by
    the runner (``wrong_partition``; Redis is the store for producers that do not key by
    user).

    Args:
        root: directory of the shards.
        n_partitions: the topic's partition count.
        partitions: shards to open now (default all); :meth:`set_partitions` follows a
            consumer-group assignment.
        read_only: open shards as catching-up secondaries (serving); missing shards read
            as empty.
    """

    def __init__(
        self,
        root: str,
        n_partitions: int,
        partitions: Sequence[int] | None = None,
        read_only: bool = False,
    ) -> None:
        if n_partitions < 1:
            raise ValueError(f"ShardedRocksDBStore.n_partitions must be >= 1, got {n_partitions}")
        self.root = root
        self.n_partitions = n_partitions
        self.read_only = read_only
        self._shards: dict[int, RocksDBSequenceStore] = {}
        if not read_only:
            os.makedirs(root, exist_ok=True)
        self.set_partitions(range(n_partitions) if partitions is None else partitions)

    def set_partitions(self, partitions: Sequence[int] | range) -> None:
        """Own exactly ``partitions``: close the other shards (releasing their locks for
        the next owner) and open the new ones."""
        want = {int(p) for p in partitions}
        bad = [p for p in want if not 0 <= p < self.n_partitions]
        if bad:
            raise ValueError(f"partitions {bad} outside 0..{self.n_partitions - 1}")
        for p in sorted(set(self._shards) - want):
            self._shards.pop(p).close()
        for p in sorted(want - set(self._shards)):
            path = os.path.join(self.root, f"p{p}")
            if self.read_only and not os.path.isdir(path):
                continue  # nothing written there yet
            self._shards[p] = RocksDBSequenceStore(path, read_only=self.read_only)

    @property
    def partitions(self) -> list[int]:
        return sorted(self._shards)

    def accepts(self, user_ids: np.ndarray, sources: Sequence[str]) -> np.ndarray:
        """``[B]`` bool: the event came through its user's partition, whose shard is open
        here. Only then do the user's state and the partition's offset share one shard,
        i.e. one atomic write; anything else is dead-lettered (``wrong_partition``)."""
        parts = user_partition(user_ids, self.n_partitions)
        src = np.fromiter(
            (int(s.rsplit("/", 1)[1]) if s.startswith("kafka/") else -1 for s in sources),
            dtype=np.int64,
            count=len(sources),
        )
        return (src == parts) & np.isin(parts, np.asarray(self.partitions, dtype=np.int64))

    def get_many(self, user_ids: Sequence[int]) -> list[bytes | None]:
        users = np.asarray(user_ids, dtype=np.int64)
        out: list[bytes | None] = [None] * len(users)
        parts = user_partition(users, self.n_partitions)
        for p in np.unique(parts).tolist():
            rows = np.flatnonzero(parts == p).tolist()
            shard = self._shards.get(p)
            if shard is None:
                if self.read_only and not os.path.isdir(os.path.join(self.root, f"p{p}")):
                    continue
                if self.read_only:
                    self.set_partitions([*self._shards, p])  # created since we opened
                    shard = self._shards[p]
                else:
                    raise StoreUnavailableError(f"shard p{p} of {self.root!r} is not owned here")
            for r, v in zip(rows, shard.get_many([int(users[r]) for r in rows]), strict=True):
                out[r] = v
        return out

    def commit(
        self,
        updates: dict[int, bytes],
        offsets: dict[str, int],
        expected: dict[int, bytes | None] | None = None,
    ) -> None:
        by_shard: dict[int, tuple[dict[int, bytes], dict[str, int]]] = {}
        users = list(updates)
        for u, p in zip(
            users,
            user_partition(np.asarray(users, np.int64), self.n_partitions).tolist(),
            strict=True,
        ):
            by_shard.setdefault(p, ({}, {}))[0][u] = updates[u]
        for key, off in offsets.items():
            if not key.startswith("kafka/"):
                raise ValueError(
                    f"ShardedRocksDBStore stores Kafka partition offsets only, got source {key!r}"
                )
            by_shard.setdefault(int(key.rsplit("/", 1)[1]), ({}, {}))[1][key] = off
        for p, (shard_updates, shard_offsets) in sorted(by_shard.items()):
            shard = self._shards.get(p)
            if shard is None:
                raise StoreUnavailableError(f"shard p{p} of {self.root!r} is not owned here")
            shard.commit(shard_updates, shard_offsets)

    def offsets(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.partitions:
            out.update(self._shards[p].offsets())
        return out

    def dump(self) -> Iterator[tuple[bytes, bytes]]:
        for p in self.partitions:
            for k, v in self._shards[p].dump():
                yield f"p{p}/".encode() + k, v

    def close(self) -> None:
        self.set_partitions([])


def open_store(spec: str, read_only: bool = False, timeout_s: float = 1.0) -> SequenceStore:
    """``redis://...`` opens Redis; ``shards://DIR:N`` one RocksDB per Kafka partition (N
    partitions); anything else (optionally ``rocksdb://``) is a RocksDB path.

    ``timeout_s`` bounds each Redis call: short for the read path (serving degrades
    instead of waiting), long for processors whose commits carry whole micro-batches.
    """
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisSequenceStore(spec, socket_timeout_s=timeout_s)
    if spec.startswith("shards://"):
        root, _, n = spec.removeprefix("shards://").rpartition(":")
        if not root or not n.isdigit():
            raise ValueError(f"sharded store spec must be shards://DIR:N_PARTITIONS, got {spec!r}")
        # a writer owns no shard until its consumer group assigns partitions
        return ShardedRocksDBStore(root, int(n), None if read_only else [], read_only=read_only)
    path = spec.removeprefix("rocksdb://")
    return RocksDBSequenceStore(path, read_only=read_only)
