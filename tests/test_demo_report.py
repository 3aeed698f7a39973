"""The demo's bar and verdicts (``transact.demo_report``)."""

from transact.demo_report import acceptance_checks, acceptance_line


def _metrics(repin_lift, repin_p, hide_lift, hide_p):
    row = lambda lift, p: {"lift_vs_baseline": lift, "p_value": p}  # noqa: E731
    return {
        "alpha": 0.05,
        "models": {
            "transact": {
                "repin": {"all": row(repin_lift, repin_p), "non_core": row(0.1, 0.5)},
                "hide": {"all": row(hide_lift, hide_p), "non_core": row(0.1, 0.5)},
            }
        },
    }


def test_offline_bar_needs_direction_and_significance():
    """Without the online stage the bar is offline: repin up and hide down, p < 0.05."""
    assert acceptance_checks(_metrics(0.1, 0.01, -0.1, 0.01))["passed"]
    assert not acceptance_checks(_metrics(0.1, 0.01, 0.1, 0.01))["passed"]  # hide went up
    assert not acceptance_checks(_metrics(0.1, 0.2, -0.1, 0.01))["passed"]  # insignificant
    assert not acceptance_checks(_metrics(None, None, -0.1, 0.01))["passed"]
    # with ground truth the expected HIT@3's lift is judged, not the sampled one's
    m = _metrics(0.1, 0.01, -0.1, 0.4)  # sampled hide: insignificant
    for head, lift, ci in (("repin", 0.08, [0.05, 0.11]), ("hide", -0.12, [-0.2, -0.04])):
        m["models"]["transact"][head]["all"].update(
            expected_lift_vs_baseline=lift, expected_p_value=1e-6, expected_ci95=ci
        )
    checks = acceptance_checks(m)
    assert checks["bar"] == "offline" and checks["passed"]
    hide = checks["offline"]["hide/all"]
    assert hide["metric"] == "expected_hit_at_3" and hide["lift"] == -0.12
    assert hide["verdict"] == "holds"  # the paper's -14.86% side, interval below 0
    assert checks["offline"]["repin/non_core"]["verdict"] == "unsettled"  # no interval
    m["models"]["transact"]["hide"]["all"]["expected_lift_vs_baseline"] = 0.02  # hide went up
    assert not acceptance_checks(m)["passed"]


def test_online_bar_is_the_paired_repin_volume_and_overrides_the_offline_one():
    """With the online stage the bar is Table 5's headline on the paired design (fixed
    before the switched demo ran): the offline cells are reported, not judged."""
    offline_fails = _metrics(-0.01, 0.5, 0.02, 0.5)

    def online(repin_verdict):
        cells = [
            {
                "metric": "repins",
                "segment": "all",
                "verdict": repin_verdict,
                "lift": 0.03,
                "ci_low": 0.01,
                "ci_high": 0.05,
            },
            {"metric": "hides", "segment": "all", "verdict": "contradicted", "lift": 0.05},
        ]
        return {**offline_fails, "online": {"claims": cells}}

    checks = acceptance_checks(online("holds"))
    assert checks["bar"] == "online" and checks["passed"]
    assert checks["online"]["lift"] == 0.03 and not checks["offline"]["passed"]
    for verdict in ("unsettled", "contradicted"):
        assert not acceptance_checks(online(verdict))["passed"]
    line = acceptance_line(checks)
    assert "paired online repin volume" in line and "+3.00%" in line and "PASSED" in line
