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


def test_expected_hits_are_the_mean_of_sampled_hits_over_label_draws():
    """Expected HIT@3 = E[sampled HIT@3 | ranking]: the mean over many label draws from
    the ground-truth probabilities converges to it, within a tolerance derived from the
    exact variance of one draw (a sum of Bernoulli variances over the top-3 rows)."""
    from transact.evaluation.hit import per_user_expected_hits, per_user_hits_and_expected

    rng = np.random.default_rng(7)
    n_users, chunks_per_user, items = 6, 3, 7
    n = n_users * chunks_per_user * items
    user = np.repeat(np.arange(n_users), chunks_per_user * items)
    req = np.repeat(np.arange(n_users * chunks_per_user) % chunks_per_user, items)
    gt = rng.beta(0.6, 2.0, size=(n, 3))
    score = rng.integers(0, 4, n).astype(float)  # ties, broken by row in both paths
    expected = per_user_expected_hits(user, req, score, gt, k=3)

    draws = 4000
    total = np.zeros((n_users, 3))
    for _ in range(draws):
        labels = (rng.random((n, 3)) < gt).astype(np.int8)
        total += per_user_hits(user, req, score, labels, k=3).hits
    mean = total / draws

    top = top_k_mask(user, req, score, k=3)
    var = np.stack(
        [
            np.bincount(user[top], weights=(gt * (1 - gt))[top, h], minlength=n_users)
            for h in range(3)
        ],
        axis=1,
    )  # [U, H]: variance of one draw's per-user hits
    se = np.sqrt(var / draws)
    assert (np.abs(mean - expected.hits) <= 4.5 * se).all()
    # HIT@3 per head (mean over users): the same with the users' variances summed
    se_head = np.sqrt(var.sum(axis=0) / n_users**2 / draws)
    assert (np.abs(mean.mean(axis=0) - expected.mean()) <= 4.5 * se_head).all()
    # the tolerance is tight enough to catch a wrong top-K set: the expectation over the
    # bottom rows instead differs by many standard errors
    wrong = per_user_expected_hits(user, req, -score, gt, k=3)
    assert (np.abs(mean.mean(axis=0) - wrong.mean()) > 10 * se_head).any()

    # one sort for both: equal to the two separate calls; no ground truth -> None
    labels = (rng.random((n, 3)) < gt).astype(np.int8)
    sampled, both_expected = per_user_hits_and_expected(user, req, score, labels, gt, k=3)
    np.testing.assert_allclose(sampled.hits, per_user_hits(user, req, score, labels, 3).hits)
    assert both_expected is not None
    np.testing.assert_allclose(both_expected.hits, expected.hits)
    nan_gt = gt.copy()
    nan_gt[4, 1] = np.nan
    assert per_user_hits_and_expected(user, req, score, labels, nan_gt, k=3)[1] is None
    with pytest.raises(ValueError, match="row 4, column 1"):
        per_user_expected_hits(user, req, score, nan_gt, k=3)
