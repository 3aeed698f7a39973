import datetime as dt
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transact.data.io import (
    DataError,
    DayPartitionWriter,
    date_to_day,
    day_end_ms,
    day_string,
    day_to_date,
    load_event_arrays,
    load_manifest,
    partition_days,
    partition_files,
    read_events,
    read_impressions,
)
from transact.data.schema import MS_PER_DAY, events_schema

T0 = 1_767_571_200_000  # 2026-01-05 00:00 UTC


def _events(times):
    n = len(times)
    return pa.table(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "user_id": np.arange(n, dtype=np.int64),
            "item_id": np.zeros(n, np.int64),
            "action_type": ["click"] * n,
            "timestamp_ms": np.asarray(times, np.int64),
            "surface": ["homefeed"] * n,
        },
        schema=events_schema(),
    )


def test_writer_routes_days_and_rolls_files(tmp_path):
    w = DayPartitionWriter(tmp_path, "events", events_schema(), "timestamp_ms", rows_per_file=4)
    times = [T0 + k * 1000 for k in range(10)] + [T0 + MS_PER_DAY + 5]
    w.write(_events(times))
    w.close()
    files = partition_files(tmp_path, "events")
    assert [d for d, _ in files] == ["2026-01-05"] * 3 + ["2026-01-06"]
    assert [f.name for _, f in files][:3] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    got = pa.Table.from_batches(list(read_events(tmp_path)))
    assert got.column("timestamp_ms").to_pylist() == times


def test_time_ranges_are_half_open(tiny_world):
    m = load_manifest(tiny_world)
    a, b = m.train_start_ms + 3 * 3_600_000, m.train_start_ms + 30 * 3_600_000
    t = np.concatenate([x.column("timestamp_ms").to_numpy() for x in read_events(tiny_world, a, b)])
    assert t.min() >= a and t.max() < b
    everything = load_event_arrays(tiny_world)
    inside = ((everything.times_ms >= a) & (everything.times_ms < b)).sum()
    assert t.size == inside
    imp = list(read_impressions(tiny_world, a, b, columns=["request_time_ms"]))
    rt = np.concatenate([x.column("request_time_ms").to_numpy() for x in imp])
    assert rt.min() >= a and rt.max() < b
    clicks = load_event_arrays(tiny_world, actions=["click"])
    assert (clicks.action_types == m.actions.id("click")).all() and len(clicks) > 0


def test_calendar_days_agree_with_the_datetime_calendar():
    assert date_to_day("1970-01-01") == 0 and day_to_date(0) == "1970-01-01"
    assert day_to_date(date_to_day("2024-02-28") + 1) == "2024-02-29"  # leap year
    assert day_to_date(date_to_day("2026-02-28") + 1) == "2026-03-01"
    assert date_to_day(dt.date(2026, 1, 5)) == T0 // MS_PER_DAY
    assert day_end_ms("2026-01-05") == T0 + MS_PER_DAY
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        date_to_day("26-1-1")
    times = np.random.default_rng(0).integers(0, 4_000_000_000_000, 200).tolist()
    times += [T0 - 1, T0, T0 + MS_PER_DAY - 1]
    for t in times:
        want = dt.datetime.fromtimestamp(t / 1000, tz=dt.UTC).date()
        assert day_string(t) == want.isoformat()
        assert t < day_end_ms(day_string(t)) <= t + MS_PER_DAY


def test_partition_days_and_sharded_event_arrays(tiny_world):
    days = partition_days(tiny_world, "events")
    assert days == sorted({d for d, _ in partition_files(tiny_world, "events")})
    everything = load_event_arrays(tiny_world)
    shard = load_event_arrays(tiny_world, user_shard=(1, 3))
    mine = everything.user_ids % 3 == 1
    assert len(shard) == int(mine.sum()) > 0
    np.testing.assert_array_equal(shard.times_ms, everything.times_ms[mine])
    np.testing.assert_array_equal(shard.item_ids, everything.item_ids[mine])
    with pytest.raises(KeyError, match="'like'"):
        load_event_arrays(tiny_world, actions=["like"])


def test_an_unknown_action_raises_even_where_it_is_not_kept(tiny_world, tmp_path):
    world = tmp_path / "w"
    shutil.copytree(tiny_world, world)
    day, first = partition_files(world, "events")[0]
    bad = pq.read_table(first).slice(0, 1)
    names = bad.column("action_type").to_pylist()
    bad = bad.set_column(bad.schema.get_field_index("action_type"), "action_type", [["like"]])
    pq.write_table(
        bad.cast(events_schema()), world / "events" / f"day={day}" / "part-00099.parquet"
    )
    with pytest.raises(DataError, match="unknown action 'like'"):
        load_event_arrays(world, actions=names)  # 'like' is not kept, and still refused
