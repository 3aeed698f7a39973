"""A generated short-video impression log: the worked example and the import benchmark.

Public short-video logs (KuaiRand, KuaiRec, Tenrec) are one row per impression with
binary label columns and integer item ids, no item content. :func:`write_shortvideo_log`
writes such a log as Parquet (``user_id``, ``video_id``, ``time_ms``, ``is_click``,
``long_view``, ``is_like``, ``is_hate``), streamed in row groups, so a 10^7-row log takes
little memory. It has the signal a sequence model needs and a no-sequence model cannot
see:

* Videos belong to one of ``n_clusters`` topics (``video_id % n_clusters``, unknown to the
  importer) and have a quality; popularity is Zipf-like.
* A session follows a topic (one of the user's favourites 60% of the time, else any), and
  40% of the videos shown in it are of that topic. Clicks, long views and likes are far
  more likely on the session's topic (logits +1.6 / +1.2 / +2.2) and hates far less
  (-1.5): only the session's recent actions reveal the topic.
* Videos are shown in requests of 8-16, 5 s apart, requests 30-90 s apart; sessions are
  hours apart, so the importer's session gap (30 min) finds them.

The label rates are about those of KuaiRand: click ~37%, long view ~22%, like ~3%,
hate ~0.5%.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transact.data.schema import MS_PER_DAY

START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC, the world's first day
LABEL_COLUMNS = ("is_click", "long_view", "is_like", "is_hate")


@dataclass(frozen=True)
class ShortVideoConfig:
    """Sizes of the generated log (the rows follow from them: ~``n_users * days *
    sessions_per_day * 3 requests * 12 videos``)."""

    n_users: int = 300
    n_videos: int = 2000
    n_clusters: int = 40
    days: int = 10
    sessions_per_day: float = 1.0
    favourite_clusters: int = 3


def _sessions(config: ShortVideoConfig, users: np.ndarray, rng: np.random.Generator) -> dict:
    """Session-level draws for ``users`` over all days."""
    per_user = rng.poisson(config.sessions_per_day * config.days, users.size)
    user = np.repeat(users, per_user)
    n = user.size
    day = rng.integers(0, config.days, n)
    # evening-heavy start times, at least 2 h apart on average
    start = START_MS + day * MS_PER_DAY + (rng.beta(3, 2, n) * 0.9 * MS_PER_DAY).astype(np.int64)
    favourite = rng.integers(0, config.favourite_clusters, n)
    fav_cluster = (user * 7919 + favourite * 104729) % config.n_clusters
    topic = np.where(rng.random(n) < 0.6, fav_cluster, rng.integers(0, config.n_clusters, n))
    requests = rng.geometric(1 / 3, n)  # mean 3
    return {"user": user, "start": start, "topic": topic, "requests": requests}


def generate_chunk(
    config: ShortVideoConfig, users: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """The impressions of ``users`` (every day) as a table of the log's columns."""
    s = _sessions(config, users, rng)
    n_req = int(s["requests"].sum())
    req_session = np.repeat(np.arange(s["user"].size), s["requests"])
    req_rank = np.arange(n_req) - np.repeat(np.cumsum(s["requests"]) - s["requests"], s["requests"])
    gaps = rng.integers(30_000, 90_000, n_req)
    req_time = s["start"][req_session] + req_rank * 60_000 + gaps
    size = rng.integers(8, 17, n_req)
    imp_req = np.repeat(np.arange(n_req), size)
    imp_pos = np.arange(imp_req.size) - np.repeat(np.cumsum(size) - size, size)
    n = imp_req.size
    session = req_session[imp_req]
    topic = s["topic"][session]
    # candidates: 40% from the session's topic, the rest popularity-weighted from all
    popular = np.minimum((rng.pareto(1.2, n) * 50).astype(np.int64), config.n_videos - 1)
    on_topic_video = (
        rng.integers(0, config.n_videos // config.n_clusters, n) * config.n_clusters + topic
    )
    video = np.where(rng.random(n) < 0.4, on_topic_video, popular) % config.n_videos
    match = (video % config.n_clusters == topic).astype(np.float64)
    quality = np.sin(video * 12.9898) * 0.6  # a fixed per-video quality in [-0.6, 0.6]
    logit = lambda base, w: base + w * match + quality  # noqa: E731
    click = rng.random(n) < 1 / (1 + np.exp(-logit(-1.1, 1.6)))
    long_view = click & (rng.random(n) < 1 / (1 + np.exp(-logit(-0.2, 1.2))))
    like = rng.random(n) < 1 / (1 + np.exp(-logit(-4.6, 2.2)))
    hate = rng.random(n) < 1 / (1 + np.exp(-(-4.6 - 1.5 * match - 1.5 * quality)))
    return pa.table(
        {
            "user_id": pa.array(s["user"][session].astype(np.int64)),
            "video_id": pa.array(video.astype(np.int64)),
            "time_ms": pa.array(req_time[imp_req] + imp_pos * 5_000),
            "is_click": pa.array(click.astype(np.int8)),
            "long_view": pa.array(long_view.astype(np.int8)),
            "is_like": pa.array(like.astype(np.int8)),
            "is_hate": pa.array(hate.astype(np.int8)),
        }
    )


def write_shortvideo_log(
    path: Path | str,
    config: ShortVideoConfig | None = None,
    *,
    seed: int = 0,
    users_per_chunk: int = 20_000,
) -> int:
    """Write the log to ``path`` (Parquet, one row group per chunk of users); returns rows.

    Deterministic for ``(config, seed, users_per_chunk)``. Rows are ordered by user chunk,
    not by time (as an export by user would be); the importer does not mind.
    """
    config = config or ShortVideoConfig()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for first in range(0, config.n_users, users_per_chunk):
            rng = np.random.default_rng([seed, first])
            users = np.arange(first, min(first + users_per_chunk, config.n_users), dtype=np.int64)
            table = generate_chunk(config, users, rng)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows
