"""The candidate generators: what a request's ranker gets to choose from.

Each request of ``k`` shown items gets ``ceil(candidate_pool * k)`` distinct candidates.
Slots are filled by four generators in the shares of ``WorldConfig.candidate_mix``
(:data:`~transact.data.world.config.CANDIDATE_SOURCES`): a leaf of the user's long-term
interests (by popularity), the session's intent leaf, popular items overall, and fresh
items (created in the last ``fresh_window_days``) of a long-term leaf. Only items that
exist at the request time are proposed. Slots are oversampled and de-duplicated in slot
order, so a candidate's slot (a key of its random numbers) does not depend on the ranker.
"""

from __future__ import annotations

import numpy as np

from transact.data.schema import MS_PER_DAY
from transact.data.world.catalog import Catalog
from transact.data.world.config import WorldConfig
from transact.data.world.rand import Draw, RandomStreams
from transact.data.world.state import UserState


def generate_candidates(
    cfg: WorldConfig,
    catalog: Catalog,
    state: UserState,
    streams: RandomStreams,
    users: np.ndarray,
    t_ms: np.ndarray,
    request_keys: np.ndarray,
    n_show: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of ``R`` requests (``users``, ``t_ms``, ``request_keys``, ``n_show`` ``[R]``).

    Returns:
        ``(offsets [R + 1], item_ids [N], source [N] int8, slot [N])``, request ``i``
        owning rows ``offsets[i]:offsets[i + 1]`` in slot order.
    """
    want = np.ceil(cfg.candidate_pool * n_show).astype(np.int64)
    m = np.ceil(1.3 * want).astype(np.int64) + 2  # oversampled: duplicates are dropped
    req = np.repeat(np.arange(users.size), m)
    slot = np.arange(req.size) - np.repeat(np.cumsum(m) - m, m)
    key = request_keys[req]
    mix_cdf = np.cumsum(cfg.candidate_mix)
    mix_cdf[-1] = 1.0
    source = np.searchsorted(mix_cdf, streams.uniform(Draw.CANDIDATE_SOURCE, key, slot), "right")
    source = np.minimum(source, len(mix_cdf) - 1).astype(np.int8)
    u_top = streams.uniform(Draw.CANDIDATE_TOP, key, slot)
    u_leaf = streams.uniform(Draw.CANDIDATE_LEAF, key, slot)
    u_item = streams.uniform(Draw.CANDIDATE_ITEM, key, slot)
    t_slot = t_ms[req]
    items = np.empty(req.size, np.int64)
    leaf = np.empty(req.size, np.int64)
    from_interests = (source == 0) | (source == 3)
    leaf[from_interests] = state.sample_long_term_leaf(
        users[req[from_interests]], u_top[from_interests], u_leaf[from_interests]
    )
    s0, s1, s2, s3 = (np.flatnonzero(source == s) for s in range(4))
    items[s0] = catalog.item_in_leaf(leaf[s0], t_slot[s0], u_item[s0])
    items[s1] = catalog.item_in_leaf(state.session_leaf[users[req[s1]]], t_slot[s1], u_item[s1])
    items[s2] = catalog.popular_item(t_slot[s2], u_item[s2])
    window = int(cfg.fresh_window_days * MS_PER_DAY)
    items[s3] = catalog.fresh_in_leaf(leaf[s3], t_slot[s3], window, u_item[s3])
    # unique (request, item) pairs in slot order, then the first `want` per request
    _, first_idx = np.unique(req * catalog.n_items + items, return_index=True)
    keep = np.zeros(req.size, bool)
    keep[first_idx] = True
    req, items, source, slot = req[keep], items[keep], source[keep], slot[keep]
    pos = np.arange(req.size) - np.searchsorted(req, req)
    sel = pos < want[req]
    req, items, source, slot = req[sel], items[sel], source[sel], slot[sel]
    offsets = np.zeros(users.size + 1, np.int64)
    offsets[1:] = np.cumsum(np.bincount(req, minlength=users.size))
    return offsets, items, source, slot
