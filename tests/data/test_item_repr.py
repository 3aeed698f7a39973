"""Item vectors learned from co-engagement: the pairs, item2vec, PPMI + SVD, cold start."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from transact.data.item_repr import (
    ItemReprConfig,
    co_engagement_pairs,
    co_engagement_pairs_reference,
    learn_item_embeddings,
    learned_mask,
    ppmi_matrix,
    truncated_svd,
    truncated_svd_reference,
)

FAST = ItemReprConfig(pair_updates=400_000)  # tests: a small budget, still converged here
T0 = 1_700_000_000_000


def _sorted_pairs(pairs: tuple[np.ndarray, np.ndarray]) -> list[tuple[int, int]]:
    return sorted(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))


def test_pairs_follow_the_rules_on_a_worked_example() -> None:
    # user 1: a b b c (times out of order in the input), user 2: a d; window 2
    users = np.array([1, 1, 1, 2, 1, 2])
    items = np.array([10, 11, 11, 10, 12, 13])
    times = np.array([T0, T0 + 2, T0 + 1, T0, T0 + 3, T0 + 5])
    got = _sorted_pairs(co_engagement_pairs(users, items, times, window=2))
    # user 1's sequence is a b c (the repeated b collapses): ab, ac, bc both ways; no
    # pair across users; user 2: ad
    want = [(10, 11), (10, 12), (10, 13), (11, 10), (11, 12), (12, 10), (12, 11), (13, 10)]
    assert got == want
    assert _sorted_pairs(co_engagement_pairs(users, items, times, window=1)) == [
        (10, 11), (10, 13), (11, 10), (11, 12), (12, 11), (13, 10),
    ]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 5)),
        min_size=0,
        max_size=60,
    ),
    st.integers(1, 6),
)
def test_vectorized_pairs_equal_the_plain_loop(rows: list, window: int) -> None:
    """Random logs with many time ties and repeated items: the same multiset of pairs."""
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    users, items, times = arr[:, 0], arr[:, 1], arr[:, 2] + T0
    fast = co_engagement_pairs(users, items, times, window)
    plain = co_engagement_pairs_reference(users, items, times, window)
    assert _sorted_pairs(fast) == _sorted_pairs(plain)


def _clustered_log(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """30 clusters of 20 items; each session of a user engages one cluster's items."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(600):
        t = T0
        for _ in range(3):
            cluster = rng.integers(30)
            for _ in range(8):
                users.append(user)
                items.append(cluster * 20 + rng.integers(20))
                t += 60_000
                times.append(t)
            t += 86_400_000
    return np.array(users), np.array(items), np.array(times), 600


@pytest.mark.parametrize("method", ["item2vec", "mf"])
def test_items_engaged_together_get_nearby_unit_vectors(method: str) -> None:
    users, items, times, n_clustered = _clustered_log()
    n_items = n_clustered + 5  # 5 items nobody engaged: cold
    emb = learn_item_embeddings(users, items, times, n_items, 16, method, seed=0, config=FAST)
    assert emb.shape == (n_items, 16) and emb.dtype == np.float32
    learned = learned_mask(emb)
    assert learned[:n_clustered].all() and not learned[n_clustered:].any()
    assert np.allclose(np.linalg.norm(emb[learned], axis=1), 1.0, atol=1e-5)
    assert (emb[~learned] == 0).all()  # the documented cold-start vector
    sim = emb[:n_clustered] @ emb[:n_clustered].T
    np.fill_diagonal(sim, -np.inf)
    neighbour = sim.argmax(axis=1)
    same = np.mean(neighbour // 20 == np.arange(n_clustered) // 20)
    assert same > 0.95, same  # chance: 19 / 599
    within = sim[np.equal.outer(np.arange(n_clustered) // 20, np.arange(n_clustered) // 20)]
    across = sim[np.not_equal.outer(np.arange(n_clustered) // 20, np.arange(n_clustered) // 20)]
    assert np.mean(within[np.isfinite(within)]) > np.mean(across) + 0.3


@pytest.mark.parametrize("method", ["item2vec", "mf"])
def test_deterministic_for_a_seed(method: str) -> None:
    users, items, times, n = _clustered_log(1)
    a = learn_item_embeddings(users, items, times, n, 8, method, seed=3, config=FAST)
    b = learn_item_embeddings(users, items, times, n, 8, method, seed=3, config=FAST)
    assert np.array_equal(a, b)
    if method == "item2vec":  # the seed matters (initialization, order, negatives)
        c = learn_item_embeddings(users, items, times, n, 8, method, seed=4, config=FAST)
        assert not np.array_equal(a, c)


def test_a_user_with_one_engagement_teaches_nothing() -> None:
    users = np.array([0, 0, 1])
    items = np.array([0, 1, 2])  # item 2: engaged once, by a user with nothing else
    times = np.array([T0, T0 + 1, T0])
    for method in ("item2vec", "mf"):
        emb = learn_item_embeddings(users, items, times, 4, 4, method, config=FAST)
        assert learned_mask(emb).tolist() == [True, True, False, False], method
    empty = np.zeros(0, np.int64)
    assert (learn_item_embeddings(empty, empty, empty, 3, 4) == 0).all()


def test_bad_arguments_name_what_is_wrong() -> None:
    ok = np.array([0, 0])
    with pytest.raises(ValueError, match=r"item_ids\[1\] = 9 is outside 0..4"):
        learn_item_embeddings(ok, np.array([1, 9]), np.array([T0, T0]), 5, 4)
    with pytest.raises(ValueError, match="method 'w2v' not in"):
        learn_item_embeddings(ok, ok, np.array([T0, T0]), 5, 4, "w2v")
    with pytest.raises(ValueError, match="one length"):
        co_engagement_pairs(ok, np.array([1]), ok, 3)
    with pytest.raises(ValueError, match=r"invalid window=0, smoothing=2"):
        ItemReprConfig(window=0, smoothing=2)


def test_ppmi_by_hand() -> None:
    # pairs: (0,1) x2, (1,0) x2, (0,2), (2,0); counts C = [[0,2,1],[2,0,0],[1,0,0]]
    centers = np.array([0, 0, 1, 1, 0, 2])
    contexts = np.array([1, 1, 0, 0, 2, 0])
    m = ppmi_matrix(centers, contexts, 3, smoothing=1.0).toarray()
    # PMI(i, j) = log(C_ij * total / (C_i. C_.j)), total 6
    assert m[0, 1] == pytest.approx(max(np.log(2 * 6 / (3 * 2)), 0))
    assert m[1, 0] == pytest.approx(np.log(2 * 6 / (2 * 3)))
    assert m[0, 2] == pytest.approx(np.log(1 * 6 / (3 * 1)))
    assert m[1, 2] == 0 and m[0, 0] == 0
    smoothed = ppmi_matrix(centers, contexts, 3, smoothing=0.75).toarray()
    z = 3**0.75 + 2**0.75 + 1
    assert smoothed[0, 2] == pytest.approx(np.log(1 * z / (3 * 1**0.75)))


def test_randomized_svd_matches_arpack() -> None:
    """The fast path (randomized, Halko et al.) against the plain one (scipy's ARPACK)."""
    rng = np.random.default_rng(0)
    scales = 2.0 ** -np.arange(12)  # a decaying spectrum, as a PPMI matrix has
    low_rank = (rng.standard_normal((400, 12)) * scales) @ rng.standard_normal((12, 300))
    noise = sp.random(400, 300, density=0.02, random_state=1).toarray() * 1e-3
    matrix = sp.csr_matrix(low_rank + noise)
    u, s, vt = truncated_svd(matrix, 8, seed=0)
    u_ref, s_ref = truncated_svd_reference(matrix, 8)
    assert np.allclose(s, s_ref, rtol=1e-6)
    # the same subspace: the singular values of U^T U_ref are all 1
    assert np.allclose(np.linalg.svd(u.T @ u_ref, compute_uv=False), 1.0, atol=1e-6)
    # the same rank-8 approximation U S Vt = U_ref U_ref^T M
    assert np.allclose((u * s) @ vt, u_ref @ (u_ref.T @ matrix.toarray()), atol=1e-6)
    again = truncated_svd(matrix, 8, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((u, s, vt), again, strict=True))
