"""Read path: a batch of users' stored sequences as model tensors, in one contiguous buffer.

:class:`SequenceReader` implements :class:`transact.data.schema.SequenceSource`. One
``fetch`` does one multi-get against the store and fills a single ``[3, B, S]`` int64
buffer with whole-batch numpy gathers (:meth:`SequenceReader.fetch_reference` is the
plain per-user loop it is tested against); the three fields of the returned :class:`SequenceTensors` are views of it, so
serving can pin it and copy it to a GPU in one transfer (:meth:`SequenceReader.buffer_of`
gives the buffer back).
"""

from __future__ import annotations

import numpy as np
import torch

from transact.data.schema import DEFAULT_SEQ_LEN, PAD_ACTION, PAD_ITEM, SequenceTensors
from transact.features.codec import HEADER_BYTES, decode_actions, decode_header
from transact.features.store import SequenceStore, StoreUnavailableError


class SequenceReader:
    """Fetches the latest ``seq_len`` actions strictly before each request time.

    Args:
        store: the sequence store (RocksDB or Redis); its failures surface as
            :class:`StoreUnavailableError`.
        seq_len: S, the number of positions returned (paper: 100).

    Example::

        reader = SequenceReader(open_store("runs/seq.rocksdb", read_only=True))
        seq = reader.fetch(np.array([7, 8]), np.array([t, t]))
        seq.action_types.shape   # [2, 100], newest first, 0 = padding
    """

    def __init__(self, store: SequenceStore, seq_len: int = DEFAULT_SEQ_LEN) -> None:
        if seq_len < 1:
            raise ValueError(f"SequenceReader.seq_len must be >= 1, got {seq_len}")
        self.store = store
        self.seq_len = seq_len

    def fetch(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> SequenceTensors:
        """``[B]`` users and request times -> :class:`SequenceTensors` of ``[B, S]`` int64.

        Users without history (or with none before their request time) get all padding:
        action type 0, item ``PAD_ITEM``, time 0.
        """
        users = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        times = np.asarray(request_time_ms, dtype=np.int64).reshape(-1)
        if users.shape != times.shape:
            raise ValueError(
                f"fetch: {users.shape[0]} user_ids but {times.shape[0]} request_time_ms"
            )
        if (users < 0).any():
            raise ValueError(f"fetch: negative user_id at row {int(np.flatnonzero(users < 0)[0])}")
        values = self._read(users)
        buf = np.empty((3, users.shape[0], self.seq_len), dtype=np.int64)
        _fill_vectorized(values, times, buf)
        t = torch.from_numpy(buf)
        return SequenceTensors(action_types=t[0], action_item_ids=t[1], action_times_ms=t[2])

    def fetch_reference(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> SequenceTensors:
        """Plain per-user version of :meth:`fetch` (same contract), for tests and benchmarks."""
        users = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        times = np.asarray(request_time_ms, dtype=np.int64).reshape(-1)
        values = self._read(users)
        b, s = users.shape[0], self.seq_len
        buf = np.zeros((3, b, s), dtype=np.int64)
        buf[1] = PAD_ITEM
        for row, (value, t_req) in enumerate(zip(values, times.tolist(), strict=True)):
            if value is None:
                continue
            a_times, a_items, a_types = decode_actions(value)
            # times are descending: skip the entries at or after the request time
            start = int(np.searchsorted(-a_times, -t_req, side="right"))
            k = min(s, a_times.shape[0] - start)
            if k <= 0:
                continue
            buf[0, row, :k] = a_types[start : start + k]
            buf[1, row, :k] = a_items[start : start + k]
            buf[2, row, :k] = a_times[start : start + k]
        t = torch.from_numpy(buf)
        return SequenceTensors(action_types=t[0], action_item_ids=t[1], action_times_ms=t[2])

    def _read(self, users: np.ndarray) -> list[bytes | None]:
        try:
            return self.store.get_many(users.tolist())
        except StoreUnavailableError:
            raise
        except Exception as exc:  # any backend failure is "unavailable" to the caller
            raise StoreUnavailableError(f"sequence store read failed: {exc}") from exc

    @staticmethod
    def buffer_of(seq: SequenceTensors) -> torch.Tensor:
        """The ``[3, B, S]`` buffer a :meth:`fetch` result views (one host-to-device copy)."""
        base = seq.action_types._base  # type: ignore[attr-defined]
        if base is None or base.shape[0] != 3:
            return torch.stack(list(seq))
        return base


def empty_sequences(batch: int, seq_len: int = DEFAULT_SEQ_LEN) -> SequenceTensors:
    """All-padding ``[B, S]`` sequences: what serving uses when the store is unavailable."""
    buf = torch.zeros((3, batch, seq_len), dtype=torch.int64)
    buf[0] = PAD_ACTION
    buf[1] = PAD_ITEM
    return SequenceTensors(buf[0], buf[1], buf[2])


def _fill_vectorized(
    values: list[bytes | None], request_time_ms: np.ndarray, out: np.ndarray
) -> None:
    """Fill ``out`` ``[3, B, S]`` from stored values with a few whole-batch numpy ops.

    The values are joined into one buffer, each padded so its int64 times start 8-byte
    aligned; then one gather finds each row's first action strictly before its request
    time and three gathers copy types, items and times. Per user, only the 9-byte header
    is touched in Python.
    """
    b, s = out.shape[1], out.shape[2]
    parts: list[bytes] = []
    pos = 0
    t_base = np.zeros(b, dtype=np.int64)  # index of each row's first time, in int64 units
    n_act = np.zeros(b, dtype=np.int64)
    for row, v in enumerate(values):
        if v is None:
            continue
        n, _, _ = decode_header(v)
        pad = -(pos + HEADER_BYTES) % 8
        if pad:
            parts.append(bytes(pad))
            pos += pad
        parts.append(v)
        t_base[row] = (pos + HEADER_BYTES) // 8
        n_act[row] = n
        pos += len(v)
    parts.append(bytes(-pos % 8 + 8))
    raw = np.frombuffer(b"".join(parts), dtype=np.uint8)
    as_i8 = raw.view("<i8")
    as_i4 = raw.view("<i4")
    width = int(n_act.max()) if b else 0
    cols = np.arange(max(width, s), dtype=np.int64)
    # start = number of actions at or after the request time (times are descending)
    valid = cols[None, :width] < n_act[:, None]
    t_all = as_i8[np.where(valid, t_base[:, None] + cols[None, :width], 0)]
    start = ((t_all >= request_time_ms[:, None]) & valid).sum(axis=1)
    k = start[:, None] + cols[None, :s]
    ok = k < n_act[:, None]
    k = np.where(ok, k, 0)
    np.copyto(out[2], np.where(ok, as_i8[t_base[:, None] + k], 0))
    item_base = 2 * t_base + 2 * n_act  # items follow the times, in int32 units
    np.copyto(out[1], np.where(ok, as_i4[item_base[:, None] + k], PAD_ITEM))
    type_base = 8 * t_base + 12 * n_act  # action types follow the items, in bytes
    np.copyto(out[0], np.where(ok, raw[type_base[:, None] + k], PAD_ACTION))
