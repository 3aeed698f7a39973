"""The log-world writer: a normalized log cut into requests and written as a world dir.

What it makes that public logs lack (paper 4.1.1), documented in ``docs/data.md``:

* **Requests.** A user's actions are cut into sessions at gaps over ``session_gap_ms``
  and sessions into chunks of at most ``max_items``; each chunk is one request whose
  ``request_time_ms`` is 1 ms before its first action, so its own actions are labels and
  never part of its sequence. Chunks smaller than ``min_items`` make no request (their
  actions stay in the event log); the manifest counts them. Positions are a seeded
  shuffle and every request is marked ``randomized`` (no position effect exists).
* **Item embeddings** by :func:`~transact.data.adapters.item_content.item_embeddings`.
* **Split.** Requests before the ``1 - eval_fraction`` time quantile train, the rest
  evaluate. Quality (smoothed engagement rate) and popularity (impressions + 1) of items
  come from the training period only.

The tables and the manifest go through the data stage's writers (:mod:`transact.data.io`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transact.data.adapters.item_content import item_embeddings
from transact.data.adapters.normalized import HEADS, LOG_ACTIONS, ItemInput, LogInput
from transact.data.io import DataError, DayPartitionWriter, WorldManifest, save_manifest
from transact.data.schema import (
    MS_PER_DAY,
    CategoricalFeature,
    FeatureSpec,
    NumericalFeature,
    events_schema,
    impressions_schema,
    items_schema,
    users_schema,
)
from transact.data.sequences import SequenceBuilder


@dataclass(frozen=True)
class RequestConfig:
    """How a log becomes requests (see the module docstring)."""

    session_gap_ms: int = 30 * 60_000
    max_items: int = 30
    min_items: int = 4
    eval_fraction: float = 0.2


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
