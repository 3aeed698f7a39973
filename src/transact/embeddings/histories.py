"""Long-term user action histories for PinnerFormer, read from a world directory.

A world directory (written by ``transact data generate`` or a dataset adapter) is read
through the data stage's readers (:mod:`transact.data.io`: the manifest, the events, the
item table). PinnerFormer reads a user's engagements, not impressions: by default every
action type except ``impression``.

:class:`UserHistories` keeps the selected events of many users in one CSR layout (sorted
by user, then time), from which :func:`last_actions` cuts "the last L actions before time
T, newest first" for every user at once, vectorized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transact.data.io import load_event_arrays, load_manifest
from transact.data.schema import PAD_ACTION, PAD_ITEM, ActionVocabulary

NON_HISTORY_ACTIONS = ("impression",)
"""Action types PinnerFormer does not read: impressions are not the user's choice."""


@dataclass(frozen=True)
class UserHistories:
    """Selected events of many users, sorted by (user, time, event order).

    Fields:
        user_ids: ``[U]`` int64 sorted unique user ids.
        offsets: ``[U + 1]`` int64; user ``u``'s events are ``offsets[u]:offsets[u + 1]``.
        item_ids: ``[E]`` int64 dense item indices.
        action_types: ``[E]`` int64 action ids (``ActionVocabulary`` ids, never 0).
        times_ms: ``[E]`` int64 event times.
    """

    user_ids: np.ndarray
    offsets: np.ndarray
    item_ids: np.ndarray
    action_types: np.ndarray
    times_ms: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_events(self) -> int:
        return len(self.item_ids)

    def event_user_index(self) -> np.ndarray:
        """``[E]`` position in ``user_ids`` of each event's user."""
        return np.repeat(np.arange(self.n_users), np.diff(self.offsets))

    def select_users(self, rows: np.ndarray) -> UserHistories:
        """The histories of users at positions ``rows`` (sorted ascending) of ``user_ids``."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        idx = np.repeat(
            starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths
        ) + np.arange(lengths.sum())
        return UserHistories(
            user_ids=self.user_ids[rows],
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            item_ids=self.item_ids[idx],
            action_types=self.action_types[idx],
            times_ms=self.times_ms[idx],
        )


def load_histories(
    data_dir: str | Path,
    end_time_ms: int | None = None,
    actions: tuple[str, ...] | None = None,
    vocab: ActionVocabulary | None = None,
    shard: tuple[int, int] | None = None,
    n_items: int | None = None,
) -> UserHistories:
    """Read a world's events into :class:`UserHistories`, keeping only what PinnerFormer reads.

    Args:
        data_dir: world directory.
        end_time_ms: keep events strictly before this time (None: all).
        actions: action names to keep (default: every action of the vocabulary except
            ``impression``).
        vocab: the action vocabulary (default: the world manifest's).
        shard: ``(index, count)``: keep users with ``user_id % count == index`` only, so a
            generation worker holds one slice of the users in memory.
        n_items: item ids must lie in ``0..n_items-1`` (default: the manifest's count).

    The events come through the data stage's reader
    (:func:`transact.data.io.load_event_arrays`), which validates every event and raises
    :class:`~transact.data.io.DataError` on an unknown action name, an item outside the
    item table or a timestamp in seconds.
    """
    vocab = vocab or load_manifest(data_dir).actions
    if actions is None:
        actions = tuple(n for n in vocab.names if n not in NON_HISTORY_ACTIONS)
    events = load_event_arrays(
        data_dir, end_ms=end_time_ms, actions=actions, vocab=vocab, n_items=n_items,
        user_shard=shard,
    )  # fmt: skip
    return build_histories(events.user_ids, events.item_ids, events.action_types, events.times_ms)


def build_histories(
    user_ids: np.ndarray, item_ids: np.ndarray, action_types: np.ndarray, times_ms: np.ndarray
) -> UserHistories:
    """Flat event arrays ``[E]`` -> :class:`UserHistories` (stable sort by user, then time)."""
    user_ids = np.asarray(user_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    action_types = np.asarray(action_types, dtype=np.int64)
    times_ms = np.asarray(times_ms, dtype=np.int64)
    if (action_types == PAD_ACTION).any():
        raise ValueError(
            f"event row {int(np.argmax(action_types == PAD_ACTION))}: action id 0 is padding"
        )
    order = np.lexsort((times_ms, user_ids))
    user_ids, item_ids, action_types, times_ms = (
        user_ids[order],
        item_ids[order],
        action_types[order],
        times_ms[order],
    )
    unique_users, starts = np.unique(user_ids, return_index=True)
    offsets = np.concatenate([starts, [len(user_ids)]]).astype(np.int64)
    return UserHistories(unique_users, offsets, item_ids, action_types, times_ms)


def last_actions(
    histories: UserHistories, end_time_ms: int | np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The last ``max_len`` actions of every user strictly before ``end_time_ms``, newest first.

    Args:
        histories: the users' histories.
        end_time_ms: a scalar cutoff or ``[U]`` per-user cutoffs.
        max_len: sequence length L.

    Returns:
        ``(action_types [U, L], item_ids [U, L], times_ms [U, L], lengths [U])``, padded at
        the end with ``PAD_ACTION`` / ``PAD_ITEM`` / 0.
    """
    n_users = histories.n_users
    cutoff = np.broadcast_to(np.asarray(end_time_ms, dtype=np.int64), (n_users,))
    user_of_event = histories.event_user_index()
    before = histories.times_ms < cutoff[user_of_event]
    counts = np.bincount(user_of_event, weights=before, minlength=n_users).astype(np.int64)
    ends = histories.offsets[:-1] + counts  # events sorted by time: the kept ones come first
    return gather_windows(histories, np.arange(n_users), ends, max_len)


def gather_windows(
    histories: UserHistories, rows: np.ndarray, ends: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events ``[max(start, end - max_len), end)`` of users ``rows``, newest first, padded.

    ``ends`` ``[R]`` are absolute event indices (exclusive) inside each user's range.
    Returns ``(action_types [R, L], item_ids [R, L], times_ms [R, L], lengths [R])``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    lengths = np.minimum(ends - histories.offsets[rows], max_len)
    k = np.arange(max_len)
    valid = k[None, :] < lengths[:, None]
    if histories.n_events == 0:
        zeros = np.zeros((len(rows), max_len), dtype=np.int64)
        return zeros, np.full_like(zeros, PAD_ITEM), zeros.copy(), lengths
    idx = np.where(valid, ends[:, None] - 1 - k[None, :], 0)
    types = np.where(valid, histories.action_types[idx], PAD_ACTION)
    items = np.where(valid, histories.item_ids[idx], PAD_ITEM)
    times = np.where(valid, histories.times_ms[idx], 0)
    return types, items, times, lengths
