import numpy as np
import pytest

from transact.data.stats import RECENCY_HORIZONS_MS, format_recency, format_stats, world_stats


@pytest.fixture(scope="module")
def signal(tiny_world):
    from transact.data.stats import realtime_signal_report

    return realtime_signal_report(tiny_world, seq_len=50)


def test_realtime_signal_report_orders_the_rankers(signal):
    click = signal["heads"]["click"]
    assert click["hit3_oracle"] > click["hit3_random"]
    assert click["hit3_realtime"] > click["hit3_random"]
    hide = signal["heads"]["hide"]
    assert hide["hit3_oracle"] <= hide["hit3_random"]  # oracle shows the fewest hides
    assert 0 <= click["p_realtime_vs_daily_profile"] <= 1


def test_recency_bands_partition_the_sequence(signal, tiny_world):
    from transact.data.io import load_manifest

    m = load_manifest(tiny_world)
    # the tiny world lasts 7 days: every action is younger than a week when requested
    assert m.eval_end_ms - m.start_ms <= RECENCY_HORIZONS_MS["1w"]
    for head, r in signal["recency"]["heads"].items():
        assert r["target"] == "ground_truth", head
        # all bands = the bands younger than a week; nothing is older
        assert r["gain_younger"]["1w"] == pytest.approx(r["gain_all"], abs=1e-12)
        assert r["gain_without_younger"]["1w"] == 0.0
        assert r["se_all"] >= 0
        if r["gain_all"] > 0:
            assert r["share_younger"]["1w"] == pytest.approx(1.0)
            assert r["share_without_younger"]["1w"] == 0.0
    # in this world recent actions carry signal: the whole sequence beats the daily profile
    click = signal["recency"]["heads"]["click"]
    assert click["gain_all"] > 3 * click["se_all"]
    assert click["share_younger"]["1d"] > 0.5
    text = format_recency(signal)
    assert text.count("recency/") == len(signal["recency"]["heads"])


def test_world_stats_summarize_sessions_and_time_spent(tiny_world):
    stats = world_stats(tiny_world, seq_len=50)
    sess = stats["sessions"]
    assert sess["sessions"] > 0 and 1.5 < sess["requests_per_session"] < 6
    assert 0.5 < sess["time_spent_min_per_active_user_day"] < 30
    assert np.isfinite(sess["mean_feed_quality"])
    assert "time spent" in format_stats(stats)
