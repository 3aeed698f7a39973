"""Ground truth: how a user responds to a shown item, and the draws of the labels.

Per impression, a logistic model per action of the user-item match and the user's state:

=========  =========  ====  ====  ========  ====  ========  ========  =======  ==========  ====  ===
logit      intercept  lt    ss    cur       q     prop      fatigue   satiat.  freshness   pos   cat
=========  =========  ====  ====  ========  ====  ========  ========  =======  ==========  ====  ===
closeup    -4.3       1.1   1.5   c         0.4   1         -1.5      -s       +f          1     yes
click      -5.3       0.9   1.4   c         0.5   1         -1.5      -s       +f          1     yes
repin      -6.8       1.3   1.8   1.2 c     0.6   1.3+save  -2.0      -s       +f          1     yes
hide       -4.4       -1.6  -1.6  -c        -0.5  0         +2.5      +s/2     0           0.5   yes
=========  =========  ====  ====  ========  ====  ========  ========  =======  ==========  ====  ===

``lt`` long-term affinity, ``ss`` session intent match (1 same leaf, 0.35 same top-level
interest), ``cur`` current-interest affinity, ``q`` standardized quality, ``prop`` user
propensity, ``fatigue`` saturated hide fatigue, ``satiat.`` satiation in [0, 1], ``pos``
position effect (0 in randomized requests); ``c``, ``s`` and ``f`` are the config's
``current_weight``, ``satiation_weight`` and ``freshness_weight``. A hide is drawn first;
if the item is not hidden, closeup, click and repin are drawn independently, so the stored
ground truth is the exact marginal: ``P(hide)``, ``(1 - P(hide)) P(click | not hidden)``.

The *relevance* of an item (the closeup logit's match terms, without the intercept, the
user's propensity, the position and the format) is what a user perceives as the quality
of a feed; its mean over a request is the request's satisfaction signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from transact.data.world.catalog import sigmoid
from transact.data.world.config import WorldConfig

if TYPE_CHECKING:
    from transact.data.world.env import World
    from transact.data.world.state import UserState

BASE_LOGIT = {"closeup": -4.32, "click": -5.38, "repin": -6.88, "hide": -4.1}
"""Intercepts, calibrated to Pinterest-like rates (closeups ~5%, clicks ~3%, repins ~1%,
hides ~0.5% of impressions; ``docs/data.md`` has the measured figures)."""

ENGAGEMENT_ACTIONS = ("closeup", "click", "repin", "hide")


@dataclass
class ResponseInputs:
    """Per-impression inputs of the response model, every field ``[N]`` float32.

    Fields:
        lt: long-term affinity in [0, 1]; ss: session-intent match in {0, 0.35, 1};
        cur: current-interest affinity in [0, 1); quality_z: standardized quality;
        propensity / save_offset: the user's offsets; fatigue: saturated hide fatigue in
        [0, 1); satiation: in [0, 1]; freshness: in [0, 1]; position_effect: the
        position term (0 for randomized requests); category_effect: ``[4, N]`` format
        shifts of (closeup, click, repin, hide).
    """

    lt: np.ndarray
    ss: np.ndarray
    cur: np.ndarray
    quality_z: np.ndarray
    propensity: np.ndarray
    save_offset: np.ndarray
    fatigue: np.ndarray
    satiation: np.ndarray
    freshness: np.ndarray
    position_effect: np.ndarray
    category_effect: np.ndarray


def response_inputs(
    world: World,
    state: UserState,
    users: np.ndarray,
    items: np.ndarray,
    t_ms: np.ndarray,
    session_leaf: np.ndarray,
    position: np.ndarray | None,
    randomized: np.ndarray,
    request: np.ndarray | None = None,
) -> ResponseInputs:
    """The response model's inputs for ``[M]`` (user, item) rows at times ``t_ms``.

    ``position`` None: no position effect (what a candidate is worth before it is
    placed). With ``request`` (``[M]`` request of each row, rows sorted by request then
    position), impressions earlier in the same request add to the satiation of later ones.
    """
    cfg, cat, pop = world.config, world.catalog, world.population
    leaf, top = cat.item_leaf[items], cat.item_top[items]
    ss = np.where(leaf == session_leaf, 1.0, np.where(top == cat.leaf_top[session_leaf], 0.35, 0.0))
    if state.satiation_on:
        s_leaf = state.sat_leaf[users, leaf].astype(np.float64)
        s_top = state.sat_top[users, top].astype(np.float64)
        if request is not None and position is not None:
            s_leaf += earlier_in_request(request, leaf, position)
            s_top += earlier_in_request(request, top, position)
        share = cfg.satiation_top_share
        satiation = (
            (1 - np.exp(-s_leaf / cfg.satiation_leaf_scale))
            + share * (1 - np.exp(-s_top / cfg.satiation_top_scale))
        ) / (1 + share)
    else:
        satiation = np.zeros(users.size)
    if cfg.freshness_weight > 0:
        freshness = 0.5 ** (cat.age_days(items, t_ms) / cfg.freshness_half_life_days)
    else:
        freshness = np.zeros(users.size)
    if position is None:
        pos_eff = np.zeros(users.size)
    else:
        # centred on a typical request, so randomized (no effect) is about average
        pos_eff = np.where(randomized, 0.0, -0.35 * (np.log1p(position) - 2.0))
    return ResponseInputs(
        lt=state.lt_affinity[users, top],
        ss=ss,
        cur=state.current_affinity(users, leaf),
        quality_z=cat.quality_z[items],
        propensity=pop.propensity[users],
        save_offset=pop.save_offset[users],
        fatigue=1.0 - np.exp(-state.fatigue[users, top]),
        satiation=satiation,
        freshness=freshness,
        position_effect=pos_eff,
        category_effect=world.category_effect[:, cat.category[items]],
    )


def earlier_in_request(request: np.ndarray, group: np.ndarray, position: np.ndarray) -> np.ndarray:
    """``[M]`` how many rows of the same request at lower positions share each row's group."""
    # rows come sorted by (request, position): a stable sort on (request, group) keeps
    # the position order inside each run
    key = request.astype(np.int64) * (int(group.max(initial=0)) + 1) + group
    if (np.diff(request) < 0).any() or ((np.diff(request) == 0) & (np.diff(position) < 0)).any():
        order = np.lexsort((position, group, request))
    else:
        order = np.argsort(key, kind="stable")
    k = key[order]
    new = np.r_[True, k[1:] != k[:-1]]
    run_start = np.flatnonzero(new)[np.cumsum(new) - 1]
    out = np.empty(order.size, np.int64)
    out[order] = np.arange(order.size) - run_start
    return out


def relevance(x: ResponseInputs, cfg: WorldConfig) -> np.ndarray:
    """``[N]`` the match terms of the closeup logit: what a user perceives of an item."""
    return (
        1.1 * x.lt
        + 1.5 * x.ss
        + cfg.current_weight * x.cur
        + 0.4 * x.quality_z
        - 1.5 * x.fatigue
        - cfg.satiation_weight * x.satiation
        + cfg.freshness_weight * x.freshness
    )


def response_probabilities(
    x: ResponseInputs, cfg: WorldConfig
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Ground truth of every action for each impression.

    Returns:
        ``(marginals, conditional)``: marginals ``{action: [N] float64}`` for closeup,
        click, repin and hide (what ``gt_prob_<head>`` stores), and ``[3, N]`` the
        probabilities of closeup, click and repin given no hide (what labels are drawn
        from after the hide).
    """
    b = BASE_LOGIT
    c, s, f = cfg.current_weight, cfg.satiation_weight, cfg.freshness_weight
    common = -s * x.satiation + f * x.freshness
    ce = x.category_effect
    logit_closeup = (
        b["closeup"] + 1.1 * x.lt + 1.5 * x.ss + c * x.cur + 0.4 * x.quality_z + x.propensity
        - 1.5 * x.fatigue + common + x.position_effect + ce[0]
    )  # fmt: skip
    logit_click = (
        b["click"] + 0.9 * x.lt + 1.4 * x.ss + c * x.cur + 0.5 * x.quality_z + x.propensity
        - 1.5 * x.fatigue + common + x.position_effect + ce[1]
    )  # fmt: skip
    logit_repin = (
        b["repin"] + 1.3 * x.lt + 1.8 * x.ss + 1.2 * c * x.cur + 0.6 * x.quality_z
        + 1.3 * x.propensity + x.save_offset - 2.0 * x.fatigue + common + x.position_effect
        + ce[2]
    )  # fmt: skip
    logit_hide = (
        b["hide"] - 1.6 * x.lt - 1.6 * x.ss - c * x.cur - 0.5 * x.quality_z + 2.5 * x.fatigue
        + 0.5 * s * x.satiation + 0.5 * x.position_effect + ce[3]
    )  # fmt: skip
    p_hide = sigmoid(logit_hide)
    cond = sigmoid(np.stack([logit_closeup, logit_click, logit_repin]))
    marginals = {
        "closeup": (1 - p_hide) * cond[0],
        "click": (1 - p_hide) * cond[1],
        "repin": (1 - p_hide) * cond[2],
        "hide": p_hide,
    }
    return marginals, cond


def draw_labels(
    marginals: dict[str, np.ndarray], cond: np.ndarray, uniforms: np.ndarray
) -> dict[str, np.ndarray]:
    """Labels from ``uniforms`` ``[4, N]`` (hide, closeup, click, repin): a hidden item
    gets no other action."""
    hide = uniforms[0] < marginals["hide"]
    return {
        "hide": hide,
        "closeup": (uniforms[1] < cond[0]) & ~hide,
        "click": (uniforms[2] < cond[1]) & ~hide,
        "repin": (uniforms[3] < cond[2]) & ~hide,
    }
