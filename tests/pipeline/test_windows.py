import pytest

from transact.pipeline.windows import Window, parse_time_ms


def test_parse_time_accepts_dates_datetimes_and_epoch_ms():
    assert parse_time_ms("2026-01-05") == 1_767_571_200_000  # midnight UTC
    assert parse_time_ms("2026-01-05T06:00") == 1_767_571_200_000 + 6 * 3_600_000
    assert parse_time_ms("2026-01-05T06:00+01:00") == 1_767_571_200_000 + 5 * 3_600_000
    assert parse_time_ms("1767571200000") == 1_767_571_200_000
    assert parse_time_ms(42) == 42
    with pytest.raises(ValueError, match="expected YYYY-MM-DD"):
        parse_time_ms("next tuesday")


def test_window_must_not_be_empty():
    with pytest.raises(ValueError, match="is not after start"):
        Window(parse_time_ms("2026-01-05"), parse_time_ms("2026-01-05"))
    assert "2026-01-05 00:00 UTC" in str(Window(parse_time_ms("2026-01-05"), 1_767_657_600_000))
