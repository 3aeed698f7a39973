import json

import numpy as np
import pytest
import torch

from transact.evaluation.calibration import (
    Calibration,
    choose_joint,
    fit_calibration,
    fit_platt,
    sampling_scale,
    sampling_scale_reference,
    undo_negative_sampling,
)
from transact.evaluation.reliability import calibration_report

HEADS = ("click", "repin", "hide")


def _train_sample_probs(p_true, q, joint):
    """What a perfect model of the down-sampled set predicts: p_h / (a + q (1 - a))."""
    a = p_true.sum(axis=1) if joint == "exclusive" else 1 - np.prod(1 - p_true, axis=1)
    return p_true / (a + q * (1 - a))[:, None]


@pytest.mark.parametrize("q", [0.01, 0.04, 0.3, 0.9])
def test_newton_scale_equals_the_bisection_reference(q):
    rng = np.random.default_rng(0)
    p = rng.random((5000, 3)) ** rng.uniform(0.2, 6, size=(1, 3))
    p[:5] = [[1, 1, 1], [0, 0, 0], [1, 0, 0], [0.999, 0.5, 0.2], [1e-9, 1e-9, 1e-9]]
    fast = sampling_scale(p, q)
    np.testing.assert_allclose(fast, sampling_scale_reference(p, q), atol=1e-12)
    assert ((fast >= q) & (fast <= 1)).all()


@pytest.mark.parametrize("joint", ["independent", "exclusive"])
def test_undo_recovers_the_true_probabilities_under_its_assumption(joint):
    rng = np.random.default_rng(1)
    p = np.stack([rng.beta(1, 30, 20000), rng.beta(1, 60, 20000), rng.beta(1, 150, 20000)], 1)
    if joint == "exclusive":
        p = p / np.maximum(1.0, p.sum(axis=1, keepdims=True))
    inflated = _train_sample_probs(p, 0.05, joint)
    assert inflated.mean() > 5 * p.mean()  # the sample's probabilities are far off
    np.testing.assert_allclose(undo_negative_sampling(inflated, 0.05, joint=joint), p, atol=1e-12)
    # one head: the textbook prior correction odds(p) = q odds(p')
    one = inflated[:, :1]
    fixed = undo_negative_sampling(one, 0.05)[:, 0]
    odds = one[:, 0] / (1 - one[:, 0]) * 0.05
    np.testing.assert_allclose(fixed, odds / (1 + odds), rtol=1e-10)
    np.testing.assert_array_equal(undo_negative_sampling(inflated, 1.0), inflated)
    with pytest.raises(ValueError, match="keep_rate"):
        undo_negative_sampling(inflated, 0.0)


def test_the_formula_matches_what_negative_down_sampling_does_to_labels():
    """Down-sample a labelled population as the data stage does (keep every example with
    a positive head, a share q of the others) and compare the label rates of the kept
    rows, per bin of the true probability, with p' = p / s: the derivation is the data's."""
    rng = np.random.default_rng(2)
    n, q = 600_000, 0.05
    level = rng.integers(0, 4, n)  # four kinds of item, rates growing with the level
    p = np.stack([0.01, 0.005, 0.002], axis=0)[None, :] * (1 + 3 * level)[:, None]
    labels = rng.random((n, 3)) < p  # heads independent given the item
    keep = labels.any(axis=1) | (rng.random(n) < q)
    predicted = _train_sample_probs(p, q, "independent")
    for lv in range(4):
        rows = keep & (level == lv)
        observed = labels[rows].mean(axis=0)
        se = np.sqrt(predicted[level == lv][0] * (1 - predicted[level == lv][0]) / rows.sum())
        assert (np.abs(observed - predicted[level == lv][0]) < 4 * se).all(), lv
    # and undoing it on the kept rows' probabilities gives the population's rates back
    fixed = undo_negative_sampling(predicted[keep], q)
    np.testing.assert_allclose(fixed, p[keep], atol=1e-12)


def test_platt_recovers_a_known_miscalibration_and_weights_act_as_copies():
    rng = np.random.default_rng(3)
    z = rng.normal(-3, 1.5, 100_000)
    y = (rng.random(len(z)) < 1 / (1 + np.exp(-z))).astype(float)
    raw = 1 / (1 + np.exp(-(z - 1) / 0.7))  # true = sigmoid(0.7 logit(raw) + 1)
    slope, intercept = fit_platt(raw, y)
    assert slope == pytest.approx(0.7, abs=0.03) and intercept == pytest.approx(1.0, abs=0.06)
    half = slice(0, 2000)
    twice = fit_platt(np.concatenate([raw[half], raw[half]]), np.concatenate([y[half], y[half]]))
    weighted = fit_platt(raw[half], y[half], weights=np.full(2000, 2.0))
    assert weighted == pytest.approx(twice, abs=1e-6)
    # no positives: Platt's smoothed targets keep the fit finite
    a, b = fit_platt(raw[:500], np.zeros(500))
    assert np.isfinite(a) and np.isfinite(b)


def test_fitted_calibration_is_calibrated_on_held_out_data():
    rng = np.random.default_rng(4)
    n, q = 60_000, 0.04
    p = np.stack([rng.beta(1, 30, n), rng.beta(1, 60, n), rng.beta(1, 150, n)], 1)
    labels = (rng.random((n, 3)) < p).astype(np.int8)
    raw = np.clip(_train_sample_probs(p, q, "independent") * 1.3, 0, 1)  # also miscalibrated
    fit, held = slice(0, n // 2), slice(n // 2, n)
    cal = fit_calibration(raw[fit], labels[fit], HEADS, keep_rate=q, joint="independent")
    before = calibration_report(raw[held], labels[held], HEADS)
    after = calibration_report(cal.apply(raw[held]), labels[held], HEADS)
    for h in HEADS:
        assert before[h]["ratio"] > 5
        assert after[h]["ratio"] == pytest.approx(1.0, abs=0.15)
        assert after[h]["log_loss"] < before[h]["log_loss"] / 2
        assert after[h]["ece"] < before[h]["ece"] / 5
    assert choose_joint(labels) == "independent"
    assert choose_joint(np.eye(3, dtype=np.int8)) == "exclusive"


def test_torch_apply_equals_numpy_and_json_round_trips():
    cal = Calibration(HEADS, 0.04, "independent", (1.1, 0.9, 1.0), (0.1, -0.2, 0.0))
    rng = np.random.default_rng(5)
    p = rng.random((512, 3)) ** 3
    expected = cal.apply(p)
    got32 = cal.apply_torch(torch.tensor(p, dtype=torch.float32))
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, atol=2e-5)
    got64 = cal.apply_torch(torch.tensor(p, dtype=torch.float64))
    np.testing.assert_allclose(got64.numpy(), expected, atol=2e-5)
    exclusive = Calibration(HEADS, 0.04, "exclusive")
    np.testing.assert_allclose(
        exclusive.apply_torch(torch.tensor(p / 3)).numpy(), exclusive.apply(p / 3), atol=2e-5
    )
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    np.testing.assert_array_equal(Calibration.identity(HEADS).apply(p), p)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        cal.apply(p[:, :2])
    with pytest.raises(ValueError, match="platt.slope"):
        Calibration.from_dict({**cal.to_dict(), "platt": {"slope": [1.0], "intercept": [0.0]}})
    with pytest.raises(ValueError, match="keep_rate"):
        Calibration.from_dict({**cal.to_dict(), "keep_rate": 2.0})
    with pytest.raises(ValueError, match="format"):
        Calibration.from_dict({"heads": list(HEADS)})
    with pytest.raises(ValueError, match="joint"):
        Calibration(HEADS, 0.5, "sometimes")
