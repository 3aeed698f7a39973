"""Long-term user action histories for PinnerFormer, read from a world directory.

A world directory (written by ``transact data generate`` or a dataset adapter) holds
``items.parquet`` (dense ``item_id``, ``embedding`` [d_item]) and
``events/day=YYYY-MM-DD/*.parquet`` in :func:`transact.data.schema.events_schema`.
PinnerFormer reads a user's engagements, not impressions: by default every action type
except ``impression``.

:class:`UserHistories` keeps the selected events of many users in one CSR layout (sorted
by user, then time), from which :func:`last_actions` cuts "the last L actions before time
T, newest first" for every user at once, vectorized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

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


def read_item_embeddings(data_dir: str | Path) -> np.ndarray:
    """``items.parquet`` -> ``[n_items, d_item]`` float32, row ``i`` = dense item index ``i``."""
    path = Path(data_dir) / "items.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (a world directory needs items.parquet)")
    table = pq.read_table(path, columns=["item_id", "embedding"])
    item_ids = table.column("item_id").to_numpy()
    col = table.column("embedding").combine_chunks()
    if not pa.types.is_fixed_size_list(col.type) and not pa.types.is_list(col.type):
        raise ValueError(f"{path}: column 'embedding' must be a list of float32, got {col.type}")
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    d = len(values) // max(len(item_ids), 1)
    emb = values.reshape(len(item_ids), d)
    if not np.array_equal(np.sort(item_ids), np.arange(len(item_ids))):
        raise ValueError(f"{path}: item_id must be the dense index 0..{len(item_ids) - 1}")
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise ValueError(f"{path}: column 'embedding' row {int(np.argmax(bad))} is not finite")
    out = np.empty_like(emb)
    out[item_ids] = emb
    return out


def read_manifest(data_dir: str | Path) -> dict | None:
    """``DIR/manifest.json`` as a dict (see ``transact.data.io.WorldManifest``), or None."""
    path = Path(data_dir) / "manifest.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def world_vocabulary(data_dir: str | Path) -> ActionVocabulary:
    """The world's action vocabulary from its manifest (``ActionVocabulary()`` without one)."""
    manifest = read_manifest(data_dir)
    if manifest is None or "actions" not in manifest:
        return ActionVocabulary()
    return ActionVocabulary(
        names=tuple(manifest["actions"]),
        positive=tuple(manifest.get("positive_actions", ActionVocabulary().positive)),
    )


def event_days(data_dir: str | Path) -> list[str]:
    """Sorted ``YYYY-MM-DD`` day partitions under ``DIR/events``."""
    events = Path(data_dir) / "events"
    if not events.exists():
        raise FileNotFoundError(f"{events} not found (a world directory needs events/day=*/)")
    return sorted(p.name.split("=", 1)[1] for p in events.glob("day=*") if p.is_dir())


def load_histories(
    data_dir: str | Path,
    end_time_ms: int | None = None,
    actions: tuple[str, ...] | None = None,
    vocab: ActionVocabulary | None = None,
    shard: tuple[int, int] | None = None,
    n_items: int | None = None,
) -> UserHistories:
    """Stream ``DIR/events`` into :class:`UserHistories`, keeping only what PinnerFormer reads.

    Args:
        data_dir: world directory.
        end_time_ms: keep events strictly before this time (None: all).
        actions: action names to keep (default: every action of the vocabulary except
            ``impression``).
        vocab: the action vocabulary (default: the world manifest's, else
            ``ActionVocabulary()``).
        shard: ``(index, count)``: keep users with ``user_id % count == index`` only, so a
            generation worker holds one slice of the users in memory.
        n_items: when given, item ids must lie in ``0..n_items-1``.

    Unknown action names in the kept rows are impossible by construction; unknown names
    anywhere raise with the file name, since they mean the vocabulary does not match.
    """
    vocab = vocab or world_vocabulary(data_dir)
    if actions is None:
        actions = tuple(n for n in vocab.names if n not in NON_HISTORY_ACTIONS)
    vocab_names = pa.array(vocab.names, pa.string())
    keep = pa.array(list(actions), pa.string())
    for a in actions:
        vocab.id(a)
    dataset = ds.dataset(Path(data_dir) / "events", format="parquet", partitioning="hive")
    columns = ["user_id", "item_id", "action_type", "timestamp_ms"]
    users, items, types, times = [], [], [], []
    for fragment in dataset.get_fragments():
        for batch in fragment.to_batches(columns=columns):
            names = batch.column("action_type")
            unknown = pc.invert(pc.is_in(names, vocab_names))
            if pc.any(unknown).as_py():
                row = pc.index(unknown, True).as_py()
                raise ValueError(
                    f"{fragment.path}: column 'action_type' row {row} has unknown action "
                    f"{names[row].as_py()!r}; known: {list(vocab.names)}"
                )
            mask = pc.is_in(names, keep)
            if end_time_ms is not None:
                mask = pc.and_(mask, pc.less(batch.column("timestamp_ms"), end_time_ms))
            if shard is not None:
                index, count = shard
                mask = pc.and_(mask, pc.equal(pc.remainder(batch.column("user_id"), count), index))
            batch = batch.filter(mask)
            if batch.num_rows == 0:
                continue
            users.append(batch.column("user_id").to_numpy())
            items.append(batch.column("item_id").to_numpy())
            # ActionVocabulary id = position in names + 1
            ids = pc.index_in(batch.column("action_type"), value_set=vocab_names).to_numpy() + 1
            types.append(ids)
            times.append(batch.column("timestamp_ms").to_numpy())
    return build_histories(
        np.concatenate(users) if users else np.zeros(0, np.int64),
        np.concatenate(items) if items else np.zeros(0, np.int64),
        np.concatenate(types) if types else np.zeros(0, np.int64),
        np.concatenate(times) if times else np.zeros(0, np.int64),
        n_items=n_items,
    )


def build_histories(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    action_types: np.ndarray,
    times_ms: np.ndarray,
    n_items: int | None = None,
) -> UserHistories:
    """Flat event arrays ``[E]`` -> :class:`UserHistories` (stable sort by user, then time)."""
    user_ids = np.asarray(user_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    action_types = np.asarray(action_types, dtype=np.int64)
    times_ms = np.asarray(times_ms, dtype=np.int64)
    if n_items is not None and len(item_ids):
        bad = (item_ids < 0) | (item_ids >= n_items)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"event row {row}: item_id {int(item_ids[row])} outside the item table 0..{n_items - 1}"
            )
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
