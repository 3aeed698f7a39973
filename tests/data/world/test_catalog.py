import numpy as np
import pytest

from transact.data.schema import MS_PER_DAY
from transact.data.world import PRESETS
from transact.data.world.catalog import Catalog


@pytest.fixture(scope="module")
def catalog():
    return Catalog(PRESETS["tiny"], np.random.default_rng(0))


def test_fresh_items_arrive_every_day(catalog):
    cfg = PRESETS["tiny"]
    created = catalog.created_ms
    day = (created - cfg.start_ms) // MS_PER_DAY
    per_day = np.bincount(day[created >= cfg.start_ms], minlength=cfg.catalog_days)
    assert per_day.size == cfg.catalog_days
    expected = cfg.fresh_items_per_day * cfg.n_items
    assert per_day.min() > 0.3 * expected and per_day.max() < 2.5 * expected
    # every leaf has items before the world starts
    back = created < cfg.start_ms
    assert np.unique(catalog.item_leaf[back]).size == catalog.n_leaves


def test_samplers_only_propose_items_that_exist(catalog):
    cfg = PRESETS["tiny"]
    rng = np.random.default_rng(1)
    n = 20_000
    t = cfg.start_ms + rng.integers(0, cfg.catalog_days * MS_PER_DAY, n)
    leaf = rng.integers(0, catalog.n_leaves, n)
    u = rng.random(n)
    for items in (
        catalog.item_in_leaf(leaf, t, u),
        catalog.fresh_in_leaf(leaf, t, 3 * MS_PER_DAY, u),
    ):
        assert (catalog.created_ms[items] <= t).all()
        assert (catalog.item_leaf[items] == leaf).all()
    pop = catalog.popular_item(t, u)
    assert (catalog.created_ms[pop] <= t).all()
    # the fresh generator proposes items of the window where the leaf has any
    fresh = catalog.fresh_in_leaf(leaf, t, 3 * MS_PER_DAY, u)
    young = catalog.created_ms[fresh] > t - 3 * MS_PER_DAY
    assert young.mean() > 0.5


def test_item_in_leaf_draws_by_popularity(catalog):
    cfg = PRESETS["tiny"]
    leaf = int(np.bincount(catalog.item_leaf).argmax())
    t = cfg.start_ms  # the back catalog only
    members = np.flatnonzero((catalog.item_leaf == leaf) & (catalog.created_ms <= t))
    n = 200_000
    items = catalog.item_in_leaf(
        np.full(n, leaf), np.full(n, t), np.random.default_rng(2).random(n)
    )
    got = np.bincount(items, minlength=catalog.n_items)[members] / n
    want = catalog.popularity[members] / catalog.popularity[members].sum()
    assert np.abs(got - want).max() < 0.01


def test_sorted_search_equals_searchsorted():
    from transact.data.world.catalog import SORTED_SEARCH_MIN, search

    rng = np.random.default_rng(3)
    a = np.sort(rng.integers(0, 1_000, 5_000))  # many ties
    for n in (10, SORTED_SEARCH_MIN + 7):
        v = rng.integers(-5, 1_005, n)
        for side in ("left", "right"):
            assert np.array_equal(search(a, v, side), np.searchsorted(a, v, side))
    f = np.sort(rng.random(1_000))
    q = rng.random(SORTED_SEARCH_MIN * 2)
    assert np.array_equal(search(f, q), np.searchsorted(f, q, "right"))


def test_earlier_in_request_counts_earlier_rows_of_the_same_group():
    from transact.data.world.response import earlier_in_request

    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 30, 200)
    request = np.repeat(np.arange(sizes.size), sizes)
    position = np.arange(request.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    group = rng.integers(0, 6, request.size)
    want = np.array(
        [((request[:i] == request[i]) & (group[:i] == group[i])).sum() for i in range(request.size)]
    )
    assert np.array_equal(earlier_in_request(request, group, position), want)
    shuffled = rng.permutation(request.size)  # the general (unsorted) path
    got = earlier_in_request(request[shuffled], group[shuffled], position[shuffled])
    assert np.array_equal(got, want[shuffled])
