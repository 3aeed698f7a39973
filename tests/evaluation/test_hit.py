from collections import defaultdict

import numpy as np
import pytest

from transact.evaluation.hit import (
    hit_at_k,
    per_user_diversity,
    per_user_hits,
    ranking_score,
    top_k_mask,
    utility_vector,
)

HEADS = ("click", "repin", "hide")


def _hand_chunks():
    # user 1, request 10: repin scores .9 .1 .5 .7, repins on rows 0 and 3 -> top3 = 0,3,2 -> 2
    # user 1, request 11: 3 items (< K): every item is in the top 3 -> 1 repin hit
    # user 2, request 10 (same request id, other user: another chunk): the paper's example,
    #   sorted p1..p5, repins p1 and p4 -> 1
    user = np.array([1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    req = np.array([10, 10, 10, 10, 11, 11, 11, 10, 10, 10, 10, 10])
    score = np.array([0.9, 0.1, 0.5, 0.7, 0.2, 0.3, 0.1, 0.9, 0.8, 0.7, 0.6, 0.5])
    repin = np.array([1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0])
    return user, req, score, repin


def test_hit_at_3_matches_hand_computation():
    user, req, score, repin = _hand_chunks()
    labels = np.stack([np.zeros_like(repin), repin, np.zeros_like(repin)], axis=1)
    per_user = per_user_hits(user, req, score, labels, k=3)
    assert per_user.users.tolist() == [1, 2]
    assert per_user.hits[:, 1].tolist() == [3.0, 1.0]
    np.testing.assert_allclose(hit_at_k(user, req, score, labels, k=3), [0.0, 2.0, 0.0])
    # K = 1: only the top item of each chunk counts: rows 0 (repin), 5 (no), 7 (repin)
    np.testing.assert_allclose(hit_at_k(user, req, score, labels, k=1), [0.0, 1.0, 0.0])


def test_top_k_mask_groups_by_user_and_request_and_breaks_ties_by_row():
    user, req, score, _ = _hand_chunks()
    mask = top_k_mask(user, req, score, k=3)
    assert np.flatnonzero(mask).tolist() == [0, 2, 3, 4, 5, 6, 7, 8, 9]
    tied = top_k_mask(np.zeros(4, int), np.zeros(4, int), np.zeros(4), k=2)
    assert tied.tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k_mask(user, req, score, k=0)


def test_negative_hide_utility_demotes_items_likely_to_be_hidden():
    # item 0: best repin probability but a high hide probability; with u_hide = -10 it
    # drops out of the top 1, and the hide it would have caught is no longer a hit.
    probs = np.array([[0.0, 0.30, 0.10], [0.0, 0.20, 0.00], [0.0, 0.10, 0.00]])
    labels = np.array([[0, 0, 1], [0, 1, 0], [0, 0, 0]])
    ids = np.zeros(3, dtype=np.int64)
    u_plain = utility_vector(HEADS, {"repin": 1.0})
    u_hide = utility_vector(HEADS, {"repin": 1.0, "hide": -10.0})
    np.testing.assert_allclose(ranking_score(probs, u_hide), [0.3 - 1.0, 0.2, 0.1])
    np.testing.assert_allclose(
        hit_at_k(ids, ids, ranking_score(probs, u_plain), labels, k=1), [0, 0, 1]
    )
    np.testing.assert_allclose(
        hit_at_k(ids, ids, ranking_score(probs, u_hide), labels, k=1), [0, 1, 0]
    )
    with pytest.raises(KeyError, match="unknown heads \\['save'\\]"):
        utility_vector(HEADS, {"save": 1.0})


def _reference_per_user(user, req, score, labels, k):
    """Plain-Python Eq. (3)-(4): group, sort each chunk, count top-k labels."""
    chunks = defaultdict(list)
    for i in range(len(user)):
        chunks[(user[i], req[i])].append(i)
    per_user = defaultdict(lambda: np.zeros(labels.shape[1]))
    for (u, _), rows in chunks.items():
        rows = sorted(rows, key=lambda i: (-score[i], i))
        per_user[u] += labels[rows[:k]].sum(axis=0)
    users = sorted(per_user)
    return np.array(users), np.array([per_user[u] for u in users])


@pytest.mark.parametrize("seed", range(5))
def test_vectorized_hits_equal_the_plain_reference(seed):
    rng = np.random.default_rng(seed)
    n = 400
    user = rng.integers(0, 15, n)
    req = rng.integers(0, 6, n)
    score = rng.integers(0, 5, n).astype(float)  # many ties on purpose
    labels = (rng.random((n, 3)) < 0.3).astype(np.int8)
    k = int(rng.integers(1, 5))
    fast = per_user_hits(user, req, score, labels, k)
    users, hits = _reference_per_user(user, req, score, labels, k)
    np.testing.assert_array_equal(fast.users, users)
    np.testing.assert_allclose(fast.hits, hits)


def test_diversity_counts_unique_top_interests_per_user_across_chunks():
    user, req, score, _ = _hand_chunks()
    interest = np.array([5, 6, 5, 7, 1, 5, 2, 3, 3, 3, 9, 9])
    users, unique = per_user_diversity(user, req, score, interest, k=3)
    # user 1 top-3: rows 0,3,2 (5,7,5) + rows 4,5,6 (1,5,2) -> {1,2,5,7}; user 2: {3}
    assert users.tolist() == [1, 2]
    assert unique.tolist() == [4, 1]
