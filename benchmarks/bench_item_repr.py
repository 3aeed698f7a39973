"""Speed of learning item vectors from co-engagement (transact.data.item_repr), as JSON.

On a synthetic log of 10^6 engagements (20k users, 100k items in 1,000 clusters; a user
engages one cluster a day), in one run:

* co-engagement pairs: the vectorized builder vs the plain per-user loop (on a slice the
  loop finishes quickly), pairs per second and the ratio, outputs equal;
* item2vec: wall time and pair updates per second for the default budget;
* mf: wall time; its randomized SVD vs scipy's ARPACK ``svds`` (the plain path) on the
  same PPMI matrix, the ratio and the largest relative singular-value difference;
* quality: the share of sampled items whose nearest neighbour is in their cluster.

    OMP_NUM_THREADS=1 python benchmarks/bench_item_repr.py --json runs/bench/item_repr.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transact.data.item_repr import (
    ItemReprConfig,
    co_engagement_pairs,
    co_engagement_pairs_reference,
    learn_item_embeddings,
    ppmi_matrix,
    truncated_svd,
    truncated_svd_reference,
)


def synthetic_log(
    n_events: int, n_users: int, n_items: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[N]`` users, items, times: each user-day engages one of 1,000 item clusters."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_events)
    times = np.sort(rng.integers(1_700_000_000_000, 1_700_000_000_000 + 14 * 86_400_000, n_events))
    day = (times - times.min()) // 86_400_000
    per_cluster = n_items // 1000
    cluster = (users * 31 + day * 7) % 1000
    items = cluster * per_cluster + rng.zipf(1.5, n_events) % per_cluster
    return users, items, times


def _neighbours_in_cluster(emb: np.ndarray, per_cluster: int, n: int = 2000) -> float:
    rows = np.flatnonzero(np.abs(emb).sum(1) > 0)[:n]
    sim = emb[rows] @ emb.T
    sim[np.arange(rows.size), rows] = -np.inf
    return float(np.mean(sim.argmax(1) // per_cluster == rows // per_cluster))


def bench_item_repr(n_events: int = 1_000_000, n_users: int = 20_000, n_items: int = 100_000,
                    d_item: int = 32, reference_events: int = 100_000) -> dict[str, Any]:  # fmt: skip
    """Timings of the pair builder, item2vec and mf (see the module docstring)."""
    users, items, times = synthetic_log(n_events, n_users, n_items)
    cfg = ItemReprConfig()
    out: dict[str, Any] = {
        "n_events": n_events, "n_users": n_users, "n_items": n_items, "d_item": d_item,
        "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
    }  # fmt: skip

    t = time.perf_counter()
    centers, contexts = co_engagement_pairs(users, items, times, cfg.window)
    fast_s = time.perf_counter() - t
    sl = slice(0, reference_events)
    t = time.perf_counter()
    ref = co_engagement_pairs_reference(users[sl], items[sl], times[sl], cfg.window)
    ref_s = time.perf_counter() - t
    mine = co_engagement_pairs(users[sl], items[sl], times[sl], cfg.window)
    same = sorted(zip(*map(np.ndarray.tolist, mine), strict=True)) == sorted(
        zip(*map(np.ndarray.tolist, ref), strict=True)
    )
    out["pairs"] = {
        "n_pairs": int(centers.size),
        "vectorized_s": fast_s,
        "vectorized_events_per_s": n_events / fast_s,
        "reference_events": reference_events,
        "reference_events_per_s": reference_events / ref_s,
        "speedup": (n_events / fast_s) / (reference_events / ref_s),
        "reference_agrees": same,
    }

    per_cluster = n_items // 1000
    for method in ("item2vec", "mf"):
        t = time.perf_counter()
        emb = learn_item_embeddings(users, items, times, n_items, d_item, method, config=cfg)
        wall = time.perf_counter() - t
        row: dict[str, Any] = {"wall_s": wall, "neighbour_in_cluster": _neighbours_in_cluster(
            emb, per_cluster)}  # fmt: skip
        if method == "item2vec":
            epochs = min(max(round(cfg.pair_updates / centers.size), 1), cfg.max_epochs)
            row["pair_updates"] = epochs * centers.size
            row["pair_updates_per_s"] = epochs * centers.size / wall
        out[method] = row

    matrix = ppmi_matrix(centers, contexts, n_items, cfg.smoothing)
    t = time.perf_counter()
    _, s, _ = truncated_svd(matrix, d_item, 0, cfg.oversample, cfg.power_iterations)
    fast_s = time.perf_counter() - t
    t = time.perf_counter()
    _, s_ref = truncated_svd_reference(matrix, d_item)
    ref_s = time.perf_counter() - t
    out["svd"] = {
        "ppmi_nnz": int(matrix.nnz),
        "randomized_s": fast_s,
        "arpack_s": ref_s,
        "speedup": ref_s / fast_s,
        "max_rel_singular_value_diff": float(np.max(np.abs(s - s_ref) / s_ref)),
    }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", type=Path, required=True, help="write the figures here")
    p.add_argument("--events", type=int, default=1_000_000)
    a = p.parse_args()
    result = bench_item_repr(n_events=a.events)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
