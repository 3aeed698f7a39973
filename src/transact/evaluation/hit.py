"""HIT@K exactly as the paper's Eq. (3)-(4), vectorized with numpy.

For every chunk (all items shown in one request, keyed by ``(user_id, request_id)``) the
items are ranked by the final score ``S = sum_h u_h f(x)_h`` (Eq. 3, ``u`` the utility
weights, negative for hide). ``beta[c, h]`` counts the top-K items whose label of head
``h`` is 1. ``HIT@K/h = sum_u sum_{c in C_u} beta[c, h] / |U|`` (Eq. 4).

The per-user sums ``sum_{c in C_u} beta[c, h]`` are what the significance tests pair
between two models, so :func:`per_user_hits` returns them rather than only the mean.

**Expected HIT@K.** Where the data carries the ground-truth probability of every label
(the simulated world's ``gt_prob_<head>``), :func:`per_user_expected_hits` replaces each
top-K label by its probability: ``E[beta[c, h] | ranking] = sum_{i in topK(c)} p_{i,h}``.
It is the conditional expectation of the sampled hits given the model's ranking, so it
has the paper's meaning (top-K hits per user) without the noise of the label draw. Both
use the same top-K mask (:func:`top_k_mask`), so the only difference is label vs
probability.

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


def per_user_top_k_sums(
    user_ids: np.ndarray,
    request_ids: np.ndarray,
    scores: np.ndarray,
    values: np.ndarray,
    k: int,
) -> PerUserHits:
    """``sum_{c in C_u} sum_{i in topK(c)} values[i, h]`` for every user u and column h.

    The shared core of :func:`per_user_hits` (``values`` = 0/1 labels) and
    :func:`per_user_expected_hits` (``values`` = ground-truth probabilities): one top-K
    mask per chunk, then one ``bincount`` per column.

    Args:
        user_ids / request_ids: ``[N]`` chunk keys.
        scores: ``[N]`` final ranking scores S.
        values: ``[N, H]`` what each top-K row contributes.
        k: top-K cut-off (paper: 3).
    """
    values = np.asarray(values)
    top = top_k_mask(user_ids, request_ids, scores, k)
    users, inverse = np.unique(user_ids, return_inverse=True)
    sums = (
        np.stack(
            [
                np.bincount(
                    inverse[top], weights=values[top, h].astype(np.float64), minlength=len(users)
                )
                for h in range(values.shape[1])
            ],
            axis=1,
        )
        if values.shape[1]
        else np.zeros((len(users), 0))
    )
    return PerUserHits(users=users, hits=sums)


def per_user_hits(
    user_ids: np.ndarray,
    request_ids: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    k: int,
) -> PerUserHits:
    """``sum_{c in C_u} beta[c, h]`` for every user u and head h (the sampled HIT@K).

    Args:
        user_ids / request_ids: ``[N]`` chunk keys.
        scores: ``[N]`` final ranking scores S.
        labels: ``[N, H]`` 0/1 labels.
        k: top-K cut-off (paper: 3).
    """
    return per_user_top_k_sums(user_ids, request_ids, scores, labels, k)


def per_user_expected_hits(
    user_ids: np.ndarray,
    request_ids: np.ndarray,
    scores: np.ndarray,
    gt_probs: np.ndarray,
    k: int,
) -> PerUserHits:
    """Expected HIT@K per user: ``sum_{c in C_u} sum_{i in topK(c)} p_{i,h}``.

    ``gt_probs`` ``[N, H]`` are the true label probabilities (the simulated world's);
    the top-K mask is the same as :func:`per_user_hits`'s for the same ``scores``, so this
    is ``E[per_user_hits | ranking]`` when the labels are independent draws from
    ``gt_probs``. Raises on NaN (real logs have no ground truth: report the sampled
    HIT@K only).
    """
    gt_probs = np.asarray(gt_probs, dtype=np.float64)
    missing = np.isnan(gt_probs)
    if missing.any():
        row, col = np.argwhere(missing)[0]
        raise ValueError(
            f"expected HIT@K needs ground-truth probabilities: gt_probs is NaN at row {row}, "
            f"column {col} ({int(missing.sum())} such values)"
        )
    return per_user_top_k_sums(user_ids, request_ids, scores, gt_probs, k)


def per_user_hits_and_expected(
    user_ids: np.ndarray,
    request_ids: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    gt_probs: np.ndarray,
    k: int,
) -> tuple[PerUserHits, PerUserHits | None]:
    """Sampled and expected per-user HIT@K from one top-K mask.

    Returns ``(sampled, expected)``; ``expected`` is ``None`` when ``gt_probs`` has any
    NaN (no ground truth, e.g. a real log). Equal to calling :func:`per_user_hits` and
    :func:`per_user_expected_hits`, with one sort instead of two.
    """
    labels = np.asarray(labels)
    if not has_ground_truth(gt_probs):
        return per_user_hits(user_ids, request_ids, scores, labels, k), None
    h = labels.shape[1]
    both = per_user_top_k_sums(
        user_ids,
        request_ids,
        scores,
        np.concatenate([labels.astype(np.float64), np.asarray(gt_probs, np.float64)], axis=1),
        k,
    )
    return (
        PerUserHits(users=both.users, hits=both.hits[:, :h]),
        PerUserHits(users=both.users, hits=both.hits[:, h:]),
    )


def has_ground_truth(gt_probs: np.ndarray) -> bool:
    """Whether every ground-truth probability is known (non-empty and no NaN)."""
    gt_probs = np.asarray(gt_probs)
    return bool(gt_probs.size) and bool(np.isfinite(gt_probs).all())


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
