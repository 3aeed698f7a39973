"""The stream operator: de-duplicate, apply the lateness policy, update each user's sequence.

Per event, in stream order (the order within one user is all that matters; Kafka keeps
it by keying messages by user):

1. **Filter**: actions outside ``include_actions`` (default: the engagements the training
   examples use) are counted and skipped.
2. **Duplicate event id**: an event whose id key is among the user's live dedup keys is
   combined with the first copy (counted, not stored again).
3. **Duplicate content**: same (user, item, action, timestamp) as a live key: combined
   likewise; its event id is remembered so a redelivery is caught by rule 2, and the
   content key is refreshed so a flood of copies under new ids cannot push it out.
4. **Lateness**: an event older than the user's newest accepted action minus
   ``allowed_lateness_ms`` is dead-lettered (``late_event``). Anything newer is inserted
   at its place by time (out-of-order insertion), so a client whose clock runs behind the
   server's by up to the allowed lateness still lands in the right position. An equal
   timestamp goes before the actions already stored (newer arrival first).
5. The sequence keeps the latest ``capacity`` actions, newest first.

Dedup keys live in the user's value next to the sequence, so they are persisted in the
same atomic write as the sequence and the source offsets: a restart sees exactly the
state a clean run had at that offset. A key is live while its event time is within
``dedup_window_ms`` of the user's newest action and it is among the last
``max_dedup_keys`` keys inserted; both limits only ever advance, so processing a stream
in one batch or in many gives the same state (tested against the one-event-at-a-time
reference :func:`apply_event_reference`).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import neg

import numpy as np

from transact.data.examples import DEFAULT_SEQUENCE_ACTIONS
from transact.data.schema import DEFAULT_SEQ_LEN, ActionVocabulary
from transact.features.codec import content_keys, event_id_keys, pack_arrays, unpack_arrays
from transact.features.events import LATE_EVENT, DeadLetter, EventColumns

# Outcomes of one event (Prometheus label values of transact_stream_events_total).
ACCEPTED = "accepted"
DUPLICATE_ID = "duplicate_event_id"
DUPLICATE_CONTENT = "duplicate_content"
FILTERED = "filtered_action"
LATE = "late"


@dataclass(frozen=True)
class ProcessorConfig:
    """Stateful rules of the operator (see the module docstring).

    Args:
        capacity: actions kept per user (the paper's |S| = 100).
        allowed_lateness_ms: how far behind the user's newest action an event may be and
            still be inserted (default 5 minutes).
        dedup_window_ms: how long (in event time behind the user's newest action) dedup
            keys stay live; must be >= ``allowed_lateness_ms`` so every accepted event's
            redelivery is caught. Default 1 hour.
        max_dedup_keys: bound on live keys per user (2 per accepted event).
        include_actions: action names stored; default: the engagements the training
            examples' sequences hold (``transact.data.examples.DEFAULT_SEQUENCE_ACTIONS``:
            closeup, click, repin, hide; impressions would flood the sequence). ``None``
            stores every action. Serving and training must use the same set.
        actions: the action vocabulary.
    """

    capacity: int = DEFAULT_SEQ_LEN
    allowed_lateness_ms: int = 300_000
    dedup_window_ms: int = 3_600_000
    max_dedup_keys: int = 512
    include_actions: tuple[str, ...] | None = tuple(DEFAULT_SEQUENCE_ACTIONS)
    actions: ActionVocabulary = field(default_factory=ActionVocabulary)

    def __post_init__(self) -> None:
        if not 1 <= self.capacity <= 65_535:
            raise ValueError(f"ProcessorConfig.capacity must be in 1..65535, got {self.capacity}")
        if self.allowed_lateness_ms < 0:
            raise ValueError("ProcessorConfig.allowed_lateness_ms must be >= 0")
        if self.dedup_window_ms < self.allowed_lateness_ms:
            raise ValueError(
                f"ProcessorConfig.dedup_window_ms ({self.dedup_window_ms}) must be >= "
                f"allowed_lateness_ms ({self.allowed_lateness_ms})"
            )
        if not 2 <= self.max_dedup_keys <= 65_535:
            raise ValueError("ProcessorConfig.max_dedup_keys must be in 2..65535")
        if self.include_actions is not None:
            for name in self.include_actions:
                self.actions.id(name)

    def included_ids(self) -> frozenset[int]:
        """Action ids stored (all real actions when ``include_actions`` is None)."""
        names = self.actions.names if self.include_actions is None else self.include_actions
        return frozenset(self.actions.id(n) for n in names)


@dataclass
class BatchResult:
    """What one micro-batch did: new values per user, dead letters, outcome counts."""

    updates: dict[int, bytes]
    dead_letters: list[DeadLetter]
    outcomes: Counter


class _UserWork:
    """A user's decoded state as ``array.array`` columns, mutated event by event."""

    __slots__ = ("times", "items", "actions", "keys", "total", "newest", "changed")

    def __init__(self, value: bytes | None) -> None:
        times, items, actions, keys, serials, ktimes, total = unpack_arrays(value)
        self.times = times  # descending: newest first
        self.items = items
        self.actions = actions
        # key -> (insertion serial, event time); dict order is insertion order.
        self.keys: dict[int, tuple[int, int]] = {
            k: (i, t) for k, i, t in zip(keys, serials, ktimes, strict=True)
        }
        self.total = total
        self.newest: int | None = times[0] if times else None
        self.changed = False

    def live(self, key: int, cfg: ProcessorConfig) -> bool:
        hit = self.keys.get(key)
        if hit is None:
            return False
        idx, t = hit
        if idx < self.total - cfg.max_dedup_keys:
            return False
        return self.newest is None or t >= self.newest - cfg.dedup_window_ms

    def remember(self, key: int, t: int) -> None:
        self.keys.pop(key, None)
        self.keys[key] = (self.total, t)
        self.total += 1
        self.changed = True

    def apply(
        self, id_key: int, content_key: int, item: int, action: int, t: int, cfg: ProcessorConfig
    ) -> str:
        if self.live(id_key, cfg):
            return DUPLICATE_ID
        if self.live(content_key, cfg):
            self.remember(id_key, t)
            self.remember(content_key, t)  # refreshed, so a flood cannot evict it
            return DUPLICATE_CONTENT
        if self.newest is not None and t < self.newest - cfg.allowed_lateness_ms:
            return LATE
        # first position whose time is <= t: an equal time goes before (newer arrival)
        pos = bisect_left(self.times, -t, key=neg)
        if pos < cfg.capacity:
            self.times.insert(pos, t)
            self.items.insert(pos, item)
            self.actions.insert(pos, action)
            if len(self.times) > cfg.capacity:
                del (
                    self.times[cfg.capacity :],
                    self.items[cfg.capacity :],
                    self.actions[cfg.capacity :],
                )
        if self.newest is None or t > self.newest:
            self.newest = t
        self.remember(id_key, t)
        self.remember(content_key, t)
        return ACCEPTED

    def encode(self, cfg: ProcessorConfig) -> bytes:
        lo_idx = self.total - cfg.max_dedup_keys
        lo_t = (self.newest if self.newest is not None else 0) - cfg.dedup_window_ms
        live = [(k, i, t) for k, (i, t) in self.keys.items() if i >= lo_idx and t >= lo_t]
        return pack_arrays(
            self.times,
            self.items,
            self.actions,
            array("Q", [k for k, _, _ in live]),
            array("I", [i % 2**32 for _, i, _ in live]),
            array("q", [t for _, _, t in live]),
            self.total,
        )


class SequenceProcessor:
    """Applies micro-batches of validated events to user states (the fast path).

    Events are grouped by user (stable, so stream order within a user is kept), each
    user's value is decoded once per batch, updated event by event, and encoded once.

    Example::

        proc = SequenceProcessor(ProcessorConfig())
        result = proc.process(columns, store.get_many)
        store.commit(result.updates, offsets)
    """

    def __init__(self, config: ProcessorConfig) -> None:
        self.config = config
        self._included = config.included_ids()

    def process(
        self, cols: EventColumns, load: Callable[[list[int]], Sequence[bytes | None]]
    ) -> BatchResult:
        """Apply ``cols`` (stream order) to the states ``load(user_ids)`` returns."""
        outcomes: Counter = Counter()
        letters: list[DeadLetter] = []
        n = len(cols)
        if n == 0:
            return BatchResult({}, letters, outcomes)
        cfg = self.config
        included = np.isin(cols.action_ids, np.fromiter(self._included, np.int64))
        outcomes[FILTERED] += int(n - included.sum())
        sel = np.flatnonzero(included)
        users = cols.user_ids[sel]
        order = sel[np.argsort(users, kind="stable")]
        if len(order) == 0:
            return BatchResult({}, letters, outcomes)
        sorted_users = cols.user_ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
        ends = np.r_[starts[1:], len(order)]
        unique_users = sorted_users[starts].tolist()
        values = load(unique_users)
        id_keys = event_id_keys([cols.event_ids[i] for i in order.tolist()]).tolist()
        ckeys = content_keys(
            sorted_users, cols.item_ids[order], cols.action_ids[order], cols.timestamps_ms[order]
        ).tolist()
        items = cols.item_ids[order].tolist()
        actions = cols.action_ids[order].tolist()
        times = cols.timestamps_ms[order].tolist()
        order_l = order.tolist()
        updates: dict[int, bytes] = {}
        counts = {ACCEPTED: 0, DUPLICATE_ID: 0, DUPLICATE_CONTENT: 0, LATE: 0}
        for u, s, e, value in zip(
            unique_users, starts.tolist(), ends.tolist(), values, strict=True
        ):
            work = _UserWork(value)
            for j in range(s, e):
                out = work.apply(id_keys[j], ckeys[j], items[j], actions[j], times[j], cfg)
                counts[out] += 1
                if out == LATE:
                    letters.append(_late_letter(cols, order_l[j], work.newest, cfg))
            if work.changed:
                updates[u] = work.encode(cfg)
        outcomes.update(counts)
        letters.sort(key=lambda d: (d.source, d.offset))
        return BatchResult(updates, letters, outcomes)


def _late_letter(
    cols: EventColumns, i: int, newest: int | None, cfg: ProcessorConfig
) -> DeadLetter:
    return DeadLetter(
        LATE_EVENT,
        f"timestamp_ms {int(cols.timestamps_ms[i])} is more than {cfg.allowed_lateness_ms} ms before "
        f"user {int(cols.user_ids[i])}'s newest action {newest} (row {int(cols.offsets[i])})",
        cols.sources[i],
        int(cols.offsets[i]),
        f'{{"event_id": "{cols.event_ids[i]}", "user_id": {int(cols.user_ids[i])}, '
        f'"item_id": {int(cols.item_ids[i])}, "action_id": {int(cols.action_ids[i])}, '
        f'"timestamp_ms": {int(cols.timestamps_ms[i])}}}',
    )


def apply_event_reference(
    value: bytes | None,
    event_id: str,
    user_id: int,
    item_id: int,
    action_id: int,
    timestamp_ms: int,
    config: ProcessorConfig,
) -> tuple[bytes | None, str]:
    """Plain reference: apply ONE event to one stored value; returns (new value, outcome).

    Decodes, applies and re-encodes per event with no batching, so the fast path's
    equivalence to it (tests) shows that batch boundaries do not change the store.
    """
    if action_id not in config.included_ids():
        return value, FILTERED
    work = _UserWork(value)
    idk = int(event_id_keys([event_id])[0])
    ck = int(
        content_keys(
            np.array([user_id]),
            np.array([item_id]),
            np.array([action_id]),
            np.array([timestamp_ms]),
        )[0]
    )
    out = work.apply(idk, ck, item_id, action_id, timestamp_ms, config)
    return (work.encode(config) if work.changed else value), out
