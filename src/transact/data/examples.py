"""Training and evaluation example sets: what the trainer and the evaluator read.

An :class:`ExampleSet` holds one row per impression (user, candidate item, request) with
labels, ground-truth probabilities and the ranker's categorical/numerical features, plus
one realtime sequence per *request* (examples of a request share it). It stores compact
numpy columns and action *item ids*, not embeddings; :meth:`ExampleSet.batches` gathers
embeddings from the item table per batch and yields :class:`~transact.data.schema.LabeledBatch`.

Sampling (paper 4.1.1 / 4.2.1): training sets may down-sample negatives to a fixed
positive:negative ratio (an example is positive when any head's label is 1); evaluation
sets keep every impression and usually only the randomized requests.

Example::

    train = build_example_set("runs/world", m.train_start_ms, m.train_end_ms,
                              negative_ratio=1.0, seed=0)
    for batch in train.batches(4096, shuffle=True, seed=0):
        loss = model(batch.inputs) ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm import tqdm

from transact.data.io import (
    DataError,
    ItemTable,
    UserTable,
    check_milliseconds,
    load_event_arrays,
    load_manifest,
    read_impressions,
)
from transact.data.item_stats import ItemStatsConfig, point_in_time_item_stats
from transact.data.schema import (
    DEFAULT_SEQ_LEN,
    MS_PER_HOUR,
    ActionVocabulary,
    FeatureSpec,
    LabeledBatch,
    RankerInputs,
    UserEmbeddingSource,
)
from transact.data.sequences import SequenceBuilder

ENGAGEMENTS = "engagements"
"""``include_actions`` default: the vocabulary's engagements (every action but the
impression; impressions would flood the sequence)."""

DEFAULT_SEQUENCE_ACTIONS: tuple[str, ...] = ActionVocabulary().engagements
"""The default vocabulary's (the simulated world's) engagements; a dataset's own are
``manifest.actions.engagements``."""

_ARRAYS = (
    "request_ids", "request_user_ids", "request_times_ms", "seq_types", "seq_items",
    "seq_times_ms", "example_request", "item_ids", "positions", "categorical", "numerical",
    "labels", "gt_probs", "is_core", "randomized", "top_interest", "item_embeddings",
)  # fmt: skip


@dataclass
class ExampleSet:
    """Compact columns of a set of ranking examples (see module docstring).

    Per request (R rows): ``request_ids``, ``request_user_ids``, ``request_times_ms``
    ``[R]``; ``seq_types`` ``[R, S]`` int8, ``seq_items`` ``[R, S]`` int32 (``PAD_ITEM``
    at padding), ``seq_times_ms`` ``[R, S]`` int64; ``user_embeddings`` ``[R, d_user]``
    float32 or None.
    Per example (N rows): ``example_request`` (row into the request arrays),
    ``item_ids``, ``positions``, ``categorical`` ``[N, F]`` int32 (local indices, 0 =
    missing), ``numerical`` ``[N, Nn]`` float32, ``labels`` ``[N, H]`` int8,
    ``gt_probs`` ``[N, H]`` float32, ``is_core``, ``randomized``, ``top_interest``.
    ``item_embeddings`` ``[n_items + 1, d_item]`` float32 with the trailing zero row.
    ``meta`` records how the set was built (range, sampling, counts).
    """

    feature_spec: FeatureSpec
    request_ids: np.ndarray
    request_user_ids: np.ndarray
    request_times_ms: np.ndarray
    seq_types: np.ndarray
    seq_items: np.ndarray
    seq_times_ms: np.ndarray
    example_request: np.ndarray
    item_ids: np.ndarray
    positions: np.ndarray
    categorical: np.ndarray
    numerical: np.ndarray
    labels: np.ndarray
    gt_probs: np.ndarray
    is_core: np.ndarray
    randomized: np.ndarray
    top_interest: np.ndarray
    item_embeddings: np.ndarray
    user_embeddings: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    _table: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def n_requests(self) -> int:
        return int(self.request_ids.shape[0])

    def example_order(self, *, shuffle: bool, seed: int) -> np.ndarray:
        """``[N]`` the order :meth:`batches` visits examples in (a permutation for a seed)."""
        if not shuffle:
            return np.arange(len(self), dtype=np.int64)
        return np.random.default_rng(seed).permutation(len(self))

    def batches(
        self, batch_size: int, *, shuffle: bool, seed: int = 0, start: int = 0
    ) -> Iterator[LabeledBatch]:
        """Yield :class:`LabeledBatch` es of ``batch_size`` (the last may be smaller).

        The order is a deterministic function of ``(shuffle, seed)``; ``start`` skips the
        first ``start`` examples of that order, so a resumed run continues at the same
        data position (batches then begin at ``start``, ``start + batch_size``, ...).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= start <= len(self):
            raise ValueError(f"start {start} outside 0..{len(self)}")
        order = self.example_order(shuffle=shuffle, seed=seed)
        for a in range(start, len(self), batch_size):
            yield self.batch(order[a : a + batch_size])

    def batch(self, rows: np.ndarray) -> LabeledBatch:
        """The :class:`LabeledBatch` of the given example rows ``[B]``."""
        if self._table is None:  # a private writable copy (the array may be memory-mapped)
            self._table = torch.from_numpy(np.array(self.item_embeddings, dtype=np.float32))
        table = self._table
        req = self.example_request[rows]
        seq_items = torch.from_numpy(self.seq_items[req].astype(np.int64))
        d_user = self.feature_spec.d_user
        if self.user_embeddings is not None:
            user_emb = torch.from_numpy(np.ascontiguousarray(self.user_embeddings[req]))
        else:
            user_emb = torch.zeros(len(rows), d_user, dtype=torch.float32)
        item_ids = torch.from_numpy(self.item_ids[rows].astype(np.int64))
        inputs = RankerInputs(
            categorical=torch.from_numpy(self.categorical[rows].astype(np.int64)),
            numerical=torch.from_numpy(np.ascontiguousarray(self.numerical[rows])),
            candidate_embedding=table[item_ids],
            candidate_item_id=item_ids,
            user_embedding=user_emb,
            action_types=torch.from_numpy(self.seq_types[req].astype(np.int64)),
            action_embeddings=table[seq_items],
            action_times_ms=torch.from_numpy(np.ascontiguousarray(self.seq_times_ms[req])),
            request_time_ms=torch.from_numpy(self.request_times_ms[req]),
        )
        return LabeledBatch(
            inputs=inputs,
            labels=torch.from_numpy(self.labels[rows].astype(np.float32)),
            user_ids=torch.from_numpy(self.request_user_ids[req]),
            request_ids=torch.from_numpy(self.request_ids[req]),
            item_ids=item_ids,
            is_core=torch.from_numpy(self.is_core[rows]),
            top_interest=torch.from_numpy(self.top_interest[rows].astype(np.int64)),
            gt_probs=torch.from_numpy(np.ascontiguousarray(self.gt_probs[rows])),
        )

    def label_rates(self) -> dict[str, float]:
        """Share of examples with each head's label 1."""
        return {
            h: float(self.labels[:, i].mean()) if len(self) else 0.0
            for i, h in enumerate(self.feature_spec.heads)
        }

    # ---------------------------------------------------------------- persistence
    def save(self, out_dir: Path | str) -> Path:
        """Write ``example_set.json`` + one ``.npy`` per column into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(out / f"{name}.npy", getattr(self, name))
        if self.user_embeddings is not None:
            np.save(out / "user_embeddings.npy", self.user_embeddings)
        info = {
            "format": "transact.example_set/1",
            "feature_spec": self.feature_spec.to_dict(),
            "has_user_embeddings": self.user_embeddings is not None,
            "n_examples": len(self),
            "n_requests": self.n_requests,
            "meta": self.meta,
        }
        (out / "example_set.json").write_text(json.dumps(info, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, path: Path | str, *, mmap: bool = False) -> ExampleSet:
        """Read a set written by :meth:`save` (``mmap=True`` maps the arrays lazily)."""
        p = Path(path)
        info_path = p / "example_set.json"
        if not info_path.exists():
            raise DataError(f"{info_path}: missing; is {p} an example set (transact data prepare)?")
        info = json.loads(info_path.read_text())
        mode: Literal["r"] | None = "r" if mmap else None
        arrays = {}
        for name in _ARRAYS:
            f = p / f"{name}.npy"
            if not f.exists():
                raise DataError(f"{f}: missing column {name!r} of the example set")
            arrays[name] = np.load(f, mmap_mode=mode)
        user_emb = (
            np.load(p / "user_embeddings.npy", mmap_mode=mode)
            if info["has_user_embeddings"]
            else None
        )
        out = cls(
            feature_spec=FeatureSpec.from_dict(info["feature_spec"]),
            user_embeddings=user_emb,
            meta=info.get("meta", {}),
            **arrays,
        )
        if len(out) != info["n_examples"]:
            raise DataError(f"{p}: {len(out)} examples on disk, manifest says {info['n_examples']}")
        return out


class RowSubset:
    """The rows ``rows`` of an ``ExampleSet``, in order, as a batch source (evaluation only)."""

    def __init__(self, source: Any, rows: np.ndarray) -> None:
        self.source = source
        self.rows = rows
        self.feature_spec = source.feature_spec

    def __len__(self) -> int:
        return len(self.rows)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, start: int = 0):
        if shuffle:
            raise ValueError("RowSubset is for evaluation: shuffle=False only")
        for a in range(start, len(self.rows), batch_size):
            yield self.source.batch(self.rows[a : a + batch_size])


def hour_of_day_index(request_time_ms: np.ndarray) -> np.ndarray:
    """``[B]`` request times -> the ``hour_of_day`` feature: UTC hour + 1 (0 = missing).

    The serving path must send the same value as context (train/serve consistency)."""
    return ((np.asarray(request_time_ms, dtype=np.int64) // MS_PER_HOUR) % 24 + 1).astype(np.int32)


def build_example_set(
    data_dir: Path | str,
    start_ms: int,
    end_ms: int,
    *,
    seq_len: int = DEFAULT_SEQ_LEN,
    negative_ratio: float | None = None,
    randomized_only: bool = False,
    user_embeddings: UserEmbeddingSource | None = None,
    seed: int = 0,
    include_actions: Sequence[str] | str | None = ENGAGEMENTS,
    progress: bool = False,
    heads: Sequence[str] | None = None,
) -> ExampleSet:
    """Build the examples of every impression with ``start_ms <= request_time_ms < end_ms``.

    Args:
        data_dir: a world dir.
        start_ms / end_ms: request-time range (e.g. the manifest's train or eval range).
        seq_len: realtime sequence length S (paper: 100).
        negative_ratio: keep ``round(negative_ratio * n_positive)`` negatives, drawn
            uniformly without replacement (training only; None keeps all). A positive has
            a 1 in any head's label.
        randomized_only: keep only randomized requests (offline evaluation, 4.2.1).
        user_embeddings: batch user embeddings, looked up per request (as of the day
            before it); ``feature_spec.d_user`` becomes its ``d_user`` (0 without one).
        seed: seed of the negative sampling.
        include_actions: action names kept in sequences; ``"engagements"`` (default) the
            vocabulary's engagements, ``"all"`` or None every action, impressions too.
        progress: show progress bars.
        heads: the label actions to keep as heads, in order (default: the manifest's);
            each must have labels in the dataset.

    Raises:
        DataError: impressions of unknown users or items, bad timestamps, empty range.
    """
    m = load_manifest(data_dir)
    spec = m.feature_spec
    if heads is None:
        heads = spec.heads
    missing = [h for h in heads if h not in spec.heads]
    if missing:
        raise DataError(
            f"{data_dir}/manifest.json: no labels of {missing} (label actions: {list(spec.heads)})"
        )
    heads = tuple(heads)
    spec = replace(spec, heads=heads)
    include_actions = sequence_actions(spec.actions, include_actions)
    items = ItemTable.load(data_dir)
    users = UserTable.load(data_dir)
    if end_ms <= start_ms:
        raise ValueError(f"end_ms {end_ms} must be after start_ms {start_ms}")
    if negative_ratio is not None and negative_ratio <= 0:
        raise ValueError(
            f"negative_ratio must be > 0 (positives:negatives = 1:r), got {negative_ratio}"
        )

    cols = [
        "request_id",
        "user_id",
        "request_time_ms",
        "item_id",
        "position",
        "randomized",
        "is_core",
        "surface",
    ]
    cols += [f"label_{h}" for h in heads] + [f"gt_prob_{h}" for h in heads]
    surfaces = pa.array(m.vocabularies.get("surface", []), pa.string())
    parts: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    n_read = 0
    for batch in tqdm(
        read_impressions(data_dir, start_ms, end_ms, heads=heads, columns=cols),
        desc="reading impressions", disable=not progress, unit="batch",
    ):  # fmt: skip
        n_read += batch.num_rows
        if randomized_only:
            batch = batch.filter(batch.column("randomized"))
        for c in cols:
            if c == "surface":
                idx = pc.index_in(batch.column(c), value_set=surfaces).fill_null(-1)
                parts[c].append(np.asarray(idx).astype(np.int32) + 1)
            else:
                parts[c].append(np.asarray(batch.column(c)))
    if n_read == 0:
        raise DataError(
            f"{data_dir}/impressions: no impressions with request time in [{start_ms}, {end_ms})"
        )
    imp = {c: np.concatenate(v) for c, v in parts.items()}
    n_all = int(imp["request_id"].shape[0])
    where_imp = Path(data_dir) / "impressions"
    check_milliseconds(imp["request_time_ms"], where_imp, "request_time_ms")
    bad = np.flatnonzero((imp["item_id"] < 0) | (imp["item_id"] >= len(items)))
    if bad.size:
        raise DataError(
            f"{where_imp}, column 'item_id', row {int(bad[0])} (of the range): item "
            f"{int(imp['item_id'][bad[0]])} not in the item table (0..{len(items) - 1})"
        )
    user_rows = users.rows(imp["user_id"], what=f"{where_imp}, column 'user_id'")
    labels = np.stack([imp[f"label_{h}"] for h in heads], axis=1).astype(np.int8)

    # negative down-sampling at a fixed ratio
    positive = labels.any(axis=1)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    keep: np.ndarray = np.ones(n_all, bool)
    if negative_ratio is not None:
        n_keep = min(n_neg, int(round(negative_ratio * n_pos)))
        neg_idx = np.flatnonzero(~positive)
        chosen = np.random.default_rng(seed).choice(neg_idx, size=n_keep, replace=False)
        keep = np.array(positive, dtype=bool)
        keep[chosen] = True
    sel = np.flatnonzero(keep)
    imp = {c: v[sel] for c, v in imp.items()}
    labels, user_rows = labels[sel], user_rows[sel]

    # one sequence per request
    req_ids, first, ex_req = np.unique(imp["request_id"], return_index=True, return_inverse=True)
    req_users = imp["user_id"][first].astype(np.int64)
    req_times = imp["request_time_ms"][first].astype(np.int64)
    vocab = spec.actions
    ev = load_event_arrays(data_dir, None, int(req_times.max()) if req_times.size else end_ms,
                           actions=include_actions, vocab=vocab, n_items=len(items))  # fmt: skip
    builder = SequenceBuilder(
        ev.user_ids, ev.item_ids, ev.action_types, ev.times_ms, seq_len=seq_len
    )
    n_r = req_ids.size
    seq_types = np.empty((n_r, seq_len), np.int8)
    seq_items = np.empty((n_r, seq_len), np.int32)
    seq_times = np.empty((n_r, seq_len), np.int64)
    step = 65_536
    for a in tqdm(range(0, n_r, step), desc="sequences", disable=not progress, unit="chunk"):
        b = min(a + step, n_r)
        builder.fetch_numpy(
            req_users[a:b], req_times[a:b], out=(seq_types[a:b], seq_items[a:b], seq_times[a:b])
        )
    user_emb = None
    if user_embeddings is not None:
        user_emb = np.asarray(user_embeddings.lookup(req_users, req_times), dtype=np.float32)
        if user_emb.shape != (n_r, user_embeddings.d_user):
            raise DataError(
                f"user_embeddings.lookup returned shape {user_emb.shape}, expected {(n_r, user_embeddings.d_user)}"
            )
        bad_rows = np.flatnonzero(~np.isfinite(user_emb).all(axis=1))
        if bad_rows.size:
            raise DataError(
                f"user_embeddings: NaN/inf for user {int(req_users[bad_rows[0]])} (request row {int(bad_rows[0])})"
            )

    item_ids = imp["item_id"].astype(np.int32)
    hour = hour_of_day_index(imp["request_time_ms"])
    cat_values = {
        "user_state": users.codes["user_state"][user_rows],
        "gender": users.codes["gender"][user_rows],
        "country": users.codes["country"][user_rows],
        "category": items.category[item_ids] + 1,
        "top_interest": items.top_interest[item_ids] + 1,
        "surface": imp["surface"],
        "hour_of_day": hour,
    }
    num_values = item_statistics(data_dir, m, items, item_ids, imp["request_time_ms"])
    for feat in spec.categorical:
        if feat.name not in cat_values:
            raise DataError(
                f"{data_dir}/manifest.json: categorical feature {feat.name!r} has no builder"
            )
        v = cat_values[feat.name]
        if v.size and (v.min() < 0 or v.max() >= feat.cardinality):
            row = int(np.flatnonzero((v < 0) | (v >= feat.cardinality))[0])
            raise DataError(
                f"feature {feat.name!r}: value {int(v[row])} at example {row} outside 0..{feat.cardinality - 1}"
            )
    for n in spec.numerical:
        if n.name not in num_values:
            raise DataError(
                f"{data_dir}/manifest.json: numerical feature {n.name!r} has no builder"
            )
    categorical = (
        np.stack([cat_values[c.name] for c in spec.categorical], axis=1).astype(np.int32)
        if spec.categorical else np.zeros((sel.size, 0), np.int32)
    )  # fmt: skip
    numerical = (
        np.stack([num_values[n.name] for n in spec.numerical], axis=1).astype(np.float32)
        if spec.numerical else np.zeros((sel.size, 0), np.float32)
    )  # fmt: skip
    out_spec = replace(
        spec, seq_len=seq_len, d_user=user_embeddings.d_user if user_embeddings else 0
    )
    meta = {
        "data_dir": str(data_dir),
        "dataset": m.dataset,
        "start_ms": int(start_ms),
        "end_ms": int(end_ms),
        "seq_len": seq_len,
        "include_actions": list(include_actions) if include_actions is not None else None,
        "negative_ratio": negative_ratio,
        "randomized_only": randomized_only,
        "seed": seed,
        "impressions_in_range": n_read,
        "after_randomized_filter": n_all,
        "positives": n_pos,
        "negatives": n_neg,
        "negatives_kept": int(sel.size - n_pos),
        "examples": int(sel.size),
        "requests": int(n_r),
    }
    return ExampleSet(
        feature_spec=out_spec,
        request_ids=req_ids.astype(np.int64),
        request_user_ids=req_users,
        request_times_ms=req_times,
        seq_types=seq_types,
        seq_items=seq_items,
        seq_times_ms=seq_times,
        example_request=ex_req.astype(np.int32),
        item_ids=item_ids,
        positions=imp["position"].astype(np.int16),
        categorical=categorical,
        numerical=numerical,
        labels=labels,
        gt_probs=np.stack([imp[f"gt_prob_{h}"] for h in heads], axis=1).astype(np.float32),
        is_core=imp["is_core"].astype(bool),
        randomized=imp["randomized"].astype(bool),
        top_interest=items.top_interest[item_ids].astype(np.int32),
        item_embeddings=items.embedding_table().numpy(),
        user_embeddings=user_emb,
        meta=meta,
    )


def sequence_actions(
    actions: ActionVocabulary, include: Sequence[str] | str | None
) -> tuple[str, ...] | None:
    """``include_actions`` as names: ``"engagements"`` -> the vocabulary's engagements,
    ``"all"`` / None -> None (every action); a list is checked against the vocabulary."""
    if include is None or include == "all":
        return None
    if include == ENGAGEMENTS:
        return actions.engagements
    if isinstance(include, str):
        include = (include,)
    for name in include:
        actions.id(name)  # raises naming the unknown action
    return tuple(include)


def item_statistics(
    data_dir: Path | str,
    manifest: Any,
    items: ItemTable,
    item_ids: np.ndarray,
    request_times_ms: np.ndarray,
) -> dict[str, np.ndarray]:
    """``{"quality", "log_popularity"}`` ``[N]`` of the examples' items.

    A dataset whose ``extra.item_statistics`` mode is ``point_in_time`` (imported logs)
    gets them from the impressions strictly before each request
    (:mod:`transact.data.item_stats`: no target leakage); ``static`` (the simulated
    world, whose items have true attributes) reads ``items.parquet``.
    """
    config = ItemStatsConfig.from_dict(manifest.extra.get("item_statistics"))
    if config.mode == "static" or item_ids.size == 0:
        return {
            "quality": items.quality[item_ids],
            "log_popularity": items.log_popularity[item_ids],
        }
    label_cols = [f"label_{a}" for a in config.positive_labels]
    parts: dict[str, list[np.ndarray]] = {"item": [], "time": [], "engaged": []}
    end = int(request_times_ms.max()) + 1
    cols = ["item_id", "request_time_ms", *label_cols]
    for batch in read_impressions(data_dir, None, end, heads=manifest.heads, columns=cols):
        parts["item"].append(np.asarray(batch.column("item_id")))
        parts["time"].append(np.asarray(batch.column("request_time_ms")))
        engaged = np.zeros(batch.num_rows, bool)
        for c in label_cols:
            engaged |= np.asarray(batch.column(c)) > 0
        parts["engaged"].append(engaged)
    shown = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in parts.items()}
    quality, popularity = point_in_time_item_stats(
        shown["item"], shown["time"], shown["engaged"], item_ids, request_times_ms, config
    )
    return {"quality": quality, "log_popularity": np.log(popularity).astype(np.float32)}


def build_split(
    data_dir: Path | str,
    split: str,
    *,
    seq_len: int = DEFAULT_SEQ_LEN,
    negative_ratio: float | None = None,
    user_embeddings: UserEmbeddingSource | None = None,
    seed: int = 0,
    include_actions: Sequence[str] | str | None = ENGAGEMENTS,
    progress: bool = False,
    heads: Sequence[str] | None = None,
) -> ExampleSet:
    """The paper's sets: ``"train"`` (train range, optional negative down-sampling) or
    ``"eval"`` (eval range, randomized requests only, never down-sampled)."""
    m = load_manifest(data_dir)
    if split == "train":
        return build_example_set(
            data_dir, m.train_start_ms, m.train_end_ms, seq_len=seq_len,
            negative_ratio=negative_ratio, user_embeddings=user_embeddings, seed=seed,
            include_actions=include_actions, progress=progress, heads=heads,
        )  # fmt: skip
    if split == "eval":
        if negative_ratio is not None:
            raise ValueError(
                "evaluation data is never down-sampled: drop negative_ratio for split 'eval'"
            )
        return build_example_set(
            data_dir, m.eval_start_ms, m.eval_end_ms, seq_len=seq_len, randomized_only=True,
            user_embeddings=user_embeddings, seed=seed, include_actions=include_actions,
            progress=progress, heads=heads,
        )  # fmt: skip
    raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
