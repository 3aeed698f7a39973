import json

import numpy as np
import pytest

from transact.evaluation.predictions import Predictions
from transact.evaluation.report import EvaluationConfig, compare, evaluate
from transact.evaluation.significance import paired_t_test

HEADS = ("click", "repin", "hide")
CONFIG = EvaluationConfig(utility={"click": 1.0, "repin": 2.0, "hide": -5.0})


def _preds(repin_first_for_users, *, gt=False):
    """4 users x 1 chunk x 4 items; the repin is always on row 0 of the chunk.

    Users in ``repin_first_for_users`` get a score that ranks row 0 first, the others
    rank it last (out of the top 3).
    """
    n_users, n_items = 4, 4
    user = np.repeat(np.arange(n_users), n_items)
    req = np.repeat(np.arange(n_users) + 100, n_items)
    pos = np.tile(np.arange(n_items), n_users)
    repin_score = np.where(pos == 0, 0.0, 0.5 - 0.1 * pos)
    for u in repin_first_for_users:
        repin_score[(user == u) & (pos == 0)] = 0.9
    scores = np.zeros((len(user), 3))
    scores[:, 1] = repin_score
    labels = np.zeros((len(user), 3), dtype=np.int8)
    labels[pos == 0, 1] = 1
    gt_probs = scores.copy() if gt else np.full_like(scores, np.nan)
    return Predictions(
        heads=HEADS,
        scores=scores,
        labels=labels,
        user_ids=user,
        request_ids=req,
        item_ids=pos + 1000,
        is_core=np.isin(user, [1, 3]),
        top_interest=pos,
        gt_probs=gt_probs,
    )


def test_evaluate_reports_hits_per_segment():
    res = evaluate(_preds([0, 1, 2]), CONFIG)
    np.testing.assert_allclose(res.segments["all"].hit, [0.0, 0.75, 0.0])
    np.testing.assert_allclose(res.segments["non_core"].hit, [0.0, 1.0, 0.0])  # users 0, 2
    assert res.segments["non_core"].n_users == 2
    assert res.segments["all"].n_requests == 4
    assert res.segments["all"].diversity.tolist() == [3, 3, 3, 3]
    assert np.isnan(res.segments["all"].auc[0])  # no click positives: undefined


def test_compare_lifts_p_values_and_oracle_share_by_hand():
    base = _preds([0])
    model = _preds([0, 1, 2])
    oracle = _preds([0, 1, 2, 3], gt=True).oracle()
    cmp = compare(
        {"baseline": base, "transact": model, "oracle": oracle},
        "baseline",
        oracle="oracle",
        config=CONFIG,
    )
    all_r = cmp.rows["transact"]["repin"]["all"]
    assert all_r["hit_at_3"] == pytest.approx(0.75)
    assert all_r["lift_vs_baseline"] == pytest.approx(0.75 / 0.25 - 1)
    assert all_r["share_of_oracle_lift"] == pytest.approx((0.75 - 0.25) / (1.0 - 0.25))
    assert all_r["p_value"] == pytest.approx(
        paired_t_test(np.array([1.0, 1, 1, 0]), np.array([1.0, 0, 0, 0]))
    )
    assert all_r["significant"] == (all_r["p_value"] < 0.05)
    nc = cmp.rows["transact"]["repin"]["non_core"]
    assert nc["lift_vs_baseline"] == pytest.approx(1.0)  # users 0, 2: 0.5 -> 1.0
    assert nc["share_of_oracle_lift"] == pytest.approx(1.0)
    assert cmp.rows["baseline"]["repin"]["all"]["lift_vs_baseline"] == 0.0
    assert cmp.diversity["transact"]["all"]["sum"] == 12

    d = json.loads(json.dumps(cmp.to_dict()))  # strictly JSON (NaN -> null)
    assert d["models"]["transact"]["repin"]["all"]["hit_at_3"] == pytest.approx(0.75)
    assert d["models"]["baseline"]["repin"]["all"]["p_value"] is None
    assert d["models"]["transact"]["click"]["all"]["lift_vs_baseline"] is None  # 0 / 0

    md = cmp.to_markdown()
    assert "+200.00%*" in md  # p >= 0.05 with 4 users: marked insignificant
    assert "66.67%" in md  # share of the oracle's lift


def test_compare_refuses_models_evaluated_on_different_users():
    base = _preds([0])
    other = base.subset(base.user_ids != 3)
    with pytest.raises(ValueError, match="different users"):
        compare({"baseline": base, "m": other}, "baseline", config=CONFIG)
    with pytest.raises(KeyError, match="baseline 'nope'"):
        compare({"baseline": base}, "nope", config=CONFIG)


def test_predictions_validate_and_round_trip(tmp_path):
    p = _preds([0, 1])
    p.save(tmp_path / "p.npz")
    q = Predictions.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(q.scores, p.scores)
    assert q.heads == HEADS
    bad = p.scores.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="row 5, head 'hide'"):
        p.with_scores(bad)
    with pytest.raises(ValueError, match="gt_probs is NaN at row 0"):
        p.oracle()
    with pytest.raises(ValueError, match="EvaluationConfig.test"):
        EvaluationConfig(test="wilcoxon")


def test_compare_reports_expected_hits_intervals_and_calibration():
    """With ground truth, every row has the expected HIT@3 and its lift; every lift has a
    95% interval (delta method with the t-test) and an MDE; calibration per model."""
    from transact.evaluation.significance import lift_interval

    base = _preds([0], gt=True)
    model = _preds([0, 1, 2], gt=True)
    cmp = compare({"baseline": base, "transact": model}, "baseline", config=CONFIG)
    r = cmp.rows["transact"]["repin"]["all"]
    # gt_probs = scores here, so a user's expected hits are the top-3 scores' sum: 0.9 +
    # 0.4 + 0.3 when row 0 ranks first, 0.4 + 0.3 + 0.2 when it ranks last
    e_model = np.array([1.6, 1.6, 1.6, 0.9])
    e_base = np.array([1.6, 0.9, 0.9, 0.9])
    assert r["expected_hit_at_3"] == pytest.approx(e_model.mean())
    assert r["expected_lift_vs_baseline"] == pytest.approx(e_model.mean() / e_base.mean() - 1)
    iv = lift_interval(np.array([1.0, 1, 1, 0]), np.array([1.0, 0, 0, 0]))
    assert r["ci95"] == pytest.approx([iv.ci_low, iv.ci_high])
    assert r["mde"] == pytest.approx(iv.mde)
    e_iv = lift_interval(e_model, e_base)
    assert r["expected_ci95"] == pytest.approx([e_iv.ci_low, e_iv.ci_high])
    assert cmp.has_expected
    assert set(cmp.calibration) == {"baseline", "transact"}
    assert cmp.calibration["transact"]["repin"]["observed_rate"] == pytest.approx(0.25)
    md = cmp.to_markdown()
    assert "Relative lift of expected HIT@3" in md and "(exp. " in md
    assert f"[{iv.ci_low * 100:+.1f}, {iv.ci_high * 100:+.1f}]" in md
    assert "### Calibration" in md
    d = json.loads(json.dumps(cmp.to_dict()))
    assert d["interval"] == "delta" and len(d["models"]["transact"]["repin"]["all"]["ci95"]) == 2
    # without ground truth: no expected table, the cells are null
    plain = compare(
        {"baseline": _preds([0]), "transact": _preds([0, 1, 2])}, "baseline", config=CONFIG
    )
    assert not plain.has_expected
    assert plain.to_dict()["models"]["transact"]["repin"]["all"]["expected_hit_at_3"] is None
    assert "expected HIT@3" not in plain.to_markdown()


def test_evaluation_dict_scores_raw_and_calibrated_probabilities(tmp_path):
    from transact.evaluation.calibration import Calibration
    from transact.evaluation.pipeline import evaluation_dict, write_comparison

    preds = _preds([0, 1], gt=True)
    cal = Calibration(
        HEADS, keep_rate=0.5, joint="exclusive", slope=(1.0,) * 3, intercept=(-1.0,) * 3
    )
    out = evaluation_dict(preds, CONFIG, cal)
    raw = out["calibration"]["raw"]["repin"]
    calibrated = out["calibration"]["calibrated"]["repin"]
    assert raw["mean_predicted"] == pytest.approx(preds.scores[:, 1].mean())
    assert calibrated["mean_predicted"] == pytest.approx(cal.apply(preds.scores)[:, 1].mean())
    assert calibrated["mean_predicted"] < raw["mean_predicted"]
    assert out["calibration"]["parameters"]["keep_rate"] == 0.5
    assert out["heads"]["repin"]["all"]["expected_hit_at_3"] is not None
    assert set(out["calibrated"]["heads"]["repin"]["all"]) >= {"hit_at_3", "expected_hit_at_3"}
    json.dumps(out, allow_nan=False)  # strict JSON
    assert "calibrated" not in evaluation_dict(preds, CONFIG)["calibration"]
    cmp = compare({"baseline": _preds([0]), "m": preds}, "baseline", config=CONFIG)
    write_comparison(cmp, tmp_path / "cmp", title="t")
    for png in ("reliability.png", "lifts.png"):
        assert (tmp_path / "cmp" / png).read_bytes()[:4] == b"\x89PNG"
    from transact.evaluation.plots import comparison_lift_plot

    paper = {"m": {"repin/all": 9.40, "hide/all": -14.86}}
    out = comparison_lift_plot(cmp, tmp_path / "paper.png", paper=paper, title="demo")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_cli_reads_a_calibration_file_and_refuses_a_bad_one(tmp_path):
    import argparse

    from transact.arguments import UserError
    from transact.evaluation.calibration import Calibration
    from transact.evaluation.cli import _calibration

    good = tmp_path / "cal.json"
    good.write_text(json.dumps(Calibration(HEADS, 0.25).to_dict()))
    assert _calibration(argparse.Namespace(calibration=str(good)), {}).keep_rate == 0.25
    in_metadata = {"calibration": Calibration(HEADS, 0.5).to_dict()}
    assert _calibration(argparse.Namespace(calibration=None), in_metadata).keep_rate == 0.5
    assert _calibration(argparse.Namespace(calibration=None), {}) is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "transact.calibration/1", "heads": ["a"], "keep_rate": 0}))
    with pytest.raises(UserError, match="--calibration .*keep_rate"):
        _calibration(argparse.Namespace(calibration=str(bad)), {})
    with pytest.raises(UserError, match="--calibration"):
        _calibration(argparse.Namespace(calibration=str(tmp_path / "missing.json")), {})


def test_evaluation_refuses_a_utility_that_weighs_no_head():
    with pytest.raises(ValueError, match=r"no utility weight for any head of \['click', 'repin'"):
        evaluate(_preds([0]), EvaluationConfig())
    with pytest.raises(ValueError, match="no utility weight"):
        evaluate(_preds([0]), EvaluationConfig(utility={"click": 0.0}))


def test_compare_takes_the_utility_the_models_were_evaluated_with(tmp_path):
    from transact.evaluation.pipeline import PREDICTIONS_FILE, compare_files, write_json

    for name, users in (("base", [0]), ("model", [0, 1, 2])):
        (tmp_path / name).mkdir()
        _preds(users).save(tmp_path / name / PREDICTIONS_FILE)
        write_json(tmp_path / name / "metrics.json", {"utility": {"repin": 3.0}})
    paths = {"base": tmp_path / "base", "model": tmp_path / "model"}
    cmp = compare_files(paths, "base", with_oracle=False, config=EvaluationConfig())
    assert dict(cmp.config.utility) == {"repin": 3.0}
    write_json(tmp_path / "model" / "metrics.json", {"utility": {"repin": 1.0}})
    with pytest.raises(ValueError, match="different utility weights"):
        compare_files(paths, "base", with_oracle=False, config=EvaluationConfig())
    explicit = compare_files(paths, "base", with_oracle=False, config=CONFIG)
    assert dict(explicit.config.utility) == dict(CONFIG.utility)
    (tmp_path / "base" / "metrics.json").unlink()
    (tmp_path / "model" / "metrics.json").unlink()
    with pytest.raises(ValueError, match="give --utility"):
        compare_files(paths, "base", with_oracle=False, config=EvaluationConfig())
