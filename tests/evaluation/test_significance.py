"""Intervals of the relative lift: delta method, paired bootstrap, seeds, MDE."""

import math

import numpy as np
import pytest
from scipy import stats

from transact.evaluation.significance import (
    bootstrap_lifts,
    delta_lift_se,
    lift_interval,
    minimum_detectable_effect,
)

TRUE_LIFT = 0.10


def _paired_users(rng, n_users, lift=TRUE_LIFT, seed_shift=None):
    """Per-user top-3 hit counts of a baseline and a model, paired through a shared
    per-user rate (Gamma, mean 2): the population lift E[m] / E[b] - 1 is ``lift``.
    ``seed_shift`` ``[S]`` multiplies the model's rate per training seed (mean 1)."""
    rate = rng.gamma(0.8, 2.5, n_users)
    shifts = np.ones(1) if seed_shift is None else np.asarray(seed_shift)
    base = rng.poisson(rate, (len(shifts), n_users)).astype(float)
    model = rng.poisson(rate * (1 + lift) * shifts[:, None]).astype(float)
    return model, base


@pytest.mark.parametrize("method", ["delta", "bootstrap"])
def test_95_interval_covers_the_true_lift_in_95_percent_of_datasets(method):
    """400 synthetic paired datasets with a known lift of +10%: the 95% interval covers it
    in at least 93% of them (a true 95% falls below 93% with probability ~3%)."""
    rng = np.random.default_rng(11)
    covered, excluded_zero = 0, 0
    for i in range(400):
        model, base = _paired_users(rng, 400)
        iv = lift_interval(model[0], base[0], method=method, n_bootstrap=400, seed=i)
        covered += iv.ci_low <= TRUE_LIFT <= iv.ci_high
        excluded_zero += iv.excludes_zero()
        assert (iv.p_value < 0.05) == iv.excludes_zero()
    assert covered / 400 >= 0.93
    assert covered / 400 <= 0.985  # not trivially wide either
    # and the interval is not uninformative: with 400 users a 10% lift is often detected
    assert excluded_zero / 400 > 0.2


@pytest.mark.parametrize(("seed_noise", "min_coverage"), [(0.02, 0.93), (0.06, 0.88)])
def test_seed_spread_widens_the_interval_and_keeps_coverage(seed_noise, min_coverage):
    """Training noise: each of 3 seeds multiplies the model's rate by 1 + N(0, seed_noise);
    the baseline's labels are the same for every seed (one evaluation set). The interval
    adds the seeds' spread and uses t with Satterthwaite df. When seeds and users weigh
    about the same (2%) it covers the lift in >= 93% of 400 datasets; when seeds dominate
    (6%), 3 seeds estimate their spread poorly and coverage drops to about 92% (measured;
    docs/evaluation.md), so the bar there is 88%."""
    rng = np.random.default_rng(1)
    covered, one_seed_covered, df_seen = 0, 0, []
    for _ in range(400):
        shifts = 1 + rng.normal(0, seed_noise, 3)
        rate = rng.gamma(0.8, 2.5, 3000)
        base = np.tile(rng.poisson(rate).astype(float), (3, 1))
        model = np.stack([rng.poisson(rate * (1 + TRUE_LIFT) * s) for s in shifts]).astype(float)
        iv = lift_interval(model, base)
        covered += iv.ci_low <= TRUE_LIFT <= iv.ci_high
        df_seen.append(iv.df)
        assert iv.n_seeds == 3 and iv.seed_sd is not None
        assert iv.se == pytest.approx(math.sqrt(iv.se_users**2 + iv.seed_sd**2 / 3))
        first = lift_interval(model[0], base[0])  # one seed: the users' spread only
        one_seed_covered += first.ci_low <= TRUE_LIFT <= first.ci_high
    assert covered / 400 >= min_coverage
    # ignoring the seeds would be far worse: one seed's user interval misses the
    # retraining noise
    assert one_seed_covered / 400 < covered / 400 - 0.1
    assert np.median(df_seen) < 60  # the seeds' few degrees of freedom count


def test_seed_averaged_lift_and_per_seed_lifts():
    model = np.array([[3.0, 3.0, 0.0], [3.0, 3.0, 3.0]])  # seed means 2 and 3
    base = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]])  # seed means 2 and 2
    iv = lift_interval(model, base)
    assert iv.lift == pytest.approx(2.5 / 2.0 - 1)  # seed-averaged means 2.5 / 2
    assert iv.per_seed == pytest.approx((0.0, 0.5))
    assert iv.seed_sd == pytest.approx(np.std([0.0, 0.5], ddof=1))
    assert iv.se == pytest.approx(math.sqrt(iv.se_users**2 + iv.seed_sd**2 / 2))


def test_delta_se_matches_the_closed_form_and_the_bootstrap():
    rng = np.random.default_rng(3)
    model, base = _paired_users(rng, 2000)
    m, b = model[0], base[0]
    rho = m.mean() / b.mean()
    by_hand = np.std((m - rho * b) / b.mean(), ddof=1) / np.sqrt(len(m))
    assert delta_lift_se(m, b) == pytest.approx(by_hand)
    boots = bootstrap_lifts(m, b, n_resamples=2000, seed=0)
    assert np.nanstd(boots, ddof=1) == pytest.approx(by_hand, rel=0.1)
    # pairing matters: the unpaired SE (independent samples) is larger
    unpaired = np.sqrt(m.var(ddof=1) / b.mean() ** 2 + rho**2 * b.var(ddof=1) / b.mean() ** 2)
    assert by_hand < unpaired / np.sqrt(len(m))


def test_mde_is_the_closed_form_and_has_80_percent_power():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert z == pytest.approx(2.8016, abs=1e-4)
    assert minimum_detectable_effect(0.01) == pytest.approx(z * 0.01)
    assert minimum_detectable_effect(0.01, df=4) == pytest.approx(
        (stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * 0.01
    )
    # power at the MDE: P(|N(mde, se)| > 1.96 se) = 0.80 (the far tail adds ~0)
    se = 0.02
    mde = minimum_detectable_effect(se)
    power = stats.norm.sf(1.959964 - mde / se) + stats.norm.cdf(-1.959964 - mde / se)
    assert power == pytest.approx(0.80, abs=1e-4)
    # and in simulation: a true lift equal to the MDE is detected about 80% of the time
    rng = np.random.default_rng(9)
    pilot = lift_interval(*(x[0] for x in _paired_users(rng, 1500, lift=0.0)))
    detected = 0
    for _ in range(300):
        model, base = _paired_users(rng, 1500, lift=pilot.mde)
        detected += lift_interval(model[0], base[0]).ci_low > 0
    assert 0.70 <= detected / 300 <= 0.90


def test_degenerate_inputs():
    zeros = np.zeros(5)
    iv = lift_interval(np.ones(5), zeros)  # baseline mean 0: no lift
    assert math.isnan(iv.lift) and math.isnan(iv.ci_low) and math.isnan(iv.mde)
    same = np.array([1.0, 2.0, 0.0, 3.0])
    iv = lift_interval(same, same)
    assert iv.lift == 0.0 and iv.ci == (0.0, 0.0) and iv.p_value == 1.0
    assert math.isnan(lift_interval(np.ones(1), np.ones(1)).lift)  # one user
    with pytest.raises(ValueError, match="equal shapes"):
        lift_interval(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="method"):
        lift_interval(same, same, method="jackknife")
