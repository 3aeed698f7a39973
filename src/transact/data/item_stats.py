"""Item statistics without target leakage: quality and popularity as of each request.

A log's items have no content attributes, so the ranker's item features ``quality`` (an
engagement rate: a target encoding) and ``log_popularity`` are computed from the log. A
rate over the whole training period includes each training example's own label: on a
real log ``-quality`` alone scored AUC 0.95 on the training split and 0.73 on evaluation,
so a model learns to lean on a feature that fails it later. Here both are
**point-in-time**: for a request at time ``t`` they use only impressions with request time
strictly before ``t`` (the request's own impressions and everything later are unseen):

* ``quality(item, t) = (engaged_before + m * p0) / (shown_before + m)``: the item's rate of
  impressions with a positive label, shrunk toward the prior ``p0`` with the weight of
  ``m`` impressions (Beta-binomial posterior mean). ``p0`` is the engagement rate of the
  training window, one number for all items. An item never shown before gets ``p0``
  exactly: a value inside the range of the training data, the principled cold start.
* ``popularity(item, t) = 1 + shown in [t - W, t)``: impressions in a trailing window (7
  days by default), so the feature keeps its scale from week to week.

Labels count at their impression's request time (an engagement seconds after it is known
by the next request). The serving path reads ``items.parquet``, whose ``quality`` and
``popularity`` are these values at the end of the log (``t = end``): a request after the
log has seen all of it.

:func:`point_in_time_item_stats` is the vectorized path (one sort, three
``searchsorted``); :func:`point_in_time_item_stats_reference` is the plain per-query loop
it is tested against. The simulated world's items have true attributes instead
(``mode = "static"``: ``items.parquet`` as is); a manifest's ``extra.item_statistics``
says which (:class:`ItemStatsConfig`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from transact.data.schema import MS_PER_DAY

MODES = ("static", "point_in_time")


@dataclass(frozen=True)
class ItemStatsConfig:
    """How a dataset's item statistics are defined (``manifest.extra["item_statistics"]``).

    Args:
        mode: ``"static"`` (``items.parquet``'s columns are item attributes: the world) or
            ``"point_in_time"`` (computed from the impressions before each request).
        positive_labels: label actions whose 1 makes an impression *engaged* (quality).
        prior_rate: ``p0``, the training window's engaged share (the cold-start quality).
        prior_strength: ``m``, the prior's weight in impressions.
        popularity_window_ms: ``W``, the trailing window of popularity.
    """

    mode: str = "static"
    positive_labels: tuple[str, ...] = ()
    prior_rate: float = 0.0
    prior_strength: float = 20.0
    popularity_window_ms: int = 7 * MS_PER_DAY

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"item_statistics.mode {self.mode!r} not in {MODES}")
        if not 0.0 <= self.prior_rate <= 1.0:
            raise ValueError(f"item_statistics.prior_rate {self.prior_rate} outside [0, 1]")
        if not self.prior_strength > 0:
            raise ValueError(f"item_statistics.prior_strength {self.prior_strength} must be > 0")
        if self.popularity_window_ms < 1:
            raise ValueError("item_statistics.popularity_window_ms must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["positive_labels"] = list(self.positive_labels)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ItemStatsConfig:
        """From :meth:`to_dict`; ``None`` (a manifest without the key) is ``static``."""
        if d is None:
            return cls()
        known = {"mode", "positive_labels", "prior_rate", "prior_strength", "popularity_window_ms"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"item_statistics: unknown key(s) {unknown}")
        return cls(
            mode=str(d.get("mode", "static")),
            positive_labels=tuple(d.get("positive_labels", ())),
            prior_rate=float(d.get("prior_rate", 0.0)),
            prior_strength=float(d.get("prior_strength", 20.0)),
            popularity_window_ms=int(d.get("popularity_window_ms", 7 * MS_PER_DAY)),
        )


def _checked(name: str, values: np.ndarray, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise ValueError(f"{name}: expected a 1-D array of {n} values, got shape {arr.shape}")
    return arr


def point_in_time_item_stats(
    shown_items: np.ndarray,
    shown_times_ms: np.ndarray,
    shown_engaged: np.ndarray,
    query_items: np.ndarray,
    query_times_ms: np.ndarray,
    config: ItemStatsConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """``quality`` and ``popularity`` of each query from the impressions before it.

    Args:
        shown_items / shown_times_ms / shown_engaged: ``[N]`` every impression of the log
            (item index, request time, whether it has a positive label), any order.
        query_items / query_times_ms: ``[Q]`` the (item, request time) to describe.
        config: prior and window (:class:`ItemStatsConfig`).

    Returns:
        ``quality [Q]`` float32 and ``popularity [Q]`` float32 (module docstring).
    """
    n = _checked("shown_items", shown_items).shape[0]
    items = np.asarray(shown_items, np.int64)
    times = _checked("shown_times_ms", shown_times_ms, n).astype(np.int64)
    engaged = _checked("shown_engaged", shown_engaged, n).astype(bool)
    q_items = _checked("query_items", query_items).astype(np.int64)
    q_times = _checked("query_times_ms", query_times_ms, q_items.shape[0]).astype(np.int64)
    if n == 0:
        quality = np.full(q_items.shape, config.prior_rate, np.float32)
        return quality, np.ones(q_items.shape, np.float32)
    # one int64 key per impression: item * span + (time - t_min), sorted; a query is the
    # range [item * span, item * span + offset(t)) of keys
    t_min = int(times.min())
    span = int(times.max()) - t_min + 2  # offsets 0..span-2; span-1 is after every time
    top = max(int(items.max()), int(q_items.max()) if q_items.size else 0) + 1
    if top * span >= 2**62:
        raise ValueError(f"{top} items x time span {span} ms overflows the int64 key")
    keys = items * span + (times - t_min)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    cum_engaged = np.r_[0, np.cumsum(engaged[order], dtype=np.int64)]

    def position(t: np.ndarray) -> np.ndarray:
        offset = np.clip(t - t_min, 0, span - 1)
        return np.searchsorted(keys, q_items * span + offset, side="left")

    first = np.searchsorted(keys, q_items * span, side="left")
    before = position(q_times)
    window_start = position(q_times - config.popularity_window_ms)
    shown = (before - first).astype(np.float64)
    engaged_before = (cum_engaged[before] - cum_engaged[first]).astype(np.float64)
    m = config.prior_strength
    quality = (engaged_before + m * config.prior_rate) / (shown + m)
    popularity = 1.0 + (before - np.maximum(window_start, first))
    return quality.astype(np.float32), popularity.astype(np.float32)


def point_in_time_item_stats_reference(
    shown_items: np.ndarray,
    shown_times_ms: np.ndarray,
    shown_engaged: np.ndarray,
    query_items: np.ndarray,
    query_times_ms: np.ndarray,
    config: ItemStatsConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """The plain per-query loop :func:`point_in_time_item_stats` is tested against."""
    quality = np.empty(len(query_items), np.float32)
    popularity = np.empty(len(query_items), np.float32)
    items = np.asarray(shown_items)
    times = np.asarray(shown_times_ms)
    engaged = np.asarray(shown_engaged).astype(bool)
    for q, (item, t) in enumerate(zip(query_items, query_times_ms, strict=True)):
        mine = items == item
        before = mine & (times < t)
        recent = before & (times >= t - config.popularity_window_ms)
        m = config.prior_strength
        quality[q] = (engaged[before].sum() + m * config.prior_rate) / (before.sum() + m)
        popularity[q] = 1 + recent.sum()
    return quality, popularity
