"""The log-world writer: a normalized log streamed into a world dir in bounded memory.

:class:`LogWorldWriter` takes :class:`~transact.data.adapters.normalized.LogChunk` s in
any order and size (:meth:`~LogWorldWriter.add`) and writes the world dir
(:meth:`~LogWorldWriter.finish`) in three passes over temporary Arrow IPC files
(:mod:`.spill`), so memory is bounded by a bucket and a day, not by the log:

1. **Spill by user.** Rows are hash-partitioned by user into buckets of about
   ``bucket_rows`` rows; item ids and surfaces are collected (their dictionaries).
2. **Per bucket** (every row of its users): actions grouped into impressions, impressions
   into requests (:mod:`.requests`), core status at each request, every label of an
   impression kept (``label_<action>`` per label action), the event log (an impression
   event at request time per shown item, then every action at its own time), and the
   item/user/request statistics, spilled by day.
3. **Per day** (:mod:`.day_tables`): the buckets' time-sorted parts merged (events by
   time, impressions by request time), written as the world dir's day partitions; then
   items (the chosen representation), users, manifest.

The split: the first ``history_days`` feed sequences only; of the later requests the last
``eval_fraction`` (by request time) evaluate. Item ``quality``/``popularity`` are
point-in-time (:mod:`transact.data.item_stats`); ``items.parquet`` holds their values at
the end of the log, and the manifest's ``extra.item_statistics`` has the prior.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from transact.data.adapters.bucket import (
    KIND_CODE,
    POPULARITY_WINDOW_MS,
    BucketProcessor,
    BucketStats,
)
from transact.data.adapters.day_tables import (
    EVENT_SPILL_SCHEMA,
    events_table,
    impression_spill_schema,
    impressions_table,
)
from transact.data.adapters.item_content import (
    ItemEmbedder,
    ItemRepresentation,
    default_item_embedder,
    item_embeddings,
    learned_embeddings,
)
from transact.data.adapters.normalized import ItemInput, LogChunk
from transact.data.adapters.requests import RequestConfig
from transact.data.adapters.spill import BucketSpill, DaySpill
from transact.data.io import (
    DataError,
    DayPartitionWriter,
    WorldManifest,
    read_events,
    save_manifest,
)
from transact.data.item_stats import ItemStatsConfig
from transact.data.schema import (
    MS_PER_DAY,
    ActionVocabulary,
    CategoricalFeature,
    FeatureSpec,
    NumericalFeature,
    events_schema,
    impressions_schema,
    items_schema,
    users_schema,
)
from transact.data.spill_sizes import BUCKET_ROWS, MAX_SPILL_BUCKETS

DEFAULT_SURFACE = "feed"
# spill column -> LogChunk field of the optional columns a log may lack
_OPTIONAL = {"request_key": "request_keys", "position": "positions", "randomized": "randomized"}
MAX_WORKERS = 4
T = TypeVar("T")
R = TypeVar("R")


def _spill_schema(
    item_type: pa.DataType, request_type: pa.DataType, absent: frozenset[str] = frozenset()
) -> pa.Schema:
    """Pass 1's rows. The optional columns a log lacks (``absent``: ``request_key``,
    ``position``, ``randomized``) are null-typed: no bytes to partition, spill or read."""
    optional = {"request_key": request_type, "position": pa.int64(), "randomized": pa.bool_()}
    return pa.schema(
        [
            ("kind", pa.int8()),
            ("user_id", pa.int64()),
            ("item_key", item_type),
            ("time_ms", pa.int64()),
            ("code", pa.int64()),
            *((name, pa.null() if name in absent else t) for name, t in optional.items()),
            ("surface", pa.string()),
        ]
    )


def open_file_budget() -> int:
    """How many spill files pass 1 may hold open at once: half the process's soft limit
    on open files (the rest is left to Parquet readers, sockets, the interpreter), at
    most :data:`MAX_SPILL_BUCKETS`; without ``resource`` (Windows) that maximum."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return MAX_SPILL_BUCKETS
    if soft == resource.RLIM_INFINITY:
        return MAX_SPILL_BUCKETS
    return max(1, min(MAX_SPILL_BUCKETS, soft // 2))


def spill_buckets(expected_rows: int, bucket_rows: int, max_open: int | None = None) -> int:
    """Pass 1's number of user buckets: ``expected_rows / bucket_rows`` rounded up, capped
    by the files the process may open (:func:`open_file_budget`): a larger log gets larger
    buckets (more memory in pass 2) rather than failing with "too many open files"."""
    wanted = max(1, math.ceil(expected_rows / max(bucket_rows, 1)))
    return min(wanted, open_file_budget() if max_open is None else max(1, max_open))


class _Uniques:
    """Distinct values of a stream of Arrow arrays, compacted as they grow."""

    def __init__(self) -> None:
        self.parts: list[pa.Array] = []
        self.size = 0

    def add(self, values: pa.Array) -> None:
        u = pc.unique(values)
        self.parts.append(u)
        self.size += len(u)
        if len(self.parts) > 64:
            self.parts = [self.values()]
            self.size = len(self.parts[0])

    def values(self) -> pa.Array:
        if not self.parts:
            return pa.array([], pa.string())
        return pc.unique(pa.chunked_array(self.parts).combine_chunks())


class LogWorldWriter:
    """Streams a normalized log into a new world dir (see the module docstring).

    Args:
        out_dir: the world dir to create (must not hold a manifest yet).
        dataset: the manifest's dataset name.
        actions: the log's vocabulary (:func:`~transact.data.adapters.normalized.log_vocabulary`).
        labels: its label actions, in the order of the impressions' bit masks; they become
            the dataset's heads.
        requests: requests, split and history (:class:`~.requests.RequestConfig`).
        seed: seed of the shuffled positions.
        expected_rows: about how many rows will come (sizes the spill buckets).
        bucket_rows: rows per spill bucket (pass 2 holds one bucket per worker).
        progress: tqdm bars for the passes.
        workers: threads of passes 2 and 3 (default ``min(4, cpus)``); memory holds
            that many buckets or days.

    Example::

        w = LogWorldWriter("runs/sv", dataset="log:sv.parquet", actions=vocab, labels=labels)
        for chunk in chunks:
            w.add(chunk)
        w.finish(item_repr=ItemRepresentation("id-string"))
    """

    def __init__(
        self,
        out_dir: Path | str,
        *,
        dataset: str,
        actions: ActionVocabulary,
        labels: tuple[str, ...],
        requests: RequestConfig | None = None,
        seed: int = 0,
        expected_rows: int = 0,
        bucket_rows: int = BUCKET_ROWS,
        progress: bool = False,
        workers: int | None = None,
    ) -> None:
        self.out = Path(out_dir)
        if (self.out / "manifest.json").exists():
            raise FileExistsError(f"{self.out}/manifest.json exists; choose a new --out directory")
        for a in labels:
            if a not in actions.names or a == actions.impression:
                raise ValueError(f"label action {a!r} is not a non-impression action of {actions}")
        if len(labels) > 62:
            raise ValueError(f"{len(labels)} label actions; at most 62 fit the label bit mask")
        self.out.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=self.out))
        self.dataset = dataset
        self.actions = actions
        self.labels = tuple(labels)
        self.rc = requests or RequestConfig()
        self.seed = seed
        self.progress = progress
        self.n_buckets = spill_buckets(expected_rows, bucket_rows)
        # buckets (pass 2) and days (pass 3) processed at once; memory holds that many
        self.workers = max(1, min(workers or MAX_WORKERS, os.cpu_count() or 1))
        self._spill: BucketSpill | None = None
        self._items = _Uniques()
        self._surfaces = _Uniques()
        self.has: dict[str, bool] = {}
        self.t_min, self.t_max = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        self.rows = {k: 0 for k in KIND_CODE}

    def __enter__(self) -> LogWorldWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def abort(self) -> None:
        """Drop the temporary files (a failed or finished import leaves none)."""
        if self._spill is not None:
            self._spill.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ pass 1
    def add(self, chunk: LogChunk) -> None:
        """Spill one chunk (pass 1)."""
        n = chunk.user_ids.shape[0]
        if n == 0:
            return
        if chunk.kind != "sequence_only":
            for name in ("request_keys", "positions", "randomized", "surfaces"):
                has = getattr(chunk, name) is not None
                if self.has.setdefault(name, has) != has:
                    raise ValueError(f"LogChunk.{name}: given in some chunks and not in others")
        if self._spill is None:
            request_type = chunk.request_keys.type if chunk.request_keys is not None else pa.int64()
            absent = frozenset(
                column
                for column, name in _OPTIONAL.items()
                if chunk.kind != "sequence_only" and not self.has[name]
            )  # a first chunk of sequence rows does not know: keep every column
            schema = _spill_schema(chunk.item_keys.type, request_type, absent)
            self._spill = BucketSpill(self.tmp / "buckets", schema, self.n_buckets)
        schema = self._spill.schema
        item_keys = _cast(chunk.item_keys, schema.field("item_key").type, "item ids")
        self._items.add(item_keys)
        surfaces = chunk.surfaces if chunk.surfaces is not None else pa.nulls(n, pa.string())
        if chunk.surfaces is not None:
            self._surfaces.add(chunk.surfaces)

        # a column the log lacks is null-typed in the spill (sequence rows never read it)
        null = {c for c in _OPTIONAL if pa.types.is_null(schema.field(c).type)}
        requests = (
            pa.nulls(n, pa.null()) if "request_key" in null
            else _cast(chunk.request_keys, schema.field("request_key").type, "request ids")
            if chunk.request_keys is not None
            else pa.nulls(n, schema.field("request_key").type)
        )  # fmt: skip
        positions = (
            pa.nulls(n, pa.null()) if "position" in null
            else pa.array(chunk.positions if chunk.positions is not None
                          else np.full(n, -1, np.int64))
        )  # fmt: skip
        randomized = (
            pa.nulls(n, pa.null()) if "randomized" in null
            else pa.array(chunk.randomized if chunk.randomized is not None else np.ones(n, bool))
        )  # fmt: skip
        table = pa.table(
            {
                "kind": pa.array(np.full(n, KIND_CODE[chunk.kind], np.int8)),
                "user_id": pa.array(chunk.user_ids.astype(np.int64, copy=False)),
                "item_key": item_keys,
                "time_ms": pa.array(chunk.times_ms.astype(np.int64, copy=False)),
                "code": pa.array(chunk.codes.astype(np.int64, copy=False)),
                "request_key": requests,
                "position": positions,
                "randomized": randomized,
                "surface": surfaces,
            }
        )
        self._spill.add(table)
        self.t_min = min(self.t_min, int(chunk.times_ms.min()))
        self.t_max = max(self.t_max, int(chunk.times_ms.max()))
        self.rows[chunk.kind] += n

    # ------------------------------------------------------------------ passes 2, 3
    def finish(
        self,
        items: ItemInput | None = None,
        *,
        item_repr: ItemRepresentation | None = None,
        item_embedder: ItemEmbedder | None = None,
        d_item: int = 32,
        user_attributes: dict[str, dict[int, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write the world dir (passes 2 and 3, the tables and the manifest).

        Args:
            items: the item file's rows (its ids are the item table's order), or None to
                take the items of the log (sorted by id).
            item_repr: the item representation (default ``auto``); ``learned`` calls
                ``item_embedder`` (default :func:`~.item_content.default_item_embedder`).
            d_item: item embedding size.
            user_attributes: ``{"gender" | "country": {user_id: value}}``.
            extra: more manifest ``extra`` keys (the reader's settings).
        """
        if self._spill is None or sum(self.rows.values()) == 0:
            raise DataError(f"{self.dataset}: the log has no rows")
        self._spill.close()
        try:
            return self._finish(items, item_repr, item_embedder, d_item, user_attributes, extra)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _finish(
        self,
        items: ItemInput | None,
        item_repr: ItemRepresentation | None,
        item_embedder: ItemEmbedder | None,
        d_item: int,
        user_attributes: dict[str, dict[int, str]] | None,
        extra: dict[str, Any] | None,
    ) -> Path:
        assert self._spill is not None
        spill_schema = self._spill.schema
        item_dict, external_ids = self._item_dictionary(items, spill_schema.field("item_key").type)
        n_items = len(item_dict)
        rep = (item_repr or ItemRepresentation()).resolved(
            has_text=items is not None and bool(items.extra.get("has_text"))
        )
        embedder = None
        if rep.kind == "learned":
            embedder = item_embedder or default_item_embedder()  # fails before the passes
        surfaces = sorted(str(s) for s in self._surfaces.values().to_pylist()) or [DEFAULT_SURFACE]
        start = self.t_min // MS_PER_DAY * MS_PER_DAY
        end = (self.t_max // MS_PER_DAY + 1) * MS_PER_DAY
        train_start = start + int(round(self.rc.history_days * MS_PER_DAY))
        if train_start >= end:
            raise DataError(
                f"{self.dataset}: history_days {self.rc.history_days} covers the whole log "
                f"({(end - start) // MS_PER_DAY} days)"
            )
        processor = BucketProcessor(self, item_dict, n_items, surfaces, end)
        ev_spill = DaySpill(self.tmp / "events", EVENT_SPILL_SCHEMA, "timestamp_ms")
        imp_spill = DaySpill(
            self.tmp / "impressions", impression_spill_schema(self.labels), "request_time_ms"
        )
        spill = self._spill

        def pass2(b: int) -> BucketStats:
            impressions, events, stats = processor.process(b, spill.read(b))
            imp_spill.add(impressions, b)
            ev_spill.add(events, b)
            return stats

        ctx = _Totals(
            tqdm(
                bounded_map(pass2, range(self.n_buckets), self.workers),
                total=self.n_buckets,
                desc="import pass 2 (users)",
                disable=not self.progress,
                unit="bucket",
                delay=1,
            ),  # fmt: skip
            n_items,
        )
        req_times = ctx.req_times
        after_history = np.sort(req_times[req_times >= train_start])
        if after_history.size < 2:
            raise DataError(
                f"{self.dataset}: {after_history.size} requests after the history; lower "
                f"min_items ({self.rc.min_items}) or history_days ({self.rc.history_days})"
            )
        cut = int(after_history[int(after_history.size * (1 - self.rc.eval_fraction))])
        if cut <= train_start or cut <= int(after_history[0]):
            cut = int(after_history[-1])  # every request at one time: the last one evaluates
        sizes, engaged = ctx.req_sizes, ctx.req_engaged
        in_train = (req_times >= train_start) & (req_times < cut)
        prior = float(engaged[in_train].sum() / max(sizes[in_train].sum(), 1))
        stats = ItemStatsConfig(
            mode="point_in_time",
            positive_labels=tuple(a for a in self.labels if a in self.actions.positive),
            prior_rate=prior,
            popularity_window_ms=POPULARITY_WINDOW_MS,
        )
        counts = self._write_days(ev_spill, imp_spill, pa.array(surfaces, pa.string()), ctx)
        if rep.kind == "learned":
            assert rep.method is not None and embedder is not None
            events = _training_engagements(self.out, cut, self.actions)
            emb = learned_embeddings(embedder, events, n_items, d_item, rep.method, self.seed)
            emb_source = f"learned:{rep.method}"
        else:
            item_input = items or ItemInput(
                external_ids, list(external_ids), [[] for _ in external_ids]
            )
            # auto: the sentence model when installed, else the genre projection
            asked = item_repr or ItemRepresentation()
            mode = "auto" if asked.kind == "auto" else rep.kind
            emb, emb_source = item_embeddings(item_input, d_item, mode)
        if emb.shape != (n_items, d_item) or not np.isfinite(emb).all():
            raise DataError(
                f"item embeddings: shape {emb.shape} (want {(n_items, d_item)}) or non-finite"
            )
        genres = items.genres if items is not None else [[] for _ in external_ids]
        genre_vocab = self._write_items(external_ids, emb, genres, ctx, stats, d_item)
        user_vocab = self._write_users(ctx, start, end, user_attributes or {})
        vocabularies = {
            "user_state": ["daily", "weekly", "monthly", "new"],
            **user_vocab,
            "category": [f"{k}_genres" for k in range(5)],
            "surface": surfaces,
            "top_interest": genre_vocab,
        }
        spec = FeatureSpec(
            categorical=(
                CategoricalFeature("user_state", 5, 4, "user"),
                CategoricalFeature("gender", len(vocabularies["gender"]) + 1, 4, "user"),
                CategoricalFeature("country", len(vocabularies["country"]) + 1, 4, "user"),
                CategoricalFeature("category", 6, 4, "item"),
                CategoricalFeature("top_interest", len(genre_vocab) + 1, 8, "item"),
                CategoricalFeature("surface", len(surfaces) + 1, 4, "context"),
                CategoricalFeature("hour_of_day", 25, 8, "context"),
            ),
            numerical=(
                NumericalFeature("quality", "item"),
                NumericalFeature("log_popularity", "item"),
            ),
            d_item=d_item,
            d_user=0,
            heads=self.labels,
            actions=self.actions,
        )
        manifest = WorldManifest(
            dataset=self.dataset,
            seed=self.seed,
            preset="",
            feature_spec=spec,
            start_ms=int(start),
            end_ms=int(end),
            train_start_ms=int(train_start),
            train_end_ms=cut,
            eval_start_ms=cut,
            eval_end_ms=int(end),
            n_users=ctx.n_users,
            n_items=n_items,
            vocabularies=vocabularies,
            extra={
                "item_representation": {**rep.to_dict(), "source": emb_source},
                "item_statistics": stats.to_dict(),
                "requests": {
                    "session_gap_ms": self.rc.session_gap_ms,
                    "max_items": self.rc.max_items,
                    "min_items": self.rc.min_items,
                    "eval_fraction": self.rc.eval_fraction,
                    "history_days": self.rc.history_days,
                    "window_ms": self.rc.window_ms,
                    "core_window_ms": self.rc.core_window_ms,
                    "from": "request ids" if self.has.get("request_keys") else "sessions",
                    "positions": "log" if self.has.get("positions") else "seeded shuffle",
                    "randomized": "log" if self.has.get("randomized") else "all",
                },
                "counts": {
                    "log_rows": sum(self.rows.values()),
                    **{f"log_rows_{k}": v for k, v in self.rows.items() if v},
                    "requests": int(req_times.size),
                    "impressions": counts["impressions"],
                    "events": counts["events"],
                    "skipped_rows_in_small_chunks": ctx.skipped,
                },
                "sequence_actions_default": list(self.actions.engagements),
                **(extra or {}),
            },
        )
        save_manifest(self.out, manifest)
        return self.out

    def _item_dictionary(
        self, items: ItemInput | None, key_type: pa.DataType
    ) -> tuple[pa.Array, list[str]]:
        """The item keys in item-table order and their strings (the ``external_id``s)."""
        seen = self._items.values().cast(key_type)
        if items is None:
            keys = seen.take(pc.sort_indices(seen))
            return keys, [str(k) for k in keys.to_pylist()]
        try:
            keys = pa.array(
                [int(e) for e in items.external_ids] if pa.types.is_integer(key_type)
                else list(items.external_ids), key_type,
            )  # fmt: skip
        except ValueError:
            raise DataError(
                f"{self.dataset}: the log's item ids are integers, the item file's are not"
            ) from None
        unknown = pc.filter(seen, pc.invert(pc.is_in(seen, value_set=keys)))
        if len(unknown):
            raise DataError(
                f"{self.dataset}: item {unknown[0].as_py()!r} of the log is not in the item "
                f"file ({len(unknown)} such items)"
            )
        if len(pc.unique(keys)) != len(keys):
            raise DataError(f"{self.dataset}: the item file has duplicate ids")
        return keys, list(items.external_ids)

    def _write_days(
        self, events: DaySpill, impressions: DaySpill, surfaces: pa.Array, totals: _Totals
    ) -> dict[str, int]:
        """Pass 3: each day merged in time order, its ids made global and its strings made,
        written as the world dir's partitions. Days are independent, so a few are written
        at once (Arrow's kernels and Parquet encoding run without the GIL); memory holds
        that many days."""
        names = pa.array(list(self.actions.names), pa.string())
        imp_schema = impressions_schema(self.labels)

        def write(job: tuple[str, str]) -> tuple[str, int]:
            table, day = job
            if table == "events":
                out = events_table(events.read_day(day), names, surfaces, totals)
                schema, time_column = events_schema(), "timestamp_ms"
                dictionary = ["action_type", "surface"]
            else:
                out = impressions_table(impressions.read_day(day), imp_schema, surfaces, totals)
                schema, time_column, dictionary = imp_schema, "request_time_ms", ["surface"]
            # min/max statistics of numbers only: a string column's cost a comparison per
            # value (a fifth of the events' encode time) and no reader filters on them
            numeric = [f.name for f in schema if not pa.types.is_string(f.type)]
            w = DayPartitionWriter(
                self.out, table, schema, time_column, use_dictionary=dictionary,
                write_statistics=numeric,
            )  # fmt: skip
            w.write(out)
            w.close()
            return table, w.rows_written

        jobs = [("events", d) for d in events.days()]
        jobs += [("impressions", d) for d in impressions.days()]
        counts = {"events": 0, "impressions": 0}
        for table, n in tqdm(
            bounded_map(write, jobs, self.workers), total=len(jobs),
            desc="import pass 3 (days)", disable=not self.progress, delay=1,
        ):  # fmt: skip
            counts[table] += n
        return counts

    def _write_items(
        self,
        external_ids: list[str],
        emb: np.ndarray,
        genres: list[list[str]],
        ctx: _Totals,
        stats: ItemStatsConfig,
        d_item: int,
    ) -> list[str]:
        """``items.parquet``: quality and popularity at the end of the log (serving's)."""
        n = len(external_ids)
        genre_vocab = sorted({g for gs in genres for g in gs} | {"unknown"})
        index = {g: i for i, g in enumerate(genre_vocab)}
        top = np.array([index[gs[0] if gs else "unknown"] for gs in genres], np.int32)
        m = stats.prior_strength
        quality = (ctx.item_engaged + m * stats.prior_rate) / (ctx.item_shown + m)
        popularity = 1.0 + ctx.item_recent
        table = pa.table(
            {
                "item_id": pa.array(np.arange(n, dtype=np.int64)),
                "external_id": pa.array(external_ids, pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(emb.astype(np.float32).ravel()), d_item
                ),
                "top_interest": pa.array(top),
                "taxonomy_path": pa.array(["/".join(gs) if gs else "unknown" for gs in genres]),
                "category": pa.array(np.minimum([len(gs) for gs in genres], 4).astype(np.int32)),
                "quality": pa.array(quality.astype(np.float32)),
                "popularity": pa.array(popularity.astype(np.float32)),
            }
        )
        schema = items_schema(d_item).append(pa.field("popularity", pa.float32(), nullable=False))
        pq.write_table(table.cast(schema), self.out / "items.parquet", compression="zstd")
        return genre_vocab

    def _write_users(
        self, ctx: _Totals, start: int, end: int, attrs: dict[str, dict[int, str]]
    ) -> dict[str, list[str]]:
        uids, first, days = ctx.user_ids, ctx.user_first, ctx.user_days
        order = np.argsort(uids, kind="stable")
        uids, first, days = uids[order], first[order], days[order]
        rate = days / max((end - start) / MS_PER_DAY, 1.0)
        state = np.where(rate >= 0.5, "daily", np.where(rate >= 0.1, "weekly", "monthly"))
        gender = [attrs.get("gender", {}).get(int(u), "unspecified") for u in uids.tolist()]
        country = [attrs.get("country", {}).get(int(u), "unknown") for u in uids.tolist()]
        users = pa.table(
            {
                "user_id": pa.array(uids),
                "user_state": pa.array(state.tolist(), pa.string()),
                "gender": pa.array(gender, pa.string()),
                "country": pa.array(country, pa.string()),
                "signup_time_ms": pa.array(first),
            }
        )
        pq.write_table(users.cast(users_schema()), self.out / "users.parquet", compression="zstd")
        return {"gender": sorted(set(gender)), "country": sorted(set(country))}


def bounded_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, in order, with at most ``workers`` items
    in flight (a bucket or a day each: memory stays bounded)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class _Totals:
    """Every bucket's :class:`~.bucket.BucketStats` put together (in bucket order), and
    the id offsets of each bucket (its requests and actions come after the previous
    buckets')."""

    def __init__(self, stats: Iterable[BucketStats], n_items: int) -> None:
        parts = sorted(stats, key=lambda s: s.bucket)
        cat = lambda name, dtype: (  # noqa: E731
            np.concatenate([getattr(p, name) for p in parts]) if parts else np.zeros(0, dtype)
        )
        self.req_times = cat("req_times", np.int64)
        self.req_sizes = cat("req_sizes", np.int64)
        self.req_engaged = cat("req_engaged", np.float64)
        self.user_ids = cat("user_ids", np.int64)
        self.user_first = cat("user_first", np.int64)
        self.user_days = cat("user_days", np.int64)
        self.n_users = int(self.user_ids.size)
        self.skipped = sum(p.skipped for p in parts)
        zeros = np.zeros(n_items, np.float64)
        self.item_shown = sum((p.item_shown for p in parts), zeros)
        self.item_engaged = sum((p.item_engaged for p in parts), zeros)
        self.item_recent = sum((p.item_recent for p in parts), zeros)
        n_buckets = (parts[-1].bucket + 1) if parts else 0
        per_bucket = np.zeros((2, n_buckets), np.int64)
        for p in parts:
            per_bucket[:, p.bucket] = (p.n_requests, p.n_events)
        self.request_offset = np.cumsum(per_bucket[0]) - per_bucket[0]
        self.event_offset = np.cumsum(per_bucket[1]) - per_bucket[1]
        # event ids are zero-padded to the digits of the largest id (fixed_width_ids)
        digits = lambda n: len(str(max(int(n) - 1, 0)))  # noqa: E731
        self.id_widths = {
            "request": digits(per_bucket[0].sum()),
            "position": digits(
                max((int(p.req_sizes.max()) for p in parts if p.req_sizes.size), default=1)
            ),
            "event": digits(per_bucket[1].sum()),
        }


def _cast(values: pa.Array, to: pa.DataType, what: str) -> pa.Array:
    if values.type == to:
        return values
    try:
        return values.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"{what}: {values.type} in one part of the log, {to} in another") from None


def _training_engagements(out: Path, train_end_ms: int, actions: ActionVocabulary) -> pa.Table:
    """The engagement events before the end of the training window (what a learned item
    representation may see: nothing of the evaluation window)."""
    cols = ["user_id", "item_id", "action_type", "timestamp_ms"]
    batches = list(read_events(out, None, train_end_ms, columns=cols, actions=actions.engagements))
    if not batches:
        return pa.table(
            {
                c: pa.array([], t)
                for c, t in zip(
                    cols, (pa.int64(), pa.int64(), pa.string(), pa.int64()), strict=True
                )
            }
        )
    return pa.Table.from_batches(batches).select(cols)
