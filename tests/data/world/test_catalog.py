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
