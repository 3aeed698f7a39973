"""What an online experiment returns: per-user daily metrics of every arm, and its lifts.

:class:`OnlineResult` is the library API the experiments build on: ``lift(arm, metric,
segment, design, day)`` gives a treatment's lift over the control with its 95% interval
(CUPED on the pre-period in the bucket design, paired in the paired design),
``daily_lifts`` the curve of Figure 6, ``aggregate`` the per-user means, and ``to_dict``
the content of ``report.json`` (deterministic for a seed: no timings, no paths of the run).

Denominators: a bucket's volume is reported **per assigned user** (every user the hash put
in the arm, active or not: the paper's "volume" is a total over the bucket, and dividing
by the bucket's size makes buckets of different shares comparable; lifts use it), and
per active user (users with a request in the period or day: descriptive only, since
activity itself responds to the treatment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transact.data.io import day_string
from transact.data.schema import MS_PER_DAY
from transact.online.config import OnlineConfig
from transact.online.metrics import METRICS, SEGMENTS, STATES, DailyMetrics
from transact.online.retrain import RetrainRecord
from transact.online.stats import Lift, cuped_lift, paired_lift

DESIGNS = ("buckets", "paired")
TABLE5 = (
    ("repins", "Homefeed Repin Volume"),
    ("hides", "Homefeed Hide Volume"),
    ("time_spent_min", "Overall Time Spent"),
    ("clicks", "Homefeed Click Volume"),
    ("diversity", "Impression Diversity"),
    ("interest_entropy", "True-Interest Entropy"),
)
"""Rows of the report's Table 5 (the paper's three first, then ours)."""


@dataclass
class ArmResult:
    """One arm in one design: its users (sorted) and their per-user daily metrics."""

    name: str
    users: np.ndarray
    metrics: DailyMetrics
    scoring: dict[str, Any] = field(default_factory=dict)


@dataclass
class OnlineResult:
    """The outcome of :func:`transact.online.simulate` (see the module docstring).

    Fields:
        config: the experiment.
        arms: ``{design: {arm: ArmResult}}`` (``rest``: the users in no arm, buckets only;
            ``<arm>@buckets``: the paired copy serving the arm's bucket model,
            :attr:`OnlineConfig.bucket_model_copies`).
        pre: the pre-period's per-user metrics of every user (CUPED's covariates).
        assignment: ``[n_users]`` each user's arm index (``-1``: the rest).
        first_day / online_start_ms: the world's day index and UTC midnight of online day 0.
        environments / backfill: per environment its size, stream counts and log dir; the
            offline log's replay into the store.
        retrains: every retrain, in order.
        timings: seconds by part (replay, backfill, env, assembly, forward, stream,
            logging, metrics, retraining, policy).
        impressions: impressions simulated online (all environments).
    """

    config: OnlineConfig
    arms: dict[str, dict[str, ArmResult]]
    pre: DailyMetrics
    assignment: np.ndarray
    first_day: int
    online_start_ms: int
    environments: dict[str, Any]
    backfill: dict[str, Any]
    retrains: list[RetrainRecord]
    timings: dict[str, float]
    impressions: int

    @property
    def control(self) -> str:
        return self.config.control_arm

    @property
    def designs(self) -> list[str]:
        return [d for d in DESIGNS if d in self.arms]

    @property
    def treatments(self) -> list[str]:
        """The arms compared with the control (every arm but the control)."""
        return [a.name for a in self.config.arms if a.name != self.control]

    def arm(self, name: str, design: str = "buckets") -> ArmResult:
        try:
            return self.arms[design][name]
        except KeyError:
            raise KeyError(f"no arm {name!r} in design {design!r} ({self.arms.keys()})") from None

    def values(
        self, name: str, metric: str, segment: str = "all", design: str = "buckets",
        day: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """``(users, [users] values)`` of an arm: the period's (sum of days, or the last
        day's state) or day ``day``'s."""
        uv = self.arm(name, design).metrics.get(metric, segment)
        return uv.users, (uv.period(metric) if day is None else uv.values[day].copy())

    def covariate(self, users: np.ndarray, metric: str, segment: str = "all") -> np.ndarray:
        """The pre-period value of ``metric`` for ``users`` (CUPED's covariate)."""
        pre = self.pre.select(users)
        segment = "all" if metric in STATES else segment  # the state of the same users
        return pre.get(metric, segment).period(metric)

    def lift(
        self, name: str, metric: str, segment: str = "all", design: str = "buckets",
        day: int | None = None, cuped: bool = True,
    ) -> Lift:  # fmt: skip
        """Lift of arm ``name`` over the control in ``design`` (module docstring)."""
        users_t, y_t = self.values(name, metric, segment, design, day)
        users_c, y_c = self.values(self.control, metric, segment, design, day)
        if design == "paired":
            if not np.array_equal(users_t, users_c):
                raise ValueError("paired arms must hold the same users")
            return paired_lift(y_t, y_c)
        if not cuped:
            return cuped_lift(y_t, y_c)
        return cuped_lift(
            y_t, y_c, self.covariate(users_t, metric, segment),
            self.covariate(users_c, metric, segment),
        )  # fmt: skip

    def daily_lifts(
        self, name: str, metric: str, segment: str = "all", design: str = "buckets"
    ) -> list[Lift]:
        """One lift per online day (the curve of Figure 6 for ``repins``)."""
        return [self.lift(name, metric, segment, design, day=k) for k in range(self.config.days)]

    def aggregate(self, name: str, design: str = "buckets") -> dict[str, Any]:
        """Per metric and segment: per assigned user and per active user (period and
        daily), and the bucket's total."""
        arm = self.arm(name, design)
        requests = arm.metrics.get("requests").values
        active_period = requests.sum(axis=0) > 0
        active_daily = requests > 0
        out: dict[str, Any] = {
            "users": int(arm.users.size),
            "active_users": int(active_period.sum()),
            "metrics": {},
        }
        for metric in METRICS:
            out["metrics"][metric] = {}
            for segment in SEGMENTS:
                uv = arm.metrics.get(metric, segment)
                period = uv.period(metric)
                keep = np.isin(arm.users, uv.users)
                act, act_day = active_period[keep], active_daily[:, keep]
                per_day_active = [
                    _mean(uv.values[k][act_day[k]]) for k in range(uv.values.shape[0])
                ]
                out["metrics"][metric][segment] = {
                    "users": int(uv.users.size),
                    "total": float(period.sum()) if metric not in STATES else None,
                    "per_assigned_user": _mean(period),
                    "per_active_user": _mean(period[act]),
                    "daily_per_assigned_user": [_mean(v) for v in uv.values],
                    "daily_per_active_user": per_day_active,
                }
        return out

    def to_dict(self) -> dict[str, Any]:
        """The content of ``report.json`` (module docstring)."""
        cfg = self.config
        names = [a.name for a in cfg.arms]
        counts = {n: int((self.assignment == i).sum()) for i, n in enumerate(names)}
        counts["rest"] = int((self.assignment < 0).sum())
        pre_start = self.online_start_ms - cfg.pre_days * MS_PER_DAY
        report: dict[str, Any] = {
            "config": _config_dict(cfg),
            "timeline": {
                "offline_days": self.first_day,
                "online_start": day_string(self.online_start_ms),
                "online_end": day_string(self.online_start_ms + cfg.days * MS_PER_DAY - 1),
                "pre_period": [day_string(pre_start), day_string(self.online_start_ms - 1)],
            },
            "control": self.control,
            "bucket_users": counts,
            "designs": {},
            "retrains": [r.to_dict(timings=False) for r in self.retrains],
            "environments": {
                k: {kk: vv for kk, vv in v.items() if kk != "logs"}
                for k, v in self.environments.items()
            },
            "backfill": self.backfill,
            "impressions": self.impressions,
        }
        for design in self.designs:
            d: dict[str, Any] = {"arms": {}, "lifts": {}, "daily_lifts": {}}
            for name, arm in self.arms[design].items():
                d["arms"][name] = {**self.aggregate(name, design), "scoring": arm.scoring}
            for name in self.treatments:
                d["lifts"][name] = {
                    m: {s: self._lift_entry(name, m, s, design) for s in SEGMENTS} for m in METRICS
                }
                d["daily_lifts"][name] = {
                    m: {s: [x.to_dict() for x in self.daily_lifts(name, m, s, design)]
                        for s in SEGMENTS}
                    for m, _ in TABLE5
                }  # fmt: skip
            report["designs"][design] = d
        return _clean(report)

    def _lift_entry(self, name: str, metric: str, segment: str, design: str) -> dict[str, Any]:
        entry: dict[str, Any] = dict(self.lift(name, metric, segment, design).to_dict())
        if design == "buckets":
            entry["without_cuped"] = self.lift(name, metric, segment, design, cuped=False).to_dict()
        return entry


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _config_dict(cfg: OnlineConfig) -> dict[str, Any]:
    shares = cfg.shares()
    return {
        "data_dir": str(cfg.data_dir),
        "arms": [
            {
                "name": a.name,
                "model": a.model,
                "share": shares[a.name],
                "retrain": str(cfg.schedule(a)),
                "retrain_days": list(cfg.schedule(a).retrain_days(cfg.days)),
            }
            for a in cfg.arms
        ],
        "days": cfg.days,
        "control": cfg.control_arm,
        "paired": cfg.paired,
        "training_data": cfg.training_data,
        "bucket_model_copies": list(cfg.bucket_model_copies),
        "window_days": cfg.window_days,
        "retrain_steps": cfg.retrain_steps,
        "rest": cfg.rest,
        "seed": cfg.seed,
        "salt": cfg.bucket_salt,
        "randomized_share": cfg.randomized_share,
        "pre_days": cfg.pre_days,
        "utility": dict(cfg.utility),
    }


def _clean(value: Any) -> Any:
    """NaN/inf as null, numpy scalars as Python numbers (JSON)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
