import numpy as np
import pytest

from transact.evaluation.reliability import calibration_report, reliability_bins, reliability_plot


def test_calibration_report_by_hand(tmp_path):
    probs = np.array([[0.1], [0.1], [0.3], [0.5]])
    labels = np.array([[0], [1], [0], [1]])
    bins = reliability_bins(probs[:, 0], labels[:, 0], n_bins=2)
    assert [b["n"] for b in bins] == [2, 2]  # equal-count bins
    assert bins[0] == {"n": 2, "mean_predicted": 0.1, "observed": 0.5}
    report = calibration_report(probs, labels, ("h",), n_bins=2)["h"]
    assert report["ratio"] == pytest.approx(0.25 / 0.5)
    # ECE: (2 |0.1 - 0.5| + 2 |0.4 - 0.5|) / 4
    assert report["ece"] == pytest.approx((2 * 0.4 + 2 * 0.1) / 4)
    none = calibration_report(probs, np.zeros_like(labels), ("h",))["h"]
    assert none["ratio"] is None
    reports = {"raw": calibration_report(probs, labels, ("h",), n_bins=2)}
    png = reliability_plot(reports, tmp_path / "r.png", title="t")
    assert png.read_bytes()[:4] == b"\x89PNG"
