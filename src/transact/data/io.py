"""Reading and writing a dataset directory ("world dir") in the schemas of ``schema.py``.

Layout (one directory per dataset, documented in ``docs/data.md``)::

    DIR/manifest.json                         what the dataset is (see WorldManifest)
    DIR/items.parquet                         items_schema(d_item) (+ extra columns)
    DIR/users.parquet                         users_schema() (+ extra columns)
    DIR/events/day=YYYY-MM-DD/part-*.parquet  events_schema(), time-ordered
    DIR/impressions/day=YYYY-MM-DD/part-*.parquet  impressions_schema(heads)

Writers stream: :class:`DayPartitionWriter` appends record batches to per-day Parquet
files; readers stream record batches day by day and filter by time range, so neither side
needs a whole table in memory. Every reader validates what it reads and raises
:class:`DataError` naming the file, the column and the first offending row. UTC calendar
days (:func:`date_to_day`, :func:`day_to_date`, :func:`day_end_ms`, :func:`day_string`)
are the partition keys here and the dates of every other stage's dated tables.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from transact.data.schema import (
    MS_PER_DAY,
    PAD_ITEM,
    SCHEMA_VERSION,
    ActionVocabulary,
    FeatureSpec,
    padded_embedding_table,
)

MANIFEST_NAME = "manifest.json"
MIN_PLAUSIBLE_MS = 100_000_000_000  # 1973-03-03 in ms; smaller values look like seconds


class DataError(ValueError):
    """Bad input data; the message names the file, the column and the first bad row."""


def where(file: Path | str, column: str, row: int | None = None) -> str:
    """``"file, column 'c', row r"`` for error messages."""
    loc = f"{file}, column {column!r}"
    return loc if row is None else f"{loc}, row {row}"


def check_milliseconds(times: np.ndarray, file: Path | str, column: str) -> None:
    """Raise if any timestamp looks like seconds (or is negative) rather than milliseconds."""
    bad = np.flatnonzero(np.asarray(times) < MIN_PLAUSIBLE_MS)
    if bad.size:
        value = int(np.asarray(times)[bad[0]])
        raise DataError(
            f"{where(file, column, int(bad[0]))}: timestamp {value} is not in milliseconds "
            f"(looks like seconds; multiply by 1000) - {bad.size} such rows"
        )


def check_columns(table: pa.Table | pa.Schema, schema: pa.Schema, file: Path | str) -> None:
    """Raise if a column of ``schema`` is missing from ``table`` or has another type."""
    got = table if isinstance(table, pa.Schema) else table.schema
    for f in schema:
        idx = got.get_field_index(f.name)
        if idx < 0:
            raise DataError(f"{where(file, f.name)}: missing column (have {got.names})")
        have = got.field(idx).type
        if isinstance(have, pa.FixedSizeListType) and isinstance(f.type, pa.FixedSizeListType):
            same = have.list_size == f.type.list_size and have.value_type.equals(f.type.value_type)
        else:
            same = have.equals(f.type)
        if not same:
            raise DataError(f"{where(file, f.name)}: type {got.field(idx).type}, expected {f.type}")


# --------------------------------------------------------------------------------------
# Calendar days (UTC): partition keys, dated tables, training cutoffs
# --------------------------------------------------------------------------------------


def date_to_day(date: str | dt.date) -> int:
    """``YYYY-MM-DD`` -> days since the Unix epoch (UTC)."""
    if isinstance(date, str):
        try:
            date = dt.date.fromisoformat(date)
        except ValueError:
            raise ValueError(f"date {date!r} is not YYYY-MM-DD") from None
    return (date - dt.date(1970, 1, 1)).days


def day_to_date(day: int) -> str:
    """Days since the Unix epoch -> ``YYYY-MM-DD``."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).isoformat()


def day_end_ms(date: str) -> int:
    """The first millisecond after day ``date`` (UTC): everything of that day is before it."""
    return (date_to_day(date) + 1) * MS_PER_DAY


def day_string(time_ms: int) -> str:
    """The UTC day ``YYYY-MM-DD`` of a millisecond timestamp (the partition key)."""
    return day_to_date(int(time_ms) // MS_PER_DAY)


# --------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldManifest:
    """What a world dir holds: ``manifest.json`` as a typed object.

    Args:
        dataset: a name ("sim-demo", "movielens-100k", ...).
        seed / preset: how it was generated (preset "" for adapters).
        feature_spec: the ranker's inputs (heads, action vocabulary, d_item, features).
        start_ms / end_ms: time range of the logs, [start, end).
        train_start_ms / train_end_ms / eval_start_ms / eval_end_ms: the split (paper
            4.1.1: weeks 1-2 train, week 3 evaluation); events before ``train_start_ms``
            are history (warm-up) that only feeds sequences.
        n_users / n_items: table sizes.
        vocabularies: string values of categorical columns, in local-index order (local
            index = position + 1; 0 = missing), e.g. ``{"country": ["US", ...]}``.
        extra: anything else (generator config, adapter mapping, counts of skipped rows).
    """

    dataset: str
    seed: int
    preset: str
    feature_spec: FeatureSpec
    start_ms: int
    end_ms: int
    train_start_ms: int
    train_end_ms: int
    eval_start_ms: int
    eval_end_ms: int
    n_users: int
    n_items: int
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def heads(self) -> tuple[str, ...]:
        return self.feature_spec.heads

    @property
    def actions(self) -> ActionVocabulary:
        return self.feature_spec.actions

    @property
    def d_item(self) -> int:
        return self.feature_spec.d_item

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "dataset": self.dataset,
            "seed": self.seed,
            "preset": self.preset,
            "heads": list(self.heads),
            "actions": list(self.actions.names),
            "positive_actions": list(self.actions.positive),
            "d_item": self.d_item,
            "time_range_ms": [self.start_ms, self.end_ms],
            "train_range_ms": [self.train_start_ms, self.train_end_ms],
            "eval_range_ms": [self.eval_start_ms, self.eval_end_ms],
            "time_range_utc": [day_string(self.start_ms), day_string(self.end_ms - 1)],
            "n_users": self.n_users,
            "n_items": self.n_items,
            "feature_spec": self.feature_spec.to_dict(),
            "vocabularies": self.vocabularies,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: Path | str = MANIFEST_NAME) -> WorldManifest:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DataError(f"{source}: schema_version {version}, this code reads {SCHEMA_VERSION}")
        try:
            return cls(
                dataset=str(d["dataset"]),
                seed=int(d["seed"]),
                preset=str(d["preset"]),
                feature_spec=FeatureSpec.from_dict(d["feature_spec"]),
                start_ms=int(d["time_range_ms"][0]),
                end_ms=int(d["time_range_ms"][1]),
                train_start_ms=int(d["train_range_ms"][0]),
                train_end_ms=int(d["train_range_ms"][1]),
                eval_start_ms=int(d["eval_range_ms"][0]),
                eval_end_ms=int(d["eval_range_ms"][1]),
                n_users=int(d["n_users"]),
                n_items=int(d["n_items"]),
                vocabularies={k: list(v) for k, v in d.get("vocabularies", {}).items()},
                extra=dict(d.get("extra", {})),
            )
        except KeyError as exc:
            raise DataError(f"{source}: missing key {exc.args[0]!r}") from None


def save_manifest(data_dir: Path | str, manifest: WorldManifest) -> Path:
    path = Path(data_dir) / MANIFEST_NAME
    path.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n")
    return path


def load_manifest(data_dir: Path | str) -> WorldManifest:
    """Read and validate ``DIR/manifest.json``."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.exists():
        raise DataError(f"{path}: no manifest; is {data_dir} a world dir (transact data generate)?")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    return WorldManifest.from_dict(raw, source=path)


# --------------------------------------------------------------------------------------
# Day-partitioned Parquet
# --------------------------------------------------------------------------------------


class DayPartitionWriter:
    """Streams record batches of one table into ``DIR/<table>/day=YYYY-MM-DD/part-N.parquet``.

    Batches may span several days; rows are routed by ``time_column``. A part file holds
    at most ``rows_per_file`` rows; the next rows of that day go to the next part. Call :meth:`close_days_before` as the
    writer's clock advances to keep few files open, and :meth:`close` at the end.
    ``use_dictionary``: Parquet dictionary encoding, for all columns or the named ones
    (unique strings such as event ids encode faster without). ``write_statistics``: column
    min/max statistics, for all columns or the named ones (those of strings cost a
    string comparison per value).
    """

    def __init__(
        self,
        root: Path | str,
        table: str,
        schema: pa.Schema,
        time_column: str,
        rows_per_file: int = 2_000_000,
        use_dictionary: bool | list[str] = True,
        write_statistics: bool | list[str] = True,
    ) -> None:
        self.dir = Path(root) / table
        self.use_dictionary = use_dictionary
        self.write_statistics = write_statistics
        self.dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.time_column = time_column
        self.rows_per_file = rows_per_file
        self._open: dict[str, tuple[pq.ParquetWriter, int]] = {}
        self._parts: dict[str, int] = {}
        self.rows_written = 0

    def write(self, batch: pa.Table | pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        table = table.select(self.schema.names).cast(self.schema)
        days = np.asarray(table.column(self.time_column)) // MS_PER_DAY
        if days.min() == days.max():  # one day (an importer's day partition): no sort
            self._write_day(day_string(int(days[0]) * MS_PER_DAY), table)
            return
        for day in np.unique(days):
            rows = np.flatnonzero(days == day)
            part = table if rows.size == table.num_rows else table.take(pa.array(rows))
            self._write_day(day_string(int(day) * MS_PER_DAY), part)

    def _write_day(self, day: str, table: pa.Table) -> None:
        offset = 0
        while offset < table.num_rows:
            writer, n = self._open.get(day, (None, 0))
            if writer is None:
                part = self._parts.get(day, 0)
                self._parts[day] = part + 1
                path = self.dir / f"day={day}" / f"part-{part:05d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(
                    path, self.schema, compression="zstd", use_dictionary=self.use_dictionary,
                    write_statistics=self.write_statistics,
                )  # fmt: skip
            take = min(self.rows_per_file - n, table.num_rows - offset)
            writer.write_table(table.slice(offset, take), row_group_size=256_000)
            offset += take
            n += take
            self.rows_written += take
            if n >= self.rows_per_file:
                writer.close()
                self._open.pop(day, None)
            else:
                self._open[day] = (writer, n)

    def close_days_before(self, time_ms: int) -> None:
        cutoff = day_string(time_ms)
        for day in [d for d in self._open if d < cutoff]:
            self._open.pop(day)[0].close()

    def close(self) -> None:
        for writer, _ in self._open.values():
            writer.close()
        self._open.clear()


def partition_files(data_dir: Path | str, table: str) -> list[tuple[str, Path]]:
    """``[(day, file)]`` of a day-partitioned table, in day then part order."""
    root = Path(data_dir) / table
    if not root.is_dir():
        raise DataError(f"{root}: missing table directory {table!r}")
    out = []
    for day_dir in sorted(root.glob("day=*")):
        for f in sorted(day_dir.glob("part-*.parquet")):
            out.append((day_dir.name.removeprefix("day="), f))
    return out


def partition_days(data_dir: Path | str, table: str) -> list[str]:
    """Sorted ``YYYY-MM-DD`` days that hold part files of a day-partitioned table."""
    return sorted({day for day, _ in partition_files(data_dir, table)})


def _read_partitioned(
    data_dir: Path | str,
    table: str,
    schema: pa.Schema,
    time_column: str,
    start_ms: int | None,
    end_ms: int | None,
    columns: Sequence[str] | None,
    batch_size: int,
) -> Iterator[pa.RecordBatch]:
    first_day = day_string(start_ms) if start_ms is not None else ""
    last_day = day_string(end_ms - 1) if end_ms is not None else "9999"
    cols = list(columns) if columns is not None else schema.names
    if time_column not in cols:
        cols = [*cols, time_column]
    for day, path in partition_files(data_dir, table):
        if not first_day <= day <= last_day:
            continue
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        check_columns(
            pf.schema_arrow, pa.schema([schema.field(c) for c in cols if c in schema.names]), path
        )
        for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
            if start_ms is not None or end_ms is not None:
                t = batch.column(time_column)
                mask = None
                if start_ms is not None:
                    mask = pc.greater_equal(t, start_ms)
                if end_ms is not None:
                    m2 = pc.less(t, end_ms)
                    mask = m2 if mask is None else pc.and_(mask, m2)
                batch = batch.filter(mask)
            if batch.num_rows:
                yield batch


def read_events(
    data_dir: Path | str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    columns: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
    batch_size: int = 1_000_000,
) -> Iterator[pa.RecordBatch]:
    """Stream event batches with ``start_ms <= timestamp_ms < end_ms``, in log order.

    Args:
        actions: keep only these action names (e.g. engagements for sequences).
        columns: columns to read (``timestamp_ms`` is always included).
    """
    from transact.data.schema import events_schema

    cols = list(columns) if columns is not None else None
    if actions is not None and cols is not None and "action_type" not in cols:
        cols.append("action_type")
    wanted = pa.array(list(actions), pa.string()) if actions is not None else None
    for batch in _read_partitioned(
        data_dir, "events", events_schema(), "timestamp_ms", start_ms, end_ms, cols, batch_size
    ):
        if wanted is not None:
            batch = batch.filter(pc.is_in(batch.column("action_type"), value_set=wanted))
        if batch.num_rows:
            yield batch


def read_impressions(
    data_dir: Path | str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    heads: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    batch_size: int = 1_000_000,
) -> Iterator[pa.RecordBatch]:
    """Stream impression batches with ``start_ms <= request_time_ms < end_ms``."""
    from transact.data.schema import impressions_schema

    if heads is None:
        heads = load_manifest(data_dir).heads
    yield from _read_partitioned(
        data_dir,
        "impressions",
        impressions_schema(tuple(heads)),
        "request_time_ms",
        start_ms,
        end_ms,
        columns,
        batch_size,
    )


@dataclass
class EventArrays:
    """The event log as numpy columns (action names mapped to ``ActionVocabulary`` ids)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    action_types: np.ndarray
    times_ms: np.ndarray

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])


def load_event_arrays(
    data_dir: Path | str,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    actions: Sequence[str] | None = None,
    vocab: ActionVocabulary | None = None,
    n_items: int | None = None,
    user_shard: tuple[int, int] | None = None,
) -> EventArrays:
    """Read events into numpy columns, validating action names, item indices and times.

    Args:
        start_ms / end_ms: keep events with ``start_ms <= timestamp_ms < end_ms``.
        actions: keep only these action names (default all); each must be in ``vocab``.
        vocab: the action vocabulary (default: the manifest's).
        n_items: item table size (default: the manifest's).
        user_shard: ``(index, count)``: keep users with ``user_id % count == index`` only,
            so a worker holds one slice of the users in memory.

    Every event in the time range is validated, kept or not: raises :class:`DataError`
    naming the first row of an unknown action name, an item index outside
    ``[0, n_items)`` or a timestamp that looks like seconds.
    """
    manifest = load_manifest(data_dir)
    vocab = vocab or manifest.actions
    n_items = manifest.n_items if n_items is None else n_items
    lookup = pa.array(list(vocab.names), pa.string())
    keep_ids = None if actions is None else np.array([vocab.id(a) for a in actions], np.int64)
    parts: dict[str, list[np.ndarray]] = {"u": [], "i": [], "a": [], "t": []}
    cols = ["user_id", "item_id", "action_type", "timestamp_ms"]
    for batch in read_events(data_dir, start_ms, end_ms, columns=cols):
        idx = np.asarray(pc.index_in(batch.column("action_type"), value_set=lookup).fill_null(-1))
        if (idx < 0).any():
            row = int(np.flatnonzero(idx < 0)[0])
            raise DataError(
                f"{where(Path(data_dir) / 'events', 'action_type')}: unknown action "
                f"{batch.column('action_type')[row].as_py()!r} (batch row {row}); "
                f"known: {list(vocab.names)}"
            )
        items = np.asarray(batch.column("item_id"))
        bad = np.flatnonzero((items < 0) | (items >= n_items))
        if bad.size:
            raise DataError(
                f"{where(Path(data_dir) / 'events', 'item_id')}: item {int(items[bad[0]])} "
                f"(batch row {int(bad[0])}) is not in the item table (0..{n_items - 1})"
            )
        times = np.asarray(batch.column("timestamp_ms"))
        check_milliseconds(times, Path(data_dir) / "events", "timestamp_ms")
        users = np.asarray(batch.column("user_id"))
        action_ids = idx + 1
        keep = np.ones(len(idx), bool) if keep_ids is None else np.isin(action_ids, keep_ids)
        if user_shard is not None:
            index, count = user_shard
            keep &= users % count == index
        parts["u"].append(users[keep])
        parts["i"].append(items[keep])
        parts["a"].append(action_ids[keep].astype(np.int8))
        parts["t"].append(times[keep])

    def cat(key: str, dtype: Any) -> np.ndarray:
        return np.concatenate(parts[key]).astype(dtype) if parts[key] else np.zeros(0, dtype)

    return EventArrays(
        cat("u", np.int64), cat("i", np.int32), cat("a", np.int8), cat("t", np.int64)
    )


# --------------------------------------------------------------------------------------
# Item and user tables
# --------------------------------------------------------------------------------------


class ItemTable:
    """The item table in memory; implements :class:`~transact.data.schema.ItemEmbeddingSource`.

    Attributes: ``embeddings_np`` ``[n_items, d_item]`` float32, ``top_interest``
    ``[n_items]`` int64, ``category`` ``[n_items]`` int64, ``quality`` ``[n_items]``
    float32, ``popularity`` ``[n_items]`` float32 (zeros if the column is absent),
    ``external_id`` / ``taxonomy_path`` (lists of strings).

    Example::

        items = ItemTable.load("runs/world")
        table = items.embedding_table()  # [n_items + 1, 32], last row zero for PAD_ITEM
    """

    def __init__(self, table: pa.Table, source: Path | str = "items.parquet") -> None:
        from transact.data.schema import items_schema

        d_meta = (table.schema.metadata or {}).get(b"d_item")
        emb_type = (
            table.schema.field("embedding").type if "embedding" in table.column_names else None
        )
        d_item = (
            int(d_meta)
            if d_meta
            else (emb_type.list_size if isinstance(emb_type, pa.FixedSizeListType) else -1)
        )
        check_columns(table, items_schema(d_item), source)
        ids = np.asarray(table.column("item_id"))
        bad = np.flatnonzero(ids != np.arange(len(ids)))
        if bad.size:
            raise DataError(
                f"{where(source, 'item_id', int(bad[0]))}: item_id {int(ids[bad[0]])}; item ids "
                "must be the dense row index 0..n-1 in order"
            )
        flat = np.array(table.column("embedding").combine_chunks().flatten(), dtype=np.float32)
        emb = flat.reshape(len(ids), d_item)
        bad_rows = np.flatnonzero(~np.isfinite(emb).all(axis=1))
        if bad_rows.size:
            raise DataError(
                f"{where(source, 'embedding', int(bad_rows[0]))}: NaN or inf in the embedding "
                f"({bad_rows.size} rows)"
            )
        self.source = str(source)
        self.d_item = d_item
        self.embeddings_np = emb
        self.top_interest = np.asarray(table.column("top_interest")).astype(np.int64)
        self.category = np.asarray(table.column("category")).astype(np.int64)
        self.quality = np.asarray(table.column("quality")).astype(np.float32)
        self.popularity = (
            np.asarray(table.column("popularity")).astype(np.float32)
            if "popularity" in table.column_names
            else np.zeros(len(ids), np.float32)
        )
        self.external_id = table.column("external_id").to_pylist()
        self.taxonomy_path = table.column("taxonomy_path").to_pylist()
        self._table: torch.Tensor | None = None

    @property
    def log_popularity(self) -> np.ndarray:
        """``[n_items]`` float32 ``log(popularity)``: the ranker's numerical feature (the
        serving path computes the same; popularity is > 0 in every world dir we write)."""
        return np.log(np.maximum(self.popularity, 1e-12)).astype(np.float32)

    @classmethod
    def load(cls, data_dir: Path | str) -> ItemTable:
        path = Path(data_dir) / "items.parquet"
        if not path.exists():
            raise DataError(f"{path}: missing item table")
        return cls(pq.read_table(path), source=path)

    def __len__(self) -> int:
        return int(self.embeddings_np.shape[0])

    def embeddings(self, item_ids: np.ndarray) -> np.ndarray:
        """``[...]`` item indices -> ``[..., d_item]`` float32; ``PAD_ITEM`` -> zeros."""
        ids = np.asarray(item_ids, dtype=np.int64)
        bad = np.flatnonzero((ids.ravel() < PAD_ITEM) | (ids.ravel() >= len(self)))
        if bad.size:
            raise DataError(
                f"item_ids: index {int(ids.ravel()[bad[0]])} at flat position {int(bad[0])} is "
                f"outside 0..{len(self) - 1} (and PAD_ITEM {PAD_ITEM})"
            )
        return self.embedding_table().numpy()[ids]

    def embedding_table(self) -> torch.Tensor:
        """``[n_items + 1, d_item]`` float32 with a trailing zero row (``PAD_ITEM`` = -1)."""
        if self._table is None:
            self._table = padded_embedding_table(self.embeddings_np)
        return self._table


class UserTable:
    """The user table in memory, with string attributes as local categorical indices.

    ``codes[name]`` is ``[n_users]`` int64 (1-based position in the manifest vocabulary,
    0 = missing/unknown) for each of ``user_state``, ``gender``, ``country``.
    :meth:`rows` maps user ids to rows and raises on unknown users.
    """

    CATEGORICAL = ("user_state", "gender", "country")

    def __init__(
        self,
        table: pa.Table,
        vocabularies: dict[str, list[str]],
        source: Path | str = "users.parquet",
    ) -> None:
        from transact.data.schema import users_schema

        check_columns(table, users_schema(), source)
        ids = np.asarray(table.column("user_id")).astype(np.int64)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
        if dup.size:
            raise DataError(
                f"{where(source, 'user_id', int(order[dup[0] + 1]))}: duplicate user_id "
                f"{int(sorted_ids[dup[0]])}"
            )
        self.source = str(source)
        self.user_ids = ids
        self._order = order
        self._sorted = sorted_ids
        self.codes: dict[str, np.ndarray] = {}
        for name in self.CATEGORICAL:
            vocab = pa.array(vocabularies.get(name, []), pa.string())
            idx = np.asarray(pc.index_in(table.column(name), value_set=vocab).fill_null(-1))
            self.codes[name] = idx.astype(np.int64) + 1
        self.signup_time_ms = np.asarray(table.column("signup_time_ms")).astype(np.int64)
        self.table = table

    @classmethod
    def load(cls, data_dir: Path | str) -> UserTable:
        path = Path(data_dir) / "users.parquet"
        if not path.exists():
            raise DataError(f"{path}: missing user table")
        return cls(pq.read_table(path), load_manifest(data_dir).vocabularies, source=path)

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    def rows(self, user_ids: np.ndarray, what: str = "user_ids") -> np.ndarray:
        """``[B]`` user ids -> ``[B]`` row indices; raises naming the first unknown user."""
        ids = np.asarray(user_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, ids), max(len(self) - 1, 0))
        ok = (self._sorted[pos] == ids) if len(self) else np.zeros(ids.shape, bool)
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            raise DataError(
                f"{what}: user {int(ids[row])} (row {row}) is not in the user table "
                f"{self.source} ({(~ok).sum()} rows with unknown users)"
            )
        return self._order[pos]
