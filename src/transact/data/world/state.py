"""The dynamic user state: interests on several time scales, satiation, fatigue, satisfaction.

Everything a user carries from one request to the next, as ``[n_users, ...]`` numpy
arrays so a round of requests updates all its users at once:

* **long-term interests** (weeks): the sparse mixture over top-level interests; with drift
  on, each interest is replaced with a half-life of weeks, by one the user engaged with
  lately or by one drawn from the prior;
* **current interests** (hours to days): a strength per leaf that decays with a half-life
  of hours, is reinforced by engagement and seeded by emerging interests; sessions start
  on them with some probability;
* **session intent** (one session): the leaf the session is about; it follows engagement
  and expires when the session ends;
* **satiation** (hours) at leaf and top-level interest, raised by every impression;
* **hide fatigue** (hours) per top-level interest, raised by hides;
* **satisfaction** (days): an average of the quality of the feeds the user saw, which
  sets how often they come back (and, per request, whether the session goes on).

Decays are applied lazily: each user has one clock, and :meth:`UserState.advance` brings
the user's decaying quantities to a new time in one multiply per quantity.
"""

from __future__ import annotations

import numpy as np

from transact.data.schema import MS_PER_DAY, MS_PER_HOUR
from transact.data.world.catalog import Catalog
from transact.data.world.config import WorldConfig
from transact.data.world.population import MAX_INTERESTS, Population, slots_to_weights
from transact.data.world.rand import Draw, RandomStreams

ENGAGED_TOP_HALF_LIFE_DAYS = 7.0
"""Memory of engaged top-level interests that drift draws from (a few weeks of weight)."""


def half_life_factor(dt_ms: np.ndarray, half_life_ms: float) -> np.ndarray:
    """``0.5 ** (dt / half_life)`` as float32 (dt clipped at 0)."""
    return np.power(0.5, np.maximum(dt_ms, 0) / half_life_ms).astype(np.float32)


class UserState:
    """Every user's dynamic state (see the module docstring); mutated by the environment.

    Attributes (``U`` users, ``T`` top-level interests, ``L`` leaves):
        slots / slot_weights: ``[U, 6]`` long-term interests and their weights.
        lt_weight / lt_affinity: ``[U, T]`` dense mixture and ``sqrt`` of it (the response
            model's long-term affinity ``lt``).
        engaged_top: ``[U, T]`` recent clicks and repins per top-level interest (decays
            with a week's half-life).
        current: ``[U, L]`` current-interest strengths (zeros when the mechanism is off).
        sat_leaf / sat_top: ``[U, L]`` / ``[U, T]`` satiation (exposures, decaying).
        fatigue: ``[U, T]`` hide fatigue.
        satisfaction: ``[U]`` recent feed quality (relaxes to the reference).
        clock_ms: ``[U]`` time the decaying quantities refer to.
        session_leaf / in_session / session_requests / session_id / next_request_ms:
            the open session of each user.
        last_event_ms / last_repin_ms: for request timing and core status.
    """

    def __init__(
        self, cfg: WorldConfig, catalog: Catalog, pop: Population, streams: RandomStreams
    ) -> None:
        self.cfg, self.catalog, self.pop = cfg, catalog, pop
        n, n_top, n_leaves = cfg.n_users, catalog.n_top, catalog.n_leaves
        self.n_users = n
        self.slots = pop.interest_slots.copy()
        self.slot_weights = pop.slot_weights.copy()
        self.lt_weight = np.zeros((n, n_top), np.float32)
        self.lt_cdf = np.zeros((n, n_top), np.float32)
        self.lt_affinity = np.zeros((n, n_top), np.float32)
        self._refresh_mixture(np.arange(n))
        self.engaged_top = np.zeros((n, n_top), np.float32)
        self.current = np.zeros((n, n_leaves), np.float32)
        self.sat_leaf = np.zeros((n, n_leaves), np.float32)
        self.sat_top = np.zeros((n, n_top), np.float32)
        self.fatigue = np.zeros((n, n_top), np.float32)
        self.satisfaction = np.full(n, cfg.satisfaction_reference, np.float32)
        self.clock_ms = np.full(n, cfg.start_ms, np.int64)
        self.session_leaf = np.zeros(n, np.int64)
        self.in_session = np.zeros(n, bool)
        self.session_requests = np.zeros(n, np.int64)
        self.session_id = np.full(n, -1, np.int64)
        self.next_request_ms = np.zeros(n, np.int64)
        self.last_event_ms = np.zeros(n, np.int64)
        self.last_repin_ms = pop.prior_last_repin_ms.copy()
        if self.current_on:
            # one current interest at the start, from the long-term mixture
            users = np.arange(n)
            top = self.sample_top(users, streams.uniform(Draw.INITIAL_CURRENT_TOP, users))
            leaf = catalog.leaf_in_top(top, streams.uniform(Draw.INITIAL_CURRENT_LEAF, users))
            self.current[users, leaf] = 1.0

    # ---- switches --------------------------------------------------------------------

    @property
    def current_on(self) -> bool:
        """Whether current interests are simulated (half-life > 0)."""
        return self.cfg.current_interest_half_life_hours > 0

    @property
    def satiation_on(self) -> bool:
        """Whether satiation is simulated (weight > 0)."""
        return self.cfg.satiation_weight > 0

    # ---- long-term interests ---------------------------------------------------------

    def _refresh_mixture(self, users: np.ndarray) -> None:
        w = slots_to_weights(self.slots[users], self.slot_weights[users], self.lt_weight.shape[1])
        self.lt_weight[users] = w
        self.lt_cdf[users] = np.cumsum(w, axis=1)
        self.lt_affinity[users] = np.sqrt(w)

    def sample_top(self, users: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A top-level interest per user drawn from their long-term mixture (uniforms ``u``)."""
        cdf = self.lt_cdf[users]
        return np.minimum((cdf < u[:, None] * cdf[:, -1:]).sum(axis=1), cdf.shape[1] - 1)

    def sample_long_term_leaf(
        self, users: np.ndarray, u_top: np.ndarray, u_leaf: np.ndarray
    ) -> np.ndarray:
        """A leaf per user: top-level interest from the mixture, then a leaf by leaf weight."""
        return self.catalog.leaf_in_top(self.sample_top(users, u_top), u_leaf)

    def drift(self, day: int, streams: RandomStreams) -> int:
        """Replace long-term interests at the start of ``day``; returns how many changed.

        Each used slot is replaced with probability ``1 - 0.5 ** (1 / half_life_days)``.
        The new interest is drawn (Gumbel-max, never one the user already has) from
        ``(1 - rho) * gender prior + rho * share of recent engagement by interest``, with
        ``rho = drift_toward_engagement``: what a feed shows and a user engages with
        shapes their interests (the feedback loop of paper 5.1).
        """
        cfg = self.cfg
        self.engaged_top *= np.float32(0.5 ** (1.0 / ENGAGED_TOP_HALF_LIFE_DAYS))
        if cfg.drift_half_life_days <= 0:
            return 0
        p = 1.0 - 0.5 ** (1.0 / cfg.drift_half_life_days)
        n_top = self.lt_weight.shape[1]
        changed = 0
        touched: list[np.ndarray] = []
        for j in range(MAX_INTERESTS):
            users = np.flatnonzero(self.slots[:, j] >= 0)
            if users.size == 0:
                continue
            users = users[streams.uniform(Draw.DRIFT_SLOT, day, users, j) < p]
            if users.size == 0:
                continue
            eng = self.engaged_top[users]
            total = eng.sum(axis=1, keepdims=True)
            share = np.where(total > 0, eng / np.maximum(total, 1e-12), 0.0)
            rho = np.where(total[:, 0] > 0, cfg.drift_toward_engagement, 0.0)[:, None]
            prior = (1 - rho) * self.pop.gender_prior[self.pop.gender[users]] + rho * share
            u = streams.uniform(Draw.DRIFT_PICK, day, users[:, None], j, np.arange(n_top)[None, :])
            keys = np.log(np.maximum(prior, 1e-12)) - np.log(-np.log(u))
            have = self.slots[users]
            rows = np.repeat(np.arange(users.size), MAX_INTERESTS).reshape(have.shape)
            keys[rows[have >= 0], have[have >= 0]] = -np.inf
            self.slots[users, j] = np.argmax(keys, axis=1)
            changed += users.size
            touched.append(users)
        if touched:
            self._refresh_mixture(np.unique(np.concatenate(touched)))
        return changed

    # ---- time ------------------------------------------------------------------------

    def advance(self, users: np.ndarray, t_ms: np.ndarray) -> None:
        """Decay the quantities of ``users`` (unique) from their clock to ``t_ms``."""
        cfg = self.cfg
        dt = np.maximum(t_ms - self.clock_ms[users], 0)
        if not dt.any():
            return
        self.fatigue[users] *= half_life_factor(dt, cfg.fatigue_half_life_hours * MS_PER_HOUR)[
            :, None
        ]
        if self.current_on:
            f = half_life_factor(dt, cfg.current_interest_half_life_hours * MS_PER_HOUR)
            self.current[users] *= f[:, None]
        if self.satiation_on:
            f = half_life_factor(dt, cfg.satiation_leaf_half_life_hours * MS_PER_HOUR)
            self.sat_leaf[users] *= f[:, None]
            f = half_life_factor(dt, cfg.satiation_top_half_life_hours * MS_PER_HOUR)
            self.sat_top[users] *= f[:, None]
        ref = np.float32(cfg.satisfaction_reference)
        f = half_life_factor(dt, cfg.satisfaction_half_life_days * MS_PER_DAY)
        self.satisfaction[users] = ref + (self.satisfaction[users] - ref) * f
        self.clock_ms[users] = np.maximum(self.clock_ms[users], t_ms)

    # ---- what a step changes ---------------------------------------------------------

    def record(
        self,
        users: np.ndarray,
        items: np.ndarray,
        labels: dict[str, np.ndarray],
        repin_ms: np.ndarray,
        request_users: np.ndarray,
        request_last_event_ms: np.ndarray,
    ) -> None:
        """Apply one round's impressions ``[M]`` (users, items, labels by action, repin
        times) and its requests' last event times ``[R]``: satiation rises with every
        impression, hides add fatigue and halve the leaf's current interest, clicks and
        repins reinforce it (closeups a fifth as much) and feed the engagement memory that
        drift draws from; repins refresh core status."""
        cfg, cat = self.cfg, self.catalog
        leaf, top = cat.item_leaf[items], cat.item_top[items]
        hide, closeup = labels["hide"], labels["closeup"]
        engaged = labels["click"] | labels["repin"]
        self.last_event_ms[request_users] = np.maximum(
            self.last_event_ms[request_users], request_last_event_ms
        )
        repin = labels["repin"]
        if repin.any():
            np.maximum.at(self.last_repin_ms, users[repin], repin_ms[repin])
        if hide.any():
            np.add.at(self.fatigue, (users[hide], top[hide]), 1.0)
        if self.satiation_on:
            np.add.at(self.sat_leaf, (users, leaf), 1.0)
            np.add.at(self.sat_top, (users, top), 1.0)
        if engaged.any():
            np.add.at(self.engaged_top, (users[engaged], top[engaged]), 1.0)
        if self.current_on:
            gain = cfg.current_reinforcement * (engaged + 0.2 * (closeup & ~engaged))
            on = gain > 0
            np.add.at(self.current, (users[on], leaf[on]), gain[on].astype(np.float32))
            if hide.any():
                self.current[users[hide], leaf[hide]] *= 0.5

    # ---- current interests -----------------------------------------------------------

    def emerge(self, day: int, day_start_ms: int, streams: RandomStreams) -> int:
        """Seed new current interests at the start of ``day``; returns how many."""
        cfg = self.cfg
        if not self.current_on or cfg.p_new_current_interest <= 0:
            return 0
        users = np.arange(self.n_users)
        users = users[streams.uniform(Draw.NEW_CURRENT, day, users) < cfg.p_new_current_interest]
        if users.size == 0:
            return 0
        behind = users[self.clock_ms[users] < day_start_ms]
        self.advance(behind, np.full(behind.size, day_start_ms, np.int64))
        any_leaf = streams.uniform(Draw.NEW_CURRENT_ANY, day, users) < 0.5
        u_top = streams.uniform(Draw.NEW_CURRENT_TOP, day, users)
        u_leaf = streams.uniform(Draw.NEW_CURRENT_LEAF, day, users)
        from_mixture = self.sample_long_term_leaf(users, u_top, u_leaf)
        anywhere = self.catalog.leaf_in_top(
            np.minimum((u_top * self.catalog.n_top).astype(np.int64), self.catalog.n_top - 1),
            u_leaf,
        )
        leaf = np.where(any_leaf, anywhere, from_mixture)
        self.current[users, leaf] += 1.0
        return int(users.size)

    def current_affinity(self, users: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        """``1 - exp(-strength)`` of each (user, leaf) pair: the response model's ``cur``."""
        if not self.current_on:
            return np.zeros(users.shape, np.float32)
        return (1.0 - np.exp(-self.current[users, leaves])).astype(np.float32)

    def session_start_leaf(
        self, users: np.ndarray, u_on: np.ndarray, u_pick: np.ndarray, u_top: np.ndarray,
        u_leaf: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """The intent of a new session: a current interest (drawn by strength) with
        probability ``p_session_on_current * min(1, total strength)``, else a leaf of the
        long-term mixture."""
        leaf = self.sample_long_term_leaf(users, u_top, u_leaf)
        if not self.current_on:
            return leaf
        strength = self.current[users]
        total = strength.sum(axis=1)
        on = u_on < self.cfg.p_session_on_current * np.minimum(total, 1.0)
        if on.any():
            cdf = np.cumsum(strength[on], axis=1)
            pick = (cdf < (u_pick[on] * cdf[:, -1])[:, None]).sum(axis=1)
            leaf[on] = np.minimum(pick, strength.shape[1] - 1)
        return leaf

    # ---- metrics ---------------------------------------------------------------------

    def true_interest_distribution(self, users: np.ndarray) -> np.ndarray:
        """``[n, T]`` the distribution a new session's top-level interest is drawn from.

        ``p_cur * (current strength by interest, normalized) + (1 - p_cur) * long-term
        mixture`` with ``p_cur = p_session_on_current * min(1, total strength)``: the
        user's true interest state as the world uses it.
        """
        lt = self.lt_weight[users].astype(np.float64)
        if not self.current_on:
            return lt
        by_top = self.current[users].reshape(users.size, self.catalog.n_top, -1).sum(axis=2)
        total = by_top.sum(axis=1, keepdims=True)
        p_cur = self.cfg.p_session_on_current * np.minimum(total, 1.0)
        cur = by_top / np.maximum(total, 1e-12)
        return p_cur * cur + (1 - p_cur) * lt

    def interest_entropy(self, users: np.ndarray) -> np.ndarray:
        """``[n]`` entropy (nats) of :meth:`true_interest_distribution`: it falls when a
        feed narrows what users are interested in (an echo chamber), not only what they
        are shown (a filter bubble)."""
        p = self.true_interest_distribution(users)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, -p * np.log(p), 0.0)
        return terms.sum(axis=1)
