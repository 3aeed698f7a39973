from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from transact.data.io import check_columns
from transact.data.schema import events_schema, impressions_schema, requests_schema
from transact.data.world import (
    OracleRanker,
    ProductionRanker,
    RandomRanker,
    StepResult,
    World,
    WorldEnv,
    run_day,
)


def test_requests_expose_candidates_and_context(tiny):
    env = WorldEnv(tiny)
    plan = env.start_day(0)
    assert plan.session_users.size > 0 and (np.diff(plan.session_users) >= 0).all()
    req = env.next_requests()
    assert req is not None and req.round == 0
    R, N = req.n_requests, req.n_candidates
    assert req.offsets.shape == (R + 1,) and req.offsets[0] == 0 and req.offsets[-1] == N
    for name in ("user_ids", "request_times_ms", "randomized", "n_show", "is_core",
                 "hour_of_day", "session_start", "request_index", "request_ids"):  # fmt: skip
        assert getattr(req, name).shape == (R,), name
    for name in ("item_ids", "source", "slot"):
        assert getattr(req, name).shape == (N,), name
    assert req.session_start.all() and (req.request_index == 0).all()  # round 0: new sessions
    assert np.unique(req.user_ids).size == R  # one request per user per round
    per_req = np.diff(req.offsets)
    cfg = tiny.config
    assert (per_req >= req.n_show).all()  # the ranker chooses k of them
    assert (per_req <= np.ceil(cfg.candidate_pool * req.n_show)).all()
    assert ((req.n_show >= cfg.min_items) & (req.n_show <= cfg.max_items)).all()
    pairs = req.candidate_request * cfg.n_items + req.item_ids
    assert np.unique(pairs).size == N  # no duplicate candidate in a request
    assert set(np.unique(req.source)) <= {0, 1, 2, 3}
    assert (
        tiny.catalog.created_ms[req.item_ids] <= req.request_times_ms[req.candidate_request]
    ).all()
    assert ((req.hour_of_day >= 0) & (req.hour_of_day < 24)).all()


def test_step_shows_the_top_k_by_score_in_order(tiny):
    env = WorldEnv(tiny, randomized_share=0.0)
    env.start_day(0)
    req = env.next_requests()
    scores = np.random.default_rng(0).random(req.n_candidates)
    res = env.step(scores)
    imp = res.impressions
    assert imp["request_id"].size == req.n_show.sum()
    for i in range(req.n_requests):
        lo, hi = req.offsets[i], req.offsets[i + 1]
        want = req.item_ids[lo:hi][np.argsort(-scores[lo:hi], kind="stable")][: req.n_show[i]]
        rows = imp["request_id"] == req.request_ids[i]
        got = imp["item_id"][rows][np.argsort(imp["position"][rows])]
        assert np.array_equal(got, want)


def test_randomized_requests_ignore_the_scores(tiny):
    a, b = WorldEnv(tiny, randomized_share=1.0), WorldEnv(tiny, randomized_share=1.0)
    for env in (a, b):
        env.start_day(0)
    ra, rb = a.next_requests(), b.next_requests()
    ia = a.step(np.arange(ra.n_candidates, dtype=float)).impressions
    ib = b.step(-np.arange(rb.n_candidates, dtype=float)).impressions
    assert np.array_equal(ia["item_id"], ib["item_id"])
    assert ia["randomized"].all()


def test_step_refuses_bad_scores_and_out_of_order_calls(tiny):
    env = WorldEnv(tiny)
    with pytest.raises(RuntimeError, match="start_day"):
        env.next_requests()
    env.start_day(0)
    req = env.next_requests()
    with pytest.raises(RuntimeError, match="step"):
        env.next_requests()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(req.n_candidates + 1))
    bad = np.zeros(req.n_candidates)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="candidate 3"):
        env.step(bad)
    env.step(np.zeros(req.n_candidates))
    with pytest.raises(RuntimeError, match="no pending"):
        env.step(np.zeros(1))
    with pytest.raises(RuntimeError, match="not finished"):
        env.start_day(1)
    with pytest.raises(ValueError, match="users"):
        WorldEnv(tiny, users=np.array([10_000]))


def test_logs_follow_the_schemas_and_feed_events_in_order(tiny):
    env = WorldEnv(tiny)
    env.start_day(0)
    last_time: dict[int, int] = {}
    n_rounds = 0
    while (req := env.next_requests()) is not None:
        res = env.step(ProductionRanker().score(env, req))
        n_rounds += 1
        heads = tiny.config.heads
        for table, schema in (
            (res.impressions_table(heads), impressions_schema(heads)),
            (res.events_table(), events_schema()),
            (res.requests_table(), requests_schema()),
        ):
            check_columns(table, schema, "step")
        ev = res.events_table()
        t = ev["timestamp_ms"].to_numpy()
        assert (np.diff(t) >= 0).all()
        # each user's events of this round come after everything of earlier rounds
        for u, tt in zip(ev["user_id"].to_numpy(), t, strict=True):
            assert tt >= last_time.get(int(u), 0)
        for u, tt in zip(ev["user_id"].to_numpy(), t, strict=True):
            last_time[int(u)] = max(last_time.get(int(u), 0), int(tt))
        # every request of the round starts after its user's previous events
        assert (res.requests["request_time_ms"] > 0).all()
    assert n_rounds > 3
    assert env.next_requests() is None


def _run(env, days, ranker):
    return [run_day(env, d, ranker) for d in range(days)]


def test_same_seed_and_ranker_give_identical_logs(tiny):
    a = _run(WorldEnv(tiny), 2, ProductionRanker())
    b = _run(WorldEnv(World.build(tiny.config, seed=11)), 2, ProductionRanker())
    for x, y in zip(a, b, strict=True):
        assert x.impressions_table(("click", "repin", "hide")).equals(
            y.impressions_table(("click", "repin", "hide"))
        )
        assert x.events_table().equals(y.events_table())
    c = _run(WorldEnv(tiny, stream=1), 1, ProductionRanker())[0]
    assert c.n_impressions != a[0].n_impressions or not np.array_equal(
        c.impressions["item_id"], a[0].impressions["item_id"]
    )


def test_different_rankers_share_common_random_numbers(tiny):
    envs = [WorldEnv(tiny), WorldEnv(tiny)]
    plans = [env.start_day(0) for env in envs]
    assert np.array_equal(plans[0].session_users, plans[1].session_users)
    assert np.array_equal(plans[0].session_start_ms, plans[1].session_start_ms)
    results = []
    for env, ranker in zip(envs, (ProductionRanker(), RandomRanker()), strict=True):
        parts = []
        while (req := env.next_requests()) is not None:
            parts.append(env.step(ranker.score(env, req)))
        results.append(StepResult.concat(parts))
    # label draws are keyed by (day, user, request index, position): recompute them
    from transact.data.world.rand import Draw

    keys = []
    for env, res in zip(envs, results, strict=True):
        imp = res.impressions
        rid = imp["request_id"]
        req_tab = res.requests
        index = {int(r): i for i, r in enumerate(req_tab["request_id"])}
        rows = np.array([index[int(r)] for r in rid])
        # the user's request number of the day: rank of the request among the user's
        order = np.lexsort((req_tab["request_time_ms"], req_tab["user_id"]))
        r_index = np.empty(order.size, np.int64)
        users_sorted = req_tab["user_id"][order]
        r_index[order] = np.arange(order.size) - np.searchsorted(users_sorted, users_sorted)
        rkey = env.streams.hash(Draw.REQUEST, 0, req_tab["user_id"][rows], r_index[rows])
        u = env.streams.uniform(Draw.CLICK, rkey, imp["position"].astype(np.int64))
        keys.append({(int(a), int(b), int(c)): float(x) for a, b, c, x in zip(
            req_tab["user_id"][rows], r_index[rows], imp["position"], u, strict=True)})  # fmt: skip
    common = set(keys[0]) & set(keys[1])
    assert len(common) > 100
    assert all(keys[0][k] == keys[1][k] for k in common)
    # the rankers showed different items
    assert not np.array_equal(
        results[0].impressions["item_id"][:200], results[1].impressions["item_id"][:200]
    )


def test_label_uniforms_are_the_envs_draws(tiny):
    """With every engagement probability forced to 1 - u, the labels show the draws."""
    env = WorldEnv(tiny)
    env.start_day(0)
    req = env.next_requests()
    res = env.step(np.zeros(req.n_candidates))
    imp = res.impressions
    from transact.data.world.rand import Draw

    rkey = env.streams.hash(
        Draw.REQUEST, 0, imp["user_id"], np.zeros(imp["user_id"].size, np.int64)
    )
    u_hide = env.streams.uniform(Draw.HIDE, rkey, imp["position"].astype(np.int64))
    assert np.array_equal(imp["label_hide"].astype(bool), u_hide < imp["gt_prob_hide"])


def test_fork_continues_identically_and_users_restrict_traffic(tiny):
    env = WorldEnv(tiny)
    run_day(env, 0, ProductionRanker())
    twin = env.fork()
    a, b = run_day(env, 1, ProductionRanker()), run_day(twin, 1, ProductionRanker())
    assert np.array_equal(a.impressions["item_id"], b.impressions["item_id"])
    assert np.array_equal(a.impressions["gt_prob_click"], b.impressions["gt_prob_click"])
    other = env.fork(stream=5)
    c = run_day(other, 2, ProductionRanker())
    d = run_day(env, 2, ProductionRanker())
    assert not np.array_equal(
        c.requests["request_time_ms"][:50], d.requests["request_time_ms"][:50]
    )
    arm = WorldEnv(tiny, users=np.arange(0, tiny.config.n_users, 2))
    res = run_day(arm, 0, ProductionRanker())
    assert (res.requests["user_id"] % 2 == 0).all() and res.n_impressions > 0
    odd = env.fork(users=np.arange(1, tiny.config.n_users, 2))
    res = run_day(odd, 3, ProductionRanker())
    assert (res.requests["user_id"] % 2 == 1).all() and res.n_impressions > 0


def test_oracle_beats_production_beats_random_on_ground_truth(small_config):
    world = World.build(small_config, seed=3)
    utility = {}
    for name, ranker in (("oracle", OracleRanker()), ("production", ProductionRanker()),
                         ("random", RandomRanker())):  # fmt: skip
        res = run_day(WorldEnv(world, randomized_share=0.0), 0, ranker)
        imp = res.impressions
        top = imp["position"] < 3
        utility[name] = float(
            (imp["gt_prob_click"] + 2 * imp["gt_prob_repin"] - 5 * imp["gt_prob_hide"])[top].mean()
        )
    assert utility["oracle"] > utility["production"] > utility["random"]


def test_interest_entropy_is_a_distribution_entropy(tiny):
    env = WorldEnv(tiny)
    h = env.interest_entropy()
    assert h.shape == (tiny.config.n_users,)
    assert (h >= 0).all() and (h <= np.log(tiny.config.n_top_interests) + 1e-9).all()
    p = env.state.true_interest_distribution(np.arange(5))
    assert np.allclose(p.sum(axis=1), 1.0)
    off = WorldEnv(World.build(replace(tiny.config, current_interest_half_life_hours=0), seed=11))
    # without current interests the state is the long-term mixture alone
    assert np.allclose(off.state.true_interest_distribution(np.arange(5)), off.state.lt_weight[:5])
    assert isinstance(StepResult().impressions_table(("click",)), pa.Table)
