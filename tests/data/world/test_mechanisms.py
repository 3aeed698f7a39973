"""Each closed-loop mechanism of the world, on and off, measured on the world's own logs."""

from dataclasses import replace

import numpy as np
import pytest

from transact.data.schema import MS_PER_DAY, MS_PER_HOUR
from transact.data.world import (
    OracleRanker,
    ProductionRanker,
    RandomRanker,
    StepResult,
    World,
    WorldEnv,
    run_day,
)
from transact.data.world.rand import RandomStreams


def _logs(config, days, ranker=None, seed=5):
    world = World.build(config, seed=seed)
    env = WorldEnv(world)
    parts = [run_day(env, d, ranker or ProductionRanker()) for d in range(days)]
    return world, env, StepResult.concat(parts)


def _same_leaf_exposures(world, imp):
    """Per impression: earlier impressions of the same (user, leaf) in the previous hour,
    and hours since the previous one (inf: none before)."""
    leaf = world.catalog.item_leaf[imp["item_id"]]
    u, t = imp["user_id"], imp["request_time_ms"]
    order = np.lexsort((imp["position"], t, leaf, u))
    uu, ll, tt = u[order], leaf[order], t[order]
    new = np.r_[True, (uu[1:] != uu[:-1]) | (ll[1:] != ll[:-1])]
    group = np.cumsum(new) - 1
    key = group * 10**14 + tt
    k = np.empty(u.size, np.int64)
    k[order] = np.arange(u.size) - np.searchsorted(key, key - MS_PER_HOUR, "right")
    prev = np.r_[np.nan, tt[:-1]].astype(float)
    prev[new] = np.nan
    gap = np.empty(u.size)
    gap[order] = np.where(np.isnan(prev), np.inf, (tt - prev) / MS_PER_HOUR)
    return k, gap


@pytest.mark.slow
def test_satiation_lowers_engagement_on_repeated_exposure_then_recovers(small_config):
    # every candidate from the session's leaf, intents never move: a user sees one leaf
    # again and again within a session; shuffled requests have no position effect
    base = replace(
        small_config, candidate_mix=(0.0, 1.0, 0.0, 0.0), p_session_jump=0.0,
        p_follow_engagement=0.0, current_interest_half_life_hours=0.0, randomized_share=1.0,
    )  # fmt: skip
    rates = {}
    for weight in (1.0, 0.0):
        world, _, logs = _logs(replace(base, satiation_weight=weight), days=4)
        imp = logs.impressions
        k, gap = _same_leaf_exposures(world, imp)
        p = imp["gt_prob_click"]
        rates[weight] = {
            "first": p[(k == 0) & np.isinf(gap)].mean(),
            "k1-9": p[(k >= 1) & (k < 10)].mean(),
            "k30+": p[k >= 30].mean(),
            "recovered": p[(k == 0) & (gap > 8) & np.isfinite(gap)].mean(),
        }
    on, off = rates[1.0], rates[0.0]
    assert on["first"] > on["k1-9"] > on["k30+"]
    assert on["k30+"] < 0.7 * on["first"]
    # after a pause of four leaf half-lives the rate is back near a first exposure
    assert on["recovered"] > 0.85 * on["first"] and on["recovered"] > 1.4 * on["k30+"]
    # without satiation repeated exposure costs nothing
    assert off["k30+"] > 0.95 * off["first"]


@pytest.mark.slow
def test_satiation_makes_a_narrow_feed_cost_time_spent(small_config):
    base = replace(
        small_config, candidate_mix=(0.0, 1.0, 0.0, 0.0), p_session_jump=0.0,
        p_follow_engagement=0.0, current_interest_half_life_hours=0.0,
    )  # fmt: skip
    spent = {}
    for weight in (1.0, 0.0):
        _, _, logs = _logs(replace(base, satiation_weight=weight), days=3)
        spent[weight] = logs.requests["time_spent_ms"].sum()
    assert spent[1.0] < 0.85 * spent[0.0]


def test_long_term_interests_drift_with_their_half_life():
    from transact.data.world import PRESETS

    cfg = replace(PRESETS["tiny"], n_users=3_000)
    overlap = {}
    for half_life in (42.0, 0.0):
        world = World.build(replace(cfg, drift_half_life_days=half_life), seed=1)
        state = WorldEnv(world).state
        start = state.slots.copy()
        streams = RandomStreams(1)
        for day in range(21):
            state.drift(day, streams)
        used = start >= 0
        kept = np.array(
            [np.isin(s[u], e).mean() for s, e, u in zip(start, state.slots, used, strict=True)]
        )
        overlap[half_life] = kept.mean()
        # interests stay distinct per user
        for row in state.slots[:500]:
            row = row[row >= 0]
            assert np.unique(row).size == row.size
    assert abs(overlap[42.0] - 0.5 ** (21 / 42)) < 0.03
    assert overlap[0.0] == 1.0


def test_drift_follows_what_users_engaged_with():
    from transact.data.world import PRESETS

    cfg = replace(
        PRESETS["tiny"], n_users=2_000, drift_half_life_days=5.0, drift_toward_engagement=1.0
    )
    state = WorldEnv(World.build(cfg, seed=2)).state
    target = 7
    before = state.slots.copy()
    state.engaged_top[:, target] = 10.0
    state.drift(0, RandomStreams(2))
    changed = ((state.slots != before) & (before >= 0)).any(axis=1)
    had_target = (before == target).any(axis=1)
    gained = changed & ~had_target
    # every user who replaced an interest took the one they engaged with (once: a user
    # holds each interest at most once, so a second replacement draws another)
    assert gained.sum() > 50 and (state.slots[gained] == target).any(axis=1).all()
    assert (state.lt_weight[gained, target] > 0).all()


@pytest.mark.slow
def test_current_interests_decay_with_their_half_life_and_carry_across_sessions(small_config):
    world = World.build(small_config, seed=2)
    env = WorldEnv(world)
    st = env.state
    users = np.arange(5)
    before = st.current[users].sum(axis=1)
    t = st.clock_ms[users] + int(small_config.current_interest_half_life_hours * MS_PER_HOUR)
    st.advance(users, t)
    assert np.allclose(st.current[users].sum(axis=1), before / 2, rtol=1e-5)

    def start_on_recent_engagement(config):
        w, _, logs = _logs(config, days=5, seed=2)
        imp, req = logs.impressions, logs.requests
        first = np.isin(imp["request_id"], req["request_id"][req["session_start"]])
        rows = first & (imp["source"] == 1)  # session-generator items show the intent
        rid, idx = np.unique(imp["request_id"][rows], return_index=True)
        users = imp["user_id"][rows][idx]
        leaf = w.catalog.item_leaf[imp["item_id"][rows][idx]]
        t = imp["request_time_ms"][rows][idx]
        eng = (imp["label_click"] | imp["label_repin"]).astype(bool)
        eu, el, et = (
            imp["user_id"][eng],
            w.catalog.item_leaf[imp["item_id"][eng]],
            imp["request_time_ms"][eng],
        )
        hits = [
            leaf[i]
            in set(el[(eu == users[i]) & (et < t[i]) & (et >= t[i] - 2 * MS_PER_DAY)].tolist())
            for i in range(users.size)
            if t[i] >= w.config.start_ms + MS_PER_DAY
            and ((eu == users[i]) & (et < t[i]) & (et >= t[i] - 2 * MS_PER_DAY)).any()
        ]
        return np.mean(hits), len(hits)

    on, n_on = start_on_recent_engagement(small_config)
    off, n_off = start_on_recent_engagement(
        replace(small_config, current_interest_half_life_hours=0.0)
    )
    assert n_on > 150 and n_off > 150
    # sessions start on what the user engaged with in the last two days far more often
    assert on > off + 0.08


@pytest.mark.slow
def test_fresh_items_engage_more_while_they_are_new(small_config):
    ratio = {}
    logs_by = {}
    for weight in (0.5, 0.0):
        world, _, logs = _logs(
            replace(small_config, freshness_weight=weight, randomized_share=1.0), 5, seed=2
        )
        imp = logs.impressions
        age = world.catalog.age_days(imp["item_id"], imp["request_time_ms"])
        new = world.catalog.created_ms[imp["item_id"]] >= world.config.start_ms
        p = imp["gt_prob_click"]
        ratio[weight] = {
            "young": p[new & (age < 1)].mean(),
            "older": p[new & (age >= 2)].mean(),
            "back": p[~new].mean(),
        }
        logs_by[weight] = (imp, age)
    on, off = ratio[0.5], ratio[0.0]
    assert on["young"] / off["young"] > 1.3
    assert on["young"] / off["young"] > on["older"] / off["older"] > 1.0
    assert abs(on["back"] / off["back"] - 1) < 0.05
    imp, age = logs_by[0.5]
    assert 0.03 < (age < small_config.fresh_window_days).mean() < 0.3
    # without fresh content every item exists before the world starts
    world, _, logs = _logs(
        replace(small_config, fresh_items_per_day=0.0, candidate_mix=(0.5, 0.25, 0.25, 0.0)), 1
    )
    assert (world.catalog.created_ms < world.config.start_ms).all()


@pytest.mark.slow
def test_users_shown_better_feeds_stay_longer_and_come_back_sooner(small_config):
    def run(config, ranker):
        world = World.build(config, seed=2)
        env = WorldEnv(world, randomized_share=0.0)
        out = {"expected_sessions": [], "requests": 0, "spent": 0, "plans": []}
        for day in range(4):
            plan = env.start_day(day)
            out["expected_sessions"].append(plan.expected_sessions.sum())
            out["plans"].append(plan.session_start_ms)
            parts = []
            while (req := env.next_requests()) is not None:
                parts.append(env.step(ranker.score(env, req)))
            logs = StepResult.concat(parts)
            out["requests"] += logs.requests["request_id"].size
            out["spent"] += logs.requests["time_spent_ms"].sum()
        return out

    oracle, rand = run(small_config, OracleRanker()), run(small_config, RandomRanker())
    assert oracle["expected_sessions"][0] == rand["expected_sessions"][0]
    assert oracle["expected_sessions"][3] > 1.03 * rand["expected_sessions"][3]
    assert oracle["requests"] > 1.1 * rand["requests"]
    assert oracle["spent"] > 1.15 * rand["spent"]
    # with both channels off, who comes back and how long they stay do not depend on the
    # ranker: the same random numbers give the same sessions and requests
    off = replace(small_config, continue_elasticity=0.0, return_elasticity=0.0)
    a, b = run(off, OracleRanker()), run(off, RandomRanker())
    assert a["requests"] == b["requests"]
    assert all(np.array_equal(x, y) for x, y in zip(a["plans"], b["plans"], strict=True))
