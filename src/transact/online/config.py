"""The online experiment's configuration: :class:`OnlineConfig`, :class:`ArmSpec`, retraining.

One frozen dataclass per concern, each checked field by field on construction (a
``ValueError`` naming every bad field), so the command line and the library fail the same
way before any simulation starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

WORLD_UTILITY: dict[str, float] = {"click": 1.0, "repin": 2.0, "hide": -5.0}
"""The ranking utility of the simulated world's heads (Eq. 3; the demo's configs use the
same): what the online simulator ranks by unless ``--utility`` says otherwise."""

POLICY_PREFIX = "policy:"
POLICIES = ("production", "oracle", "random")
"""World policies an arm (or the rest of the users) may be served by instead of a model:
``policy:production`` is the world's logging ranker, ``policy:oracle`` ranks by the ground
truth, ``policy:random`` shuffles."""

TRAINING_DATA = ("own", "pooled", "pooled-buckets")
_ARM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class RetrainSchedule:
    """When an arm's model is retrained from scratch during the online period.

    Retraining happens at midnight (UTC) of an online day, on the logs of the sliding
    window that ends there, and the new model serves that day's requests. Forms:

    * ``fixed``: never (the model of the pre-period serves every day);
    * ``every:Xd`` (``X`` >= 1, a number): at the start of online days ``floor(k X)`` for
      k = 1, 2, ...; ``every:3.5d`` is twice a week (days 3, 7, 10, 14: paper 3.4.1);
    * ``days:3,7,10``: at the start of the listed online days.

    A day's rounds include the sessions that pass midnight, so a mid-day schedule cannot
    be honoured causally (a model trained on the logs up to noon would need requests the
    simulator has not stepped yet); periods are therefore rounded down to whole days.
    """

    kind: str = "fixed"
    period_days: float = 0.0
    days: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "every", "days"):
            raise ValueError(f"RetrainSchedule.kind={self.kind!r}: one of fixed, every, days")
        if self.kind == "every" and not (math.isfinite(self.period_days) and self.period_days >= 1):
            raise ValueError(
                f"RetrainSchedule.period_days={self.period_days}: must be a number >= 1 (days)"
            )
        if self.kind == "days" and (not self.days or min(self.days) < 1):
            raise ValueError(f"RetrainSchedule.days={self.days}: list online days >= 1")

    @classmethod
    def parse(cls, text: str) -> RetrainSchedule:
        """``fixed``, ``every:3.5d`` or ``days:3,7,10`` (see the class docstring)."""
        value = text.strip()
        if value == "fixed":
            return cls()
        if value.startswith("every:"):
            period = value.removeprefix("every:").removesuffix("d")
            try:
                days = float(period)
            except ValueError:
                raise ValueError(
                    f"retrain schedule {text!r}: 'every:' takes days such as every:3.5d"
                ) from None
            return cls("every", days)
        if value.startswith("days:"):
            try:
                listed = tuple(sorted({int(d) for d in value.removeprefix("days:").split(",")}))
            except ValueError:
                raise ValueError(
                    f"retrain schedule {text!r}: 'days:' takes online days such as days:3,7"
                ) from None
            return cls("days", days=listed)
        raise ValueError(f"retrain schedule {text!r}: expected fixed, every:Xd or days:D1,D2,...")

    def retrain_days(self, n_days: int) -> tuple[int, ...]:
        """Online days (1..n_days-1) at whose midnight the model is retrained."""
        if self.kind == "fixed":
            return ()
        if self.kind == "days":
            return tuple(d for d in self.days if d < n_days)
        out: list[int] = []
        k = 1
        while (day := math.floor(k * self.period_days + 1e-9)) < n_days:
            out.append(day)
            k += 1
        return tuple(out)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return "fixed"
        if self.kind == "every":
            return f"every:{self.period_days:g}d"
        return "days:" + ",".join(str(d) for d in self.days)


@dataclass(frozen=True)
class ArmSpec:
    """One arm of the experiment.

    Args:
        name: the arm's name (letters, digits, ``_.-``; starts with a letter).
        model: a trained run directory, a ``model.pt``, a published serving version
            (``MODELS/<version>``) or the newest version of a models directory, or a world
            policy ``policy:production|oracle|random``.
        share: share of the users assigned to the arm by the salted hash (None: the arms
            without a share split what the others leave equally).
        retrain: this arm's schedule (None: :attr:`OnlineConfig.retrain`).
    """

    name: str
    model: str
    share: float | None = None
    retrain: RetrainSchedule | None = None

    def __post_init__(self) -> None:
        bad = []
        if not _ARM_NAME.fullmatch(self.name):
            bad.append(
                f"ArmSpec.name={self.name!r}: letters, digits, '_.-', starting with a letter"
            )
        if not self.model:
            bad.append(f"ArmSpec({self.name}).model: empty")
        if self.model.startswith(POLICY_PREFIX) and self.policy not in POLICIES:
            bad.append(
                f"ArmSpec({self.name}).model={self.model!r}: unknown policy; known "
                + ", ".join(POLICY_PREFIX + p for p in POLICIES)
            )
        if self.share is not None and not (math.isfinite(self.share) and 0 < self.share <= 1):
            bad.append(f"ArmSpec({self.name}).share={self.share}: must be in (0, 1]")
        if bad:
            raise ValueError("; ".join(bad))

    @property
    def policy(self) -> str | None:
        """The world policy's name for ``policy:NAME`` models, else None."""
        if self.model.startswith(POLICY_PREFIX):
            return self.model.removeprefix(POLICY_PREFIX)
        return None


@dataclass(frozen=True)
class OnlineConfig:
    """An online A/B experiment in the simulated world (``transact online run``).

    Args:
        data_dir: the offline world dir (``transact data generate``); its days are the
            pre-period, the experiment continues the same world after them.
        arms: the arms (at least one); :attr:`control` is the lifts' baseline.
        days: online days to simulate (the catalog holds fresh items for
            ``fresh_horizon_days`` after the offline world: 14 for the presets).
        control: the control arm's name (default: the first arm).
        paired: also simulate every arm as a counterfactual copy of the arms' users with
            the same random numbers (common random numbers) and report both designs.
        retrain: the default retraining schedule of every arm.
        training_data: ``own`` (an arm retrains on its own bucket's logs), ``pooled``
            (on all logs of the experiment's traffic, every arm's and the rest's; a paired
            copy serves its bucket arm's model) or ``pooled-buckets`` (the bucket arms
            pooled, as production trains a treatment on all its traffic, and each paired
            copy on its own logs, as the arm would at full traffic: the feedback loop's
            design, where both retrain on every user and differ only in who shaped the
            data).
        bucket_model_copies: arms also simulated as one more paired copy,
            ``paired/<arm>@buckets``: the arms' users, all served by the model that the
            arm's *bucket* retrains (on the bucket environment's logs), the same users and
            random numbers as the arm's own copy. Before the first retrain it lives the
            same days as that copy; after it, the two differ only in the data their model
            was retrained on, on every user instead of the bucket's share (the feedback
            loop's comparison at ten times the users). Needs ``paired``, a retrain in the
            period, a model arm and ``training_data`` other than ``pooled`` (there the
            arm's copy already serves the bucket's model).
        window_days: length of the sliding training window, in days (paper 4.1.1: 14).
        retrain_steps: optimizer steps of a retrain (0: the arm's run config's budget).
        rest: the policy or model serving the users in no arm (default the world's
            production ranker).
        seed: the experiment's seed: the online random streams and the default salt.
        salt: the bucket hash's salt (default ``online-<seed>``).
        randomized_share: share of shuffled requests online (0: every request is ranked).
        pre_days: offline days before the experiment whose per-user values are CUPED's
            covariate (the pre-period).
        utility: ``u_h`` of the ranking score ``S = sum_h u_h f_h`` (the service's default).
        max_forward_candidates: most candidates one ``score_many`` forward takes (a round's
            requests are split into forwards of at most this many).
        user_embedding_model: the PinnerFormer checkpoint (``transact embed train``) whose
            daily tables, regenerated from each environment's logs, the models that read a
            batch user embedding (``d_user > 0``) read; required when one does.
        device: torch device of the served models and of retraining.
        precision: the served models' precision, ``fp32`` (as trained) or ``bf16`` /
            ``fp16`` (``InferenceOptions.precision``; faster on CPU, scores change a little).
        per_request_scoring: score every request alone, as the HTTP service does (the
            plain reference of the batched scoring, for tests and the benchmark; slow).
        progress: progress bars (one per simulated day).
    """

    data_dir: str
    arms: tuple[ArmSpec, ...]
    days: int = 14
    control: str | None = None
    paired: bool = False
    retrain: RetrainSchedule = field(default_factory=RetrainSchedule)
    training_data: str = "own"
    bucket_model_copies: tuple[str, ...] = ()
    window_days: int = 14
    retrain_steps: int = 0
    rest: str = "policy:production"
    seed: int = 0
    salt: str = ""
    randomized_share: float = 0.0
    pre_days: int = 7
    utility: Mapping[str, float] = field(default_factory=lambda: dict(WORLD_UTILITY))
    max_forward_candidates: int = 16_384
    user_embedding_model: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    per_request_scoring: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        bad: list[str] = []
        names = [a.name for a in self.arms]
        if not self.arms:
            bad.append("OnlineConfig.arms: at least one arm")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            bad.append(f"OnlineConfig.arms: duplicate names {dupes}")
        if "rest" in names:
            bad.append("OnlineConfig.arms: 'rest' names the users in no arm; rename the arm")
        if self.control is not None and self.control not in names:
            bad.append(f"OnlineConfig.control={self.control!r}: not an arm ({names})")
        given = sum(a.share for a in self.arms if a.share is not None)
        if given > 1 + 1e-9:
            bad.append(f"OnlineConfig.arms: shares sum to {given:g} > 1")
        if any(a.share is None for a in self.arms) and given >= 1 - 1e-9:
            bad.append("OnlineConfig.arms: the given shares leave nothing for the arms without one")
        if self.days < 1:
            bad.append(f"OnlineConfig.days={self.days}: must be >= 1")
        if self.training_data not in TRAINING_DATA:
            bad.append(f"OnlineConfig.training_data={self.training_data!r}: one of {TRAINING_DATA}")
        bad += self._bucket_model_copy_problems(names)
        if self.window_days < 1:
            bad.append(f"OnlineConfig.window_days={self.window_days}: must be >= 1")
        if self.retrain_steps < 0:
            bad.append(f"OnlineConfig.retrain_steps={self.retrain_steps}: must be >= 0")
        if not 0 <= self.randomized_share <= 1:
            bad.append(f"OnlineConfig.randomized_share={self.randomized_share}: must be in [0, 1]")
        if self.pre_days < 1:
            bad.append(f"OnlineConfig.pre_days={self.pre_days}: must be >= 1")
        if self.precision not in ("fp32", "bf16", "fp16"):
            bad.append(f"OnlineConfig.precision={self.precision!r}: one of fp32, bf16, fp16")
        if self.max_forward_candidates < 1:
            bad.append("OnlineConfig.max_forward_candidates: must be >= 1")
        for head, u in self.utility.items():
            if not math.isfinite(float(u)):
                bad.append(f"OnlineConfig.utility[{head!r}]={u}: must be finite")
        try:
            ArmSpec("rest", self.rest)
        except ValueError as exc:
            bad.append(f"OnlineConfig.rest: {exc}")
        if bad:
            raise ValueError("; ".join(bad))

    def _bucket_model_copy_problems(self, names: list[str]) -> list[str]:
        bad = []
        field_name = "OnlineConfig.bucket_model_copies"
        by_name = {a.name: a for a in self.arms}
        for name in self.bucket_model_copies:
            arm = by_name.get(name)
            if arm is None:
                bad.append(f"{field_name}: {name!r} is not an arm ({names})")
            elif arm.policy is not None:
                bad.append(f"{field_name}: arm {name!r} is a world policy, nothing retrains")
            elif not self.schedule(arm).retrain_days(self.days):
                bad.append(
                    f"{field_name}: arm {name!r} retrains on none of the {self.days} days "
                    f"(retrain {self.schedule(arm)}): the copy would repeat paired/{name}"
                )
        if len(set(self.bucket_model_copies)) < len(self.bucket_model_copies):
            bad.append(f"{field_name}: {list(self.bucket_model_copies)} names an arm twice")
        if self.bucket_model_copies and not self.paired:
            bad.append(f"{field_name}: needs paired=True (the copies are paired copies)")
        if self.bucket_model_copies and self.training_data == "pooled":
            bad.append(
                f"{field_name}: with training_data='pooled' every paired copy already serves "
                "its bucket arm's model"
            )
        return bad

    @property
    def control_arm(self) -> str:
        """The control arm's name (:attr:`control`, else the first arm)."""
        return self.control or self.arms[0].name

    @property
    def bucket_salt(self) -> str:
        """The salt of the bucket hash (:attr:`salt`, else ``online-<seed>``)."""
        return self.salt or f"online-{self.seed}"

    def shares(self) -> dict[str, float]:
        """Each arm's share of the users; arms without one split the remainder equally."""
        given = {a.name: a.share for a in self.arms if a.share is not None}
        free = [a.name for a in self.arms if a.share is None]
        left = 1.0 - sum(given.values())
        return {a.name: given.get(a.name, left / max(len(free), 1)) for a in self.arms}

    def schedule(self, arm: ArmSpec) -> RetrainSchedule:
        """``arm``'s retraining schedule (its own, else the config's)."""
        return arm.retrain if arm.retrain is not None else self.retrain
