"""The offline realtime-sequence builder (paper 3.2): the single source of truth.

For every query (user, request time) it returns the user's latest ``seq_len`` actions
STRICTLY before the request time, newest first, padded at the end with action type
:data:`~transact.data.schema.PAD_ACTION`, item :data:`~transact.data.schema.PAD_ITEM` and
time 0. The realtime feature store (``transact.features``) must return exactly the same
tensors for the same events; its tests compare against :func:`build_sequences`.

Tie-breaking for equal timestamps is by event order: events are sorted by
``(user, time)`` with a *stable* sort, so of two events with the same user and timestamp
the one that comes later in the input is the newer one (it is placed first in the
sequence). Pass events in log order (as :func:`transact.data.io.read_events` returns
them) to get the order the online path sees.

The fast path (:class:`SequenceBuilder`) sorts once and answers each query with two
``searchsorted`` calls and one gather; :func:`build_sequences_reference` is the plain
per-query Python loop it is tested against.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from transact.data.schema import DEFAULT_SEQ_LEN, PAD_ACTION, PAD_ITEM, SequenceTensors

_QUERY_CHUNK = 65_536  # bounds the [chunk, seq_len] index matrix (~50 MB at seq_len 100)


def _as_1d_int(name: str, values: np.ndarray | Sequence[int]) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


class SequenceBuilder:
    """Answers ``(user, request time)`` sequence queries over a fixed event log.

    Sorts the events once by ``(user, time)`` (stable: ties keep input order) and keeps a
    single int64 search key ``user_rank * span + (time - t_min)``, so that a query is two
    binary searches: the start of the user's events and the first event at or after the
    request time. Implements :class:`~transact.data.schema.SequenceSource`.

    Args:
        event_user_ids: ``[E]`` int user ids.
        event_item_ids: ``[E]`` int dense item indices.
        event_action_types: ``[E]`` int action ids (``ActionVocabulary`` ids, never 0).
        event_times_ms: ``[E]`` int64 milliseconds.
        seq_len: sequence length S (paper: 100).
        include_actions: action ids to keep (e.g. engagements only); ``None`` keeps all.

    Example::

        builder = SequenceBuilder(users, items, actions, times, seq_len=100)
        seqs = builder.fetch(np.array([7]), np.array([1_700_000_000_000]))
        seqs.action_types.shape  # torch.Size([1, 100])
    """

    def __init__(
        self,
        event_user_ids: np.ndarray | Sequence[int],
        event_item_ids: np.ndarray | Sequence[int],
        event_action_types: np.ndarray | Sequence[int],
        event_times_ms: np.ndarray | Sequence[int],
        seq_len: int = DEFAULT_SEQ_LEN,
        include_actions: Iterable[int] | None = None,
    ) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        users = _as_1d_int("event_user_ids", event_user_ids)
        items = _as_1d_int("event_item_ids", event_item_ids)
        actions = _as_1d_int("event_action_types", event_action_types)
        times = _as_1d_int("event_times_ms", event_times_ms)
        n = users.shape[0]
        for name, arr in (
            ("event_item_ids", items),
            ("event_action_types", actions),
            ("event_times_ms", times),
        ):
            if arr.shape[0] != n:
                raise ValueError(f"{name} has {arr.shape[0]} rows, event_user_ids has {n}")
        bad = np.flatnonzero(actions <= PAD_ACTION)
        if bad.size:
            raise ValueError(
                f"event_action_types: row {int(bad[0])} has action id {int(actions[bad[0]])}; "
                f"real actions are >= 1 (0 is padding)"
            )
        bad = np.flatnonzero(items < 0)
        if bad.size:
            raise ValueError(
                f"event_item_ids: row {int(bad[0])} has item index {int(items[bad[0]])}; "
                "events must name a real item (>= 0)"
            )
        if include_actions is not None:
            keep = np.isin(actions, np.fromiter(include_actions, dtype=np.int64))
            users, items, actions, times = users[keep], items[keep], actions[keep], times[keep]

        self.seq_len = int(seq_len)
        # One int64 search key per event, user_rank * span + (time - t_min), sorted with a
        # stable sort: events ordered by (user, time), ties kept in input order.
        self._unique_users, user_rank = np.unique(users, return_inverse=True)
        self._t_min = int(times.min()) if times.size else 0
        t_max = int(times.max()) if times.size else 0
        self._span = t_max - self._t_min + 2  # offsets 0..span-2 for events; span-1 = +inf
        if len(self._unique_users) and len(self._unique_users) * self._span >= 2**62:
            raise ValueError(
                f"time span {self._span} ms x {len(self._unique_users)} users overflows the "
                "int64 search key; split the event log by user"
            )
        keys = user_rank.reshape(-1).astype(np.int64) * self._span + (times - self._t_min)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        # Columns are stored reversed (newest event of the log first) with seq_len padding
        # values appended: a query's sequence is then the contiguous slice
        # rev[E - hi : E - hi + seq_len], masked past the user's event count, so the
        # gather copies whole rows instead of single elements.
        tail = self.seq_len

        def reversed_column(values: np.ndarray, pad: int) -> np.ndarray:
            dtype = np.int32 if values.size and np.abs(values).max() < 2**31 - 1 else np.int64
            return np.concatenate([values[order][::-1], np.full(tail, pad)]).astype(dtype)

        self._rev_items = reversed_column(items, PAD_ITEM)
        self._rev_actions = reversed_column(actions, PAD_ACTION)
        self._rev_times = np.concatenate([times[order][::-1], np.zeros(tail, np.int64)])

    @property
    def n_events(self) -> int:
        """Number of events kept (after ``include_actions``)."""
        return int(self._keys.shape[0])

    def lengths(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> np.ndarray:
        """``[Q]`` number of real (unpadded) actions each query gets, at most ``seq_len``."""
        lo, hi = self._bounds(user_ids, request_time_ms)
        return np.minimum(hi - lo, self.seq_len)

    def _bounds(
        self, user_ids: np.ndarray, request_time_ms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        q_users = _as_1d_int("query_user_ids", user_ids)
        q_times = _as_1d_int("query_times_ms", request_time_ms)
        if q_users.shape != q_times.shape:
            raise ValueError(
                f"query_user_ids has {q_users.shape[0]} rows, query_times_ms has {q_times.shape[0]}"
            )
        if not len(self._unique_users):
            zeros = np.zeros(q_users.shape[0], dtype=np.int64)
            return zeros, zeros
        rank = np.searchsorted(self._unique_users, q_users)
        rank_c = np.minimum(rank, len(self._unique_users) - 1)
        known = self._unique_users[rank_c] == q_users
        offset = np.clip(q_times - self._t_min, 0, self._span - 1)
        base = rank_c.astype(np.int64) * self._span
        lo = np.searchsorted(self._keys, base, side="left")
        hi = np.searchsorted(self._keys, base + offset, side="left")  # strictly before
        hi = np.where(known, hi, lo)
        return lo.astype(np.int64), hi.astype(np.int64)

    def fetch(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> SequenceTensors:
        """``[Q]`` users and request times -> :class:`SequenceTensors` of ``[Q, seq_len]``."""
        types, items, times = self.fetch_numpy(user_ids, request_time_ms)
        return SequenceTensors(
            action_types=torch.from_numpy(types),
            action_item_ids=torch.from_numpy(items),
            action_times_ms=torch.from_numpy(times),
        )

    def fetch_numpy(
        self,
        user_ids: np.ndarray,
        request_time_ms: np.ndarray,
        out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`fetch` but returns three ``[Q, seq_len]`` numpy arrays (action
        types, item indices, times), int64 unless ``out`` gives preallocated arrays of
        other integer dtypes (e.g. int8/int32/int64 to store them compactly; reusing
        buffers also saves the first-touch cost of fresh memory on every call)."""
        lo, hi = self._bounds(user_ids, request_time_ms)
        n_q, s = lo.shape[0], self.seq_len
        if self.n_events == 0 or n_q == 0:
            return (
                np.zeros((n_q, s), dtype=np.int64),
                np.full((n_q, s), PAD_ITEM, dtype=np.int64),
                np.zeros((n_q, s), dtype=np.int64),
            )
        if out is not None:
            out_types, out_items, out_times = out
            for name, arr in zip(("types", "items", "times"), out, strict=True):
                if arr.shape != (n_q, s):
                    raise ValueError(f"out {name}: shape {arr.shape}, expected {(n_q, s)}")
        else:
            out_types = np.empty((n_q, s), dtype=np.int64)
            out_items = np.empty((n_q, s), dtype=np.int64)
            out_times = np.empty((n_q, s), dtype=np.int64)
        n_events = self.n_events
        steps = np.arange(s, dtype=np.int64)
        windows = [
            np.lib.stride_tricks.sliding_window_view(col, s)
            for col in (self._rev_actions, self._rev_items, self._rev_times)
        ]
        pads = (PAD_ACTION, PAD_ITEM, 0)
        for a in range(0, n_q, _QUERY_CHUNK):
            b = min(a + _QUERY_CHUNK, n_q)
            first = n_events - hi[a:b]  # reversed index of the newest action before t
            past_end = steps[None, :] >= np.minimum(hi[a:b] - lo[a:b], s)[:, None]
            for window, pad, dst in zip(
                windows, pads, (out_types, out_items, out_times), strict=True
            ):
                rows = window[first]
                rows[past_end] = pad
                dst[a:b] = rows
        return out_types, out_items, out_times


def build_sequences(
    event_user_ids: np.ndarray | Sequence[int],
    event_item_ids: np.ndarray | Sequence[int],
    event_action_types: np.ndarray | Sequence[int],
    event_times_ms: np.ndarray | Sequence[int],
    query_user_ids: np.ndarray | Sequence[int],
    query_times_ms: np.ndarray | Sequence[int],
    seq_len: int = DEFAULT_SEQ_LEN,
    include_actions: Iterable[int] | None = None,
) -> SequenceTensors:
    """Realtime action sequences for a batch of queries, from a raw event log.

    Each query ``(query_user_ids[q], query_times_ms[q])`` gets that user's latest
    ``seq_len`` events with ``time < query time`` (strictly), newest first; ties in time
    are broken by event order (later in the input = newer). Padding at the end: type 0,
    item ``PAD_ITEM``, time 0. Users with no events get an all-padding row.

    Args:
        event_user_ids / event_item_ids / event_action_types / event_times_ms: ``[E]``
            columns of the event log (action ids from ``ActionVocabulary``).
        query_user_ids / query_times_ms: ``[Q]`` queries.
        seq_len: S.
        include_actions: action ids to keep; ``None`` keeps every action.

    Returns:
        :class:`SequenceTensors` with three ``[Q, S]`` int64 tensors.
    """
    builder = SequenceBuilder(
        event_user_ids,
        event_item_ids,
        event_action_types,
        event_times_ms,
        seq_len=seq_len,
        include_actions=include_actions,
    )
    return builder.fetch(np.asarray(query_user_ids), np.asarray(query_times_ms))


def build_sequences_reference(
    event_user_ids: Sequence[int],
    event_item_ids: Sequence[int],
    event_action_types: Sequence[int],
    event_times_ms: Sequence[int],
    query_user_ids: Sequence[int],
    query_times_ms: Sequence[int],
    seq_len: int = DEFAULT_SEQ_LEN,
    include_actions: Iterable[int] | None = None,
) -> SequenceTensors:
    """Plain per-query Python version of :func:`build_sequences` (same contract); the
    readable definition the fast path and the online store are tested against."""
    keep = None if include_actions is None else {int(a) for a in include_actions}
    by_user: dict[int, list[tuple[int, int, int, int]]] = {}
    for row, (u, i, a, t) in enumerate(
        zip(event_user_ids, event_item_ids, event_action_types, event_times_ms, strict=True)
    ):
        if keep is not None and int(a) not in keep:
            continue
        by_user.setdefault(int(u), []).append((int(t), row, int(a), int(i)))
    n_q = len(query_user_ids)
    types = np.zeros((n_q, seq_len), dtype=np.int64)
    items = np.full((n_q, seq_len), PAD_ITEM, dtype=np.int64)
    times = np.zeros((n_q, seq_len), dtype=np.int64)
    for q, (u, qt) in enumerate(zip(query_user_ids, query_times_ms, strict=True)):
        past = [e for e in by_user.get(int(u), []) if e[0] < int(qt)]
        past.sort(key=lambda e: (e[0], e[1]), reverse=True)  # newest first, later row first
        for j, (t, _row, a, i) in enumerate(past[:seq_len]):
            types[q, j], items[q, j], times[q, j] = a, i, t
    return SequenceTensors(
        torch.from_numpy(types), torch.from_numpy(items), torch.from_numpy(times)
    )
