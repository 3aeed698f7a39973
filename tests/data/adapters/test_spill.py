import numpy as np
import pyarrow as pa
import pytest

from transact.data.adapters.spill import (
    DaySpill,
    merge_by_time,
    time_order,
    time_order_reference,
)
from transact.data.schema import MS_PER_DAY

T0 = 1_767_571_200_000  # 2026-01-05 00:00 UTC


@pytest.mark.parametrize("span", [1, 5_000, 70_000, 10 * MS_PER_DAY, 400 * MS_PER_DAY, 1 << 50])
def test_time_order_is_the_stable_sort(span):
    """The radix passes (one, two, three 16-bit digits; a plain sort past 48 bits) give
    exactly the stable argsort, ties in row order."""
    rng = np.random.default_rng(span % 1000)
    times = T0 + rng.integers(0, span, 20_000)
    times[::7] = times[3]  # many ties
    got = time_order(times)
    assert np.array_equal(got, time_order_reference(times))
    assert np.array_equal(time_order(times[:0]), np.zeros(0, np.int64))
    # a sorted prefix (ties with the rest: the prefix's rows first, as a stable sort)
    for prefix in (1, 5_000, times.size):
        times[:prefix] = np.sort(times[:prefix])
        got = time_order(times, sorted_prefix=prefix)
        assert np.array_equal(got, time_order_reference(times))


def test_day_spill_splits_sorted_rows_by_day_and_refuses_unsorted(tmp_path):
    schema = pa.schema([("t", pa.int64()), ("v", pa.int64())])
    spill = DaySpill(tmp_path / "d", schema, "t")
    t = np.array([T0 - 5, T0 + 1, T0 + 1, T0 + 3 * MS_PER_DAY])
    spill.add(pa.table({"t": t, "v": np.arange(4)}), 1)
    spill.add(pa.table({"t": t[1:2], "v": [9]}), 0)
    assert spill.days() == ["2026-01-04", "2026-01-05", "2026-01-08"]
    day = spill.read_day("2026-01-05")
    assert [part for part, _ in day] == [0, 1]  # in part order, whoever wrote first
    assert [rows.to_pydict() for _, rows in day] == [
        {"t": [T0 + 1], "v": [9]},
        {"t": [T0 + 1, T0 + 1], "v": [1, 2]},
    ]
    with pytest.raises(ValueError, match="not in t order"):
        spill.add(pa.table({"t": t[::-1], "v": np.arange(4)}), 2)


def test_merge_by_time_is_the_stable_sort_of_the_parts():
    """Sorted parts merged: exactly the stable sort of their concatenation (ties in
    part, then row order)."""
    rng = np.random.default_rng(0)
    parts = []
    for k in range(4):
        t = np.sort(T0 + rng.integers(0, 50, 300))
        parts.append(pa.table({"t": t, "part": np.full(t.size, k), "row": np.arange(t.size)}))
    got = merge_by_time(parts, "t")
    whole = pa.concat_tables(parts)
    want = whole.take(np.argsort(np.asarray(whole.column("t")), kind="stable"))
    assert got.equals(want.combine_chunks())
    assert merge_by_time(parts[:1], "t").equals(parts[0])
