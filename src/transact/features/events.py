"""Event intake: parse and validate user-action events into columns, dead-letter the rest.

Two entry points feed the same columnar form, :class:`EventColumns`:

* :func:`columns_from_arrow` takes rows in :func:`transact.data.schema.events_schema`
  (Parquet logs, backfill) and validates them with vectorized numpy checks.
* :func:`columns_from_json` takes raw JSON lines (stdin, Kafka message values), checks
  size, syntax and field types one message at a time, then runs the same vectorized
  checks.

Every rejected event becomes a :class:`DeadLetter` with a machine-readable ``reason`` and
a human ``detail`` naming the field; nothing is dropped silently. Stateful checks (late
events, duplicates) happen later, in :mod:`transact.features.processor`, because they
depend on the user's stored state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from json import loads

import numpy as np
import pyarrow as pa

from transact.data.ids import MAX_ID, describe_int, id_problem
from transact.data.schema import ActionVocabulary

# Dead-letter reasons (stable strings: they are Prometheus label values).
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
PAYLOAD_TOO_LARGE = "payload_too_large"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
UNKNOWN_ACTION = "unknown_action"
INVALID_ID = "invalid_id"
TIMESTAMP_TOO_OLD = "timestamp_too_old"
TIMESTAMP_IN_FUTURE = "timestamp_in_future"
WRONG_EMBEDDING_SIZE = "wrong_embedding_size"
TOO_DEEPLY_NESTED = "too_deeply_nested"
LATE_EVENT = "late_event"  # decided by the processor (allowed lateness)
WRONG_PARTITION = "wrong_partition"  # user's shard not owned here (sharded RocksDB)
# decided by the runner (transact.features.runner): a record the code failed on
PROCESSING_ERROR = "processing_error"  # raised on it, alone, every retry
PROCESSING_CRASHED = "processing_crashed"  # the process died on it (crash journal)

REASONS = (
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    PAYLOAD_TOO_LARGE,
    MISSING_FIELD,
    WRONG_TYPE,
    UNKNOWN_ACTION,
    INVALID_ID,
    TIMESTAMP_TOO_OLD,
    TIMESTAMP_IN_FUTURE,
    WRONG_EMBEDDING_SIZE,
    TOO_DEEPLY_NESTED,
    LATE_EVENT,
    WRONG_PARTITION,
    PROCESSING_ERROR,
    PROCESSING_CRASHED,
)

_INT_FIELDS = ("user_id", "item_id", "timestamp_ms")
_STR_FIELDS = ("event_id", "action_type")
_MAX_DETAIL_EVENT_CHARS = 2048


@dataclass(frozen=True)
class ValidationConfig:
    """Static validation rules applied to every event before it touches any state.

    Args:
        actions: the action vocabulary; other action names are ``unknown_action``.
        n_items: dense item indices must lie in ``[0, n_items)``; ``None`` checks ``>= 0``
            only (and below 2**31, the stored item width).
        min_timestamp_ms: events older than this are ``timestamp_too_old`` (default
            1973-03-03, the data stage's plausibility bound: smaller values are seconds,
            zeroed fields or broken clocks; MovieLens logs start in 1996).
        max_future_ms: events more than this ahead of the server time (the Kafka
            message timestamp, else the processor's wall clock) are
            ``timestamp_in_future``. Default 5 minutes of tolerated client skew.
        max_payload_bytes: raw messages larger than this are ``payload_too_large``.
        max_event_id_bytes: longer event ids are ``invalid_id``.
        d_item: if an event carries an optional ``embedding`` field, it must have this
            many floats (``wrong_embedding_size``).
        max_json_depth: messages whose arrays/objects nest deeper are
            ``too_deeply_nested``, checked before parsing (an event nests 2 levels;
            Python's parser would raise ``RecursionError`` at ~1,000).
    """

    actions: ActionVocabulary = field(default_factory=ActionVocabulary)
    n_items: int | None = None
    min_timestamp_ms: int = 100_000_000_000
    max_future_ms: int = 300_000
    max_payload_bytes: int = 4096
    max_event_id_bytes: int = 128
    d_item: int = 32
    max_json_depth: int = 16

    def __post_init__(self) -> None:
        if self.n_items is not None and self.n_items < 1:
            raise ValueError(f"ValidationConfig.n_items must be >= 1, got {self.n_items}")
        if self.max_future_ms < 0:
            raise ValueError(
                f"ValidationConfig.max_future_ms must be >= 0, got {self.max_future_ms}"
            )
        if self.max_payload_bytes < 64:
            raise ValueError("ValidationConfig.max_payload_bytes must be >= 64")
        if not 2 <= self.max_json_depth <= 500:
            raise ValueError(
                f"ValidationConfig.max_json_depth must be in 2..500, got {self.max_json_depth}"
            )


@dataclass(frozen=True)
class DeadLetter:
    """One rejected event: where it came from, why, and what it was (truncated)."""

    reason: str
    detail: str
    source: str
    offset: int
    event: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "reason": self.reason,
                "detail": self.detail,
                "source": self.source,
                "offset": self.offset,
                "event": self.event,
            },
            sort_keys=True,
        )


@dataclass
class EventColumns:
    """A micro-batch of valid events as columns, in stream order.

    Fields (all length ``n``):
        event_ids: event id strings.
        user_ids / item_ids: int64.
        action_ids: int64 ids in the :class:`ActionVocabulary` (never 0).
        timestamps_ms: int64 client event times.
        offsets: int64 source offsets (row number in a replay, Kafka offset).
        sources: one source key per row (``"kafka/topic/3"``, ``"parquet"``...).
    """

    event_ids: list[str]
    user_ids: np.ndarray
    item_ids: np.ndarray
    action_ids: np.ndarray
    timestamps_ms: np.ndarray
    offsets: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.event_ids)

    @classmethod
    def empty(cls) -> EventColumns:
        z = np.zeros(0, dtype=np.int64)
        return cls([], z, z.copy(), z.copy(), z.copy(), z.copy(), [])

    def take(self, idx: np.ndarray) -> EventColumns:
        """The rows ``idx`` (``[k]`` int indices), in that order."""
        idx_list = idx.tolist()
        return EventColumns(
            [self.event_ids[i] for i in idx_list],
            self.user_ids[idx],
            self.item_ids[idx],
            self.action_ids[idx],
            self.timestamps_ms[idx],
            self.offsets[idx],
            [self.sources[i] for i in idx_list],
        )

    @staticmethod
    def concat(parts: Sequence[EventColumns]) -> EventColumns:
        """Rows of ``parts`` one after the other (stream order is kept)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return EventColumns.empty()
        return EventColumns(
            [e for p in parts for e in p.event_ids],
            np.concatenate([p.user_ids for p in parts]),
            np.concatenate([p.item_ids for p in parts]),
            np.concatenate([p.action_ids for p in parts]),
            np.concatenate([p.timestamps_ms for p in parts]),
            np.concatenate([p.offsets for p in parts]),
            [s for p in parts for s in p.sources],
        )


def _event_repr(obj: object) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, default=str, sort_keys=True)
    if len(text) > _MAX_DETAIL_EVENT_CHARS:
        return text[:_MAX_DETAIL_EVENT_CHARS] + f"...<truncated, {len(text)} chars>"
    return text


def _utf8_len(text: str) -> int:
    """UTF-8 length of ``text``; -1 when it holds a lone surrogate (JSON's ``"\\ud800"``
    parses to one, and it has no UTF-8 form: it could be neither hashed nor stored)."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return -1


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether the arrays/objects of the JSON text ``raw`` nest deeper than ``limit``.

    Brackets inside strings do not count. Cheap for ordinary events: unless ``raw``
    holds more than ``limit`` opening brackets in all, nothing is scanned."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    bare = _JSON_STRING.sub(b"", raw)
    steps = _OPEN[np.frombuffer(bare, np.uint8)].astype(np.int32)
    return bool(steps.size) and int(np.cumsum(steps).max()) > limit


def _vectorized_checks(
    cols: EventColumns,
    raw_actions: np.ndarray,
    server_times_ms: np.ndarray,
    config: ValidationConfig,
    raw_events: Sequence[object] | None,
    table: pa.Table | None,
) -> tuple[EventColumns, list[DeadLetter]]:
    """Checks shared by the Arrow and JSON paths; ``raw_actions`` holds action names."""
    n = len(cols)
    reason = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, why: str, what: str) -> None:
        new = mask & (reason == "")
        reason[new] = why
        detail[new] = what

    ids = np.asarray([_utf8_len(e) for e in cols.event_ids], dtype=np.int64)
    flag(ids < 0, INVALID_ID, "event_id is not valid Unicode (a lone surrogate)")
    flag(ids == 0, INVALID_ID, "event_id is empty")
    flag(
        ids > config.max_event_id_bytes,
        INVALID_ID,
        f"event_id longer than {config.max_event_id_bytes} bytes",
    )
    flag(cols.user_ids < 0, INVALID_ID, "user_id is negative")
    flag(cols.item_ids < 0, INVALID_ID, "item_id is negative")
    upper = config.n_items if config.n_items is not None else 2**31
    flag(cols.item_ids >= upper, INVALID_ID, f"item_id >= {upper} (item table size)")
    names = config.actions.names
    action_ids = np.zeros(n, dtype=np.int64)
    for i, name in enumerate(names):
        action_ids[raw_actions == name] = i + 1
    flag(action_ids == 0, UNKNOWN_ACTION, f"action_type not in {list(names)}")
    flag(
        cols.timestamps_ms < config.min_timestamp_ms,
        TIMESTAMP_TOO_OLD,
        f"timestamp_ms < {config.min_timestamp_ms}",
    )
    flag(
        cols.timestamps_ms > server_times_ms + config.max_future_ms,
        TIMESTAMP_IN_FUTURE,
        f"timestamp_ms more than {config.max_future_ms} ms after the server time",
    )
    cols.action_ids = action_ids
    bad = np.flatnonzero(reason != "")
    letters: list[DeadLetter] = []
    for i in bad.tolist():
        if raw_events is not None:
            ev = _event_repr(raw_events[i])
        else:
            assert table is not None
            ev = _event_repr(table.slice(i, 1).to_pylist()[0])
        letters.append(
            DeadLetter(
                str(reason[i]),
                f"{detail[i]} (row {int(cols.offsets[i])})",
                cols.sources[i],
                int(cols.offsets[i]),
                ev,
            )
        )
    if len(bad) == 0:
        return cols, letters
    return cols.take(np.flatnonzero(reason == "")), letters


def columns_from_arrow(
    table: pa.Table,
    config: ValidationConfig,
    source: str,
    first_offset: int,
    server_time_ms: int,
) -> tuple[EventColumns, list[DeadLetter]]:
    """Validate rows in ``events_schema()``; row ``i`` gets offset ``first_offset + i``.

    Nulls in any required column are ``missing_field`` dead letters (Parquet written by
    other tools may carry them even though the schema says not-null).
    """
    n = table.num_rows
    offsets = np.arange(first_offset, first_offset + n, dtype=np.int64)
    missing = np.zeros(n, dtype=bool)
    missing_name = np.full(n, "", dtype=object)
    for name in ("event_id", "user_id", "item_id", "action_type", "timestamp_ms"):
        if name not in table.column_names:
            raise ValueError(f"events table lacks column {name!r}; has {table.column_names}")
        col = table.column(name)
        if col.null_count:
            m = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            missing_name[m & ~missing] = name
            missing |= m
    letters: list[DeadLetter] = []
    if missing.any():
        for i in np.flatnonzero(missing).tolist():
            letters.append(
                DeadLetter(
                    MISSING_FIELD,
                    f"{missing_name[i]} is null (row {first_offset + i})",
                    source,
                    first_offset + i,
                    _event_repr(table.slice(i, 1).to_pylist()[0]),
                )
            )
        keep = np.flatnonzero(~missing)
        table = table.take(pa.array(keep))
        offsets = offsets[keep]
        n = table.num_rows

    def ints(name: str) -> np.ndarray:
        return np.asarray(table.column(name).to_numpy(), dtype=np.int64)

    cols = EventColumns(
        table.column("event_id").to_pylist(),
        ints("user_id"),
        ints("item_id"),
        np.zeros(n, dtype=np.int64),
        ints("timestamp_ms"),
        offsets,
        [source] * n,
    )
    raw_actions = np.asarray(
        table.column("action_type").to_numpy(zero_copy_only=False), dtype=object
    )
    server = np.full(n, server_time_ms, dtype=np.int64)
    cols, more = _vectorized_checks(cols, raw_actions, server, config, None, table)
    return cols, letters + more


def columns_from_json(
    messages: Sequence[bytes | str],
    config: ValidationConfig,
    sources: Sequence[str],
    offsets: Sequence[int],
    server_times_ms: Sequence[int],
) -> tuple[EventColumns, list[DeadLetter]]:
    """Parse and validate raw JSON messages (one event object each).

    Args:
        messages: raw payloads (Kafka values or stdin lines).
        sources / offsets: where each message came from (for offsets and dead letters).
        server_times_ms: the server's time per message (Kafka message timestamp, or the
            wall clock at read), the reference of the future-timestamp check.
    """
    letters: list[DeadLetter] = []
    good: list[dict] = []
    good_i: list[int] = []
    for i, raw in enumerate(messages):
        src, off = sources[i], int(offsets[i])
        size = len(raw)
        if size > config.max_payload_bytes:
            letters.append(
                DeadLetter(
                    PAYLOAD_TOO_LARGE,
                    f"{size} bytes > {config.max_payload_bytes} (offset {off})",
                    src,
                    off,
                    _event_repr(
                        raw if isinstance(raw, str) else raw[:4096].decode("utf-8", "replace")
                    ),
                )
            )
            continue
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        if json_depth_exceeds(data, config.max_json_depth):
            letters.append(
                DeadLetter(
                    TOO_DEEPLY_NESTED,
                    f"arrays/objects nest deeper than {config.max_json_depth} levels "
                    f"(offset {off})",
                    src,
                    off,
                    _event_repr(text),
                )
            )
            continue
        try:
            # ValueError: bad syntax, invalid UTF-8, integers over 4,300 digits;
            # RecursionError cannot happen below the depth limit, but is a parse failure too
            obj = loads(data.decode())
        except (ValueError, RecursionError) as exc:
            letters.append(
                DeadLetter(MALFORMED_JSON, f"{exc} (offset {off})", src, off, _event_repr(text))
            )
            continue
        if not isinstance(obj, dict):
            letters.append(
                DeadLetter(
                    NOT_AN_OBJECT,
                    f"got {type(obj).__name__} (offset {off})",
                    src,
                    off,
                    _event_repr(obj),
                )
            )
            continue
        why = None if _plainly_valid(obj) else _field_problem(obj, config)
        if why is not None:
            letters.append(
                DeadLetter(why[0], f"{why[1]} (offset {off})", src, off, _event_repr(obj))
            )
            continue
        good.append(obj)
        good_i.append(i)
    n = len(good)
    cols = EventColumns(
        [o["event_id"] for o in good],
        np.fromiter((o["user_id"] for o in good), dtype=np.int64, count=n),
        np.fromiter((o["item_id"] for o in good), dtype=np.int64, count=n),
        np.zeros(n, dtype=np.int64),
        np.fromiter((o["timestamp_ms"] for o in good), dtype=np.int64, count=n),
        np.asarray([offsets[i] for i in good_i], dtype=np.int64),
        [sources[i] for i in good_i],
    )
    raw_actions = np.asarray([o["action_type"] for o in good], dtype=object)
    server = np.asarray([server_times_ms[i] for i in good_i], dtype=np.int64)
    cols, more = _vectorized_checks(cols, raw_actions, server, config, good, None)
    return cols, letters + more


_I64_MIN, _I64_END = -(2**63), 2**63
_ID_FIELDS = ("user_id", "item_id")


def _plainly_valid(obj: dict) -> bool:
    """The common case in one expression: every field present with its exact type, ids
    within the id rule, an ASCII event id, no embedding. Anything else takes
    :func:`_field_problem`, which names the problem."""
    get = obj.get
    u, i, t, e = get("user_id"), get("item_id"), get("timestamp_ms"), get("event_id")
    return (
        type(e) is str
        and e.isascii()
        and type(get("action_type")) is str
        and type(u) is int
        and type(i) is int
        and type(t) is int
        and 0 <= u <= MAX_ID
        and 0 <= i <= MAX_ID
        and _I64_MIN <= t < _I64_END
        and "embedding" not in obj
    )


def _field_problem(obj: dict, config: ValidationConfig) -> tuple[str, str] | None:
    for name in _STR_FIELDS + _INT_FIELDS:
        if name not in obj or obj[name] is None:
            return MISSING_FIELD, f"{name} is missing"
    for name in _STR_FIELDS:
        if not isinstance(obj[name], str):
            return WRONG_TYPE, f"{name} must be a string, got {type(obj[name]).__name__}"
    if _utf8_len(obj["event_id"]) < 0:
        return INVALID_ID, "event_id is not valid Unicode (a lone surrogate)"
    for name in _ID_FIELDS:  # the rule the ranking API applies too (transact.data.ids)
        problem = id_problem(obj[name])
        if problem is not None:
            return (
                WRONG_TYPE if problem.kind == "type" else INVALID_ID
            ), f"{name} {problem.message}"
    v = obj["timestamp_ms"]
    if type(v) is not int:
        return WRONG_TYPE, f"timestamp_ms must be an integer, got {type(v).__name__}"
    if not _I64_MIN <= v < _I64_END:
        return WRONG_TYPE, f"timestamp_ms does not fit int64: {describe_int(v)}"
    emb = obj.get("embedding")
    if emb is not None:
        if not isinstance(emb, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in emb
        ):
            return WRONG_TYPE, "embedding must be a list of numbers"
        if len(emb) != config.d_item:
            return (
                WRONG_EMBEDDING_SIZE,
                f"embedding has {len(emb)} floats, expected {config.d_item}",
            )
    return None


def event_to_json(
    event_id: str,
    user_id: int,
    item_id: int,
    action_type: str,
    timestamp_ms: int,
    surface: str = "homefeed",
) -> bytes:
    """The wire form of one event (JSON object in ``events_schema`` field names)."""
    return json.dumps(
        {
            "event_id": event_id,
            "user_id": int(user_id),
            "item_id": int(item_id),
            "action_type": action_type,
            "timestamp_ms": int(timestamp_ms),
            "surface": surface,
        },
        separators=(",", ":"),
    ).encode()
