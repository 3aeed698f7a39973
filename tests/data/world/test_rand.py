import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from transact.data.world.rand import Draw, RandomStreams, poisson_from_uniform, uniform_reference

KEY = st.integers(min_value=-(2**62), max_value=2**62)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), stream=st.integers(0, 1000), keys=st.lists(KEY, max_size=5))
def test_vectorized_uniform_equals_the_plain_reference(seed, stream, keys):
    rs = RandomStreams(seed, stream)
    got = rs.uniform(Draw.HIDE, *keys)
    assert got.shape == ()
    assert float(got) == uniform_reference(seed, stream, int(Draw.HIDE), *keys)


def test_keys_broadcast_and_draws_depend_only_on_their_keys():
    rs = RandomStreams(3, 0)
    users = np.arange(50)
    grid = rs.uniform(Draw.CLICK, 7, users[:, None], np.arange(20)[None, :])
    assert grid.shape == (50, 20)
    # the same (purpose, keys) give the same number whatever else is drawn with it
    assert np.array_equal(grid[10:20, 5], rs.uniform(Draw.CLICK, 7, users[10:20], 5))
    # another purpose, another stream or another seed give other numbers
    for other in (
        rs.uniform(Draw.REPIN, 7, users[:, None], np.arange(20)[None, :]),
        RandomStreams(3, 1).uniform(Draw.CLICK, 7, users[:, None], np.arange(20)[None, :]),
        RandomStreams(4, 0).uniform(Draw.CLICK, 7, users[:, None], np.arange(20)[None, :]),
    ):
        assert np.abs(other - grid).min() > 0


def test_uniforms_are_uniform_and_independent():
    rs = RandomStreams(0)
    u = rs.uniform(Draw.HIDE, np.arange(200_000))
    assert u.min() > 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    v = rs.uniform(Draw.HIDE, np.arange(200_000) + 1)  # neighbouring keys
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.01
    n = rs.normal(Draw.BROWSE, np.arange(200_000))
    assert stats.kstest(n, "norm").pvalue > 1e-3
    e = rs.exponential(Draw.DWELL, np.arange(200_000))
    assert stats.kstest(e, "expon").pvalue > 1e-3


def test_poisson_inverse_cdf_matches_scipy():
    u = np.random.default_rng(0).random(5_000)
    lam = np.random.default_rng(1).uniform(0, 15, 5_000)
    assert np.array_equal(poisson_from_uniform(lam, u), stats.poisson.ppf(u, lam).astype(int))
