"""Summary figures of a world dir: what ``transact data stats`` prints and writes.

Counts, per-head label rates (train / eval / randomized), the action mix of the event log,
the distribution of realtime-sequence lengths at request time, the core / non-core split
(paper 4.2.1), sessions and the time-spent proxy (simulated worlds), and with
``--signal`` the model-free realtime-signal check and the recency diagnostic. Streams
impressions; loads only engagement events for sequences.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transact.data.io import (
    load_event_arrays,
    load_manifest,
    partition_files,
    read_events,
    read_impressions,
)
from transact.data.schema import DEFAULT_SEQ_LEN
from transact.data.sequences import SequenceBuilder

ENGAGEMENTS = "engagements"


def world_stats(
    data_dir: Path | str,
    seq_len: int = DEFAULT_SEQ_LEN,
    sequence_actions: tuple[str, ...] | str | None = ENGAGEMENTS,
) -> dict[str, Any]:
    """Compute the summary of a world dir as a JSON-ready dict (see module docstring).

    ``sequence_actions``: the actions counted in sequence lengths; ``"engagements"``
    (default): the dataset vocabulary's, every action but the impression."""
    m = load_manifest(data_dir)
    heads = m.heads
    if sequence_actions == ENGAGEMENTS:
        sequence_actions = m.actions.engagements
    action_mix: Counter[str] = Counter()
    for batch in read_events(data_dir, columns=["action_type"]):
        vc = pc.value_counts(batch.column("action_type"))
        for entry in vc.to_pylist():
            action_mix[entry["values"]] += entry["counts"]

    cols = ["request_id", "user_id", "request_time_ms", "randomized", "is_core"]
    cols += [f"label_{h}" for h in heads] + [f"gt_prob_{h}" for h in heads]
    parts: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    for batch in read_impressions(data_dir, columns=cols, heads=heads):
        for c in cols:
            parts[c].append(np.asarray(batch.column(c)))
    imp = {c: np.concatenate(v) if v else np.zeros(0) for c, v in parts.items()}
    n_imp = int(imp["request_id"].shape[0])
    t = imp["request_time_ms"]
    splits = {
        "history": (t < m.train_start_ms),
        "train": (t >= m.train_start_ms) & (t < m.train_end_ms),
        "eval": (t >= m.eval_start_ms) & (t < m.eval_end_ms),
    }
    splits["eval_randomized"] = splits["eval"] & imp["randomized"].astype(bool)

    def rates(mask: np.ndarray) -> dict[str, Any]:
        n = int(mask.sum())
        out: dict[str, Any] = {
            "impressions": n,
            "requests": int(np.unique(imp["request_id"][mask]).size),
        }
        for h in heads:
            out[f"label_rate_{h}"] = float(imp[f"label_{h}"][mask].mean()) if n else 0.0
            gp = imp[f"gt_prob_{h}"][mask]
            out[f"mean_gt_prob_{h}"] = (
                float(np.nanmean(gp)) if n and np.isfinite(gp).any() else None
            )
        return out

    core = imp["is_core"].astype(bool)
    req_first = np.unique(imp["request_id"], return_index=True)[1]
    req_users, req_times = imp["user_id"][req_first], imp["request_time_ms"][req_first]
    core_users = np.unique(imp["user_id"][core])
    all_users = np.unique(imp["user_id"])

    ev = load_event_arrays(
        data_dir, actions=None if isinstance(sequence_actions, str) else sequence_actions
    )
    builder = SequenceBuilder(
        ev.user_ids, ev.item_ids, ev.action_types, ev.times_ms, seq_len=seq_len
    )
    lengths = builder.lengths(req_users, req_times)
    in_train = (req_times >= m.train_start_ms) & (req_times < m.train_end_ms)
    eval_req = (req_times >= m.eval_start_ms) & (req_times < m.eval_end_ms)

    edges = [e for e in (0, 1, 10, 25, 50, 75) if e < seq_len] + [seq_len, seq_len + 1]

    def length_summary(x: np.ndarray) -> dict[str, Any]:
        if x.size == 0:
            return {"requests": 0}
        return {
            "requests": int(x.size),
            "mean": float(x.mean()),
            "p10": float(np.percentile(x, 10)),
            "p50": float(np.percentile(x, 50)),
            "p90": float(np.percentile(x, 90)),
            "share_empty": float((x == 0).mean()),
            "share_full": float((x == seq_len).mean()),
            "histogram_edges": edges,
            "histogram": np.histogram(x, bins=edges)[0].tolist(),
        }

    total_events = sum(action_mix.values())
    return {
        "sessions": _session_summary(data_dir),
        "dataset": m.dataset,
        "data_dir": str(data_dir),
        "main_positive": m.actions.main_positive,
        "n_users": m.n_users,
        "n_items": m.n_items,
        "events": total_events,
        "impressions": n_imp,
        "requests": int(req_first.size),
        "mean_items_per_request": float(n_imp / max(req_first.size, 1)),
        "randomized_request_share": float(imp["randomized"][req_first].astype(bool).mean())
        if n_imp
        else 0.0,
        "action_mix": {
            a: {"count": c, "share": c / max(total_events, 1)} for a, c in action_mix.most_common()
        },
        "label_rates": {name: rates(mask) for name, mask in splits.items()},
        "core_split": {
            "impression_share_core": float(core.mean()) if n_imp else 0.0,
            "users_ever_core_share": float(core_users.size / max(all_users.size, 1)),
            "core": rates(core),
            "non_core": rates(~core),
        },
        "sequence_length": {
            "seq_len": seq_len,
            "actions": list(sequence_actions) if sequence_actions else "all",
            "train": length_summary(lengths[in_train]),
            "eval": length_summary(lengths[eval_req]),
        },
    }


def _session_summary(data_dir: Path | str) -> dict[str, Any] | None:
    """Sessions and the time-spent proxy from the simulator's ``requests/`` table (None
    for logs without one, e.g. imported real logs)."""
    if not (Path(data_dir) / "requests").is_dir():
        return None
    cols = ["user_id", "session_id", "request_time_ms", "time_spent_ms", "feed_quality"]
    parts: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    for _, path in partition_files(data_dir, "requests"):
        table = pq.read_table(path, columns=cols)
        for c in cols:
            parts[c].append(table.column(c).to_numpy())
    if not parts["user_id"]:
        return None
    req = {c: np.concatenate(v) for c, v in parts.items()}
    user_days = np.unique(req["user_id"] * 100_000 + req["request_time_ms"] // 86_400_000).size
    n_sessions = int(np.unique(req["session_id"]).size)
    return {
        "sessions": n_sessions,
        "requests_per_session": float(req["user_id"].size / max(n_sessions, 1)),
        "active_user_days": int(user_days),
        "time_spent_min_per_active_user_day": float(
            req["time_spent_ms"].sum() / 60_000 / max(user_days, 1)
        ),
        "mean_feed_quality": float(req["feed_quality"].mean()),
    }


def format_stats(stats: dict[str, Any]) -> str:
    """A short human-readable rendering of :func:`world_stats`."""
    lines = [
        f"{stats['dataset']}: {stats['n_users']:,} users, {stats['n_items']:,} items, "
        f"{stats['requests']:,} requests, {stats['impressions']:,} impressions, "
        f"{stats['events']:,} events ({stats['mean_items_per_request']:.1f} items/request, "
        f"{stats['randomized_request_share']:.1%} randomized)",
        "action mix: " + ", ".join(f"{a} {v['share']:.2%}" for a, v in stats["action_mix"].items()),
    ]
    for split, r in stats["label_rates"].items():
        rate = ", ".join(
            f"{k.removeprefix('label_rate_')} {v:.2%}"
            for k, v in r.items()
            if k.startswith("label_rate_")
        )
        lines.append(
            f"{split:>16}: {r['impressions']:,} impressions, {r['requests']:,} requests; {rate}"
        )
    cs = stats["core_split"]
    main = stats.get("main_positive")
    rate = f"label_rate_{main}"
    lines.append(
        f"core: {cs['impression_share_core']:.1%} of impressions, "
        f"{cs['users_ever_core_share']:.1%} of users ever core; {main} rate core "
        f"{cs['core'].get(rate, 0):.2%} vs non-core {cs['non_core'].get(rate, 0):.2%}"
    )
    sess = stats.get("sessions")
    if sess:
        lines.append(
            f"sessions: {sess['sessions']:,}, {sess['requests_per_session']:.2f} requests each; "
            f"time spent {sess['time_spent_min_per_active_user_day']:.1f} min per active "
            f"user-day; mean feed quality {sess['mean_feed_quality']:.3f}"
        )
    for split in ("train", "eval"):
        s = stats["sequence_length"][split]
        if s.get("requests"):
            lines.append(
                f"sequence length ({split}): mean {s['mean']:.1f}, p10/p50/p90 "
                f"{s['p10']:.0f}/{s['p50']:.0f}/{s['p90']:.0f}, empty {s['share_empty']:.1%}, "
                f"full {s['share_full']:.1%}"
            )
    return "\n".join(lines)


RECENCY_HORIZONS_MS = {"5min": 300_000, "1h": 3_600_000, "1d": 86_400_000, "1w": 604_800_000}
"""Action ages the recency diagnostic splits the realtime sequence at."""


def realtime_signal_report(data_dir: Path | str, seq_len: int = DEFAULT_SEQ_LEN) -> dict[str, Any]:
    """How much ranking signal recent actions carry, with model-free scores (no training).

    On the randomized evaluation requests, rank each request's items by model-free scores
    and report HIT@3 per head averaged over users (paper Eq. 4) with a paired t-test over
    users: ``random``; ``static`` (item quality and popularity, what a ranker without
    user context knows); ``daily_profile`` (static + similarity of the candidate to the
    mean embedding of the user's engagements before the request's UTC day: a stand-in for
    a daily batch embedding); ``realtime`` (daily_profile + similarity to the last hour's
    engagements - similarity to the last day's hides); and ``oracle`` (the ground-truth
    probability of the head). A world whose realtime score does not beat daily_profile
    gives a sequence model nothing to learn beyond a batch embedding.

    **Recency diagnostic** (``recency``): where in time the sequence's signal lies. The
    sequence's actions are cut by age (request time minus action time) into the bands
    ``[0, 5 min)``, ``[5 min, 1 h)``, ``[1 h, 1 day)``, ``[1 day, 1 week)`` and
    ``[1 week, inf)`` (:data:`RECENCY_HORIZONS_MS`). For a set B of bands the score is
    ``daily_profile + sum over b in B of (3 sim(candidate, mean embedding of the closeups,
    clicks and repins in b) - 3 sim(candidate, mean embedding of the hides in b))`` (sim:
    dot product of unit embeddings; an empty band adds 0; each band has its own mean, so
    old actions do not dilute recent ones). Its gain is ``HIT@3(score) -
    HIT@3(daily_profile)`` averaged over users (for hide, the reverse: fewer hides is a
    gain), where a hit counts the item's ground-truth probability when the data has it
    (the expected HIT@3: the same signal without label noise; ``target`` says which) and
    its label otherwise; ``se_*`` are standard errors of the gains over users. Per head the report gives ``gain_all`` (every band: the whole sequence of
    ``seq_len`` actions) and, for each horizon ``h`` in 5 min, 1 h, 1 day and 1 week:

    * ``share_younger[h] = gain(bands younger than h) / gain_all``: the share of the
      sequence's gain that actions younger than ``h`` carry on their own;
    * ``share_without_younger[h] = gain(bands at least h old) / gain_all``: the share left
      when actions younger than ``h`` are removed, which is what the paper's random
      time-window mask (3.3.4) leaves a model for a window of width ``h`` (its width is
      uniform in 0-24 h, so on average it keeps between the 0 and the 1-day figures).

    Shares are None when ``gain_all <= 0`` (no sequence signal to split) and are noisy
    when ``p_all_vs_daily_profile`` is large; the raw ``gain_younger`` /
    ``gain_without_younger`` are always given.
    """
    from scipy import stats as st

    from transact.data.examples import build_split

    ev = build_split(data_dir, "eval", seq_len=seq_len)
    if not len(ev):
        return {"requests": 0}
    vocab = ev.feature_spec.actions
    emb = ev.item_embeddings
    req = ev.example_request
    cand = emb[ev.item_ids]
    types = ev.seq_types
    times = ev.seq_times_ms
    seq_emb = emb[ev.seq_items]  # [R, S, d]
    t_req = ev.request_times_ms[:, None]
    age = t_req - times
    real = types != 0
    engaged = np.isin(types, vocab.positive_ids())
    hidden = np.isin(types, vocab.negative_ids())

    def similarity(mask: np.ndarray) -> np.ndarray:
        """``[N]`` candidate . mean embedding of the masked actions of its request."""
        m = mask[..., None]
        mean = (seq_emb * m).sum(1) / np.maximum(m.sum(1), 1)  # [R, d]
        return (cand * mean[req]).sum(1)

    num = {n.name: i for i, n in enumerate(ev.feature_spec.numerical)}
    static = np.zeros(len(ev), np.float32)
    if "quality" in num:
        q = ev.numerical[:, num["quality"]]
        static += 2 * (q - q.mean()) / max(float(q.std()), 1e-6)
    if "log_popularity" in num:
        static += 0.2 * ev.numerical[:, num["log_popularity"]]
    day_start = (t_req // 86_400_000) * 86_400_000
    daily = static + 3 * similarity(engaged & (times < day_start))
    realtime = (
        daily
        + 3 * similarity(engaged & (times >= t_req - 3_600_000))
        - 3 * similarity(hidden & (times >= t_req - 86_400_000))
    )

    edges = [0, *RECENCY_HORIZONS_MS.values(), np.inf]
    band_terms = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = real & (age >= lo) & (age < hi)
        band_terms.append(3 * similarity(engaged & inside) - 3 * similarity(hidden & inside))
    windows = {"all": daily + sum(band_terms)}
    for i, name in enumerate(RECENCY_HORIZONS_MS, start=1):
        windows[f"younger_{name}"] = daily + sum(band_terms[:i])
        windows[f"without_younger_{name}"] = daily + sum(band_terms[i:])
    users, user_of_req = np.unique(ev.request_user_ids, return_inverse=True)

    def hit3_per_user(score: np.ndarray, h: int, target: np.ndarray | None = None) -> np.ndarray:
        target = ev.labels[:, h] if target is None else target
        order = np.lexsort((-score, req))
        r = req[order]
        rank = np.arange(r.size) - np.searchsorted(r, r)
        top = rank < 3
        per_req = np.bincount(r[top], weights=target[order][top], minlength=ev.n_requests)
        return np.bincount(user_of_req, weights=per_req, minlength=users.size)

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {
        "requests": ev.n_requests,
        "users": int(users.size),
        "heads": {},
        "recency": {"horizons_ms": dict(RECENCY_HORIZONS_MS), "heads": {}},
    }
    for h, head in enumerate(ev.feature_spec.heads):
        scores = {
            "random": rng.random(len(ev)),
            "static": static,
            "daily_profile": daily,
            "realtime": realtime,
            "oracle": ev.gt_probs[:, h] if np.isfinite(ev.gt_probs[:, h]).all() else None,
        }
        if vocab.is_negative(head) and scores["oracle"] is not None:
            scores["oracle"] = -scores["oracle"]  # the best ranking shows the fewest hides
        hits = {k: hit3_per_user(v, h) for k, v in scores.items() if v is not None}
        p = float(st.ttest_rel(hits["realtime"], hits["daily_profile"]).pvalue)
        out["heads"][head] = {
            **{f"hit3_{k}": float(v.mean()) for k, v in hits.items()},
            "p_realtime_vs_daily_profile": p,
        }
        sign = -1.0 if vocab.is_negative(head) else 1.0
        # expected hits (ground truth) where the data has it: the same signal without the
        # label noise; the labels otherwise
        has_gt = bool(np.isfinite(ev.gt_probs[:, h]).all())
        target = ev.gt_probs[:, h].astype(np.float64) if has_gt else None
        base = hit3_per_user(daily, h, target)
        win_hits = {k: hit3_per_user(v, h, target) for k, v in windows.items()}
        gain = {k: sign * float((v - base).mean()) for k, v in win_hits.items()}
        gain_all = gain["all"]
        n_users = max(users.size, 1)
        se = {
            k: float((v - base).std(ddof=1) / np.sqrt(n_users)) if users.size > 1 else float("nan")
            for k, v in win_hits.items()
        }

        def share(x: float, total: float = gain_all) -> float | None:
            return x / total if total > 0 else None

        out["recency"]["heads"][head] = {
            "target": "ground_truth" if has_gt else "labels",
            "hit3_daily_profile": float(base.mean()),
            "gain_all": gain_all,
            "se_all": se["all"],
            "p_all_vs_daily_profile": float(st.ttest_rel(win_hits["all"], base).pvalue),
            "gain_younger": {n: gain[f"younger_{n}"] for n in RECENCY_HORIZONS_MS},
            "se_younger": {n: se[f"younger_{n}"] for n in RECENCY_HORIZONS_MS},
            "gain_without_younger": {n: gain[f"without_younger_{n}"] for n in RECENCY_HORIZONS_MS},
            "se_without_younger": {n: se[f"without_younger_{n}"] for n in RECENCY_HORIZONS_MS},
            "share_younger": {n: share(gain[f"younger_{n}"]) for n in RECENCY_HORIZONS_MS},
            "share_without_younger": {
                n: share(gain[f"without_younger_{n}"]) for n in RECENCY_HORIZONS_MS
            },
        }
    return out


def format_recency(report: dict[str, Any]) -> str:
    """The recency diagnostic of :func:`realtime_signal_report` as a few lines of text."""
    rec = report.get("recency", {}).get("heads", {})
    lines = []
    for head, r in rec.items():

        def fmt(d: dict[str, float | None]) -> str:
            return " ".join(f"{k} {'n/a' if v is None else f'{v:.0%}'}" for k, v in d.items())

        lines.append(
            f"recency/{head}: sequence gain {r['gain_all']:+.4f} (se {r['se_all']:.4f}) "
            f"{'expected ' if r['target'] == 'ground_truth' else ''}HIT@3 over daily profile "
            f"(p={r['p_all_vs_daily_profile']:.2g}); share in actions younger than: "
            f"{fmt(r['share_younger'])}; left without them: {fmt(r['share_without_younger'])}"
        )
    return "\n".join(lines)
