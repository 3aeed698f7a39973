import numpy as np
import pyarrow.parquet as pq

from transact.data.shortvideo import (
    LABEL_COLUMNS,
    ShortVideoConfig,
    generate_chunk,
    write_shortvideo_log,
)


def test_the_log_is_deterministic_and_has_short_video_rates(tmp_path):
    config = ShortVideoConfig(n_users=200, n_videos=1000, days=6)
    n = write_shortvideo_log(tmp_path / "a.parquet", config, seed=3, users_per_chunk=64)
    again = write_shortvideo_log(tmp_path / "b.parquet", config, seed=3, users_per_chunk=64)
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert n == again == a.num_rows and a.equals(b)
    assert a.column_names == ["user_id", "video_id", "time_ms", *LABEL_COLUMNS]
    rates = {c: a.column(c).to_numpy().mean() for c in LABEL_COLUMNS}
    assert 0.3 < rates["is_click"] < 0.5 and 0.15 < rates["long_view"] < 0.35
    assert 0.01 < rates["is_like"] < 0.08 and 0.001 < rates["is_hate"] < 0.02
    assert (a.column("long_view").to_numpy() <= a.column("is_click").to_numpy()).all()
    video = a.column("video_id").to_numpy()
    assert video.min() >= 0 and video.max() < config.n_videos


def test_the_session_topic_drives_the_labels():
    """Within a session, likes concentrate on one topic: the signal a sequence model can
    read from the session's recent actions and a static ranker cannot."""
    config = ShortVideoConfig(n_users=400, n_videos=2000, days=4)
    t = generate_chunk(config, np.arange(400), np.random.default_rng(0))
    topic = t.column("video_id").to_numpy() % config.n_clusters
    like = t.column("is_like").to_numpy().astype(bool)
    user = t.column("user_id").to_numpy()
    day = t.column("time_ms").to_numpy() // 86_400_000
    # share of a user-day's likes on its most-liked topic, against the topics it was shown
    key = user * 100 + day
    liked_top, shown_top = [], []
    for k in np.unique(key[like])[:300]:
        rows = key == k
        liked_top.append(np.bincount(topic[rows & like]).max() / (rows & like).sum())
        shown_top.append(np.bincount(topic[rows]).max() / rows.sum())
    assert np.mean(liked_top) > np.mean(shown_top) + 0.2
