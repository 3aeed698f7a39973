"""Embedding quality on its own: recall@K of future engagements by nearest-neighbour search.

For a date ``D``: every user with history up to the end of ``D`` and at least one positive
engagement in the next ``window_days`` days is scored. Each method ranks all items for the
user and recall@K is ``|top-K ∩ future positives| / |future positives|`` (distinct items),
averaged over users. Methods:

* ``pinnerformer``: the user embedding against the item tower's item vectors (dot product
  of unit vectors, i.e. cosine).
* ``mean_item_embedding``: the mean content embedding of the user's last positive
  engagements (same window length as the encoder) against item content embeddings, cosine.
* ``popularity``: the same list for everyone, items by positive count up to the end of ``D``.

The world's known long-term interests (when the world stores them) give a second number:
the share of a user's top-K retrieved items whose top-level interest is one of the user's
long-term interests, next to the share expected by chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from transact.data.io import ItemTable, day_end_ms, load_manifest
from transact.data.schema import MS_PER_DAY, ActionVocabulary, padded_embedding_table
from transact.embeddings.generate import encode_users
from transact.embeddings.histories import last_actions, load_histories
from transact.embeddings.train import LoadedPinnerFormer, load_pinnerformer


def top_k_items(
    user_vectors: np.ndarray, item_vectors: np.ndarray, k: int, chunk: int = 1024
) -> np.ndarray:
    """``[U, D]`` users, ``[I, D]`` items -> ``[U, k]`` item indices by descending dot product.

    Exact search in user chunks (bounded memory ``chunk x I``); ties break toward the lower
    item index so results are deterministic.
    """
    k = min(k, item_vectors.shape[0])
    out = np.empty((user_vectors.shape[0], k), dtype=np.int64)
    items_t = torch.as_tensor(item_vectors, dtype=torch.float32)
    for start in range(0, user_vectors.shape[0], chunk):
        scores = (
            torch.as_tensor(user_vectors[start : start + chunk], dtype=torch.float32) @ items_t.T
        )
        # stable descending sort: equal scores keep item order
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        out[start : start + chunk] = order.numpy()
    return out


def recall_at_k(top_items: np.ndarray, targets: list[np.ndarray], k: int) -> float:
    """Mean over users of ``|top_items[u, :k] ∩ targets[u]| / |targets[u]|`` (distinct items).

    ``top_items`` ``[U, >=k]``; ``targets`` one int array per user (users with no target
    must be filtered out beforehand: they raise).
    """
    if len(targets) != top_items.shape[0]:
        raise ValueError(f"{len(targets)} target lists for {top_items.shape[0]} users")
    recalls = np.empty(len(targets))
    for u, target in enumerate(targets):
        distinct = np.unique(target)
        if len(distinct) == 0:
            raise ValueError(f"user row {u} has no target items")
        recalls[u] = np.isin(distinct, top_items[u, :k]).sum() / len(distinct)
    return float(recalls.mean()) if len(recalls) else float("nan")


def interest_precision(
    top_items: np.ndarray, item_interest: np.ndarray, user_interests: list[set[int]], k: int
) -> float:
    """Share of each user's top-``k`` items whose top interest is among the user's interests."""
    hits = [
        np.isin(item_interest[top_items[u, :k]], list(interests)).mean()
        for u, interests in enumerate(user_interests)
    ]
    return float(np.mean(hits)) if hits else float("nan")


def read_long_term_interests(data_dir: str | Path) -> dict[int, set[int]] | None:
    """The world's ground-truth long-term interests per user, when it stores them.

    Looks for a list column ``long_term_interests`` (or ``interests``) in ``users.parquet``
    or a ``user_interests.parquet`` side file with ``user_id`` and ``interest`` (one row per
    pair). Returns None when the world has none (e.g. MovieLens).
    """
    data_dir = Path(data_dir)
    users = data_dir / "users.parquet"
    if users.exists():
        names = pq.read_schema(users).names
        for col in ("long_term_interests", "interests", "top_interests"):
            if col in names:
                t = pq.read_table(users, columns=["user_id", col])
                return {
                    int(u): {int(x) for x in (v or [])}
                    for u, v in zip(
                        t.column("user_id").to_pylist(), t.column(col).to_pylist(), strict=True
                    )
                }
    side = data_dir / "user_interests.parquet"
    if side.exists():
        t = pq.read_table(side, columns=["user_id", "interest"])
        out: dict[int, set[int]] = {}
        for u, i in zip(
            t.column("user_id").to_pylist(), t.column("interest").to_pylist(), strict=True
        ):
            out.setdefault(int(u), set()).add(int(i))
        return out
    return None


def evaluate_embeddings(
    data_dir: str | Path,
    model: LoadedPinnerFormer | str | Path,
    date: str,
    ks: tuple[int, ...] = (10, 50, 100),
    window_days: int = 7,
    vocab: ActionVocabulary | None = None,
    max_users: int | None = None,
) -> dict:
    """Recall@K of the next ``window_days`` days' engagements for the three methods.

    Returns ``{"date", "window_days", "n_users", "recall": {method: {k: value}},
    "interest_precision": {...} or None}``.
    """
    vocab = vocab or load_manifest(data_dir).actions
    loaded = model if isinstance(model, LoadedPinnerFormer) else load_pinnerformer(model)
    item_table = ItemTable.load(data_dir)
    item_content = item_table.embeddings_np
    n_items = len(item_content)
    cutoff = day_end_ms(date)
    horizon = cutoff + window_days * MS_PER_DAY
    hist = load_histories(data_dir, end_time_ms=horizon, vocab=vocab, n_items=n_items)
    positive = np.isin(hist.action_types, vocab.positive_ids())
    user_of_event = hist.event_user_index()
    future = positive & (hist.times_ms >= cutoff)
    max_len = loaded.config.model.max_seq_len
    types, items, times, lengths = last_actions(hist, cutoff, max_len)
    has_future = np.bincount(user_of_event[future], minlength=hist.n_users) > 0
    rows = np.flatnonzero((lengths > 0) & has_future)
    if max_users is not None:
        rows = rows[:max_users]
    targets = [
        hist.item_ids[hist.offsets[r] : hist.offsets[r + 1]][
            future[hist.offsets[r] : hist.offsets[r + 1]]
        ]
        for r in rows
    ]
    k_max = max(ks)

    content = padded_embedding_table(item_content)
    user_vec = encode_users(
        loaded.encoder, content, types[rows], items[rows], times[rows], lengths[rows]
    )
    with torch.no_grad():
        item_vec = loaded.item_tower(torch.as_tensor(item_content)).numpy()
    top = {"pinnerformer": top_k_items(user_vec, item_vec, k_max)}

    # mean of the content embeddings of the user's positive actions in the same window
    pos_window = np.isin(types[rows], vocab.positive_ids())
    emb = item_content[np.where(pos_window, items[rows], 0)] * pos_window[..., None]
    mean = emb.sum(axis=1) / np.maximum(pos_window.sum(axis=1, keepdims=True), 1)
    unit_items = item_content / np.maximum(
        np.linalg.norm(item_content, axis=1, keepdims=True), 1e-12
    )
    top["mean_item_embedding"] = top_k_items(mean, unit_items, k_max)

    past_pos = positive & (hist.times_ms < cutoff)
    counts = np.bincount(hist.item_ids[past_pos], minlength=n_items)
    popular = np.argsort(-counts, kind="stable")[:k_max]
    top["popularity"] = np.broadcast_to(popular, (len(rows), len(popular)))

    result: dict = {
        "date": date,
        "window_days": window_days,
        "n_users": int(len(rows)),
        "n_items": n_items,
        "model_version": loaded.model_version,
        "recall": {m: {k: recall_at_k(t, targets, k) for k in ks} for m, t in top.items()},
        "interest_precision": None,
    }
    interests = read_long_term_interests(data_dir)
    if interests is not None:
        item_interest = item_table.top_interest
        user_sets = [interests.get(int(hist.user_ids[r]), set()) for r in rows]
        known = [i for i, s in enumerate(user_sets) if s]
        n_interests = len(np.unique(item_interest))
        result["interest_precision"] = {
            "n_users": len(known),
            "chance": float(
                np.mean([np.isin(item_interest, list(user_sets[i])).mean() for i in known])
            )
            if known
            else float("nan"),
            "n_interests": int(n_interests),
            **{
                m: {
                    k: interest_precision(t[known], item_interest, [user_sets[i] for i in known], k)
                    for k in ks
                }
                for m, t in top.items()
            },
        }
    return result
