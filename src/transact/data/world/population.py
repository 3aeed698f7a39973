"""Users' static attributes and their long-term interests at the world's start.

Activity (sessions per day) is log-normal with a long tail and sets the user state
(daily / weekly / monthly, plus users who sign up during the world: new). Each user has a
sparse long-term mixture over a few top-level interests (priors differ by gender), an
engagement propensity and a save offset (browsers rarely save). What changes during the
world (drift, current interests, satiation, ...) lives in
:class:`~transact.data.world.state.UserState`.
"""

from __future__ import annotations

import math

import numpy as np

from transact.data.schema import MS_PER_DAY
from transact.data.world.config import COUNTRIES, GENDER_SHARE, GENDERS, WorldConfig

MAX_INTERESTS = 6
"""Most top-level interests in a user's long-term mixture."""


class Population:
    """Static user attributes (``[n_users]`` arrays) and the initial long-term mixture.

    Attributes:
        activity: sessions per day at neutral satisfaction.
        gender / country / state: indices into the world's vocabularies.
        signup_ms: sign-up time (before the world for all but ``new`` users).
        propensity / save_offset: per-user engagement and repin logit offsets.
        prior_last_repin_ms: last save before the world (core / non-core at the start).
        gender_prior: ``[n_genders, n_top]`` prior over top-level interests.
        interest_slots: ``[n_users, MAX_INTERESTS]`` top-level interests (-1: unused).
        slot_weights: ``[n_users, MAX_INTERESTS]`` mixture weights (0 where unused).
    """

    def __init__(self, cfg: WorldConfig, n_top: int, rng: np.random.Generator) -> None:
        n = cfg.n_users
        self.n_users = n
        self.activity = np.clip(
            rng.lognormal(math.log(cfg.sessions_per_day_median), cfg.activity_sigma, n), 0.03, 12.0
        )
        self.gender = rng.choice(len(GENDERS), n, p=np.array(GENDER_SHARE))
        cw = 1.0 / np.arange(1, len(COUNTRIES) + 1) ** 1.1
        self.country = rng.choice(len(COUNTRIES), n, p=cw / cw.sum())
        is_new = rng.random(n) < cfg.new_user_share
        start = cfg.start_ms
        world_ms = cfg.n_days * MS_PER_DAY
        self.signup_ms = np.where(
            is_new,
            start + (rng.random(n) * 0.9 * world_ms).astype(np.int64),
            start - (rng.integers(30, 2_000, n) * MS_PER_DAY),
        ).astype(np.int64)
        self.state = np.where(
            is_new, 3, np.where(self.activity >= 1.0, 0, np.where(self.activity >= 0.25, 1, 2))
        )
        # long-term interests: a sparse mixture over top-level interests, priors by gender
        self.gender_prior = rng.dirichlet(np.full(n_top, 0.8), len(GENDERS))
        k = np.minimum(1 + rng.poisson(1.8, n), MAX_INTERESTS)
        self.interest_slots = np.full((n, MAX_INTERESTS), -1, np.int64)
        self.slot_weights = np.zeros((n, MAX_INTERESTS), np.float32)
        for g in range(len(GENDERS)):
            rows = np.flatnonzero(self.gender == g)
            # Gumbel top-k: k distinct interests per user, drawn by the gender prior
            keys = np.log(self.gender_prior[g])[None, :] - np.log(
                -np.log(rng.random((rows.size, n_top)))
            )
            ranked = np.argsort(-keys, axis=1)[:, :MAX_INTERESTS]
            w = rng.dirichlet(np.ones(MAX_INTERESTS), rows.size)
            used = np.arange(MAX_INTERESTS)[None, :] < k[rows, None]
            w[~used] = 0
            w /= w.sum(axis=1, keepdims=True)
            self.interest_slots[rows] = np.where(used, ranked, -1)
            self.slot_weights[rows] = w
        self.propensity = (
            rng.normal(0, 0.45, n)
            + 0.25 * (np.log(self.activity) - math.log(cfg.sessions_per_day_median))
        ).astype(np.float32)
        # savers vs browsers: a share of users rarely save (repin) at all, whatever they
        # click; they are the bulk of non-core users (no save in 28 days, paper 4.2.1)
        browser = rng.random(n) < cfg.browser_share
        self.save_offset = (rng.normal(0, 0.5, n) - 3.0 * browser).astype(np.float32)
        # last save before the world starts (for core / non-core at the start)
        days_since = rng.exponential(
            12.0 / (np.sqrt(self.activity) * np.exp(1.5 * self.propensity + self.save_offset))
        )
        self.prior_last_repin_ms = np.where(
            is_new, 0, start - (days_since * MS_PER_DAY).astype(np.int64) - 1
        ).astype(np.int64)


def slots_to_weights(slots: np.ndarray, weights: np.ndarray, n_top: int) -> np.ndarray:
    """``[n, MAX_INTERESTS]`` slots and weights -> dense ``[n, n_top]`` float32 mixture."""
    out = np.zeros((slots.shape[0], n_top), np.float32)
    rows = np.repeat(np.arange(slots.shape[0]), slots.shape[1]).reshape(slots.shape)
    used = slots >= 0
    np.add.at(out, (rows[used], slots[used]), weights[used])
    return out


def interest_sets(slots: np.ndarray) -> list[np.ndarray]:
    """Each user's top-level interests (sorted int32), from ``[n, MAX_INTERESTS]`` slots."""
    return [np.unique(row[row >= 0]).astype(np.int32) for row in slots]
