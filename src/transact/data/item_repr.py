"""Item representations learned from co-engagement, for logs whose items have no content.

The paper's ranker reads a content embedding (PinSage) for the candidate and for every
action of the realtime sequence. A log without an item file has none: its "text" is the
item id string, which a sentence model maps to a vector that says nothing about the item.
:func:`learn_item_embeddings` learns one ``[n_items, d_item]`` table from the users'
engagements instead, so that items engaged by the same users in the same sessions get
nearby vectors, which is what the candidate-sequence interaction of TransAct needs.

Both methods read the same training signal, :func:`co_engagement_pairs`: in each user's
time-ordered engagement sequence (repeats of one item in a row collapsed), every two
items at most ``window`` engagements apart form a pair.

* ``item2vec`` (Barkan & Koenigstein 2016): skip-gram with negative sampling over those
  pairs, negatives drawn from the item frequencies raised to ``smoothing`` (0.75),
  word2vec's SGD in batches, a budget of ``pair_updates`` pair updates (a small log gets
  more passes, a large one ``round(pair_updates / n_pairs)``, at least one: the cost is
  bounded either way; 0.2-1M pairs/s on one core here).
* ``mf``: the positive PMI matrix of the pair counts (context distribution smoothed by
  ``smoothing``), factorized by a truncated SVD, item vector ``U_d sqrt(S_d)`` (Levy,
  Goldberg & Dagan 2015: SGNS implicitly factorizes a shifted PMI matrix; PPMI + SVD is
  its explicit, deterministic counterpart). The SVD is randomized (Halko et al. 2011) for
  speed; :func:`truncated_svd_reference` (scipy's ARPACK) is the plain path beside it.

**Cold start.** An item in no pair (never engaged in the training window, or only by
users with a single engagement) gets the **zero vector**; every learned vector has unit
norm (as the content embeddings of the world), so the norm itself is the flag
(:func:`learned_mask`). The learned vectors are centred before they are normalized, so
zero is also their centre: a cold item sits at "the average item", not at some real
item as a random vector would put it. The ranker reads item vectors as the candidate
(DCN input, TransAct's early fusion) and as every action of the sequence; a zero vector
adds nothing to either (its cross terms ``x0 * (W x + b)`` vanish, an action's token keeps
its action-type part), and training holds such items (shown, never engaged), so the
ranker learns their rates from the other features (popularity, quality).

**No leakage.** The caller passes only events of the training window
(:func:`transact.data.item_repr_world.rewrite_item_embeddings` passes those before the
manifest's ``train_range_ms[1]``). Evaluation-period engagements never shape a vector.
Like the importer's ``quality`` (a target encoding), the vectors do include the training
examples' own engagements, so a model may fit training data a little better than it can
generalize; the evaluation measures the honest figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch
from tqdm import tqdm

ITEM_REPR_METHODS = ("item2vec", "mf")


@dataclass(frozen=True)
class ItemReprConfig:
    """How item vectors are learned from co-engagement (module docstring).

    Args:
        window: items at most this many engagements apart in a user's sequence co-occur.
        negatives: negative samples per positive pair (item2vec).
        pair_updates: item2vec's training budget in pair updates; passes over the pairs
            = ``round(pair_updates / n_pairs)`` clipped to ``[1, max_epochs]``.
        max_epochs: most passes over the pairs (item2vec).
        batch_size: pairs per update (item2vec; small batches keep the gathered rows
            in cache: 1,024 was the fastest per pair on this machine).
        lr: SGD's learning rate (item2vec), decayed linearly to ``lr * 1e-4``
            (word2vec's 0.025 and schedule).
        smoothing: exponent on item frequencies for item2vec's negative sampling and
            mf's context distribution (0.75, word2vec's and Levy et al.'s choice).
        oversample / power_iterations: the randomized SVD's extra columns and power
            iterations (mf).
    """

    window: int = 5
    negatives: int = 5
    pair_updates: int = 10_000_000
    max_epochs: int = 50
    batch_size: int = 1024
    lr: float = 0.025
    smoothing: float = 0.75
    oversample: int = 16
    power_iterations: int = 4

    def __post_init__(self) -> None:
        checks = {
            "window": self.window >= 1,
            "negatives": self.negatives >= 1,
            "pair_updates": self.pair_updates >= 1,
            "max_epochs": self.max_epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "smoothing": 0 < self.smoothing <= 1,
            "oversample": self.oversample >= 0,
            "power_iterations": self.power_iterations >= 0,
        }
        bad = [f"{k}={getattr(self, k)!r}" for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"ItemReprConfig: invalid {', '.join(bad)}")


def co_engagement_pairs(
    user_ids: np.ndarray, item_ids: np.ndarray, times_ms: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Directed co-engagement pairs ``(center [P], context [P])`` int64, both directions.

    Events are ordered by (user, time), ties in input order; a run of one user's events on
    the same item collapses to its first (a closeup, click and repin of one item are one
    engagement); then every two events of a user at most ``window`` positions apart give
    the pairs (a, b) and (b, a), unless a == b. Vectorized: one pass per offset.
    """
    users = np.asarray(user_ids, dtype=np.int64)
    items = np.asarray(item_ids, dtype=np.int64)
    times = np.asarray(times_ms, dtype=np.int64)
    if not users.shape == items.shape == times.shape or users.ndim != 1:
        raise ValueError(
            f"user_ids, item_ids and times_ms must be [N] of one length, got "
            f"{users.shape}, {items.shape}, {times.shape}"
        )
    order = np.lexsort((np.arange(users.size), times, users))
    u, it = users[order], items[order]
    keep = np.r_[True, (u[1:] != u[:-1]) | (it[1:] != it[:-1])] if u.size else np.zeros(0, bool)
    u, it = u[keep], it[keep]
    centers: list[np.ndarray] = []
    contexts: list[np.ndarray] = []
    for k in range(1, window + 1):
        if k >= u.size:
            break
        same_user = u[k:] == u[:-k]
        a, b = it[:-k][same_user], it[k:][same_user]
        distinct = a != b
        a, b = a[distinct], b[distinct]
        centers += [a, b]
        contexts += [b, a]
    if not centers:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(centers), np.concatenate(contexts)


def co_engagement_pairs_reference(
    user_ids: np.ndarray, item_ids: np.ndarray, times_ms: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Plain per-user loop with the rules of :func:`co_engagement_pairs` (for tests)."""
    sequences: dict[int, list[tuple[int, int, int]]] = {}
    columns = zip(user_ids.tolist(), item_ids.tolist(), times_ms.tolist(), strict=True)
    for row, (u, i, t) in enumerate(columns):
        sequences.setdefault(u, []).append((t, row, i))
    centers, contexts = [], []
    for events in sequences.values():
        seq: list[int] = []
        for _, _, item in sorted(events):
            if not seq or seq[-1] != item:
                seq.append(item)
        for p, a in enumerate(seq):
            for b in seq[p + 1 : p + 1 + window]:
                if a != b:
                    centers += [a, b]
                    contexts += [b, a]
    return np.array(centers, np.int64), np.array(contexts, np.int64)


def learned_mask(embeddings: np.ndarray) -> np.ndarray:
    """``[n_items]`` bool: True where a vector was learned (non-zero), False for cold items."""
    return np.asarray(np.abs(embeddings).sum(axis=1) > 0)


def learn_item_embeddings(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    times_ms: np.ndarray,
    n_items: int,
    d_item: int,
    method: str = "item2vec",
    seed: int = 0,
    *,
    config: ItemReprConfig | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Learn ``[n_items, d_item]`` float32 item vectors from engagement events.

    Args:
        user_ids / item_ids / times_ms: ``[N]`` int64 engagement events of the training
            window only (the caller restricts them; see the module docstring on leakage);
            ``item_ids`` are dense item indices in ``0..n_items-1``.
        n_items / d_item: the table's shape.
        method: ``item2vec`` or ``mf`` (module docstring).
        seed: the same inputs and seed give the same table.
        config: :class:`ItemReprConfig` (window, budget, ...).
        progress: a tqdm bar (default: when stderr is a terminal).

    Returns unit-norm rows for items in at least one co-engagement pair (centred on the
    learned items' mean first) and zero rows for the rest (cold start,
    :func:`learned_mask`).
    """
    cfg = config or ItemReprConfig()
    if method not in ITEM_REPR_METHODS:
        raise ValueError(f"item representation method {method!r} not in {ITEM_REPR_METHODS}")
    if n_items < 1 or d_item < 1:
        raise ValueError(f"n_items={n_items} and d_item={d_item} must be >= 1")
    items = np.asarray(item_ids, dtype=np.int64)
    bad = np.flatnonzero((items < 0) | (items >= n_items))
    if bad.size:
        raise ValueError(
            f"item_ids[{int(bad[0])}] = {int(items[bad[0]])} is outside 0..{n_items - 1} "
            f"({bad.size} such events)"
        )
    centers, contexts = co_engagement_pairs(user_ids, items, times_ms, cfg.window)
    out = np.zeros((n_items, d_item), np.float32)
    if centers.size == 0:
        return out
    if method == "item2vec":
        vectors = _item2vec(centers, contexts, n_items, d_item, seed, cfg, progress)
    else:
        vectors = _ppmi_svd(centers, contexts, n_items, d_item, seed, cfg)
    learned = (np.bincount(centers, minlength=n_items) > 0) & (np.abs(vectors).sum(axis=1) > 0)
    # remove the direction every vector shares (Mu & Viswanath 2018): SGNS's input vectors
    # sit in a narrow cone (mean cosine 0.94 between clusters of a test log, 0.99 within;
    # -0.02 and 0.89 once centred), which a ranker reading them would have to undo
    centred = vectors[learned] - vectors[learned].mean(axis=0)
    norms = np.linalg.norm(centred, axis=1)
    rows = np.flatnonzero(learned)
    keep = norms > 0
    out[rows[keep]] = centred[keep] / norms[keep, None]
    return out


def _item2vec(
    centers: np.ndarray,
    contexts: np.ndarray,
    n_items: int,
    d_item: int,
    seed: int,
    cfg: ItemReprConfig,
    progress: bool | None,
) -> np.ndarray:
    """Skip-gram with negative sampling on the pairs; returns the input vectors ``[n, d]``.

    word2vec's update, batched: per pair, ``-lr * (sigmoid(v . u) - y) * u`` into the
    centre's input vector ``v`` and ``-lr * (sigmoid(v . u) - y) * v`` into the output
    vector ``u`` of the context (y = 1) and of each negative (y = 0), summed over the
    batch by ``index_add_`` (what word2vec's lock-free threads do). Negatives are drawn
    from a table in which item j fills a share ``c_j^smoothing / sum`` of the rows.
    """
    g = torch.Generator().manual_seed(seed)
    n_pairs = centers.size
    center_t = torch.from_numpy(centers)
    context_t = torch.from_numpy(contexts)
    noise = np.bincount(contexts, minlength=n_items).astype(np.float64) ** cfg.smoothing
    table_size = max(1_000_000, 20 * n_items)
    repeats = np.floor(noise / noise.sum() * table_size + 0.5).astype(np.int64)
    noise_table = torch.from_numpy(np.repeat(np.arange(n_items, dtype=np.int64), repeats))
    w_in = torch.empty(n_items, d_item).uniform_(-0.5 / d_item, 0.5 / d_item, generator=g)
    w_out = torch.zeros(n_items, d_item)
    epochs = min(max(round(cfg.pair_updates / n_pairs), 1), cfg.max_epochs)
    total = epochs * math.ceil(n_pairs / cfg.batch_size)
    bar = tqdm(total=total, desc="item2vec", unit="step", disable=not _show(progress))
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(n_pairs, generator=g)
        for a in range(0, n_pairs, cfg.batch_size):
            rows = perm[a : a + cfg.batch_size]
            b = rows.numel()
            center = center_t[rows]
            draws = torch.randint(0, noise_table.numel(), (cfg.negatives * b,), generator=g)
            targets = torch.cat([context_t[rows], noise_table[draws]])  # [(1 + k) * B]
            v = w_in.index_select(0, center)  # [B, d]
            u = w_out.index_select(0, targets).view(1 + cfg.negatives, b, d_item)
            lr = cfg.lr * max(1.0 - step / total, 1e-4)  # word2vec's linear decay
            coef = torch.sigmoid((u * v).sum(-1))  # [1 + k, B]
            coef[0] -= 1.0
            coef.mul_(-lr)
            w_in.index_add_(0, center, (coef.unsqueeze(-1) * u).sum(0))
            w_out.index_add_(0, targets, (coef.unsqueeze(-1) * v).view(-1, d_item))
            step += 1
            bar.update(1)
    bar.close()
    return w_in.numpy()


def ppmi_matrix(
    centers: np.ndarray, contexts: np.ndarray, n_items: int, smoothing: float = 0.75
) -> sp.csr_matrix:
    """``[n, n]`` positive PMI of pair counts, ``max(0, log(C_ij Z / (C_i c_j^a)))`` with
    ``c_j^a / Z`` the smoothed context distribution (``a`` = ``smoothing``)."""
    counts = sp.coo_matrix(
        (np.ones(centers.size, np.float64), (centers, contexts)), shape=(n_items, n_items)
    ).tocsr()
    counts.sum_duplicates()
    row_totals = np.asarray(counts.sum(axis=1)).ravel()
    context_weight = np.asarray(counts.sum(axis=0)).ravel() ** smoothing
    z = context_weight.sum()
    coo = counts.tocoo()
    pmi = np.log(coo.data * z / (row_totals[coo.row] * context_weight[coo.col]))
    positive = pmi > 0
    return sp.csr_matrix(
        (pmi[positive], (coo.row[positive], coo.col[positive])), shape=(n_items, n_items)
    )


def truncated_svd(
    matrix: sp.spmatrix, k: int, seed: int = 0, oversample: int = 16, power_iterations: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` SVD ``U [n, k], S [k], Vt [k, m]`` of a sparse matrix, randomized.

    Halko, Martinsson & Tropp (2011), Algorithm 4.4: a seeded Gaussian sketch of
    ``k + oversample`` columns, ``power_iterations`` power iterations renormalized by LU
    (as scikit-learn's ``randomized_svd``; QR on every step costs 5x more here), one QR,
    then the exact SVD of the small projected matrix. Signs are fixed (each left vector's
    largest-magnitude entry positive), so the result is a function of ``(matrix, seed)``.
    Small matrices take the dense SVD.
    """
    n, m = matrix.shape
    width = min(k + oversample, n, m)
    if width >= min(n, m) or min(n, m) <= 64:
        u, s, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
    else:
        rng = np.random.default_rng(seed)
        q = matrix @ rng.standard_normal((m, width))
        for _ in range(power_iterations):  # LU keeps the columns apart, 5x cheaper than QR
            q = scipy.linalg.lu(q, permute_l=True)[0]
            q = scipy.linalg.lu(matrix.T @ q, permute_l=True)[0]
            q = matrix @ q
        q, _ = scipy.linalg.qr(q, mode="economic")
        # B = Q^T M = R^T P^T with B^T = P R; the SVD of the small R^T gives B's
        qb, rb = scipy.linalg.qr(np.asarray(matrix.T @ q), mode="economic")
        ub, s, wt = np.linalg.svd(rb.T)
        u, vt = q @ ub, wt @ qb.T
    u, s, vt = u[:, :k], s[:k], vt[:k]
    ut = np.ascontiguousarray(u.T)  # rows: a contiguous argmax per vector
    signs = np.sign(ut[np.arange(ut.shape[0]), np.abs(ut).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return u * signs, s, vt * signs[:, None]


def truncated_svd_reference(matrix: sp.spmatrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain path: scipy's ARPACK ``svds``; returns ``U [n, k]`` and ``S [k]`` (descending)."""
    from scipy.sparse.linalg import svds

    u, s, _ = svds(matrix.astype(np.float64), k=k, random_state=0)
    order = np.argsort(-s)
    return u[:, order], s[order]


def _ppmi_svd(
    centers: np.ndarray,
    contexts: np.ndarray,
    n_items: int,
    d_item: int,
    seed: int,
    cfg: ItemReprConfig,
) -> np.ndarray:
    """``U_d sqrt(S_d)`` of the PPMI matrix ``[n, d]``; zero columns when its rank is below d."""
    matrix = ppmi_matrix(centers, contexts, n_items, cfg.smoothing)
    k = min(d_item, n_items)
    _, s, vt = truncated_svd(matrix, k, seed, cfg.oversample, cfg.power_iterations)
    rank = int((s > s[0] * 1e-9).sum()) if s.size and s[0] > 0 else 0
    vectors = np.zeros((n_items, d_item), np.float64)
    # M V S^-1/2 = U S^1/2, and exactly zero on an item whose PPMI row is empty
    vectors[:, :rank] = (matrix @ vt[:rank].T) / np.sqrt(s[:rank])
    return vectors.astype(np.float32)


def _show(progress: bool | None) -> bool:
    import sys

    return sys.stderr.isatty() if progress is None else progress


__all__ = [
    "ITEM_REPR_METHODS",
    "ItemReprConfig",
    "co_engagement_pairs",
    "co_engagement_pairs_reference",
    "learn_item_embeddings",
    "learned_mask",
    "ppmi_matrix",
    "truncated_svd",
    "truncated_svd_reference",
]
