import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transact.data.io import date_to_day
from transact.data.schema import MS_PER_DAY, UserEmbeddingSource
from transact.embeddings.store import (
    DatedUserEmbeddings,
    RocksDictUserEmbeddings,
    export_to_rocksdict,
    mark_complete,
    read_date,
    serving_dates,
    write_part,
)

D = 4
DATES = ["2026-01-03", "2026-01-04", "2026-01-06"]  # 01-05 missing (a failed run)


def _write_world(root, dates=DATES, users=(1, 2, 3)):
    """Each date's embedding of user u is [day, u, 0, 0]: the value names its table."""
    for date in dates:
        day = date_to_day(date)
        users_arr = np.array(users, dtype=np.int64)
        emb = np.zeros((len(users), D), np.float32)
        emb[:, 0] = day
        emb[:, 1] = users_arr
        # two parts, to check they are merged
        write_part(root, date, 0, users_arr[:1], emb[:1], "v1")
        write_part(root, date, 1, users_arr[1:], emb[1:], "v1")
        mark_complete(root, date)


def test_lookup_reads_the_day_before_never_the_same_day(tmp_path):
    _write_world(tmp_path)
    source = DatedUserEmbeddings(tmp_path, d_user=D)
    assert isinstance(source, UserEmbeddingSource)
    d4 = date_to_day("2026-01-04")
    times = np.array(
        [
            (d4 + 1) * MS_PER_DAY,  # 01-05 00:00 -> table 01-04
            (d4 + 1) * MS_PER_DAY - 1,  # 01-04 23:59:59.999 -> table 01-03, never 01-04
            (d4 + 2) * MS_PER_DAY + 5,  # 01-06 -> 01-05 missing -> latest earlier 01-04
            (d4 + 3) * MS_PER_DAY,  # 01-07 -> 01-06
            (d4 - 1) * MS_PER_DAY + 7,  # 01-03 -> nothing earlier -> zeros
        ]
    )
    users = np.array([1, 2, 3, 1, 2])
    out = source.lookup(users, times)
    assert out.dtype == np.float32 and out.shape == (5, D)
    assert out[:, 0].tolist() == [d4, d4 - 1, d4, d4 + 2, 0]
    assert out[:4, 1].tolist() == [1, 2, 3, 1]
    assert np.all(out[4] == 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 12 * MS_PER_DAY), min_size=1, max_size=30))
def test_lookup_never_leaks_property(tmp_path_factory, offsets):
    root = tmp_path_factory.mktemp("emb")
    _write_world(root)
    source = DatedUserEmbeddings(root, d_user=D, max_staleness_days=100)
    base = date_to_day("2026-01-01") * MS_PER_DAY
    times = base + np.array(offsets, dtype=np.int64)
    out = source.lookup(np.full(len(times), 2), times)
    request_day = times // MS_PER_DAY
    available = np.array([date_to_day(d) for d in DATES])
    for row, day in enumerate(request_day):
        earlier = available[available < day]
        expected = earlier.max() if len(earlier) else 0
        assert out[row, 0] == expected
        assert out[row, 0] < day


def test_missing_users_stale_and_incomplete_dates_give_zeros(tmp_path):
    _write_world(tmp_path)
    # a date without _SUCCESS is not served
    write_part(tmp_path, "2026-01-07", 0, np.array([1]), np.ones((1, D), np.float32), "v2")
    source = DatedUserEmbeddings(tmp_path, d_user=D, max_staleness_days=2)
    assert source.dates == DATES
    d6 = date_to_day("2026-01-06")
    out = source.lookup(
        np.array([99, 1, 1]),
        np.array([(d6 + 1) * MS_PER_DAY, (d6 + 2) * MS_PER_DAY, (d6 + 3) * MS_PER_DAY]),
    )
    assert np.all(out[0] == 0)  # unknown user
    assert out[1, 0] == d6  # 01-08 reads 01-06 (2 days stale: allowed)
    assert np.all(out[2] == 0)  # 01-09 would read 01-06: 3 days stale, refused
    with pytest.raises(ValueError, match="equal-length"):
        source.lookup(np.array([1, 2]), np.array([1]))


def test_an_empty_table_serves_zeros_and_other_tables_still_answer(tmp_path):
    _write_world(tmp_path)
    write_part(tmp_path, "2026-01-07", 0, np.zeros(0, np.int64), np.zeros((0, D), np.float32), "v1")
    mark_complete(tmp_path, "2026-01-07", {"users": 0})
    source = DatedUserEmbeddings(tmp_path, d_user=D)
    d7, d4 = date_to_day("2026-01-07"), date_to_day("2026-01-04")
    out = source.lookup(np.array([1, 2]), np.array([(d7 + 1) * MS_PER_DAY, (d4 + 1) * MS_PER_DAY]))
    assert np.all(out[0] == 0)  # 01-08 reads the empty 01-07 table
    assert out[1, 0] == d4 and out[1, 1] == 2  # 01-05 reads 01-04 in the same call


def test_serving_dates_edge_cases():
    assert serving_dates(np.array([5 * MS_PER_DAY]), np.array([], np.int64), 7).tolist() == [-1]
    assert serving_dates(np.array([5 * MS_PER_DAY]), np.array([4, 5]), 7).tolist() == [4]


def test_write_part_rejects_bad_rows_and_duplicates(tmp_path):
    emb = np.ones((2, D), np.float32)
    emb[1, 2] = np.nan
    with pytest.raises(ValueError, match="user_id 8 \\(row 1\\) is not finite"):
        write_part(tmp_path, "2026-01-01", 0, np.array([7, 8]), emb, "v")
    with pytest.raises(ValueError, match="must be \\[U, d\\]"):
        write_part(tmp_path, "2026-01-01", 0, np.array([7]), np.ones((2, D), np.float32), "v")
    write_part(tmp_path, "2026-01-02", 0, np.array([7]), np.ones((1, D), np.float32), "v")
    write_part(tmp_path, "2026-01-02", 1, np.array([7]), np.ones((1, D), np.float32), "v")
    with pytest.raises(ValueError, match="user_id 7 appears twice"):
        read_date(tmp_path, "2026-01-02")


def test_rocksdict_export_matches_parquet_lookup(tmp_path):
    _write_world(tmp_path / "tables")
    n = export_to_rocksdict(tmp_path / "tables", DATES, tmp_path / "kv")
    assert n == 3 * len(DATES)
    parquet = DatedUserEmbeddings(tmp_path / "tables", d_user=D)
    kv = RocksDictUserEmbeddings(tmp_path / "kv")
    assert isinstance(kv, UserEmbeddingSource) and kv.d_user == D
    rng = np.random.default_rng(0)
    base = date_to_day("2026-01-02") * MS_PER_DAY
    times = base + rng.integers(0, 8 * MS_PER_DAY, size=50)
    users = rng.integers(0, 5, size=50)
    np.testing.assert_array_equal(kv.lookup(users, times), parquet.lookup(users, times))
    kv.close()
