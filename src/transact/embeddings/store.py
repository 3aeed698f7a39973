"""The dated user-embedding store: the writer, the day-before loader, the serving export.

Layout on disk (one table per generation date, one part file per user shard)::

    ROOT/date=YYYY-MM-DD/part-00000.parquet   user_id int64, embedding list<float32>[d],
                                              model_version string
    ROOT/date=YYYY-MM-DD/_SUCCESS             written last, when every part is there

The embedding dated ``D`` summarizes every action up to the end of day ``D`` (UTC) and is
served on day ``D + 1``: a request at time ``t`` reads the table of the latest complete date
strictly before ``t``'s day, and never the same or a later day (the leakage rule). Users
missing from that table get zeros. Tables older than ``max_staleness_days`` before the
request's day are not used (zeros), so a stopped pipeline shows up as missing features
instead of silently stale ones.

The same tables export into a RocksDB key-value store (rocksdict) for the ranking
service, keyed by ``date/user_id``, with the same lookup rule.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transact.data.io import date_to_day, day_to_date
from transact.data.schema import MS_PER_DAY

SUCCESS_MARKER = "_SUCCESS"


def user_embeddings_schema(d_user: int) -> pa.Schema:
    """Arrow schema of one dated user-embedding part file."""
    return pa.schema(
        [
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), d_user), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
        ],
        metadata={"table": "user_embeddings", "d_user": str(d_user)},
    )


def partition_dir(root: str | Path, date: str) -> Path:
    """``ROOT/date=YYYY-MM-DD``: the folder of one dated table."""
    return Path(root) / f"date={date}"


def write_part(
    root: str | Path,
    date: str,
    part: int,
    user_ids: np.ndarray,
    embeddings: np.ndarray,
    model_version: str,
) -> Path:
    """Write one part file atomically (temp file + rename), so a killed run leaves no half part.

    ``user_ids`` ``[U]`` int64, ``embeddings`` ``[U, d]`` float32 (finite).
    """
    user_ids = np.asarray(user_ids, dtype=np.int64)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != user_ids.shape[0]:
        raise ValueError(
            f"embeddings must be [U, d] with U = len(user_ids) = {len(user_ids)}, "
            f"got {embeddings.shape}"
        )
    bad = ~np.isfinite(embeddings).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"embedding of user_id {int(user_ids[row])} (row {row}) is not finite")
    d = embeddings.shape[1]
    out_dir = partition_dir(root, date)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "user_id": pa.array(user_ids, pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), d),
            "model_version": pa.array([model_version] * len(user_ids), pa.string()),
        },
        schema=user_embeddings_schema(d),
    )
    path = out_dir / f"part-{part:05d}.parquet"
    tmp = out_dir / f".tmp-part-{part:05d}-{os.getpid()}.parquet"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def part_exists(root: str | Path, date: str, part: int) -> bool:
    """Whether part file ``part`` of the table dated ``date`` is written (parts are atomic)."""
    return (partition_dir(root, date) / f"part-{part:05d}.parquet").exists()


def mark_complete(root: str | Path, date: str, info: dict | None = None) -> None:
    """Write the ``_SUCCESS`` marker (with optional JSON info) once every part is written."""
    out_dir = partition_dir(root, date)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUCCESS_MARKER).write_text(json.dumps(info or {}, sort_keys=True))


def complete_dates(root: str | Path) -> list[str]:
    """Sorted dates under ``root`` whose table is complete (has ``_SUCCESS``)."""
    root = Path(root)
    if not root.exists():
        return []
    dates = [
        p.name.split("=", 1)[1]
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith("date=") and (p / SUCCESS_MARKER).exists()
    ]
    return sorted(dates)


def read_date(root: str | Path, date: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a dated table -> (user_ids ``[U]`` sorted, embeddings ``[U, d]``, model versions).

    Raises if a user appears twice (two parts claiming the same user is a pipeline bug).
    """
    parts = sorted(partition_dir(root, date).glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no part files under {partition_dir(root, date)}")
    tables = [pq.read_table(p) for p in parts]
    table = pa.concat_tables(tables)
    user_ids = table.column("user_id").to_numpy()
    emb_col = table.column("embedding").combine_chunks()
    d = emb_col.type.list_size
    embeddings = emb_col.values.to_numpy(zero_copy_only=False).reshape(-1, d).astype(np.float32)
    versions = sorted(set(table.column("model_version").to_pylist()))
    order = np.argsort(user_ids, kind="stable")
    user_ids, embeddings = user_ids[order], embeddings[order]
    dup = np.flatnonzero(user_ids[1:] == user_ids[:-1])
    if dup.size:
        raise ValueError(f"user_id {int(user_ids[dup[0]])} appears twice in date={date}")
    return user_ids, embeddings, versions


def serving_dates(
    request_time_ms: np.ndarray, available_days: np.ndarray, max_staleness_days: int
) -> np.ndarray:
    """``[B]`` request times -> ``[B]`` day numbers of the table each request reads (-1: none).

    The latest available day strictly before the request's day, no older than
    ``max_staleness_days`` days before it. ``available_days`` sorted ascending.
    """
    request_day = np.floor_divide(np.asarray(request_time_ms, dtype=np.int64), MS_PER_DAY)
    if len(available_days) == 0:
        return np.full(request_day.shape, -1, dtype=np.int64)
    idx = np.searchsorted(available_days, request_day, side="left") - 1  # strictly earlier
    chosen = available_days[np.clip(idx, 0, None)]
    usable = (idx >= 0) & (request_day - chosen <= max_staleness_days)
    return np.where(usable, chosen, -1)


class DatedUserEmbeddings:
    """``UserEmbeddingSource`` over dated Parquet tables: the day-before rule, zeros if missing.

    Loads each date's table on first use and keeps at most ``cache_dates`` of them in
    memory. ``lookup`` is vectorized per date.

    Args:
        root: the directory holding ``date=YYYY-MM-DD/`` tables.
        d_user: embedding size (checked against the tables).
        max_staleness_days: oldest table a request may read, in days before its day (1 =
            only yesterday's).
        cache_dates: how many dates to keep loaded.

    Example::

        source = DatedUserEmbeddings("runs/world/user_embeddings", d_user=64)
        source.lookup(np.array([7, 9]), np.array([t1_ms, t2_ms]))  # [2, 64] float32
    """

    def __init__(
        self, root: str | Path, d_user: int = 64, max_staleness_days: int = 7, cache_dates: int = 32
    ) -> None:
        self.root = Path(root)
        self.d_user = d_user
        self.max_staleness_days = max_staleness_days
        self.cache_dates = cache_dates
        self._tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-scan the root for newly completed dates."""
        self.dates = complete_dates(self.root)
        self._days = np.array([date_to_day(d) for d in self.dates], dtype=np.int64)

    def table(self, date: str) -> tuple[np.ndarray, np.ndarray]:
        if date not in self._tables:
            user_ids, emb, _ = read_date(self.root, date)
            if emb.shape[1] != self.d_user:
                raise ValueError(
                    f"date={date} embeddings have d={emb.shape[1]}, expected d_user={self.d_user}"
                )
            if len(self._tables) >= self.cache_dates:
                self._tables.pop(next(iter(self._tables)))
            self._tables[date] = (user_ids, emb)
        return self._tables[date]

    def lookup(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> np.ndarray:
        """``[B]`` user ids and request times -> ``[B, d_user]`` float32 (zeros when missing)."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        request_time_ms = np.asarray(request_time_ms, dtype=np.int64)
        if user_ids.shape != request_time_ms.shape or user_ids.ndim != 1:
            raise ValueError(
                f"user_ids {user_ids.shape} and request_time_ms {request_time_ms.shape} must be "
                "equal-length 1-d arrays"
            )
        out = np.zeros((len(user_ids), self.d_user), dtype=np.float32)
        chosen = serving_dates(request_time_ms, self._days, self.max_staleness_days)
        for day in np.unique(chosen[chosen >= 0]):
            rows = np.flatnonzero(chosen == day)
            table_users, table_emb = self.table(day_to_date(int(day)))
            if len(table_users) == 0:  # a table of nobody (e.g. its readers had no history)
                continue
            pos = np.searchsorted(table_users, user_ids[rows])
            pos_c = np.minimum(pos, len(table_users) - 1)
            hit = (pos < len(table_users)) & (table_users[pos_c] == user_ids[rows])
            out[rows[hit]] = table_emb[pos_c[hit]]
        return out


def export_to_rocksdict(root: str | Path, dates: Iterable[str], db_path: str | Path) -> int:
    """Copy dated tables into a rocksdict store for serving; returns the number of rows written.

    Keys are ``b"YYYY-MM-DD/<user_id>"``, values the raw float32 bytes; ``b"__dates__"``
    holds the sorted JSON list of exported dates and ``b"__d_user__"`` the size.
    """
    from rocksdict import Rdict

    db = Rdict(str(db_path))
    try:
        existing = json.loads(_meta(db, b"__dates__", db_path)) if b"__dates__" in db else []
        n = 0
        d_user = None
        for date in dates:
            user_ids, emb, _ = read_date(root, date)
            d_user = emb.shape[1]
            for uid, vec in zip(user_ids.tolist(), emb, strict=True):
                db[f"{date}/{uid}".encode()] = vec.tobytes()
            n += len(user_ids)
            existing.append(date)
        db[b"__dates__"] = json.dumps(sorted(set(existing))).encode()
        if d_user is not None:
            db[b"__d_user__"] = str(d_user).encode()
    finally:
        db.close()
    return n


def _meta(db: Any, key: bytes, db_path: str | Path) -> bytes:
    value = db.get(key)
    if value is None:
        raise KeyError(f"{db_path}: no {key.decode()} key; not an export_to_rocksdict store")
    return bytes(value)


class RocksDictUserEmbeddings:
    """``UserEmbeddingSource`` over the rocksdict export, same day-before rule as Parquet.

    Example::

        export_to_rocksdict(root, ["2026-01-14"], "runs/serving/user_emb.rdb")
        source = RocksDictUserEmbeddings("runs/serving/user_emb.rdb")
    """

    def __init__(self, db_path: str | Path, max_staleness_days: int = 7) -> None:
        from rocksdict import AccessType, Rdict

        self._db = Rdict(str(db_path), access_type=AccessType.read_only())
        self.d_user = int(_meta(self._db, b"__d_user__", db_path))
        self.max_staleness_days = max_staleness_days
        self._days = np.array(
            [date_to_day(d) for d in json.loads(_meta(self._db, b"__dates__", db_path))],
            dtype=np.int64,
        )

    def lookup(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> np.ndarray:
        """``[B]`` user ids and request times -> ``[B, d_user]`` float32 (zeros when missing)."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        chosen = serving_dates(
            np.asarray(request_time_ms, np.int64), self._days, self.max_staleness_days
        )
        out = np.zeros((len(user_ids), self.d_user), dtype=np.float32)
        for row, (uid, day) in enumerate(zip(user_ids.tolist(), chosen.tolist(), strict=True)):
            if day < 0:
                continue
            value = self._db.get(f"{day_to_date(day)}/{uid}".encode())
            if value is not None:
                out[row] = np.frombuffer(value, dtype=np.float32)
        return out

    def close(self) -> None:
        self._db.close()
