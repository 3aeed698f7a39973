"""Freshness benchmark: lag over time from per-event times, its plot, and an end-to-end run."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from transact.features.freshness import FreshnessKnobs, bench_freshness, lag_over_time, plot_lag


def test_lag_over_time_counts_created_but_uncommitted_events():
    # 4 events created at 0, 50, 100, 150 ms; the first two committed together at 120 ms,
    # the others at 160 and 400 ms
    created = np.array([1000, 1050, 1100, 1150], dtype=np.float64)
    committed = np.array([1120, 1120, 1160, 1400], dtype=np.float64)
    lag = lag_over_time(created, committed, step_ms=100)
    assert lag["t_s"] == [0.0, 0.1, 0.2, 0.3, 0.4]
    # t=0: 1 created, 0 committed; t=100: 3 created, 0 committed; t=200: 4 created, 3 done
    assert lag["lag_events"] == [1, 3, 1, 1, 0]
    # oldest uncommitted: t=0 -> created at 0 (age 0); t=100 -> age 100; t=200/300 -> the
    # event created at 150 (ages 50, 150); t=400: none
    assert lag["oldest_uncommitted_ms"] == [0.0, 100.0, 50.0, 150.0, 0.0]


def test_lag_over_time_ends_after_a_commit_with_a_fraction_of_a_millisecond():
    # the last batch commits at 1100.5 ms, half a ms after a grid point: the series must go
    # on to 1200 ms, where nothing is pending (truncating it to 1100 left 11 events "pending"
    # at the end of a CI run)
    created = np.array([1000.0, 1000.2, 1050.7])
    committed = np.array([1010.0, 1100.5, 1100.5])
    lag = lag_over_time(created, committed, step_ms=100)
    assert lag["t_s"] == [0.0, 0.1, 0.2]
    assert lag["lag_events"] == [1, 2, 0]
    assert lag["oldest_uncommitted_ms"][-1] == 0.0


def test_lag_plot_is_written(tmp_path):
    created = np.arange(0, 1000, 10, dtype=np.float64)
    result = {
        "rate_per_s": 100.0,
        "p50_ms": 5.0,
        "p99_ms": 9.0,
        "lag_over_time": lag_over_time(created, created + 5),
    }
    path = str(tmp_path / "plots" / "lag.png")
    plot_lag(result, path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_end_to_end_freshness_run_accounts_for_every_event(tmp_path, kafka_bootstrap):
    """A short run through the local broker: every produced event is committed once,
    the stages add up, the lag returns to 0, and the CPU of each process is reported."""
    from transact.features.bench import _events

    path = os.path.join(tmp_path, "events.parquet")
    pq.write_table(_events(5000, 500, 1000), path)
    out = bench_freshness(str(tmp_path), path, rate=2000, seconds=1.0, knobs=FreshnessKnobs())
    if "skipped" in out:
        pytest.skip(out["skipped"])
    assert out["events"] == 2000
    assert 0 < out["p50_ms"] <= out["p99_ms"] <= out["max_ms"]
    stages = out["stages"]
    assert stages["to_consumer_ms"]["p50_ms"] >= 0 and stages["in_processor_ms"]["p50_ms"] >= 0
    lag = out["lag_over_time"]
    assert lag["lag_events"][-1] == 0 and max(lag["lag_events"]) > 0
    assert out["batches"]["count"] >= 1 and out["batches"]["mean_size"] <= 2000
    for key in ("processor_cores", "producer_cores", "broker_cores", "machine_busy_cores"):
        assert out["cpu"][key] >= 0
