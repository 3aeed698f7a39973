import itertools

import numpy as np
import pytest

from transact.evaluation.metrics import log_loss, roc_auc
from transact.evaluation.significance import (
    align_users,
    paired_bootstrap,
    paired_t_test,
    relative_lift,
)


def test_auc_equals_pairwise_count_with_ties_as_half():
    labels = np.array([1, 0, 1, 0, 0, 1])
    scores = np.array([0.8, 0.3, 0.3, 0.1, 0.9, 0.5])
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    assert roc_auc(labels, scores) == pytest.approx(sum(pairs) / len(pairs))
    assert roc_auc(labels, scores) == pytest.approx(5.5 / 9)
    assert np.isnan(roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))


def test_log_loss_by_hand():
    y = np.array([1, 0])
    p = np.array([0.8, 0.25])
    assert log_loss(y, p) == pytest.approx(-(np.log(0.8) + np.log(0.75)) / 2)
    assert np.isfinite(log_loss(np.array([1]), np.array([0.0])))  # clipped, not inf


def test_relative_lift():
    assert relative_lift(1.1, 1.0) == pytest.approx(0.1)
    assert relative_lift(0.85, 1.0) == pytest.approx(-0.15)
    assert np.isnan(relative_lift(1.0, 0.0))


def test_paired_t_test_matches_formula_and_detects_shifts():
    rng = np.random.default_rng(0)
    base = rng.poisson(2.0, 500).astype(float)
    model = base + rng.normal(0.3, 1.0, 500)
    d = model - base
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    from scipy.stats import t as t_dist

    assert paired_t_test(model, base) == pytest.approx(2 * t_dist.sf(abs(t), len(d) - 1))
    assert paired_t_test(model, base) < 1e-6
    noise = base + rng.normal(0.0, 1.0, 500)
    assert paired_t_test(noise, base) > 0.01
    assert paired_t_test(base, base) == 1.0
    with pytest.raises(ValueError, match="equal shapes"):
        paired_t_test(base, base[:-1])


def test_paired_bootstrap_agrees_with_t_test_on_clear_and_null_cases():
    rng = np.random.default_rng(1)
    base = rng.poisson(2.0, 400).astype(float)
    shifted = base + rng.normal(0.4, 1.0, 400)
    assert paired_bootstrap(shifted, base, n_resamples=500, seed=0) < 0.01
    null = base + rng.normal(0.0, 1.0, 400)
    p_boot = paired_bootstrap(null, base, n_resamples=2000, seed=0)
    assert p_boot > 0.05
    assert abs(p_boot - paired_t_test(null, base)) < 0.15
    assert paired_bootstrap(base, base, n_resamples=100) == 1.0


def test_align_users_names_the_mismatch():
    with pytest.raises(ValueError, match="1 only in the model \\(first \\[3\\]\\)"):
        align_users(np.array([1, 3]), np.zeros(2), np.array([1, 2]), np.zeros(2))
