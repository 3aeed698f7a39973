"""Per user and day metrics of an online experiment, for all users and for non-core users.

:class:`DailyMetrics` accumulates, round by round, what a simulated environment logged
(``StepResult``) into ``[days, users]`` arrays, one per metric and segment:

* volumes: ``requests``, ``sessions``, ``impressions``, ``closeups``, ``clicks``,
  ``repins``, ``hides`` (the labels drawn from the world's ground truth), and
  ``time_spent_min`` (the world's time-spent proxy, ``requests["time_spent_ms"]``);
* ``diversity``: the number of unique top-level interests among the items the user was
  shown that day (paper 4.4.4: "the summation of the number of unique top-level interests
  viewed per user"; summed over the users of a bucket it is the paper's metric);
* ``interest_entropy``: the entropy of the user's true interest state at the end of the
  day (``WorldEnv.interest_entropy``): it falls when a feed narrows what users are
  interested in (an echo chamber), not only what they see (a filter bubble, which only
  ``diversity`` shows).

Segments: ``all``, and ``non_core``: the requests whose user was non-core when they were
made (no repin in the 28 days before, as ``is_core`` in the logs; paper 4.2.1). A volume
of the non-core segment is therefore the user's activity while non-core (0 for a user who
was core all day). The entropy, a state rather than a volume, has one value per user; its
non-core segment keeps the users who were non-core when the experiment started (a
pre-treatment segment, since a treatment that brings repins turns users core).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from transact.data.world.env import Requests
from transact.data.world.logs import StepResult

VOLUMES = (
    "requests",
    "sessions",
    "impressions",
    "closeups",
    "clicks",
    "repins",
    "hides",
    "time_spent_min",
    "diversity",
)
"""Metrics that add up over requests and days (a user's total is the sum of their days)."""

STATES = ("interest_entropy",)
"""Metrics that are a user's state at the end of a day (the period's value: the last day's)."""

METRICS = VOLUMES + STATES
SEGMENTS = ("all", "non_core")

_LABELS = {"closeups": "closeup", "clicks": "click", "repins": "repin", "hides": "hide"}


@dataclass
class UserValues:
    """Per-user values of one metric and segment: ``values`` ``[days, users]`` float64."""

    users: np.ndarray
    values: np.ndarray

    def period(self, metric: str) -> np.ndarray:
        """``[users]``: the sum over days for a volume, the last day's value for a state."""
        if metric in STATES:
            return self.values[-1].copy()
        return self.values.sum(axis=0)


class DailyMetrics:
    """Accumulates per-user daily metrics of the users ``users`` (an environment's).

    Args:
        users: ``[U]`` the user ids tracked (sorted); rows of other users are ignored.
        n_days: days tracked (day index 0..n_days-1 of :meth:`add`).
        n_top: number of top-level interests (diversity's matrix width).
        non_core_at_start: ``[U]`` bool, the entropy's non-core segment (see module doc).

    Example::

        m = DailyMetrics(users, n_days=14, n_top=30, non_core_at_start=...)
        m.add(0, requests, result)             # every round of day 0
        m.end_day(0, env.interest_entropy(users))
        m.get("repins", "non_core").values     # [14, U]
    """

    def __init__(
        self, users: np.ndarray, n_days: int, n_top: int, non_core_at_start: np.ndarray
    ) -> None:
        self.users = np.asarray(users, dtype=np.int64)
        if self.users.size > 1 and (np.diff(self.users) <= 0).any():
            raise ValueError("DailyMetrics: users must be sorted and unique")
        self.n_days = n_days
        self.n_top = n_top
        self.non_core_at_start = np.asarray(non_core_at_start, bool)
        u = self.users.size
        self._values = {
            (m, s): np.zeros((n_days, u), np.float64) for m in METRICS for s in SEGMENTS
        }
        self._seen = {s: np.zeros((u, n_top), bool) for s in SEGMENTS}
        self._open_day: int | None = None

    def _rows(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of tracked rows, their user rows)."""
        pos = np.searchsorted(self.users, user_ids)
        pos = np.minimum(pos, max(self.users.size - 1, 0))
        ok = self.users.size > 0
        mask = (self.users[pos] == user_ids) if ok else np.zeros(len(user_ids), bool)
        return mask, pos[mask]

    def add(self, day: int, requests: Requests, result: StepResult) -> None:
        """Add one round's logs of day index ``day`` (``requests`` is the round's input)."""
        if self._open_day not in (None, day):
            raise ValueError(f"DailyMetrics.add: day {day} while day {self._open_day} is open")
        self._open_day = day
        if not result.requests:
            return
        req = result.requests
        core_r = requests.is_core
        ok, rows = self._rows(req["user_id"])
        non_core_r = ~core_r[ok]
        spent = req["time_spent_ms"][ok] / 60_000.0
        start = req["session_start"][ok].astype(np.float64)
        for seg, sel in (("all", np.ones(rows.size, bool)), ("non_core", non_core_r)):
            r = rows[sel]
            np.add.at(self._values[("requests", seg)][day], r, 1.0)
            np.add.at(self._values[("sessions", seg)][day], r, start[sel])
            np.add.at(self._values[("time_spent_min", seg)][day], r, spent[sel])
        imp = result.impressions
        ok, rows = self._rows(imp["user_id"])
        non_core_i = ~imp["is_core"][ok]
        tops = imp["top_interest"][ok]
        for seg, sel in (("all", np.ones(rows.size, bool)), ("non_core", non_core_i)):
            r = rows[sel]
            np.add.at(self._values[("impressions", seg)][day], r, 1.0)
            for metric, label in _LABELS.items():
                np.add.at(self._values[(metric, seg)][day], r, imp[f"label_{label}"][ok][sel])
            self._seen[seg][r, tops[sel]] = True

    def end_day(self, day: int, entropy: np.ndarray) -> None:
        """Close day ``day``: count the day's unique interests, store the end-of-day entropy
        (``[U]``, in the order of ``users``)."""
        if self._open_day not in (None, day):
            raise ValueError(f"DailyMetrics.end_day({day}): day {self._open_day} is open")
        for seg in SEGMENTS:
            self._values[("diversity", seg)][day] = self._seen[seg].sum(axis=1)
            self._seen[seg][:] = False
        entropy = np.asarray(entropy, np.float64)
        self._values[("interest_entropy", "all")][day] = entropy
        self._values[("interest_entropy", "non_core")][day] = entropy
        self._open_day = None

    def get(self, metric: str, segment: str = "all") -> UserValues:
        """The ``[days, users]`` values of ``metric`` in ``segment``; for the entropy's
        non-core segment only the users non-core at the start (columns of ``users``)."""
        if (metric, segment) not in self._values:
            raise KeyError(f"unknown metric/segment {metric!r}/{segment!r}; known {METRICS}")
        values = self._values[(metric, segment)]
        if metric in STATES and segment == "non_core":
            keep = self.non_core_at_start
            return UserValues(self.users[keep], values[:, keep])
        return UserValues(self.users, values)

    def select(self, users: np.ndarray) -> DailyMetrics:
        """A copy restricted to ``users`` (a subset of :attr:`users`, e.g. one arm's)."""
        users = np.asarray(users, np.int64)
        ok, rows = self._rows(users)
        if not ok.all():
            raise ValueError("DailyMetrics.select: users not tracked here")
        out = DailyMetrics(users, self.n_days, self.n_top, self.non_core_at_start[rows])
        for key, v in self._values.items():
            out._values[key] = v[:, rows].copy()
        return out


def active_users(metrics: DailyMetrics, days: Iterable[int] | None = None) -> np.ndarray:
    """``[U]`` bool: users with at least one request on ``days`` (default: any day)."""
    values = metrics.get("requests").values
    rows = list(days) if days is not None else list(range(values.shape[0]))
    return values[rows].sum(axis=0) > 0
