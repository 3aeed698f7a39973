"""The world as a steppable closed-loop environment: any ranker can be served into it.

One code path simulates both the offline logs (``generate_world`` plugs in the noisy
production ranker) and an online experiment (a simulator plugs in a model's scores)::

    world = World.build(PRESETS["demo"], seed=0)
    env = WorldEnv(world, stream=0)
    for day in range(n_days):
        env.start_day(day)                      # plan sessions (recent satisfaction)
        while (req := env.next_requests()) is not None:
            scores = ranker.score(env, req)     # [N] one score per candidate
            result = env.step(scores)           # impressions, events, requests
            # result.events_table() -> the realtime stream processor, unchanged

A day runs in *rounds*: round r holds the r-th request of the day of every user who is
still active (in a session that goes on, or with a planned session left), so every step
is vectorized over users. Within a user, round r's events are all earlier than the
user's request in round r + 1.

Randomness is counter-based (:mod:`~transact.data.world.rand`): every draw is keyed by
(purpose, day, user, the user's request index of the day, slot or position). Two
environments with the same world and ``stream`` use the same numbers for the same keys
(common random numbers) whatever their rankers do; another ``stream`` gives independent
numbers (per-arm streams).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from transact.data.schema import MS_PER_DAY, MS_PER_HOUR
from transact.data.world.candidates import generate_candidates
from transact.data.world.catalog import Catalog, sigmoid
from transact.data.world.config import CATEGORIES, HOUR_SHARE, WorldConfig
from transact.data.world.logs import StepResult, event_rows
from transact.data.world.population import Population
from transact.data.world.rand import Draw, RandomStreams
from transact.data.world.response import (
    draw_labels,
    relevance,
    response_inputs,
    response_probabilities,
)
from transact.data.world.state import UserState

MAX_SESSIONS_PER_DAY = 12
MAX_REQUESTS_PER_SESSION = 40
MIN_GAP_MS = 1_000  # a user's next request comes at least this long after their last event
BROWSE_MIN_MS = 20_000  # browsing a request's feed: 20 s + Exp(40 s)
BROWSE_MEAN_MS = 40_000
CLOSEUP_DWELL_MEAN_MS = 10_000  # looking at a closed-up item: Exp(10 s)
CORE_WINDOW_MS = 28 * MS_PER_DAY  # core user: a repin in the last 28 days (paper 4.2.1)
_HOUR_CDF = np.cumsum(HOUR_SHARE) / HOUR_SHARE.sum()


@dataclass(frozen=True)
class World:
    """The static part of a world: config, seed, catalog, population, format effects.

    Shared (read-only) by every environment and every arm built on it.
    """

    config: WorldConfig
    seed: int
    catalog: Catalog
    population: Population
    category_effect: np.ndarray  # [4, n_categories] logit shifts (closeup, click, repin, hide)

    @classmethod
    def build(cls, config: WorldConfig, seed: int = 0) -> World:
        """Draw the catalog and the population (deterministic for ``(config, seed)``)."""
        rng = np.random.default_rng(seed)
        catalog = Catalog(config, rng)
        population = Population(config, catalog.n_top, rng)
        effect = rng.normal(0, 0.2, (4, len(CATEGORIES))).astype(np.float32)
        return cls(config, seed, catalog, population, effect)


@dataclass(frozen=True)
class DayPlan:
    """The sessions planned at the start of a day.

    Fields:
        day / day_start_ms: the day index and its UTC midnight.
        expected_sessions: ``[U]`` Poisson mean of each user's sessions (activity times
            the satisfaction factor; 0 for users not signed up or not enrolled).
        session_users / session_start_ms: ``[S]`` planned sessions, by user then time.
    """

    day: int
    day_start_ms: int
    expected_sessions: np.ndarray
    session_users: np.ndarray
    session_start_ms: np.ndarray


@dataclass(frozen=True)
class Requests:
    """One round's requests and their candidates: what a ranker scores.

    Per request (``[R]``): ``request_ids``, ``user_ids``, ``request_times_ms``,
    ``randomized`` (the env shuffles these and ignores their scores), ``n_show`` (how many
    of the candidates are shown), ``is_core``, ``hour_of_day`` (UTC 0-23),
    ``session_start`` and ``request_index`` (the user's request number of the day: a key
    of the random numbers). Candidates are ragged: request ``i`` owns
    ``item_ids[offsets[i]:offsets[i + 1]]`` (``offsets`` ``[R + 1]``, ``item_ids`` ``[N]``)
    with ``source`` ``[N]`` (the candidate generator, ids of
    :data:`~transact.data.world.config.CANDIDATE_SOURCES`) and ``slot`` ``[N]`` (the
    candidate's slot in its request, a key of the random numbers).
    """

    day: int
    round: int
    request_ids: np.ndarray
    user_ids: np.ndarray
    request_times_ms: np.ndarray
    randomized: np.ndarray
    n_show: np.ndarray
    is_core: np.ndarray
    hour_of_day: np.ndarray
    session_start: np.ndarray
    request_index: np.ndarray
    offsets: np.ndarray
    item_ids: np.ndarray
    source: np.ndarray
    slot: np.ndarray

    @property
    def n_requests(self) -> int:
        return int(self.request_ids.size)

    @property
    def n_candidates(self) -> int:
        return int(self.item_ids.size)

    @property
    def candidate_request(self) -> np.ndarray:
        """``[N]`` the request (row in ``[R]``) of each candidate."""
        return np.repeat(np.arange(self.n_requests), np.diff(self.offsets))


class WorldEnv:
    """A steppable copy of the world's users (see the module docstring).

    Args:
        world: the static world (:meth:`World.build`).
        stream: salt of the random numbers; equal streams give common random numbers.
        users: the user ids this environment serves (an arm's traffic); others never
            start a session. Default: everyone.
        randomized_share: override of ``config.randomized_share`` (e.g. 0 for an arm that
            shows no shuffled evaluation traffic).

    Call :meth:`start_day` for days 0, 1, ... in order; within a day alternate
    :meth:`next_requests` and :meth:`step` until :meth:`next_requests` returns None.
    """

    def __init__(
        self,
        world: World,
        *,
        stream: int = 0,
        users: np.ndarray | None = None,
        randomized_share: float | None = None,
    ) -> None:
        cfg = world.config
        self.world, self.config = world, cfg
        self.catalog, self.population = world.catalog, world.population
        self.streams = RandomStreams(world.seed, stream)
        # the start state belongs to the world, not to an arm: stream 0
        self.state = UserState(cfg, world.catalog, world.population, RandomStreams(world.seed))
        n = cfg.n_users
        self.enrolled = np.ones(n, bool) if users is None else self._enrolment(users)
        share = cfg.randomized_share if randomized_share is None else float(randomized_share)
        if not 0 <= share <= 1:
            raise ValueError(f"WorldEnv randomized_share must be in [0, 1], got {share}")
        self.randomized_share = share
        self.day: int | None = None
        self.round = 0
        self.next_request_id = 0
        self.next_session_id = 0
        self._plan_times = np.zeros(0, np.int64)
        self._plan_ptr = np.zeros(n, np.int64)
        self._plan_end = np.zeros(n, np.int64)
        self._day_requests = np.zeros(n, np.int64)
        self._pending: _Pending | None = None

    # ---- copies ----------------------------------------------------------------------

    def _enrolment(self, users: np.ndarray) -> np.ndarray:
        n = self.config.n_users
        ids = np.asarray(users, np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"WorldEnv users: ids must be in 0..{n - 1}")
        enrolled = np.zeros(n, bool)
        enrolled[ids] = True
        return enrolled

    def fork(self, stream: int | None = None, users: np.ndarray | None = None) -> WorldEnv:
        """An independent copy of this environment's users (same world, same state).

        With ``stream=None`` the copy keeps this stream (common random numbers: a paired
        counterfactual arm); another value gives it independent numbers from here on.
        ``users`` restricts the copy to those user ids (an arm's traffic share).
        """
        if self._pending is not None:
            raise RuntimeError("WorldEnv.fork: step() the pending requests first")
        new = copy.copy(self)
        new.state = copy.copy(self.state)
        for name, value in vars(self.state).items():
            if isinstance(value, np.ndarray):
                setattr(new.state, name, value.copy())
        for name in ("enrolled", "_plan_times", "_plan_ptr", "_plan_end", "_day_requests"):
            setattr(new, name, getattr(self, name).copy())
        if stream is not None:
            new.streams = RandomStreams(self.world.seed, stream)
        if users is not None:
            new.enrolled = self._enrolment(users)
        return new

    # ---- days --------------------------------------------------------------------------

    def day_start_ms(self, day: int) -> int:
        """UTC midnight of ``day`` (day 0 is ``config.start_date``) in ms."""
        return self.config.start_ms + day * MS_PER_DAY

    def start_day(self, day: int) -> DayPlan:
        """Update the slow state (drift, emerging interests) and plan the day's sessions.

        A user's expected sessions are ``activity * exp(return_elasticity * (S -
        reference))`` with S their satisfaction at midnight; counts are Poisson (at most
        12), start hours follow the world's hour profile.
        """
        cfg, st = self.config, self.state
        if self._pending is not None or (self.day is not None and self._active_users().size):
            raise RuntimeError(f"WorldEnv.start_day({day}): day {self.day} is not finished")
        if day < 0 or (self.day is not None and day <= self.day):
            raise ValueError(f"WorldEnv.start_day({day}): days must increase (last {self.day})")
        if cfg.fresh_items_per_day > 0 and day >= cfg.catalog_days:
            raise ValueError(
                f"WorldEnv.start_day({day}): the catalog holds fresh items for "
                f"{cfg.catalog_days} days; raise WorldConfig.fresh_horizon_days"
            )
        self.day, self.round = day, 0
        day_start = self.day_start_ms(day)
        st.drift(day, self.streams)
        st.emerge(day, day_start, self.streams)

        n = cfg.n_users
        users = np.arange(n)
        ref = cfg.satisfaction_reference
        decay = 0.5 ** (
            np.maximum(day_start - st.clock_ms, 0) / (cfg.satisfaction_half_life_days * MS_PER_DAY)
        )
        sat = ref + (st.satisfaction.astype(np.float64) - ref) * decay
        lam = self.population.activity * np.exp(cfg.return_elasticity * (sat - ref))
        can = self.enrolled & (self.population.signup_ms < day_start + MS_PER_DAY)
        lam = np.where(can, lam, 0.0)
        count = np.minimum(
            self.streams.poisson(lam, Draw.PLAN_SESSIONS, day, users), MAX_SESSIONS_PER_DAY
        )
        s_user = np.repeat(users, count)
        s_index = np.arange(s_user.size) - np.repeat(np.cumsum(count) - count, count)
        hour = np.minimum(
            np.searchsorted(
                _HOUR_CDF, self.streams.uniform(Draw.PLAN_HOUR, day, s_user, s_index), "right"
            ),
            23,
        )
        offset = (
            self.streams.uniform(Draw.PLAN_OFFSET, day, s_user, s_index) * MS_PER_HOUR
        ).astype(np.int64)
        start = np.maximum(
            day_start + hour * MS_PER_HOUR + offset, self.population.signup_ms[s_user]
        )
        order = np.lexsort((start, s_user))
        s_user, start = s_user[order], start[order]
        self._plan_times = start
        ends = np.cumsum(count)
        self._plan_ptr = ends - count
        self._plan_end = ends
        self._day_requests = np.zeros(n, np.int64)
        return DayPlan(day, day_start, lam, s_user, start)

    def _active_users(self) -> np.ndarray:
        st = self.state
        return np.flatnonzero(self.enrolled & (st.in_session | (self._plan_ptr < self._plan_end)))

    # ---- rounds ----------------------------------------------------------------------

    def next_requests(self) -> Requests | None:
        """The next round's requests with their candidates, or None when the day is over."""
        if self.day is None:
            raise RuntimeError("WorldEnv.next_requests: call start_day first")
        if self._pending is not None:
            raise RuntimeError("WorldEnv.next_requests: step() the previous requests first")
        users = self._active_users()
        if users.size == 0:
            return None
        cfg, st, rs, day = self.config, self.state, self.streams, self.day
        cont = st.in_session[users]
        t = st.next_request_ms[users].copy()
        first = ~cont
        if first.any():  # a planned session starts (never before the user's last event)
            t[first] = self._plan_times[self._plan_ptr[users[first]]]
        t = np.maximum(t, st.last_event_ms[users] + MIN_GAP_MS)
        self._plan_ptr[users[first]] += 1
        r_index = self._day_requests[users].copy()
        self._day_requests[users] += 1
        rkey = rs.hash(Draw.REQUEST, day, users, r_index)
        st.advance(users, t)

        # a new session: its intent, its id
        if first.any():
            f_users, f_key = users[first], rkey[first]
            st.session_leaf[f_users] = st.session_start_leaf(
                f_users,
                rs.uniform(Draw.SESSION_ON_CURRENT, f_key),
                rs.uniform(Draw.SESSION_CURRENT_PICK, f_key),
                rs.uniform(Draw.SESSION_TOP, f_key),
                rs.uniform(Draw.SESSION_LEAF, f_key),
            )
            st.session_id[f_users] = self.next_session_id + np.arange(f_users.size)
            self.next_session_id += f_users.size
            st.session_requests[f_users] = 0
            st.in_session[f_users] = True

        span = cfg.max_items - cfg.min_items + 1
        k = cfg.min_items + np.minimum(
            (rs.uniform(Draw.REQUEST_SIZE, rkey) * span).astype(np.int64), span - 1
        )
        randomized = rs.uniform(Draw.RANDOMIZED, rkey) < self.randomized_share
        offsets, items, source, slot = generate_candidates(
            cfg, self.catalog, st, rs, users, t, rkey, k
        )
        n_r = users.size
        request_ids = self.next_request_id + np.arange(n_r, dtype=np.int64)
        self.next_request_id += n_r
        req = Requests(
            day=day,
            round=self.round,
            request_ids=request_ids,
            user_ids=users,
            request_times_ms=t,
            randomized=randomized,
            n_show=k,
            is_core=st.last_repin_ms[users] >= t - CORE_WINDOW_MS,
            hour_of_day=((t // MS_PER_HOUR) % 24).astype(np.int8),
            session_start=first,
            request_index=r_index,
            offsets=offsets,
            item_ids=items,
            source=source,
            slot=slot,
        )
        self._pending = _Pending(req, rkey)
        self.round += 1
        return req

    # ---- ground truth ----------------------------------------------------------------

    def candidate_probabilities(self, requests: Requests) -> dict[str, np.ndarray]:
        """Ground truth of every candidate as if shown first in its request with no
        position effect (``{action: [N]}``): what an oracle ranker knows."""
        self._check_pending(requests)
        r = requests.candidate_request
        users = requests.user_ids[r]
        x = response_inputs(
            self.world, self.state, users, requests.item_ids, requests.request_times_ms[r],
            self.state.session_leaf[users], None, requests.randomized[r],
        )  # fmt: skip
        return response_probabilities(x, self.config)[0]

    def _check_pending(self, requests: Requests) -> None:
        if self._pending is None or self._pending.requests is not requests:
            raise RuntimeError("WorldEnv: these requests are not the pending round")

    # ---- the step --------------------------------------------------------------------

    def step(self, scores: np.ndarray) -> StepResult:
        """Show the top ``n_show`` candidates of each request by ``scores`` and simulate.

        Args:
            scores: ``[N]`` float, one per candidate of the pending :class:`Requests`
                (higher is shown first; ties keep candidate order). Randomized requests
                are shuffled whatever their scores.

        Returns:
            the round's :class:`~transact.data.world.logs.StepResult`. The user state is
            updated (satiation, fatigue, interests, session intent, satisfaction) and each
            session either goes on (its next request joins the next round) or ends.
        """
        if self._pending is None:
            raise RuntimeError("WorldEnv.step: no pending requests (call next_requests)")
        req, rkey = self._pending.requests, self._pending.rkey
        scores = np.asarray(scores, np.float64)
        if scores.shape != (req.n_candidates,):
            raise ValueError(
                f"WorldEnv.step: scores must have shape ({req.n_candidates},), got {scores.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.size:
            raise ValueError(
                f"WorldEnv.step: score of candidate {int(bad[0])} is {scores[bad[0]]} "
                f"({bad.size} non-finite scores)"
            )
        self._pending = None
        cfg, st, cat, rs = self.config, self.state, self.catalog, self.streams
        r_all = req.candidate_request
        shuffled = rs.uniform(Draw.SHUFFLE, rkey[r_all], req.slot)
        scores = np.where(req.randomized[r_all], shuffled, scores)
        order = np.lexsort((-scores, r_all))  # stable: ties keep slot order
        rank = np.arange(order.size) - np.searchsorted(r_all[order], r_all[order])
        shown = order[rank < req.n_show[r_all[order]]]
        r = r_all[shown]
        position = (np.arange(shown.size) - np.searchsorted(r, r)).astype(np.int64)
        items, source = req.item_ids[shown], req.source[shown]
        users = req.user_ids[r]
        t_req = req.request_times_ms[r]
        leaf, top = cat.item_leaf[items], cat.item_top[items]
        key = rkey[r]

        x = response_inputs(
            self.world, st, users, items, t_req, st.session_leaf[users], position,
            req.randomized[r], request=r,
        )  # fmt: skip
        gt, cond = response_probabilities(x, cfg)
        draws = (Draw.HIDE, Draw.CLOSEUP, Draw.CLICK, Draw.REPIN)
        labels = draw_labels(gt, cond, np.stack([rs.uniform(d, key, position) for d in draws]))
        hide, closeup, click, repin = (labels[a] for a in ("hide", "closeup", "click", "repin"))
        quality = np.bincount(r, weights=relevance(x, cfg), minlength=req.n_requests) / np.maximum(
            np.bincount(r, minlength=req.n_requests), 1
        )

        # event times: after the request, later for lower positions
        def exp_ms(d: Draw, mean: float) -> np.ndarray:
            return (rs.exponential(d, key, position) * mean).astype(np.int64)

        t_close = t_req + 1_500 * (position + 1) + exp_ms(Draw.TIME_CLOSEUP, 6_000) + 1
        t_click = t_close + 1_000 + exp_ms(Draw.TIME_CLICK, 5_000)
        t_repin = t_close + 1_000 + exp_ms(Draw.TIME_REPIN, 8_000)
        t_hide = t_req + 800 * (position + 1) + exp_ms(Draw.TIME_HIDE, 4_000) + 1
        last = t_req.copy()
        for mask, times in ((closeup, t_close), (click, t_click), (repin, t_repin), (hide, t_hide)):
            last = np.where(mask, np.maximum(last, times), last)
        n_r = req.n_requests
        last_per_req = req.request_times_ms.copy()
        np.maximum.at(last_per_req, r, last)
        # time spent: browsing the feed plus looking at closed-up items
        dwell = np.where(closeup, exp_ms(Draw.DWELL, CLOSEUP_DWELL_MEAN_MS), 0)
        browse = BROWSE_MIN_MS + (rs.exponential(Draw.BROWSE, rkey) * BROWSE_MEAN_MS).astype(
            np.int64
        )
        spent = browse + np.bincount(r, weights=dwell, minlength=n_r).astype(np.int64)
        end = np.maximum(req.request_times_ms + spent, last_per_req + MIN_GAP_MS)
        time_spent = end - req.request_times_ms

        ru = req.user_ids
        st.record(users, items, labels, t_repin, ru, last_per_req)
        engaged = click | repin
        # session intent follows the last clicked or repinned item of a request, or jumps
        if engaged.any():
            er = r[engaged]
            last_idx = np.flatnonzero(engaged)[np.r_[er[1:] != er[:-1], True]]
            follow = rs.uniform(Draw.FOLLOW, rkey[r[last_idx]]) < cfg.p_follow_engagement
            st.session_leaf[users[last_idx[follow]]] = leaf[last_idx[follow]]
        jump = rs.uniform(Draw.JUMP, rkey) < cfg.p_session_jump
        if jump.any():
            st.session_leaf[ru[jump]] = st.sample_long_term_leaf(
                ru[jump],
                rs.uniform(Draw.JUMP_TOP, rkey[jump]),
                rs.uniform(Draw.JUMP_LEAF, rkey[jump]),
            )
        # satisfaction, and whether the session goes on
        a = np.float32(cfg.satisfaction_update)
        st.satisfaction[ru] += a * (quality.astype(np.float32) - st.satisfaction[ru])
        p0 = 1.0 - 1.0 / cfg.requests_per_session_mean
        base = np.log(p0 / (1 - p0)) if p0 > 0 else -np.inf
        p_cont = sigmoid(base + cfg.continue_elasticity * (quality - cfg.satisfaction_reference))
        st.session_requests[ru] += 1
        cont = (rs.uniform(Draw.CONTINUE, rkey) < p_cont) & (
            st.session_requests[ru] < MAX_REQUESTS_PER_SESSION
        )
        st.in_session[ru] = cont
        st.next_request_ms[ru] = end

        imp = {
            "request_id": req.request_ids[r],
            "user_id": users,
            "request_time_ms": t_req,
            "item_id": items,
            "position": position.astype(np.int16),
            "randomized": req.randomized[r],
            "is_core": req.is_core[r],
            "top_interest": top.astype(np.int32),
            "source": source,
        }
        for a_name in ("closeup", "click", "repin", "hide"):
            imp[f"label_{a_name}"] = labels[a_name].astype(np.int8)
            imp[f"gt_prob_{a_name}"] = gt[a_name].astype(np.float32)
        times = {"impression": t_req, "closeup": t_close, "click": t_click, "repin": t_repin,
                 "hide": t_hide}  # fmt: skip
        events = event_rows(req.request_ids[r], position, users, items, labels, times)
        requests = {
            "request_id": req.request_ids,
            "user_id": ru,
            "session_id": st.session_id[ru].copy(),
            "request_time_ms": req.request_times_ms,
            "n_shown": np.bincount(r, minlength=n_r).astype(np.int16),
            "randomized": req.randomized,
            "session_start": req.session_start,
            "continued": cont,
            "time_spent_ms": time_spent.astype(np.int64),
            "feed_quality": quality.astype(np.float32),
            "satisfaction": st.satisfaction[ru].copy(),
        }
        return StepResult(imp, events, requests)

    # ---- metrics ---------------------------------------------------------------------

    def interest_entropy(self, users: np.ndarray | None = None) -> np.ndarray:
        """``[n]`` entropy (nats) of each user's true interest state (default: enrolled users).

        See :meth:`~transact.data.world.state.UserState.interest_entropy`.
        """
        ids = np.flatnonzero(self.enrolled) if users is None else np.asarray(users, np.int64)
        return self.state.interest_entropy(ids)


@dataclass
class _Pending:
    requests: Requests
    rkey: np.ndarray
