"""The simulated world's configuration: :class:`WorldConfig`, :data:`PRESETS`, vocabularies.

Every behaviour of the world is a field here with a documented default; every mechanism
added for closed-loop (online) experiments has a switch that turns it off (a weight or a
rate of 0). ``docs/data.md`` gives the reason for each default.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from transact.data.schema import (
    ActionVocabulary,
    CategoricalFeature,
    FeatureSpec,
    NumericalFeature,
)

TOP_INTERESTS = (
    "animals", "architecture", "art", "beauty", "cars", "celebrities", "design", "diy",
    "education", "entertainment", "event_planning", "fitness", "food", "gardening",
    "hair", "health", "history", "holidays", "home_decor", "humor", "kids", "men_fashion",
    "outdoors", "photography", "quotes", "science", "sports", "tattoos", "travel",
    "women_fashion", "weddings", "technology", "gaming", "music", "books", "crafts",
)  # fmt: skip
CATEGORIES = ("image", "video", "idea", "product", "recipe", "article", "collage", "gif")
CATEGORY_SHARE = (0.42, 0.12, 0.10, 0.14, 0.08, 0.07, 0.04, 0.03)
USER_STATES = ("daily", "weekly", "monthly", "new")
GENDERS = ("female", "male", "unspecified")
GENDER_SHARE = (0.62, 0.30, 0.08)
COUNTRIES = ("US", "BR", "MX", "DE", "FR", "GB", "JP", "CA", "IN", "ES", "IT", "AU")
SURFACES = ("homefeed",)
# share of sessions starting in each UTC hour (evening peak)
HOUR_SHARE = np.array(
    [2, 1.5, 1, 1, 1, 1.5, 2.5, 3.5, 4, 4, 4, 4.5, 5, 4.5, 4, 4, 4.5, 5, 6, 7, 7.5, 7, 5.5, 3.5]
)
CANDIDATE_SOURCES = ("long_term", "session", "popular", "fresh")
"""Candidate generators, in the order of ``WorldConfig.candidate_mix`` (ids 0..3)."""

ACTIONS = ActionVocabulary()  # impression, closeup, click, repin, hide


@dataclass(frozen=True)
class WorldConfig:
    """Size and behaviour of a simulated world. Presets: :data:`PRESETS`.

    Size and time:
        n_users / n_items: table sizes (``n_items`` counts every item the catalog will
            ever hold, fresh items of later days included).
        n_top_interests / leaves_per_top: taxonomy (about 30 x 10).
        d_item: content-embedding size (paper: 32).
        start_date: first day (UTC, ``YYYY-MM-DD``).
        warmup_days / train_days / eval_days: history that only feeds sequences, then
            the training and evaluation windows (paper 4.1.1: 2 + 1 weeks).

    Traffic:
        sessions_per_day_median / activity_sigma: log-normal user activity.
        requests_per_session_mean: mean session length at neutral satisfaction (a user
            continues after a request with probability ``1 - 1 / mean``).
        min_items / max_items: request size range (items shown).
        candidate_pool: candidates per shown item; the ranker picks the top ``k`` of
            ``ceil(candidate_pool * k)`` (1.0: it only orders them).
        candidate_mix: shares of candidate slots from (long-term interests, session
            intent, popular, fresh items); see :data:`CANDIDATE_SOURCES`.
        randomized_share: share of requests shuffled without position effect.
        new_user_share: share of users who sign up during the world.
        browser_share: share of users who rarely save (most non-core users).

    Session intent (expires with the session):
        p_follow_engagement / p_session_jump: the intent follows a click or repin on
            another leaf, and jumps at random, per request.

    Current interests (hours to days; 0 half-life turns them off):
        current_interest_half_life_hours: decay of a leaf's current-interest strength.
        p_new_current_interest: chance per day that a new current interest emerges (half
            the time a leaf of the long-term interests, half the time any leaf).
        current_reinforcement: strength added to a leaf per click or repin on it (a
            closeup adds a fifth of it; a hide halves the leaf's strength).
        p_session_on_current: chance that a session starts on a current interest, times
            ``min(1, total strength)``; otherwise it starts on the long-term mixture.
        current_weight: engagement-logit weight of the current-interest affinity
            ``1 - exp(-strength)`` of the item's leaf.

    Long-term interests (weeks; 0 half-life turns drift off):
        drift_half_life_days: each interest of a user's long-term mixture is replaced
            with this half-life (so the overlap with day 0 halves every half-life).
        drift_toward_engagement: share of replacements drawn from what the user engaged
            with in the last weeks (exposure shapes interests) rather than the prior.

    Satiation (0 weight turns it off):
        satiation_weight: logit penalty of full satiation (closeup, click, repin; half of
            it raises hides).
        satiation_leaf_half_life_hours / satiation_leaf_scale: every impression adds 1 to
            the user's satiation with its leaf, which decays with the half-life; the
            penalty is ``weight * (1 - exp(-s / scale))``. Impressions earlier in the same
            request count too.
        satiation_top_half_life_hours / satiation_top_scale / satiation_top_share: the
            same at the top-level interest, weighted by ``satiation_top_share``.

    Fresh content (0 turns it off):
        fresh_items_per_day: share of ``n_items`` created each day (the rest exist before
            the world starts, created over the past two years).
        fresh_horizon_days: days past the world's end the catalog holds new items for (an
            online experiment that runs after the offline world serves them).
        freshness_weight / freshness_half_life_days: engagement-logit bonus of a new item,
            ``weight * 0.5 ** (age / half_life)``.
        fresh_window_days: the fresh candidate generator proposes items of the user's
            interests created in the last this many days.

    Satisfaction and returning (0 elasticity turns each channel off):
        satisfaction_reference: the neutral feed quality (mean relevance logit of the
            shown items, see ``docs/data.md``); about the production ranker's mean.
        continue_elasticity: logit of continuing the session rises by this per unit of the
            last request's quality above the reference.
        return_elasticity: sessions per day scale by ``exp(e * (S - reference))`` where S is
            the user's recent satisfaction (an average of request qualities that relaxes to
            the reference with ``satisfaction_half_life_days``).
        satisfaction_update: weight of each request in that average.

    Hide fatigue:
        fatigue_half_life_hours: decay of the hide fatigue of a top-level interest.

    Output:
        heads: ranker heads (labels and ground truth are written for these).
        rows_per_file: rows per Parquet part file.
    """

    n_users: int = 3_000
    n_items: int = 30_000
    n_top_interests: int = 30
    leaves_per_top: int = 10
    d_item: int = 32
    start_date: str = "2026-01-05"
    warmup_days: int = 3
    train_days: int = 14
    eval_days: int = 7
    sessions_per_day_median: float = 0.6
    activity_sigma: float = 1.0
    requests_per_session_mean: float = 3.0
    min_items: int = 10
    max_items: int = 30
    candidate_pool: float = 1.5
    candidate_mix: tuple[float, ...] = (0.45, 0.25, 0.2, 0.1)
    randomized_share: float = 0.15
    new_user_share: float = 0.06
    browser_share: float = 0.35
    p_follow_engagement: float = 0.6
    p_session_jump: float = 0.1
    current_interest_half_life_hours: float = 36.0
    p_new_current_interest: float = 0.35
    current_reinforcement: float = 0.5
    p_session_on_current: float = 0.5
    current_weight: float = 0.6
    drift_half_life_days: float = 42.0
    drift_toward_engagement: float = 0.5
    satiation_weight: float = 1.0
    satiation_leaf_half_life_hours: float = 2.0
    satiation_leaf_scale: float = 8.0
    satiation_top_half_life_hours: float = 8.0
    satiation_top_scale: float = 40.0
    satiation_top_share: float = 0.5
    fresh_items_per_day: float = 0.01
    fresh_horizon_days: int = 14
    freshness_weight: float = 0.5
    freshness_half_life_days: float = 3.0
    fresh_window_days: float = 3.0
    satisfaction_reference: float = 1.25
    continue_elasticity: float = 0.5
    return_elasticity: float = 0.3
    satisfaction_half_life_days: float = 3.0
    satisfaction_update: float = 0.3
    fatigue_half_life_hours: float = 12.0
    heads: tuple[str, ...] = ("click", "repin", "hide")
    rows_per_file: int = 2_000_000

    def __post_init__(self) -> None:
        bad: list[str] = []

        def need(ok: bool, name: str, msg: str) -> None:
            if not ok:
                bad.append(f"WorldConfig.{name}: {msg} (got {getattr(self, name)!r})")

        need(self.n_users >= 1, "n_users", "must be >= 1")
        need(1 <= self.n_top_interests <= len(TOP_INTERESTS), "n_top_interests",
             f"must be in 1..{len(TOP_INTERESTS)}")  # fmt: skip
        need(self.leaves_per_top >= 1, "leaves_per_top", "must be >= 1")
        need(self.d_item >= 2, "d_item", "must be >= 2")
        need(self.train_days >= 1, "train_days", "must be >= 1")
        need(self.eval_days >= 1, "eval_days", "must be >= 1")
        need(self.warmup_days >= 0, "warmup_days", "must be >= 0")
        need(1 <= self.min_items <= self.max_items, "min_items", "need 1 <= min <= max_items")
        need(self.max_items <= 1_000, "max_items", "must be <= 1000")
        need(0 <= self.randomized_share <= 1, "randomized_share", "must be in [0, 1]")
        need(1.0 <= self.candidate_pool <= 20.0, "candidate_pool", "must be in [1, 20]")
        need(
            len(self.candidate_mix) == len(CANDIDATE_SOURCES)
            and min(self.candidate_mix) >= 0
            and abs(sum(self.candidate_mix) - 1) < 1e-6,
            "candidate_mix",
            f"{len(CANDIDATE_SOURCES)} shares {CANDIDATE_SOURCES} >= 0 summing to 1",
        )
        need(self.requests_per_session_mean >= 1, "requests_per_session_mean", "must be >= 1")
        for name in ("new_user_share", "browser_share", "p_follow_engagement", "p_session_jump",
                     "p_new_current_interest", "p_session_on_current", "drift_toward_engagement",
                     "satiation_top_share", "satisfaction_update"):  # fmt: skip
            need(0 <= getattr(self, name) <= 1, name, "must be in [0, 1]")
        for name in ("current_interest_half_life_hours", "drift_half_life_days",
                     "current_reinforcement", "satiation_weight", "fresh_items_per_day",
                     "freshness_weight", "continue_elasticity", "return_elasticity",
                     "current_weight"):  # fmt: skip
            need(math.isfinite(getattr(self, name)) and getattr(self, name) >= 0, name,
                 "must be finite and >= 0 (0 turns the mechanism off)")  # fmt: skip
        for name in ("satiation_leaf_half_life_hours", "satiation_leaf_scale",
                     "satiation_top_half_life_hours", "satiation_top_scale",
                     "freshness_half_life_days", "fresh_window_days",
                     "satisfaction_half_life_days", "fatigue_half_life_hours"):  # fmt: skip
            need(math.isfinite(getattr(self, name)) and getattr(self, name) > 0, name,
                 "must be finite and > 0")  # fmt: skip
        need(self.fresh_horizon_days >= 0, "fresh_horizon_days", "must be >= 0")
        need(
            self.fresh_items_per_day * (self.n_days + self.fresh_horizon_days) <= 0.8,
            "fresh_items_per_day",
            "fresh items over the world and its horizon must be <= 80% of n_items",
        )
        need(self.n_items >= 2 * self.n_top_interests * self.leaves_per_top, "n_items",
             "must be >= 2 * n_top_interests * leaves_per_top")  # fmt: skip
        need(self.rows_per_file >= 1, "rows_per_file", "must be >= 1")
        try:
            dt.date.fromisoformat(self.start_date)
        except ValueError:
            need(False, "start_date", "must be YYYY-MM-DD")
        for h in self.heads:
            need(h in ("click", "repin", "hide", "closeup"), "heads", f"unknown head {h!r}")
        if bad:
            raise ValueError("; ".join(bad))

    @property
    def n_days(self) -> int:
        """Days of the offline world (warm-up + training + evaluation)."""
        return self.warmup_days + self.train_days + self.eval_days

    @property
    def start_ms(self) -> int:
        """UTC midnight of ``start_date`` in ms."""
        d = dt.datetime.fromisoformat(self.start_date).replace(tzinfo=dt.UTC)
        return int(d.timestamp() * 1000)

    @property
    def catalog_days(self) -> int:
        """Days the catalog holds fresh items for: the world plus ``fresh_horizon_days``."""
        return self.n_days + self.fresh_horizon_days

    @classmethod
    def from_toml(cls, path: Path | str) -> WorldConfig:
        """Load a config file: ``preset = "demo"`` (optional) plus any field overrides.

        Whatever the file holds, the result is a valid config or a ``ValueError`` (an
        ``OSError`` for a missing file) naming the file and the field: not UTF-8 TOML, an
        unknown preset or field, a value of the wrong type or out of range.
        """
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: not a TOML file: {exc}") from None
        preset = raw.pop("preset", None)
        if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
            raise ValueError(f"{path}: preset {preset!r}: unknown; known: {sorted(PRESETS)}")
        base = PRESETS[preset] if preset is not None else cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(
                f"{path}: unknown WorldConfig fields {unknown}; known: {sorted(known)}"
            )
        for name, value in raw.items():  # the type of each field is that of its default
            raw[name] = _typed(value, getattr(base, name), f"{path}: WorldConfig.{name}")
        try:
            return replace(base, **raw)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def without(self, *mechanisms: str) -> WorldConfig:
        """This world with the named closed-loop mechanisms (keys of :data:`MECHANISMS`)
        switched off and nothing else changed; raises ``ValueError`` naming the known
        mechanisms for an unknown name."""
        unknown = [m for m in mechanisms if m not in MECHANISMS]
        if unknown:
            raise ValueError(f"unknown world mechanisms {unknown}; known: {list(MECHANISMS)}")
        changes: dict[str, object] = {}
        for name in mechanisms:
            changes.update(_switched_off(self, name))
        return replace(self, **changes)  # type: ignore[arg-type]

    def mechanisms_off(self) -> WorldConfig:
        """This world with every closed-loop mechanism switched off (for comparisons)."""
        return self.without(*MECHANISMS)


MECHANISMS: dict[str, str] = {
    "current_interest": "no current interests (current_interest_half_life_hours = 0): "
    "sessions start on the long-term interests or the session's intent only",
    "drift": "no long-term interest drift (drift_half_life_days = 0): users keep their "
    "day-0 interests",
    "satiation": "no satiation (satiation_weight = 0): repeated exposure to a leaf or "
    "interest costs no engagement",
    "fresh_items": "no fresh items (fresh_items_per_day = 0, freshness_weight = 0, the fresh "
    "generator's share of candidate_mix spread over the others): the catalog is fixed",
    "continue": "no continue elasticity (continue_elasticity = 0): session length does not "
    "depend on the feed's quality",
    "return": "no return elasticity (return_elasticity = 0): sessions per day do not depend "
    "on recent satisfaction",
}
"""The closed-loop mechanisms a :class:`WorldConfig` can switch off one by one
(:meth:`WorldConfig.without`; docs/data.md 2.4), with what switching each off means."""


def _switched_off(config: WorldConfig, mechanism: str) -> dict[str, object]:
    """The field changes that switch ``mechanism`` off in ``config``."""
    if mechanism == "current_interest":
        return {"current_interest_half_life_hours": 0.0}
    if mechanism == "drift":
        return {"drift_half_life_days": 0.0}
    if mechanism == "satiation":
        return {"satiation_weight": 0.0}
    if mechanism == "fresh_items":
        return {
            "fresh_items_per_day": 0.0,
            "freshness_weight": 0.0,
            "candidate_mix": _without_fresh(config.candidate_mix),
        }
    if mechanism == "continue":
        return {"continue_elasticity": 0.0}
    if mechanism == "return":
        return {"return_elasticity": 0.0}
    raise ValueError(f"unknown world mechanism {mechanism!r}; known: {list(MECHANISMS)}")


def _typed(value: object, default: object, where: str) -> object:
    """``value`` checked against the type of ``default`` (int, float, str, bool, or a tuple
    of them; a TOML array becomes a tuple); raises ValueError naming ``where``."""
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected an array, got {value!r}")
        if default:
            return tuple(_typed(v, default[0], f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
        value = float(value) if ok else value  # type: ignore[arg-type]
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


def _without_fresh(mix: tuple[float, ...]) -> tuple[float, ...]:
    rest = sum(mix[:3])
    return (*(m / rest for m in mix[:3]), 0.0)


PRESETS: dict[str, WorldConfig] = {
    # seconds: for tests
    "tiny": WorldConfig(
        n_users=120, n_items=3_000, n_top_interests=12, leaves_per_top=5,
        warmup_days=1, train_days=4, eval_days=2, sessions_per_day_median=1.0,
        randomized_share=0.2,
    ),
    # the demo world: ~4.1M impressions over 24 days, generated in ~20 s of CPU
    "demo": WorldConfig(),
    # 10^8 impressions over 24 days (~4.5M a day), streamed day by day (~10 min of CPU)
    "large": WorldConfig(n_users=76_000, n_items=1_000_000, rows_per_file=4_000_000),
}  # fmt: skip


def world_feature_spec(config: WorldConfig) -> FeatureSpec:
    """The ranker inputs a simulated world offers (``d_user`` 0: no batch embedding yet)."""
    return FeatureSpec(
        categorical=(
            CategoricalFeature("user_state", len(USER_STATES) + 1, 4, "user"),
            CategoricalFeature("gender", len(GENDERS) + 1, 4, "user"),
            CategoricalFeature("country", len(COUNTRIES) + 1, 8, "user"),
            CategoricalFeature("category", len(CATEGORIES) + 1, 8, "item"),
            CategoricalFeature("top_interest", config.n_top_interests + 1, 8, "item"),
            CategoricalFeature("surface", len(SURFACES) + 1, 4, "context"),
            CategoricalFeature("hour_of_day", 25, 8, "context"),
        ),
        numerical=(
            NumericalFeature("quality", "item"),
            NumericalFeature("log_popularity", "item"),
        ),
        d_item=config.d_item,
        d_user=0,
        heads=config.heads,
        actions=ACTIONS,
    )


def world_vocabularies() -> dict[str, list[str]]:
    """String values of the world's categorical columns (local index = position + 1)."""
    return {
        "user_state": list(USER_STATES),
        "gender": list(GENDERS),
        "country": list(COUNTRIES),
        "category": list(CATEGORIES),
        "surface": list(SURFACES),
    }
