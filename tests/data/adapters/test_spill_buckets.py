"""Pass 1's bucket count: rows over bucket size, capped by the files the process may open."""

import resource

import pytest

from transact.data.adapters import writer


def test_buckets_follow_the_rows_until_the_open_file_cap():
    assert writer.spill_buckets(0, 500_000, max_open=100) == 1
    assert writer.spill_buckets(1_000_000, 500_000, max_open=100) == 2
    assert writer.spill_buckets(1_000_001, 500_000, max_open=100) == 3
    # 10^9 rows would want 2,000 files: capped, so each bucket holds more rows instead
    assert writer.spill_buckets(10**9, 500_000, max_open=100) == 100


def test_the_cap_is_half_the_soft_open_file_limit(monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda _what: (1024, 4096))
    assert writer.open_file_budget() == 512
    monkeypatch.setattr(resource, "getrlimit", lambda _what: (256, 4096))
    assert writer.open_file_budget() == 128
    assert writer.spill_buckets(10**9, 500_000) == 128


@pytest.mark.parametrize("rows", [10**9, 10**12])
def test_never_more_than_the_maximum(rows):
    assert writer.spill_buckets(rows, 1) <= writer.MAX_SPILL_BUCKETS
