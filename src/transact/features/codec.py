"""Compact binary value of one user's state in the sequence store, and 64-bit event keys.

A value holds the user's latest actions (newest first) and the recent de-duplication
keys, as struct-of-arrays so decoding is a handful of ``np.frombuffer`` calls::

    header  '<BHHI' version (1), n actions, m dedup keys,
                    k = keys ever inserted (the next key serial)       9 bytes
    times   int64[n]   action times, descending (newest first)    8 n
    items   int32[n]   dense item indices                         4 n
    actions uint8[n]   action type ids (never 0)                  1 n
    keys    uint64[m]  dedup keys (event-id and content hashes)   8 m
    serials uint32[m]  insertion serial of each key (ascending)   4 m
    ktimes  int64[m]   event time of each key                     8 m

A full 100-action sequence is 1,309 bytes before keys. Key serials make the
``max_dedup_keys`` bound independent of when values were compacted. Item embeddings are joined at
read time (docs/realtime.md explains the measurement behind that choice).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

VALUE_VERSION = 1
_HEADER = struct.Struct("<BHHI")
HEADER_BYTES = _HEADER.size
MAX_ENTRIES = 65_535

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ID_SEED = np.uint64(0x243F6A8885A308D3)
_CONTENT_SEED = np.uint64(0x13198A2E03707344)


class UserState(NamedTuple):
    """Decoded value: numpy views (read-only) over the stored bytes."""

    times_ms: np.ndarray  # [n] int64, descending
    item_ids: np.ndarray  # [n] int32
    action_ids: np.ndarray  # [n] uint8
    keys: np.ndarray  # [m] uint64, insertion order
    key_serials: np.ndarray  # [m] uint32, ascending
    key_times_ms: np.ndarray  # [m] int64
    total_keys: int  # serial of the next key


EMPTY_STATE = UserState(
    np.zeros(0, np.int64),
    np.zeros(0, np.int32),
    np.zeros(0, np.uint8),
    np.zeros(0, np.uint64),
    np.zeros(0, np.uint32),
    np.zeros(0, np.int64),
    0,
)


def encode_state(
    times_ms: Sequence[int] | np.ndarray,
    item_ids: Sequence[int] | np.ndarray,
    action_ids: Sequence[int] | np.ndarray,
    keys: Sequence[int] | np.ndarray,
    key_serials: Sequence[int] | np.ndarray,
    key_times_ms: Sequence[int] | np.ndarray,
    total_keys: int,
) -> bytes:
    """Pack one user's state (see the module docstring for the layout)."""
    n, m = len(times_ms), len(keys)
    if n > MAX_ENTRIES or m > MAX_ENTRIES:
        raise ValueError(f"state too large: {n} actions, {m} keys (max {MAX_ENTRIES})")
    return b"".join(
        (
            _HEADER.pack(VALUE_VERSION, n, m, total_keys % 2**32),
            np.asarray(times_ms, dtype="<i8").tobytes(),
            np.asarray(item_ids, dtype="<i4").tobytes(),
            np.asarray(action_ids, dtype="u1").tobytes(),
            np.asarray(keys, dtype="<u8").tobytes(),
            np.asarray(key_serials, dtype="<u4").tobytes(),
            np.asarray(key_times_ms, dtype="<i8").tobytes(),
        )
    )


_LITTLE = sys.byteorder == "little"


def _array(code: str, value: bytes, offset: int, n: int) -> array:
    a = array(code)
    a.frombytes(value[offset : offset + a.itemsize * n])
    if not _LITTLE:
        a.byteswap()
    return a


def _le_bytes(a: array) -> bytes:
    if _LITTLE:
        return a.tobytes()
    b = array(a.typecode, a)
    b.byteswap()
    return b.tobytes()


def unpack_arrays(value: bytes | None) -> tuple[array, array, array, array, array, array, int]:
    """Like :func:`decode_state` but into mutable ``array.array`` objects (no numpy):
    ``(times 'q', items 'i', actions 'B', keys 'Q', serials 'I', key times 'q', total)``.

    The processor's per-user hot path uses these: for ~100 entries, ``array`` slicing
    and ``insert`` cost a fraction of numpy's per-call overhead.
    """
    if value is None:
        return array("q"), array("i"), array("B"), array("Q"), array("I"), array("q"), 0
    n, m, total = decode_header(value)
    o = _HEADER.size
    times = _array("q", value, o, n)
    items = _array("i", value, o + 8 * n, n)
    actions = _array("B", value, o + 12 * n, n)
    o += 13 * n
    keys = _array("Q", value, o, m)
    serials = _array("I", value, o + 8 * m, m)
    ktimes = _array("q", value, o + 12 * m, m)
    return times, items, actions, keys, serials, ktimes, total


def pack_arrays(
    times: array,
    items: array,
    actions: array,
    keys: array,
    serials: array,
    ktimes: array,
    total: int,
) -> bytes:
    """Inverse of :func:`unpack_arrays`; byte-identical to :func:`encode_state`."""
    n, m = len(times), len(keys)
    if n > MAX_ENTRIES or m > MAX_ENTRIES:
        raise ValueError(f"state too large: {n} actions, {m} keys (max {MAX_ENTRIES})")
    return b"".join(
        (
            _HEADER.pack(VALUE_VERSION, n, m, total % 2**32),
            _le_bytes(times),
            _le_bytes(items),
            actions.tobytes(),
            _le_bytes(keys),
            _le_bytes(serials),
            _le_bytes(ktimes),
        )
    )


def decode_header(value: bytes) -> tuple[int, int, int]:
    """``(n actions, m keys, total keys)``; raises ``ValueError`` on a foreign value."""
    version, n, m, total = _HEADER.unpack_from(value, 0)
    if version != VALUE_VERSION:
        raise ValueError(
            f"sequence-store value has version {version}, this code reads {VALUE_VERSION}"
        )
    expected = _HEADER.size + 13 * n + 20 * m
    if len(value) != expected:
        raise ValueError(f"sequence-store value has {len(value)} bytes, header says {expected}")
    return n, m, total


def decode_state(value: bytes | None) -> UserState:
    """Unpack a value written by :func:`encode_state`; ``None`` is the empty state."""
    if value is None:
        return EMPTY_STATE
    n, m, total = decode_header(value)
    o = _HEADER.size
    times = np.frombuffer(value, "<i8", n, o)
    o += 8 * n
    items = np.frombuffer(value, "<i4", n, o)
    o += 4 * n
    actions = np.frombuffer(value, "u1", n, o)
    o += n
    keys = np.frombuffer(value, "<u8", m, o)
    o += 8 * m
    serials = np.frombuffer(value, "<u4", m, o)
    o += 4 * m
    ktimes = np.frombuffer(value, "<i8", m, o)
    return UserState(times, items, actions, keys, serials, ktimes, total)


def decode_actions(value: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Only the action arrays ``(times [n], items [n], actions [n])`` of a value (read path)."""
    n, _, _ = decode_header(value)
    o = _HEADER.size
    return (
        np.frombuffer(value, "<i8", n, o),
        np.frombuffer(value, "<i4", n, o + 8 * n),
        np.frombuffer(value, "u1", n, o + 12 * n),
    )


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, vectorized over uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def event_id_keys(event_ids: Sequence[str]) -> np.ndarray:
    """``[n]`` uint64 hashes of event ids, stable across processes (unlike ``hash``)."""
    n = len(event_ids)
    if n == 0:
        return np.zeros(0, np.uint64)
    raw = np.array([e.encode() for e in event_ids], dtype=object)
    lengths = np.fromiter((len(b) for b in raw), dtype=np.uint64, count=n)
    width = max(8, int(-(-int(lengths.max()) // 8) * 8))
    words = np.array(raw.tolist(), dtype=f"S{width}").view("<u8").reshape(n, width // 8)
    n_words = np.maximum(1, (lengths + np.uint64(7)) // np.uint64(8))
    h = np.full(n, _ID_SEED, dtype=np.uint64) ^ (lengths * _GOLDEN)
    with np.errstate(over="ignore"):
        for k in range(words.shape[1]):
            # only an id's own words: the hash must not depend on the batch's widest id
            h = np.where(n_words > k, _mix(h ^ words[:, k]), h)
    return h


def content_keys(
    user_ids: np.ndarray, item_ids: np.ndarray, action_ids: np.ndarray, times_ms: np.ndarray
) -> np.ndarray:
    """``[n]`` uint64 hashes of (user, item, action, time): the content de-duplication key."""
    h = np.full(len(user_ids), _CONTENT_SEED, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in (user_ids, item_ids, action_ids, times_ms):
            h = _mix(h ^ np.asarray(col, dtype=np.int64).view(np.uint64))
    return h
