"""Pass 3 of the import: one day of spilled rows -> the world dir's day tables.

Pass 2 (:mod:`.bucket`) spills numbers only, ids local to each bucket, each bucket's rows
in time order (:class:`~.spill.DaySpill`): the schemas here (:data:`EVENT_SPILL_SCHEMA`,
:func:`impression_spill_schema`). A day's tables (:func:`events_table`,
:func:`impressions_table`) add each bucket's id offsets, merge the buckets' sorted parts
(:func:`~.spill.merge_by_time`) and make the strings: action and surface names, and the
event ids (:func:`event_ids`, with :func:`event_ids_reference` the plain version it is
tested against).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transact.data.adapters.bucket import POSITION_BITS
from transact.data.adapters.spill import merge_by_time
from transact.data.schema import impressions_schema

if TYPE_CHECKING:
    from transact.data.adapters.writer import _Totals


EVENT_SPILL_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("action", pa.int8()),
        ("timestamp_ms", pa.int64()),
        ("surface", pa.int32()),
        ("event_key", pa.int64()),
    ]
)
"""Pass 2's events: numbers only (action and surface codes, the event id's parts local to
the bucket in one key, :func:`~.bucket.event_key`)."""


def impression_spill_schema(labels: tuple[str, ...]) -> pa.Schema:
    """Pass 2's impressions: the impressions schema with a request id local to the bucket,
    the surface as a code and no ``gt_prob_*`` (a log has no ground truth)."""
    fields = [
        pa.field("surface", pa.int32()) if f.name == "surface" else f
        for f in impressions_schema(labels)
    ]
    return pa.schema([f for f in fields if not f.name.startswith("gt_prob_")])


def event_ids(shown: np.ndarray, a: np.ndarray, b: np.ndarray, widths: dict[str, int]) -> pa.Array:
    """``[N]`` event ids of one width, built in one byte buffer (no per-row string work):
    ``i<request>:<position>`` where ``shown`` (an impression, request ``a``, position
    ``b``), else ``e<serial>`` with the serial ``b`` zero-padded to the same width.

    The characters after the first are the digits of one number per row: an impression's
    request digits, a 0 where the ``:`` goes, its position's digits; an action's serial.
    Its digits are written column by column (contiguous stores) from two halves of at most
    9 digits (uint32 division is faster than uint64), then transposed once.
    :func:`event_ids_reference` is the plain version it is tested against."""
    r, p = widths["request"], widths["position"]
    width = 1 + max(r + 1 + p, widths["event"])
    n = shown.size
    if width - 1 > 19 or n * width >= 2**31:  # past uint64, or past string offsets
        return event_ids_reference(shown, a, b, widths)
    scale = np.uint64(10 ** (width - 1 - r))
    b64 = b.astype(np.uint64)
    value = np.where(shown, a.astype(np.uint64) * scale + b64, b64)
    cols = np.empty((width, n), np.uint8)
    low_digits = min(width - 1, 9)
    high, low = np.divmod(value, np.uint64(10**low_digits))
    low = low.astype(np.uint32)
    for j in range(width - 1, width - 1 - low_digits, -1):
        low, cols[j] = np.divmod(low, np.uint32(10))
    for j in range(width - 1 - low_digits, 0, -1):
        high, cols[j] = np.divmod(high, np.uint64(10))
    cols[1:] += ord("0")
    cols[0] = np.where(shown, ord("i"), ord("e"))
    cols[1 + r][shown] = ord(":")
    data = np.ascontiguousarray(cols.T)
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _digits(data: np.ndarray, col: int, values: np.ndarray, width: int) -> None:
    """Write ``values`` zero-padded to ``width`` ASCII digits into ``data[:, col:col+width]``."""
    x = values.astype(np.uint64)
    for j in range(col + width - 1, col - 1, -1):
        x, digit = np.divmod(x, np.uint64(10))
        data[:, j] = digit + ord("0")


def event_ids_reference(
    shown: np.ndarray, a: np.ndarray, b: np.ndarray, widths: dict[str, int]
) -> pa.Array:
    """:func:`event_ids`, plainly: each part's digits written into its block of rows."""
    r, p = widths["request"], widths["position"]
    width = 1 + max(r + 1 + p, widths["event"])
    data = np.empty((shown.size, width), np.uint8)
    imp = np.flatnonzero(shown)
    block = np.empty((imp.size, width), np.uint8)
    block[:, 0] = ord("i")
    _digits(block, 1, a[imp], r)
    block[:, 1 + r] = ord(":")
    _digits(block, 2 + r, b[imp], width - 2 - r)
    data[imp] = block
    act = np.flatnonzero(~shown)
    block = np.empty((act.size, width), np.uint8)
    block[:, 0] = ord("e")
    _digits(block, 1, b[act], width - 1)
    data[act] = block
    offsets = np.arange(shown.size + 1, dtype=np.int64) * width
    return pa.Array.from_buffers(
        pa.large_string(), shown.size, [None, pa.py_buffer(offsets), pa.py_buffer(data.ravel())]
    ).cast(pa.string())


def events_table(
    parts: list[tuple[int, pa.Table]], names: pa.Array, surfaces: pa.Array, totals: _Totals
) -> pa.Table:
    """One day of spilled events (``[(bucket, rows)]``, each in time order) as
    :func:`~transact.data.schema.events_schema` rows, in time order. Event ids (unique
    over the log, one width, :func:`event_ids`): an impression's
    ``i<request_id>:<position>``, every other event's ``e<serial>`` (serials count over all
    buckets): each bucket's keys are made global, then the buckets merged."""
    glob = []
    for bucket, part in parts:
        key = np.asarray(part.column("event_key"))
        shown = key >= 0
        key = np.where(
            shown,
            key + (int(totals.request_offset[bucket]) << POSITION_BITS),
            key - int(totals.event_offset[bucket]),
        )
        glob.append(
            part.set_column(part.schema.get_field_index("event_key"), "event_key", pa.array(key))
        )
    t = merge_by_time(glob, "timestamp_ms")
    key = np.asarray(t.column("event_key"))
    shown = key >= 0
    a = np.where(shown, key >> POSITION_BITS, 0)
    b = np.where(shown, key & ((1 << POSITION_BITS) - 1), -1 - key)
    action = names.take(pc.subtract(t.column("action").cast(pa.int32()), 1))
    return pa.table(
        {
            "event_id": event_ids(shown, a, b, totals.id_widths),
            "user_id": t.column("user_id"),
            "item_id": t.column("item_id"),
            "action_type": action,
            "timestamp_ms": t.column("timestamp_ms"),
            "surface": surfaces.take(t.column("surface")),
        }
    )


def impressions_table(
    parts: list[tuple[int, pa.Table]], schema: pa.Schema, surfaces: pa.Array, totals: _Totals
) -> pa.Table:
    """One day of spilled impressions (``[(bucket, rows)]``, each by request time) as
    ``schema`` rows by (request time, request, position), with global request ids (each
    bucket's offset added before the merge), surface names and NaN ``gt_prob_*``."""
    glob = []
    for bucket, part in parts:
        request = np.asarray(part.column("request_id")) + totals.request_offset[bucket]
        index = part.schema.get_field_index("request_id")
        glob.append(part.set_column(index, "request_id", pa.array(request)))
    t = merge_by_time(glob, "request_time_ms")
    nan = pa.array(np.full(t.num_rows, np.nan, np.float32))
    columns = {
        f.name: surfaces.take(t.column("surface")) if f.name == "surface"
        else nan if f.name.startswith("gt_prob_") else t.column(f.name)
        for f in schema
    }  # fmt: skip
    return pa.table(columns).cast(schema)
