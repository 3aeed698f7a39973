import numpy as np
import pyarrow as pa

from transact.data.io import (
    DayPartitionWriter,
    load_event_arrays,
    load_manifest,
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
