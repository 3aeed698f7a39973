import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transact.data.io import (
    ItemTable,
    UserTable,
    check_columns,
    load_manifest,
    partition_files,
    read_events,
    read_impressions,
)
from transact.data.schema import (
    MS_PER_DAY,
    events_schema,
    impressions_schema,
    items_schema,
    users_schema,
)
from transact.data.world import PRESETS, generate_world


def _table(world, name, **kw):
    reader = read_events if name == "events" else read_impressions
    return pa.Table.from_batches(list(reader(world, **kw)))


def test_files_follow_the_schemas(tiny_world):
    m = load_manifest(tiny_world)
    assert m.dataset == "sim-tiny" and m.seed == 7 and m.heads == ("click", "repin", "hide")
    check_columns(pq.read_schema(tiny_world / "items.parquet"), items_schema(m.d_item), "items")
    check_columns(pq.read_schema(tiny_world / "users.parquet"), users_schema(), "users")
    days = set()
    for table, schema in (
        ("events", events_schema()),
        ("impressions", impressions_schema(m.heads)),
    ):
        files = partition_files(tiny_world, table)
        assert files
        for day, f in files:
            check_columns(pq.read_schema(f), schema, f)
            days.add(day)
    cfg = PRESETS["tiny"]
    assert cfg.n_days <= len(days) <= cfg.n_days + 1  # last sessions may pass midnight
    assert m.train_end_ms - m.train_start_ms == cfg.train_days * MS_PER_DAY
    assert m.eval_end_ms - m.eval_start_ms == cfg.eval_days * MS_PER_DAY
    items = ItemTable.load(tiny_world)
    assert items.embedding_table().shape == (cfg.n_items + 1, cfg.d_item)
    assert items.embedding_table()[-1].abs().sum() == 0
    assert items.top_interest.max() < cfg.n_top_interests
    assert len(UserTable.load(tiny_world)) == cfg.n_users


def test_day_partitions_hold_their_days(tiny_world):
    for day, f in partition_files(tiny_world, "events"):
        t = pq.read_table(f, columns=["timestamp_ms"]).column(0).to_numpy()
        days = {
            np.datetime64(int(x), "ms").astype("datetime64[D]").astype(str)
            for x in (t.min(), t.max())
        }
        assert days == {day}


def test_requests_labels_and_events_agree(tiny_world):
    imp = _table(tiny_world, "impressions")
    ev = _table(tiny_world, "events")
    sizes = np.bincount(imp.column("request_id").to_numpy())
    sizes = sizes[sizes > 0]
    assert sizes.min() >= 10 and sizes.max() <= 30
    actions = ev.column("action_type").to_numpy(zero_copy_only=False)
    assert (actions == "impression").sum() == imp.num_rows  # every impression is an event
    for head in ("click", "repin", "hide"):
        assert imp.column(f"label_{head}").to_numpy().sum() == (actions == head).sum()
        p = imp.column(f"gt_prob_{head}").to_numpy()
        assert ((p > 0) & (p < 1)).all()
    # no clicks/repins on hidden impressions; event ids unique
    assert not (imp.column("label_hide").to_numpy() & imp.column("label_repin").to_numpy()).any()
    assert len(set(ev.column("event_id").to_pylist())) == ev.num_rows
    # engagements come after their request and before the user's next request
    ev_ids = ev.column("event_id").to_pylist()
    req_time = dict(
        zip(
            imp.column("request_id").to_pylist(),
            imp.column("request_time_ms").to_pylist(),
            strict=True,
        )
    )
    t = ev.column("timestamp_ms").to_numpy()
    for i, eid in enumerate(ev_ids):
        rid, _, action = eid.split(":")
        if action == "impression":
            assert t[i] == req_time[int(rid)]
        else:
            assert t[i] > req_time[int(rid)]


def test_label_rates_are_pinterest_like(tiny_world):
    imp = _table(tiny_world, "impressions")
    click = imp.column("label_click").to_numpy().mean()
    repin = imp.column("label_repin").to_numpy().mean()
    hide = imp.column("label_hide").to_numpy().mean()
    assert 0.01 < click < 0.08
    assert 0.002 < repin < click
    assert 0.0005 < hide < 0.015
    # label rates track the stored ground truth (it is what they are drawn from)
    gt = imp.column("gt_prob_click").to_numpy().mean()
    assert abs(click - gt) < 4 * np.sqrt(gt / imp.num_rows) + 1e-3


def test_position_bias_only_in_production_order(tiny_world):
    imp = _table(tiny_world, "impressions")
    pos = imp.column("position").to_numpy()
    rnd = imp.column("randomized").to_numpy()
    p = imp.column("gt_prob_click").to_numpy()
    share = (
        np.unique(imp.column("request_id").to_numpy()[rnd]).size
        / np.unique(imp.column("request_id").to_numpy()).size
    )
    assert 0.1 < share < 0.3  # tiny preset: 20% randomized
    top, low = (~rnd) & (pos < 3), (~rnd) & (pos >= 12)
    assert p[top].mean() > 1.5 * p[low].mean()
    r_top, r_low = rnd & (pos < 3), rnd & (pos >= 12)
    assert p[r_top].mean() < 1.3 * p[r_low].mean()


def test_is_core_means_a_repin_in_the_last_28_days(tiny_world):
    imp = _table(tiny_world, "impressions")
    ev = _table(tiny_world, "events", actions=["repin"])
    users = pq.read_table(tiny_world / "users.parquet")
    prior = dict(
        zip(
            users.column("user_id").to_pylist(),
            users.column("prior_last_repin_ms").to_pylist(),
            strict=True,
        )
    )
    repins: dict[int, list[int]] = {}
    for u, t in zip(
        ev.column("user_id").to_pylist(), ev.column("timestamp_ms").to_pylist(), strict=True
    ):
        repins.setdefault(u, []).append(t)
    first = np.unique(imp.column("request_id").to_numpy(), return_index=True)[1]
    core = imp.column("is_core").to_numpy()[first]
    for k, row in enumerate(first[:400]):
        u = imp.column("user_id")[int(row)].as_py()
        t = imp.column("request_time_ms")[int(row)].as_py()
        last = max([x for x in repins.get(u, []) if x < t] + [prior[u]])
        assert core[k] == (last >= t - 28 * MS_PER_DAY)
    assert 0.3 < core.mean() < 1.0


def test_generation_is_deterministic_for_a_seed(tmp_path, micro_config):
    a = generate_world(tmp_path / "a", micro_config, seed=3, progress=False)
    b = generate_world(tmp_path / "b", micro_config, seed=3, progress=False)
    c = generate_world(tmp_path / "c", micro_config, seed=4, progress=False)
    ta, tb, tc = (_table(w, "impressions") for w in (a, b, c))
    assert ta.equals(tb)
    assert _table(a, "events").equals(_table(b, "events"))
    assert pq.read_table(a / "items.parquet").equals(pq.read_table(b / "items.parquet"))
    assert not ta.equals(tc)
    with pytest.raises(FileExistsError):
        generate_world(a, micro_config, seed=3, progress=False)


def test_event_log_is_globally_time_ordered(tiny_world):
    last = -1
    for _, f in partition_files(tiny_world, "events"):
        t = pq.read_table(f, columns=["timestamp_ms"]).column(0).to_numpy()
        assert t[0] >= last and (np.diff(t) >= 0).all()
        last = int(t[-1])
    m = load_manifest(tiny_world)
    assert last < m.end_ms


def test_long_term_interests_are_stored_and_drive_repins(tiny_world):
    users = pq.read_table(tiny_world / "users.parquet", columns=["user_id", "long_term_interests"])
    interests = {
        int(u): set(v)
        for u, v in zip(
            users["user_id"].to_pylist(), users["long_term_interests"].to_pylist(), strict=True
        )
    }
    sizes = np.array([len(v) for v in interests.values()])
    assert sizes.min() >= 1 and sizes.max() <= 6
    items = ItemTable.load(tiny_world)
    n_top = int(items.top_interest.max()) + 1
    repins = _table(tiny_world, "events", actions=["repin"])
    user_ids = repins["user_id"].to_numpy()
    tops = items.top_interest[repins["item_id"].to_numpy()]
    inside = np.mean([int(t) in interests[int(u)] for u, t in zip(user_ids, tops, strict=True)])
    chance = sizes.mean() / n_top
    # repins follow the stored long-term mixture far more often than a random interest would
    assert inside > 3 * chance, (inside, chance)


def test_requests_table_sums_the_impressions(tiny_world):
    from transact.data.schema import requests_schema

    files = partition_files(tiny_world, "requests")
    assert files
    for _, f in files:
        check_columns(pq.read_schema(f), requests_schema(), f)
    req = pa.concat_tables(pq.read_table(f) for _, f in files)
    imp = _table(tiny_world, "impressions")
    assert req.num_rows == np.unique(imp["request_id"].to_numpy()).size
    shown = np.bincount(imp["request_id"].to_numpy(), minlength=req.num_rows)
    rid = req["request_id"].to_numpy()
    assert (shown[rid] == req["n_shown"].to_numpy()).all()
    spent = req["time_spent_ms"].to_numpy()
    assert spent.min() >= 20_000  # at least the browsing time
    assert 30_000 < spent.mean() < 200_000
    # a session's requests come one after another: each starts after the last one ended
    t = req["request_time_ms"].to_numpy()
    sess = req["session_id"].to_numpy()
    order = np.lexsort((t, sess))
    same = sess[order][1:] == sess[order][:-1]
    assert (t[order][1:][same] >= (t + spent)[order][:-1][same]).all()
    starts = req["session_start"].to_numpy()
    assert starts.sum() == np.unique(sess).size
    m = load_manifest(tiny_world)
    assert m.extra["counts"]["requests"] == req.num_rows


def test_items_have_creation_times_and_appear_only_after_them(tiny_world):
    items = pq.read_table(tiny_world / "items.parquet", columns=["item_id", "created_time_ms"])
    created = items["created_time_ms"].to_numpy()
    m = load_manifest(tiny_world)
    cfg = PRESETS["tiny"]
    fresh = created >= m.start_ms
    expected = cfg.fresh_items_per_day * cfg.n_items * cfg.catalog_days
    assert abs(fresh.sum() - expected) < 2
    imp = _table(tiny_world, "impressions")
    shown = imp["item_id"].to_numpy()
    assert (created[shown] <= imp["request_time_ms"].to_numpy()).all()
    # fresh items created during the world are shown
    assert fresh[shown].mean() > 0.02


def test_long_term_interests_drift_between_start_and_end(tiny_world):
    users = pq.read_table(tiny_world / "users.parquet")
    start = users["long_term_interests_start"].to_pylist()
    end = users["long_term_interests_end"].to_pylist()
    changed = np.mean([set(a) != set(b) for a, b in zip(start, end, strict=True)])
    cfg = PRESETS["tiny"]
    # per slot 0.5 ** (days / half-life) survive; users hold ~2.8 slots
    p_slot = 0.5 ** ((cfg.n_days - 1) / cfg.drift_half_life_days)
    assert 0.5 * (1 - p_slot**2) < changed < 1 - p_slot**4
