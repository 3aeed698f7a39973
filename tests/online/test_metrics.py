"""Per user and day metrics, checked by hand on a small round."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from transact.data.world.logs import StepResult
from transact.online.metrics import DailyMetrics, active_users


def _round() -> tuple[SimpleNamespace, StepResult]:
    """Three requests: user 5 (core) twice, user 9 (non-core) once; user 2 is not tracked."""
    requests = SimpleNamespace(is_core=np.array([True, False, True, True]))
    req = {
        "user_id": np.array([5, 9, 5, 2]),
        "time_spent_ms": np.array([60_000, 120_000, 30_000, 999_000]),
        "session_start": np.array([True, True, False, True]),
    }
    # impressions: user 5 sees interests 1, 1, 3 (request 0) and 3 (request 2);
    # user 9 sees 0, 4 (non-core); user 2 sees 7
    imp = {
        "user_id": np.array([5, 5, 5, 9, 9, 5, 2]),
        "is_core": np.array([True, True, True, False, False, True, True]),
        "top_interest": np.array([1, 1, 3, 0, 4, 3, 7]),
        "label_closeup": np.array([1, 0, 0, 1, 0, 0, 1], np.int8),
        "label_click": np.array([1, 0, 0, 1, 0, 0, 1], np.int8),
        "label_repin": np.array([1, 0, 0, 0, 0, 0, 1], np.int8),
        "label_hide": np.array([0, 0, 1, 0, 1, 0, 0], np.int8),
    }
    return requests, StepResult(imp, {}, req)


def test_metrics_by_hand() -> None:
    users = np.array([5, 9, 11])
    m = DailyMetrics(users, n_days=2, n_top=8, non_core_at_start=np.array([False, True, True]))
    requests, result = _round()
    m.add(0, requests, result)
    m.end_day(0, np.array([0.5, 1.0, 1.5]))
    m.add(1, requests, result)
    m.end_day(1, np.array([0.4, 1.1, 1.5]))

    def day0(metric: str, segment: str = "all") -> list[float]:
        return m.get(metric, segment).values[0].tolist()

    assert day0("requests") == [2, 1, 0]
    assert day0("requests", "non_core") == [0, 1, 0]
    assert day0("sessions") == [1, 1, 0]
    assert day0("time_spent_min") == [1.5, 2.0, 0]
    assert day0("time_spent_min", "non_core") == [0, 2.0, 0]
    assert day0("impressions") == [4, 2, 0]
    assert day0("repins") == [1, 0, 0] and day0("clicks") == [1, 1, 0]
    assert day0("hides") == [1, 1, 0] and day0("closeups") == [1, 1, 0]
    assert day0("hides", "non_core") == [0, 1, 0]
    assert day0("diversity") == [2, 2, 0]  # user 5: interests {1, 3}; user 9: {0, 4}
    assert day0("diversity", "non_core") == [0, 2, 0]
    # the period: volumes add up over the days, the entropy is the last day's
    assert m.get("repins").period("repins").tolist() == [2, 0, 0]
    assert m.get("diversity").period("diversity").tolist() == [4, 4, 0]
    entropy = m.get("interest_entropy")
    assert entropy.period("interest_entropy") == pytest.approx([0.4, 1.1, 1.5])
    # the entropy's non-core segment: the users non-core at the start
    non_core = m.get("interest_entropy", "non_core")
    assert non_core.users.tolist() == [9, 11]
    assert non_core.period("interest_entropy") == pytest.approx([1.1, 1.5])
    assert active_users(m).tolist() == [True, True, False]
    sub = m.select(np.array([9]))
    assert sub.get("clicks").values[:, 0].tolist() == [1, 1]


def test_days_are_closed_in_order() -> None:
    m = DailyMetrics(np.array([5]), n_days=2, n_top=8, non_core_at_start=np.array([False]))
    requests, result = _round()
    m.add(0, requests, result)
    with pytest.raises(ValueError, match="day 0 is open"):
        m.add(1, requests, result)
    with pytest.raises(ValueError, match="sorted"):
        DailyMetrics(np.array([3, 1]), 1, 8, np.array([True, True]))
    with pytest.raises(KeyError, match="unknown metric"):
        m.get("likes")
