"""HIT@K exactly as the paper's Eq. (3)-(4), vectorized with numpy.

For every chunk (all items shown in one request, keyed by ``(user_id, request_id)``) the
items are ranked by the final score ``S = sum_h u_h f(x)_h`` (Eq. 3, ``u`` the utility
weights, negative for hide). ``beta[c, h]`` counts the top-K items whose label of head
``h`` is 1. ``HIT@K/h = sum_u sum_{c in C_u} beta[c, h] / |U|`` (Eq. 4).

The per-user sums ``sum_{c in C_u} beta[c, h]`` are what the significance tests pair
between two models, so :func:`per_user_hits` returns them rather than only the mean.

Ties in ``S`` inside a chunk are broken by row order (the earlier row ranks first); on
the randomized evaluation requests the row order is the shuffled display order, so ties
fall randomly, as they should.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def utility_vector(heads: Sequence[str], utility: Mapping[str, float]) -> np.ndarray:
    """``[H]`` utility weights u_h in head order; heads missing from ``utility`` get 0.

    Raises if ``utility`` names a head the model does not have (a typo would otherwise
    silently rank by the remaining heads only).
    """
    unknown = [h for h in utility if h not in heads]
    if unknown:
        raise KeyError(f"utility weights name unknown heads {unknown}; heads are {list(heads)}")
    return np.array([float(utility.get(h, 0.0)) for h in heads], dtype=np.float64)


def ranking_score(probabilities: np.ndarray, utility: np.ndarray) -> np.ndarray:
    """Eq. (3): ``[N, H]`` probabilities and ``[H]`` utilities -> ``[N]`` scores S."""
    return np.asarray(probabilities, dtype=np.float64) @ np.asarray(utility, dtype=np.float64)


def top_k_mask(
    user_ids: np.ndarray, request_ids: np.ndarray, scores: np.ndarray, k: int
) -> np.ndarray:
    """``[N]`` bool: whether each row is among the top ``k`` of its (user, request) chunk.

    One ``lexsort`` puts rows in (user, request, -score, row) order; the rank inside a
    chunk is the row's offset from its chunk's first row. O(N log N), no Python loop.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=bool)
    rows = np.arange(n)
    order = np.lexsort((rows, -np.asarray(scores, dtype=np.float64), request_ids, user_ids))
    u_sorted, r_sorted = user_ids[order], request_ids[order]
    new_chunk = np.ones(n, dtype=bool)
    new_chunk[1:] = (u_sorted[1:] != u_sorted[:-1]) | (r_sorted[1:] != r_sorted[:-1])
    chunk_start = np.maximum.accumulate(np.where(new_chunk, rows, 0))
    rank = rows - chunk_start
    mask = np.zeros(n, dtype=bool)
    mask[order[rank < k]] = True
    return mask


@dataclass(frozen=True)
class PerUserHits:
    """Per-user HIT sums: ``users`` ``[U]`` sorted ids, ``hits`` ``[U, H]`` float64."""

    users: np.ndarray
    hits: np.ndarray

    def mean(self) -> np.ndarray:
        """``[H]`` HIT@K per head (Eq. 4); NaN when there are no users."""
        if len(self.users) == 0:
            return np.full(self.hits.shape[1], np.nan)
        return self.hits.mean(axis=0)


def per_user_hits(
    user_ids: np.ndarray,
    request_ids: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    k: int,
) -> PerUserHits:
    """``sum_{c in C_u} beta[c, h]`` for every user u and head h.

    Args:
        user_ids / request_ids: ``[N]`` chunk keys.
        scores: ``[N]`` final ranking scores S.
        labels: ``[N, H]`` 0/1 labels.
        k: top-K cut-off (paper: 3).
    """
    labels = np.asarray(labels)
    top = top_k_mask(user_ids, request_ids, scores, k)
    users, inverse = np.unique(user_ids, return_inverse=True)
    hits = (
        np.stack(
            [
                np.bincount(
                    inverse[top], weights=labels[top, h].astype(np.float64), minlength=len(users)
                )
                for h in range(labels.shape[1])
            ],
            axis=1,
        )
        if labels.shape[1]
        else np.zeros((len(users), 0))
    )
    return PerUserHits(users=users, hits=hits)


def hit_at_k(
    user_ids: np.ndarray,
    request_ids: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    k: int = 3,
) -> np.ndarray:
    """``[H]`` HIT@K per head (Eq. 4): top-K label hits summed over chunks, over |U|."""
    return per_user_hits(user_ids, request_ids, scores, labels, k).mean()


def per_user_diversity(
    user_ids: np.ndarray,
    request_ids: np.ndarray,
    scores: np.ndarray,
    top_interest: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Unique top-level interests among each user's top-K items (paper 4.4.4).

    Returns ``(users [U], unique_interests [U])``: for each user, the number of distinct
    ``top_interest`` values over the top-K items of all the user's chunks. The paper's
    impression diversity is the sum of this over users.
    """
    top = top_k_mask(user_ids, request_ids, scores, k)
    users, inverse = np.unique(user_ids, return_inverse=True)
    pairs = np.unique(np.stack([inverse[top], top_interest[top]], axis=1), axis=0)
    counts = (
        np.bincount(pairs[:, 0], minlength=len(users))
        if len(pairs)
        else np.zeros(len(users), dtype=np.int64)
    )
    return users, counts.astype(np.int64)
