"""A simulated Pinterest-like homefeed ("the world"): users, items, requests, engagements.

The generative story (details and the figures it produces in ``docs/data.md``):

* **Taxonomy and items.** ``n_top_interests`` top-level interests with
  ``leaves_per_top`` leaves each. Item content embeddings (the PinSage stand-in) cluster
  by leaf inside clusters by top-level interest. Popularity is log-normal (long tail);
  quality rises with popularity but is noisy; a format ``category`` nudges engagement.
* **Users.** Long-tailed activity (log-normal sessions per day) sets the user state
  (daily / weekly / monthly, plus users who sign up during the world: new). Each user has
  a sparse long-term interest mixture over a few top-level interests (priors differ by
  gender), an engagement propensity, and a drifting *daily interest* leaf.
* **Sessions.** A session starts on the daily interest or on a leaf drawn from the
  long-term mixture; within a session the interest follows what the user engages with
  (a click or repin on another leaf moves it there) and occasionally jumps. Hides of a
  top-level interest leave a fatigue that lowers engagement and raises hides of that
  interest and decays with a half-life of hours. Both are visible only through recent
  actions: this is the signal a realtime sequence carries and a daily embedding cannot.
* **Requests.** A request shows 10-30 items from the candidate generators (long-term
  interests, the current session interest, popular items) ordered by a noisy production
  ranker, with position bias. A share ``randomized_share`` of requests is shuffled and
  has no position effect (paper 4.2.1's randomized sessions used for evaluation).
* **Responses.** Every impression has ground-truth probabilities of hide, closeup, click
  and repin from a logistic model of long-term affinity, session affinity, fatigue,
  quality, category, the user's propensity and position; labels are drawn from them and
  the probabilities are stored (``gt_prob_<head>``) so an oracle gives the HIT@3 ceiling.
  Engagements are logged as events after the request time; the next request of the
  session comes after them.

Generation runs day by day and, within a day, in *rounds* (the r-th request of every
active user at once), so every step is vectorized over users and memory is bounded by one
day's logs. Deterministic for a seed.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from transact.data.io import DayPartitionWriter, WorldManifest, save_manifest
from transact.data.schema import (
    MS_PER_DAY,
    MS_PER_HOUR,
    ActionVocabulary,
    CategoricalFeature,
    FeatureSpec,
    NumericalFeature,
    events_schema,
    impressions_schema,
    items_schema,
    users_schema,
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


@dataclass(frozen=True)
class WorldConfig:
    """Size and behaviour of a simulated world. Presets: :data:`PRESETS`.

    Args:
        n_users / n_items: table sizes.
        n_top_interests / leaves_per_top: taxonomy (about 30 x 10).
        d_item: content-embedding size (paper: 32).
        start_date: first day (UTC, ``YYYY-MM-DD``).
        warmup_days / train_days / eval_days: history that only feeds sequences, then
            the training and evaluation windows (paper 4.1.1: 2 + 1 weeks).
        sessions_per_day_median / activity_sigma: log-normal user activity.
        requests_per_session_mean: geometric number of requests in a session.
        min_items / max_items: request size range.
        randomized_share: share of requests shuffled without position effect.
        new_user_share: share of users who sign up during the world.
        browser_share: share of users who rarely save (most non-core users).
        p_session_on_daily_interest / p_daily_drift / p_follow_engagement /
            p_session_jump: the session-interest dynamics (see the module docstring).
        candidate_mix: shares of candidates from (long-term, session, popular).
        fatigue_half_life_hours: decay of the hide fatigue.
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
    randomized_share: float = 0.15
    new_user_share: float = 0.06
    browser_share: float = 0.35
    p_session_on_daily_interest: float = 0.5
    p_daily_drift: float = 0.35
    p_follow_engagement: float = 0.6
    p_session_jump: float = 0.1
    candidate_mix: tuple[float, float, float] = (0.5, 0.25, 0.25)
    fatigue_half_life_hours: float = 12.0
    heads: tuple[str, ...] = ("click", "repin", "hide")
    rows_per_file: int = 2_000_000

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, msg: str) -> None:
            if not ok:
                raise ValueError(f"WorldConfig.{name}: {msg} (got {getattr(self, name)!r})")

        need(self.n_users >= 1, "n_users", "must be >= 1")
        need(self.n_items >= self.n_top_interests * self.leaves_per_top, "n_items",
             "must be >= n_top_interests * leaves_per_top")  # fmt: skip
        need(1 <= self.n_top_interests <= len(TOP_INTERESTS), "n_top_interests",
             f"must be in 1..{len(TOP_INTERESTS)}")  # fmt: skip
        need(self.leaves_per_top >= 1, "leaves_per_top", "must be >= 1")
        need(self.d_item >= 2, "d_item", "must be >= 2")
        need(self.train_days >= 1 and self.eval_days >= 1, "train_days", "train/eval >= 1 day")
        need(self.warmup_days >= 0, "warmup_days", "must be >= 0")
        need(1 <= self.min_items <= self.max_items, "min_items", "need 1 <= min <= max_items")
        need(0 <= self.randomized_share <= 1, "randomized_share", "must be in [0, 1]")
        need(len(self.candidate_mix) == 3 and abs(sum(self.candidate_mix) - 1) < 1e-6,
             "candidate_mix", "three shares summing to 1")  # fmt: skip
        need(self.requests_per_session_mean >= 1, "requests_per_session_mean", "must be >= 1")
        try:
            dt.date.fromisoformat(self.start_date)
        except ValueError:
            need(False, "start_date", "must be YYYY-MM-DD")
        for h in self.heads:
            need(h in ("click", "repin", "hide", "closeup"), "heads", f"unknown head {h!r}")

    @property
    def n_days(self) -> int:
        return self.warmup_days + self.train_days + self.eval_days

    @property
    def start_ms(self) -> int:
        d = dt.datetime.fromisoformat(self.start_date).replace(tzinfo=dt.UTC)
        return int(d.timestamp() * 1000)

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
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


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


PRESETS: dict[str, WorldConfig] = {
    # seconds: for tests
    "tiny": WorldConfig(
        n_users=120, n_items=3_000, n_top_interests=12, leaves_per_top=5,
        warmup_days=1, train_days=4, eval_days=2, sessions_per_day_median=1.0,
        randomized_share=0.2,
    ),
    # the demo: generate + prepare + train two rankers + evaluate in ~12 min on 2 cores
    "demo": WorldConfig(),
    # 10^8 impressions, streamed; about 1.5 h at ~1.2M impressions/min on 2 cores
    # 10^8 impressions over 24 days (~4.2M a day), streamed day by day
    "large": WorldConfig(n_users=76_000, n_items=1_000_000, rows_per_file=4_000_000),
}  # fmt: skip


# intercepts of the response model's logits (calibrated to Pinterest-like rates: closeups
# ~5%, clicks ~3%, repins ~1%, hides ~0.5% of impressions; docs/data.md has the figures)
BASE_LOGIT = {"closeup": -4.3, "click": -5.3, "repin": -6.8, "hide": -4.4}

ACTIONS = ActionVocabulary()  # impression, closeup, click, repin, hide


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
    return {
        "user_state": list(USER_STATES),
        "gender": list(GENDERS),
        "country": list(COUNTRIES),
        "category": list(CATEGORIES),
        "surface": list(SURFACES),
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _Catalog:
    """Items, the taxonomy and the samplers over them (inverse-CDF with searchsorted)."""

    def __init__(self, cfg: WorldConfig, rng: np.random.Generator) -> None:
        n_top, per = cfg.n_top_interests, cfg.leaves_per_top
        self.n_leaves = n_leaves = n_top * per
        self.leaf_top = np.repeat(np.arange(n_top), per)
        leaf_weight = rng.lognormal(0.0, 0.7, n_leaves)
        top_centre = rng.normal(0, 1, (n_top, cfg.d_item))
        leaf_centre = top_centre[self.leaf_top] + 0.7 * rng.normal(0, 1, (n_leaves, cfg.d_item))
        # every leaf gets at least one item, the rest by leaf weight
        leaf = np.concatenate(
            [
                np.arange(n_leaves),
                rng.choice(n_leaves, cfg.n_items - n_leaves, p=leaf_weight / leaf_weight.sum()),
            ]
        )
        leaf = leaf[rng.permutation(cfg.n_items)]
        self.item_leaf = leaf
        self.item_top = self.leaf_top[leaf]
        emb = leaf_centre[leaf] + 0.45 * rng.normal(0, 1, (cfg.n_items, cfg.d_item))
        self.embedding = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
        self.popularity = rng.lognormal(0.0, 1.3, cfg.n_items).astype(np.float32)
        log_pop = np.log(self.popularity)
        self.quality = _sigmoid(0.35 * log_pop + rng.normal(0, 1, cfg.n_items)).astype(np.float32)
        self.quality_z = ((self.quality - self.quality.mean()) / self.quality.std()).astype(
            np.float32
        )
        self.category = rng.choice(len(CATEGORIES), cfg.n_items, p=np.array(CATEGORY_SHARE))
        # sampler: item within a leaf, by popularity
        order = np.lexsort((rng.random(cfg.n_items), leaf))
        self.items_by_leaf = order
        w = self.popularity[order].astype(np.float64)
        leaf_sorted = leaf[order]
        cum = np.cumsum(w)
        start = np.searchsorted(leaf_sorted, np.arange(n_leaves))
        end = np.searchsorted(leaf_sorted, np.arange(n_leaves), side="right")
        before = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
        total = cum[end - 1] - before
        self.leaf_cdf = leaf_sorted + (cum - before[leaf_sorted]) / total[leaf_sorted]
        # leaf within a top-level interest, by leaf weight
        lw = leaf_weight.reshape(n_top, per)
        self.top_leaf_cdf = (
            np.cumsum(lw, axis=1) / lw.sum(axis=1, keepdims=True)
        ).ravel() + np.repeat(np.arange(n_top), per)
        # popular items overall
        gp = self.popularity.astype(np.float64) ** 0.8
        self.global_cdf = np.cumsum(gp) / gp.sum()
        self.n_top, self.per = n_top, per

    def leaf_in_top(self, top: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pos = np.searchsorted(self.top_leaf_cdf, top + rng.random(top.shape), side="right")
        return np.clip(pos, top * self.per, top * self.per + self.per - 1)

    def item_in_leaf(self, leaf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pos = np.searchsorted(self.leaf_cdf, leaf + rng.random(leaf.shape), side="right")
        return self.items_by_leaf[np.minimum(pos, len(self.items_by_leaf) - 1)]

    def popular_item(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(
            np.searchsorted(self.global_cdf, rng.random(n), side="right"), len(self.global_cdf) - 1
        )


class _Population:
    """Users' static attributes and long-term interests."""

    def __init__(self, cfg: WorldConfig, cat: _Catalog, rng: np.random.Generator) -> None:
        n = cfg.n_users
        self.activity = np.clip(
            rng.lognormal(math.log(cfg.sessions_per_day_median), cfg.activity_sigma, n), 0.03, 12.0
        )
        self.gender = rng.choice(len(GENDERS), n, p=np.array(GENDER_SHARE))
        cw = 1.0 / np.arange(1, len(COUNTRIES) + 1) ** 1.1
        self.country = rng.choice(len(COUNTRIES), n, p=cw / cw.sum())
        is_new = rng.random(n) < cfg.new_user_share
        start = cfg.start_ms
        world_ms = cfg.n_days * MS_PER_DAY
        self.signup_ms = np.where(
            is_new,
            start + (rng.random(n) * 0.9 * world_ms).astype(np.int64),
            start - (rng.integers(30, 2_000, n) * MS_PER_DAY),
        ).astype(np.int64)
        self.state = np.where(
            is_new, 3, np.where(self.activity >= 1.0, 0, np.where(self.activity >= 0.25, 1, 2))
        )
        # long-term interests: a sparse mixture over top-level interests, priors by gender
        prior = rng.dirichlet(np.full(cat.n_top, 0.8), len(GENDERS))
        k = np.minimum(1 + rng.poisson(1.8, n), 6)
        self.top_weight = np.zeros((n, cat.n_top), np.float32)
        for g in range(len(GENDERS)):
            rows = np.flatnonzero(self.gender == g)
            # Gumbel top-k: k distinct interests per user, drawn by the gender prior
            keys = np.log(prior[g])[None, :] - np.log(-np.log(rng.random((rows.size, cat.n_top))))
            ranked = np.argsort(-keys, axis=1)
            w = rng.dirichlet(np.ones(6), rows.size)
            w[np.arange(6)[None, :] >= k[rows, None]] = 0
            w /= w.sum(axis=1, keepdims=True)
            self.top_weight[rows] = self._put(rows.size, cat.n_top, ranked[:, :6], w)
        self.top_cdf = np.cumsum(self.top_weight, axis=1)
        self.affinity = np.sqrt(self.top_weight)  # long-term affinity in [0, 1]
        self.propensity = (
            rng.normal(0, 0.45, n)
            + 0.25 * (np.log(self.activity) - math.log(cfg.sessions_per_day_median))
        ).astype(np.float32)
        # savers vs browsers: a share of users rarely save (repin) at all, whatever they
        # click; they are the bulk of non-core users (no save in 28 days, paper 4.2.1)
        browser = rng.random(n) < cfg.browser_share
        self.save_offset = (rng.normal(0, 0.5, n) - 3.0 * browser).astype(np.float32)
        # last save before the world starts (for core / non-core at the start)
        days_since = rng.exponential(
            12.0 / (np.sqrt(self.activity) * np.exp(1.5 * self.propensity + self.save_offset))
        )
        self.prior_last_repin_ms = np.where(
            is_new, 0, start - (days_since * MS_PER_DAY).astype(np.int64) - 1
        ).astype(np.int64)

    @staticmethod
    def _put(n: int, n_top: int, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
        out = np.zeros((n, n_top), np.float32)
        np.put_along_axis(out, idx, w.astype(np.float32), axis=1)
        return out

    def sample_top(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(users.shape)
        cdf = self.top_cdf[users]
        return np.minimum((cdf < u[:, None] * cdf[:, -1:]).sum(axis=1), cdf.shape[1] - 1)


def generate_world(
    out_dir: Path | str,
    config: WorldConfig | None = None,
    seed: int = 0,
    *,
    preset: str = "",
    progress: bool = True,
) -> Path:
    """Simulate a world and write it as a world dir (see ``transact.data.io``).

    Streams one day at a time to day-partitioned Parquet, so memory stays bounded by one
    day's logs plus per-user state. Deterministic for ``(config, seed)``.

    Args:
        out_dir: directory to create (must not hold a manifest already).
        config: the world; ``PRESETS["demo"]`` by default.
        seed: random seed.
        preset: preset name recorded in the manifest.
        progress: show a tqdm bar over days.

    Returns:
        ``out_dir`` as a Path.
    """
    cfg = config or PRESETS["demo"]
    out = Path(out_dir)
    if (out / "manifest.json").exists():
        raise FileExistsError(f"{out}/manifest.json exists; choose a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cat = _Catalog(cfg, rng)
    pop = _Population(cfg, cat, rng)
    _write_static_tables(out, cfg, cat, pop)

    heads = cfg.heads
    ev_writer = DayPartitionWriter(
        out, "events", events_schema(), "timestamp_ms", cfg.rows_per_file
    )
    im_writer = DayPartitionWriter(
        out, "impressions", impressions_schema(heads), "request_time_ms", cfg.rows_per_file
    )
    sim = _Simulator(cfg, cat, pop, rng)
    counts = {"requests": 0, "impressions": 0, "events": 0}
    # Sessions late in a day spill past midnight; those rows are carried into the next
    # day's batch and re-sorted with it, so the written log is globally time-ordered.
    carry_imp: pa.Table | None = None
    carry_ev: pa.Table | None = None
    last_ms = cfg.start_ms
    for day in tqdm(range(cfg.n_days), desc="simulating days", disable=not progress, unit="day"):
        imp, ev = sim.run_day(day)
        counts["impressions"] += imp.num_rows
        counts["events"] += ev.num_rows
        counts["requests"] += len(pc.unique(imp.column("request_id"))) if imp.num_rows else 0
        final = day == cfg.n_days - 1
        day_end = cfg.start_ms + (day + 1) * MS_PER_DAY
        imp, carry_imp = _merge_and_split(
            carry_imp, imp, "request_time_ms", ["request_id", "position"], day_end, final
        )
        ev, carry_ev = _merge_and_split(carry_ev, ev, "timestamp_ms", [], day_end, final)
        if ev.num_rows:
            last_ms = max(last_ms, int(pc.max(ev.column("timestamp_ms")).as_py()))
        im_writer.write(imp)
        ev_writer.write(ev)
        im_writer.close_days_before(day_end)
        ev_writer.close_days_before(day_end)
    im_writer.close()
    ev_writer.close()

    start = cfg.start_ms
    train_start = start + cfg.warmup_days * MS_PER_DAY
    eval_start = train_start + cfg.train_days * MS_PER_DAY
    end = eval_start + cfg.eval_days * MS_PER_DAY
    manifest = WorldManifest(
        dataset=f"sim-{preset}" if preset else "sim",
        seed=seed,
        preset=preset,
        feature_spec=world_feature_spec(cfg),
        start_ms=start,
        end_ms=max(end, last_ms + 1),  # the last sessions may end after midnight
        train_start_ms=train_start,
        train_end_ms=eval_start,
        eval_start_ms=eval_start,
        eval_end_ms=end,
        n_users=cfg.n_users,
        n_items=cfg.n_items,
        vocabularies=world_vocabularies(),
        extra={
            "generator": "transact.data.world",
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "counts": counts,
            "top_interests": list(TOP_INTERESTS[: cfg.n_top_interests]),
            "sequence_actions_default": ["closeup", "click", "repin", "hide"],
        },
    )
    save_manifest(out, manifest)
    return out


def _merge_and_split(
    carry: pa.Table | None,
    table: pa.Table,
    time_column: str,
    tie_columns: list[str],
    day_end_ms: int,
    final: bool,
) -> tuple[pa.Table, pa.Table | None]:
    """``carry + table`` sorted by time (stable), split into rows before ``day_end_ms``
    (returned for writing) and the rest (carried), unless ``final``."""
    if carry is not None and carry.num_rows:
        table = pa.concat_tables([carry, table]) if table.num_rows else carry
        keys = [(time_column, "ascending")] + [(c, "ascending") for c in tie_columns]
        table = table.take(pc.sort_indices(table, sort_keys=keys))
    if final or not table.num_rows:
        return table, None
    late = pc.greater_equal(table.column(time_column), day_end_ms)
    return table.filter(pc.invert(late)), table.filter(late)


def _write_static_tables(out: Path, cfg: WorldConfig, cat: _Catalog, pop: _Population) -> None:
    tops = TOP_INTERESTS[: cfg.n_top_interests]
    leaf_names = np.array(
        [
            f"{tops[t]}/{tops[t]}_{j:02d}"
            for t in range(cfg.n_top_interests)
            for j in range(cfg.leaves_per_top)
        ]
    )
    n = cfg.n_items
    items = pa.table(
        {
            "item_id": pa.array(np.arange(n, dtype=np.int64)),
            "external_id": pa.array([f"pin{i}" for i in range(n)], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(cat.embedding.ravel()), cfg.d_item
            ),
            "top_interest": pa.array(cat.item_top.astype(np.int32)),
            "taxonomy_path": pa.array(leaf_names[cat.item_leaf]),
            "category": pa.array(cat.category.astype(np.int32)),
            "quality": pa.array(cat.quality),
            "popularity": pa.array(cat.popularity),
        }
    )
    schema = items_schema(cfg.d_item).append(pa.field("popularity", pa.float32(), nullable=False))
    pq.write_table(items.cast(schema), out / "items.parquet", compression="zstd")
    users = pa.table(
        {
            "user_id": pa.array(np.arange(cfg.n_users, dtype=np.int64)),
            "user_state": pa.array(np.array(USER_STATES)[pop.state]),
            "gender": pa.array(np.array(GENDERS)[pop.gender]),
            "country": pa.array(np.array(COUNTRIES)[pop.country]),
            "signup_time_ms": pa.array(pop.signup_ms),
            "activity_per_day": pa.array(pop.activity.astype(np.float32)),
            "prior_last_repin_ms": pa.array(pop.prior_last_repin_ms),
            # ground truth for judging batch user embeddings (issue 7): the top-level
            # interests of each user's long-term mixture
            "long_term_interests": pa.array(
                [np.flatnonzero(w > 0).astype(np.int32) for w in pop.top_weight],
                pa.list_(pa.int32()),
            ),
        }
    )
    uschema = users_schema().append(pa.field("activity_per_day", pa.float32(), nullable=False))
    uschema = uschema.append(pa.field("prior_last_repin_ms", pa.int64(), nullable=False))
    uschema = uschema.append(pa.field("long_term_interests", pa.list_(pa.int32()), nullable=False))
    pq.write_table(users.cast(uschema), out / "users.parquet", compression="zstd")


class _Simulator:
    """Per-user dynamic state and the day/round loop."""

    def __init__(
        self, cfg: WorldConfig, cat: _Catalog, pop: _Population, rng: np.random.Generator
    ) -> None:
        self.cfg, self.cat, self.pop, self.rng = cfg, cat, pop, rng
        n = cfg.n_users
        self.daily_leaf = cat.leaf_in_top(pop.sample_top(np.arange(n), rng), rng)
        self.session_leaf = self.daily_leaf.copy()
        self.fatigue = np.zeros((n, cat.n_top), np.float32)
        self.fatigue_time = np.full(n, cfg.start_ms, np.int64)
        self.last_event_ms = np.zeros(n, np.int64)
        self.last_repin_ms = pop.prior_last_repin_ms.copy()
        self.next_request_id = 0
        self.cat_effect = rng.normal(0, 0.2, (4, len(CATEGORIES))).astype(np.float32)
        self.head_index = {"closeup": 0, "click": 1, "repin": 2, "hide": 3}

    def _plan_day(self, day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Requests planned for a day: (user, planned time, is first of a session), by user/time."""
        cfg, rng, pop = self.cfg, self.rng, self.pop
        day_ms = cfg.start_ms + day * MS_PER_DAY
        signed_up = pop.signup_ms < day_ms + MS_PER_DAY
        n_sess = np.where(signed_up, np.minimum(rng.poisson(pop.activity), 12), 0)
        s_user = np.repeat(np.arange(cfg.n_users), n_sess)
        hour = rng.choice(24, s_user.size, p=HOUR_SHARE / HOUR_SHARE.sum())
        s_start = day_ms + hour * MS_PER_HOUR + rng.integers(0, MS_PER_HOUR, s_user.size)
        s_start = np.maximum(s_start, pop.signup_ms[s_user])
        n_req = rng.geometric(1.0 / cfg.requests_per_session_mean, s_user.size)  # >= 1
        n_req = np.minimum(n_req, 40)
        r_sess = np.repeat(np.arange(s_user.size), n_req)
        first = np.r_[0, np.cumsum(n_req)[:-1]]
        idx_in = np.arange(r_sess.size) - first[r_sess]
        gaps = 20_000 + rng.exponential(40_000, r_sess.size).astype(np.int64)
        gaps[idx_in == 0] = 0
        cum = np.cumsum(gaps)
        offset = cum - cum[first[r_sess]]
        r_user = s_user[r_sess]
        r_time = s_start[r_sess] + offset
        order = np.lexsort((r_time, r_user))
        return r_user[order], r_time[order], (idx_in == 0)[order]

    def run_day(self, day: int) -> tuple[pa.Table, pa.Table]:
        users, planned, first = self._plan_day(day)
        if users.size == 0:
            return pa.table({}), pa.table({})
        starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
        counts = np.diff(np.r_[starts, users.size])
        rank = np.arange(users.size) - np.repeat(starts, counts)
        imp_parts: list[dict[str, np.ndarray]] = []
        ev_parts: list[dict[str, np.ndarray]] = []
        for r in range(int(rank.max()) + 1):
            sel = np.flatnonzero(rank == r)
            imp, ev = self._round(users[sel], planned[sel], first[sel])
            imp_parts.append(imp)
            ev_parts.append(ev)
        return self._to_tables(imp_parts, ev_parts)

    def _round(
        self, users: np.ndarray, planned: np.ndarray, first: np.ndarray
    ) -> tuple[dict, dict]:
        cfg, cat, pop, rng = self.cfg, self.cat, self.pop, self.rng
        n_r = users.size
        t = np.maximum(planned, self.last_event_ms[users] + 1_000)
        # session start: daily interest or a leaf from the long-term mixture
        new = first
        on_daily = rng.random(n_r) < cfg.p_session_on_daily_interest
        fresh = cat.leaf_in_top(pop.sample_top(users, rng), rng)
        self.session_leaf[users] = np.where(
            new, np.where(on_daily, self.daily_leaf[users], fresh), self.session_leaf[users]
        )
        sess_leaf = self.session_leaf[users]
        # fatigue decays with a half-life
        decay = 0.5 ** (
            (t - self.fatigue_time[users]) / (cfg.fatigue_half_life_hours * MS_PER_HOUR)
        )
        self.fatigue[users] *= decay[:, None].astype(np.float32)
        self.fatigue_time[users] = t

        # candidates: sources mixed per slot, oversampled then de-duplicated
        k = rng.integers(cfg.min_items, cfg.max_items + 1, n_r)
        m = np.ceil(k * 1.5).astype(np.int64) + 2
        req = np.repeat(np.arange(n_r), m)
        src = rng.choice(3, req.size, p=np.array(cfg.candidate_mix))
        cand = np.empty(req.size, np.int64)
        s0, s1, s2 = (np.flatnonzero(src == s) for s in range(3))
        cand[s0] = cat.item_in_leaf(cat.leaf_in_top(pop.sample_top(users[req[s0]], rng), rng), rng)
        cand[s1] = cat.item_in_leaf(sess_leaf[req[s1]], rng)
        cand[s2] = cat.popular_item(s2.size, rng)
        key = req * cfg.n_items + cand
        _, first_idx = np.unique(key, return_index=True)
        keep = np.zeros(req.size, bool)
        keep[first_idx] = True
        req, cand = req[keep], cand[keep]  # unique pairs, in request order
        pos_in = np.arange(req.size) - np.searchsorted(req, req)
        sel = pos_in < k[req]
        req, cand = req[sel], cand[sel]
        u = users[req]

        # production order (noisy long-term ranker) or shuffled for randomized requests
        randomized = rng.random(n_r) < cfg.randomized_share
        lt = pop.affinity[u, cat.item_top[cand]]
        prod = (
            1.2 * lt
            + 0.6 * cat.quality_z[cand]
            + 0.2 * np.log(cat.popularity[cand])
            + rng.normal(0, 1, req.size)
        )
        prod = np.where(randomized[req], rng.random(req.size), prod)
        order = np.lexsort((-prod, req))
        req, cand, u, lt = req[order], cand[order], u[order], lt[order]
        position = np.arange(req.size) - np.searchsorted(req, req)

        # ground-truth probabilities
        leaf, top = cat.item_leaf[cand], cat.item_top[cand]
        sl = sess_leaf[req]
        ss = np.where(leaf == sl, 1.0, np.where(top == cat.leaf_top[sl], 0.35, 0.0))
        fat = 1.0 - np.exp(-self.fatigue[u, top])  # saturating hide fatigue in [0, 1)
        q = cat.quality_z[cand]
        prop = pop.propensity[u]
        # position bias centred on a typical request, so randomized (no effect) ~ average
        pos_eff = np.where(randomized[req], 0.0, -0.35 * (np.log1p(position) - 2.0))
        ce = self.cat_effect[:, cat.category[cand]]
        b = BASE_LOGIT
        logit_closeup = (
            b["closeup"] + 1.1 * lt + 1.5 * ss + 0.4 * q + prop - 1.5 * fat + pos_eff + ce[0]
        )
        logit_click = (
            b["click"] + 0.9 * lt + 1.4 * ss + 0.5 * q + prop - 1.5 * fat + pos_eff + ce[1]
        )
        logit_repin = (
            b["repin"]
            + 1.3 * lt
            + 1.8 * ss
            + 0.6 * q
            + 1.3 * prop
            + pop.save_offset[u]
            - 2.0 * fat
            + pos_eff
            + ce[2]
        )
        logit_hide = b["hide"] - 1.6 * lt - 1.6 * ss - 0.5 * q + 2.5 * fat + 0.5 * pos_eff + ce[3]
        p_hide = _sigmoid(logit_hide)
        cond = _sigmoid(np.stack([logit_closeup, logit_click, logit_repin]))
        gt = {
            "closeup": (1 - p_hide) * cond[0],
            "click": (1 - p_hide) * cond[1],
            "repin": (1 - p_hide) * cond[2],
            "hide": p_hide,
        }
        hide = rng.random(req.size) < p_hide
        draws = rng.random((3, req.size)) < cond
        closeup, click, repin = (draws[i] & ~hide for i in range(3))

        # engagement times: after the request, later for lower positions
        t_req = t[req]
        t_close = (
            t_req + 1_500 * (position + 1) + rng.exponential(6_000, req.size).astype(np.int64) + 1
        )
        t_click = t_close + 1_000 + rng.exponential(5_000, req.size).astype(np.int64)
        t_repin = t_close + 1_000 + rng.exponential(8_000, req.size).astype(np.int64)
        t_hide = (
            t_req + 800 * (position + 1) + rng.exponential(4_000, req.size).astype(np.int64) + 1
        )

        request_id = self.next_request_id + np.arange(n_r, dtype=np.int64)
        self.next_request_id += n_r
        is_core = self.last_repin_ms[users] >= t - 28 * MS_PER_DAY

        # state updates: fatigue, last repin, session drift, next-request clock
        np.add.at(self.fatigue, (u[hide], top[hide]), 1.0)
        if repin.any():
            np.maximum.at(self.last_repin_ms, u[repin], t_repin[repin])
        last = t_req.copy()
        for mask, times in ((closeup, t_close), (click, t_click), (repin, t_repin), (hide, t_hide)):
            last = np.where(mask, np.maximum(last, times), last)
        np.maximum.at(self.last_event_ms, u, last)
        engaged = click | repin
        if engaged.any():
            # the last engaged item of each request (lexsort: request, then position)
            er = req[engaged]
            last_idx = np.flatnonzero(engaged)[np.r_[er[1:] != er[:-1], True]]
            follow = rng.random(last_idx.size) < cfg.p_follow_engagement
            tgt = users[req[last_idx[follow]]]
            self.session_leaf[tgt] = leaf[last_idx[follow]]
        jump = rng.random(n_r) < cfg.p_session_jump
        if jump.any():
            self.session_leaf[users[jump]] = cat.leaf_in_top(pop.sample_top(users[jump], rng), rng)

        imp = {
            "request_id": request_id[req],
            "user_id": u,
            "request_time_ms": t_req,
            "item_id": cand,
            "position": position.astype(np.int16),
            "randomized": randomized[req],
            "is_core": is_core[req],
        }
        labels = {"click": click, "repin": repin, "hide": hide, "closeup": closeup}
        for h in cfg.heads:
            imp[f"label_{h}"] = labels[h].astype(np.int8)
            imp[f"gt_prob_{h}"] = gt[h].astype(np.float32)
        # events: every impression, then each engagement
        ev_masks = [
            ("impression", np.ones(req.size, bool), t_req),
            ("closeup", closeup, t_close),
            ("click", click, t_click),
            ("repin", repin, t_repin),
            ("hide", hide, t_hide),
        ]
        ev: dict[str, list[np.ndarray]] = {
            k: [] for k in ("rid", "pos", "user_id", "item_id", "action", "timestamp_ms")
        }
        for a_id, (_, mask, times) in enumerate(ev_masks, start=1):
            idx = np.flatnonzero(mask)
            ev["rid"].append(request_id[req[idx]])
            ev["pos"].append(position[idx])
            ev["user_id"].append(u[idx])
            ev["item_id"].append(cand[idx])
            ev["action"].append(np.full(idx.size, a_id, np.int8))
            ev["timestamp_ms"].append(times[idx])
        return imp, {key: np.concatenate(v) for key, v in ev.items()}

    def _to_tables(self, imp_parts: list[dict], ev_parts: list[dict]) -> tuple[pa.Table, pa.Table]:
        imp = {k: np.concatenate([p[k] for p in imp_parts]) for k in imp_parts[0]}
        order = np.lexsort((imp["position"], imp["request_id"], imp["request_time_ms"]))
        cols: dict[str, Any] = {k: v[order] for k, v in imp.items()}
        cols["surface"] = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(order.size, np.int8)), pa.array(list(SURFACES))
        ).cast(pa.string())
        names = impressions_schema(self.cfg.heads).names
        imp_table = pa.table({n: cols[n] for n in names}, schema=impressions_schema(self.cfg.heads))

        ev = {k: np.concatenate([p[k] for p in ev_parts]) for k in ev_parts[0]}
        order = np.argsort(ev["timestamp_ms"], kind="stable")
        ev = {k: v[order] for k, v in ev.items()}
        actions = pa.array(list(ACTIONS.names), pa.string())
        action_col = pa.DictionaryArray.from_arrays(pa.array(ev["action"] - 1), actions).cast(
            pa.string()
        )
        event_id = pc.binary_join_element_wise(
            pc.cast(pa.array(ev["rid"]), pa.string()),
            pc.cast(pa.array(ev["pos"]), pa.string()),
            action_col,
            ":",
        )
        surface = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(order.size, np.int8)), pa.array(list(SURFACES))
        ).cast(pa.string())
        ev_table = pa.table(
            {
                "event_id": event_id,
                "user_id": pa.array(ev["user_id"]),
                "item_id": pa.array(ev["item_id"]),
                "action_type": action_col,
                "timestamp_ms": pa.array(ev["timestamp_ms"]),
                "surface": surface,
            },
            schema=events_schema(),
        )
        return imp_table, ev_table
