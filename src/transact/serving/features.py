"""Per-request feature assembly: stores -> one request's host tensors (:class:`RequestTensors`).

For a request (user, candidate item ids, request time, context features) the assembler
reads the user's realtime sequence (``SequenceSource``), the batch user embedding
(``UserEmbeddingSource``), user attributes, and each candidate's item features through the
hybrid cache; it fills the FeatureSpec's categorical/numerical columns by group (user
columns from the user, item columns from the candidate, context columns from the
request). A feature source that is down degrades the request instead of failing it: the
sequence becomes empty, the embedding zeros, and the source's name goes into ``degraded``.
Unknown item ids and bad context values raise :class:`BadRequest` naming the field.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from transact.data.schema import (
    MS_PER_HOUR,
    PAD_ITEM,
    FeatureSpec,
    SequenceSource,
    UserEmbeddingSource,
)
from transact.serving.item_cache import HybridItemCache
from transact.serving.ranker import RequestTensors

log = logging.getLogger("transact.serving")


def hour_of_day_index(request_time_ms: int) -> int:
    """The ``hour_of_day`` context feature of a request time: the training builder's rule
    (``transact.data.examples.hour_of_day_index``: UTC hour + 1, 0 = missing)."""
    try:
        from transact.data.examples import hour_of_day_index as build
    except ImportError:  # the data stage's builder is not installed: same formula
        return int((request_time_ms // MS_PER_HOUR) % 24 + 1)
    return int(build(np.array([request_time_ms], dtype=np.int64))[0])


def _hour_of_day_indices(request_times_ms: np.ndarray) -> np.ndarray:
    """:func:`hour_of_day_index` of ``[R]`` request times at once."""
    try:
        from transact.data.examples import hour_of_day_index as build
    except ImportError:  # the data stage's builder is not installed: same formula
        return ((request_times_ms // MS_PER_HOUR) % 24 + 1).astype(np.int64)
    return np.asarray(build(request_times_ms), dtype=np.int64)


class BadRequest(ValueError):
    """Client error; ``field`` names the request field (``candidates[3]``, ``context.surface``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UserAttributeSource(Protocol):
    """User attributes by FeatureSpec name (categorical local index or numerical value)."""

    def attributes(self, user_id: int) -> Mapping[str, float]: ...


class NoUserAttributes:
    """Every user attribute missing (categorical 0, numerical 0)."""

    def attributes(self, user_id: int) -> Mapping[str, float]:
        return {}


class UserTableAttributes:
    """User attributes from the data stage's ``UserTable`` (its ``codes``: 0 = unknown).

    A user missing from the table gets every attribute missing (a new user), not an error.
    """

    def __init__(self, users: object) -> None:
        self.users = users

    def attributes(self, user_id: int) -> Mapping[str, float]:
        try:
            row = int(self.users.rows(np.array([user_id]))[0])  # type: ignore[attr-defined]
        except ValueError:
            return {}
        codes = self.users.codes  # type: ignore[attr-defined]
        return {name: int(values[row]) for name, values in codes.items()}


@dataclass
class ItemFeatures:
    """Item features as dense arrays over item index ``0..n-1``.

    Args:
        embeddings: ``[n, d_item]`` float32 content embeddings.
        categorical: name -> ``[n]`` int64 local index (0 = missing), item-group features.
        numerical: name -> ``[n]`` float32, item-group features.
    """

    embeddings: np.ndarray
    categorical: dict[str, np.ndarray] = field(default_factory=dict)
    numerical: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return int(self.embeddings.shape[0])

    @classmethod
    def from_item_table(cls, items: object, spec: FeatureSpec) -> ItemFeatures:
        """From the data stage's ``ItemTable``: item-group features read by name.

        Categorical item features (``category``, ``top_interest``) are the table's column
        shifted by one (0 = missing), numerical ones the column as is (``log_popularity``
        is ``ItemTable.log_popularity``), as ``transact.data.examples`` builds them for
        training. A spec feature the table cannot supply raises naming it.
        """
        cats: dict[str, np.ndarray] = {}
        nums: dict[str, np.ndarray] = {}
        for c in spec.categorical:
            if c.group != "item":
                continue
            if not hasattr(items, c.name):
                raise ValueError(f"item feature {c.name!r}: the item table has no such column")
            cats[c.name] = np.asarray(getattr(items, c.name), dtype=np.int64) + 1
        for n in spec.numerical:
            if n.group != "item":
                continue
            if hasattr(items, n.name):  # ItemTable.log_popularity is a property
                nums[n.name] = np.asarray(getattr(items, n.name), dtype=np.float32)
            elif n.name == "log_popularity" and hasattr(items, "popularity"):
                pop = np.asarray(items.popularity, dtype=np.float32)
                nums[n.name] = np.log(np.maximum(pop, 1e-12)).astype(np.float32)
            else:
                raise ValueError(f"item feature {n.name!r}: the item table has no such column")
        emb = np.asarray(items.embeddings_np, dtype=np.float32)  # type: ignore[attr-defined]
        return cls(embeddings=emb, categorical=cats, numerical=nums)


class ItemFeatureStore:
    """Item rows ``[d_item | item categorical | item numerical]`` behind the hybrid cache.

    Args:
        features: the item arrays (the cache's loader reads them on a miss).
        spec: the served FeatureSpec (fixes the column order).
        memory_rows / disk_path: see :class:`HybridItemCache`.
    """

    def __init__(
        self,
        features: ItemFeatures,
        spec: FeatureSpec,
        memory_rows: int = 100_000,
        disk_path: str | Path | None = None,
    ) -> None:
        if features.embeddings.shape[1] != spec.d_item:
            raise ValueError(
                f"item embeddings have width {features.embeddings.shape[1]}, spec d_item={spec.d_item}"
            )
        self.spec = spec
        self.n_items = features.n_items
        self.cat_names = [c.name for c in spec.categorical if c.group == "item"]
        self.num_names = [n.name for n in spec.numerical if n.group == "item"]
        for name in self.cat_names:
            if name not in features.categorical:
                raise ValueError(f"item feature {name!r} missing from ItemFeatures.categorical")
        for name in self.num_names:
            if name not in features.numerical:
                raise ValueError(f"item feature {name!r} missing from ItemFeatures.numerical")
        self._features = features
        width = spec.d_item + len(self.cat_names) + len(self.num_names)
        self.cache = HybridItemCache(width, self._load_rows, memory_rows, disk_path)

    def _load_rows(self, ids: np.ndarray) -> np.ndarray:
        f = self._features
        cols = [f.embeddings[ids]]
        cols += [f.categorical[n][ids, None].astype(np.float32) for n in self.cat_names]
        cols += [f.numerical[n][ids, None] for n in self.num_names]
        return np.concatenate(cols, axis=1)

    def check_ids(self, item_ids: np.ndarray, field: str) -> None:
        bad = np.flatnonzero((item_ids < 0) | (item_ids >= self.n_items))
        if bad.size:
            i = int(bad[0])
            raise BadRequest(
                f"{field}[{i}]",
                f"unknown item id {int(item_ids[i])} (known: 0..{self.n_items - 1}); "
                f"{bad.size} unknown in total",
            )

    def rows(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[n]`` known ids -> embeddings ``[n, d]``, categorical ``[n, Fi]``, numerical ``[n, Ni]``."""
        r = self.cache.get(item_ids)
        d, fc = self.spec.d_item, len(self.cat_names)
        return r[:, :d], r[:, d : d + fc].astype(np.int64), r[:, d + fc :]


@dataclass
class AssembledRequest:
    tensors: RequestTensors
    degraded: list[str]


class FeatureAssembler:
    """Builds :class:`RequestTensors` for one request from the feature sources.

    Args:
        spec: the served FeatureSpec.
        items: candidate and action item features.
        sequences: realtime sequence source (None: every request ranks without one and is
            flagged ``realtime_sequence``).
        user_embeddings: batch user embeddings (None: zeros; flagged only when it fails).
        user_attributes: user categorical/numerical attributes by name.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        items: ItemFeatureStore,
        sequences: SequenceSource | None = None,
        user_embeddings: UserEmbeddingSource | None = None,
        user_attributes: UserAttributeSource | None = None,
    ) -> None:
        self.spec = spec
        self.items = items
        self.sequences = sequences
        self.user_embeddings = user_embeddings
        self.user_attributes = user_attributes or NoUserAttributes()
        self._cat_by_name = {c.name: (i, c) for i, c in enumerate(spec.categorical)}
        self._num_by_name = {n.name: (i, n) for i, n in enumerate(spec.numerical)}

    def assemble(
        self,
        user_id: int,
        item_ids: np.ndarray,
        request_time_ms: int,
        context: Mapping[str, float] | None = None,
    ) -> AssembledRequest:
        spec = self.spec
        item_ids = np.asarray(item_ids, dtype=np.int64)
        self.items.check_ids(item_ids, "candidates")
        b = item_ids.shape[0]
        degraded: list[str] = []
        categorical = np.zeros((b, len(spec.categorical)), dtype=np.int64)
        numerical = np.zeros((b, len(spec.numerical)), dtype=np.float32)
        context = dict(context or {})
        if "hour_of_day" in self._cat_by_name and "hour_of_day" not in context:
            context["hour_of_day"] = hour_of_day_index(request_time_ms)
        self._fill_named(categorical, numerical, context, "context", "context")
        try:
            attrs = self.user_attributes.attributes(user_id)
        except Exception as exc:
            log.warning("user attributes unavailable for user %d: %s", user_id, exc)
            degraded.append("user_attributes")
            attrs = {}
        self._fill_named(categorical, numerical, attrs, "user", "user_attributes", client=False)
        emb, icat, inum = self.items.rows(item_ids)
        for j, name in enumerate(self.items.cat_names):
            categorical[:, self._cat_by_name[name][0]] = icat[:, j]
        for j, name in enumerate(self.items.num_names):
            numerical[:, self._num_by_name[name][0]] = inum[:, j]

        s = spec.seq_len
        types = np.zeros((1, s), dtype=np.int64)
        action_items = np.full((1, s), PAD_ITEM, dtype=np.int64)
        times = np.zeros((1, s), dtype=np.int64)
        if self.sequences is None:
            degraded.append("realtime_sequence")
        else:
            try:
                seq = self.sequences.fetch(
                    np.array([user_id], dtype=np.int64), np.array([request_time_ms], np.int64)
                )
                types = np.asarray(seq.action_types, dtype=np.int64)[:, :s]
                action_items = np.asarray(seq.action_item_ids, dtype=np.int64)[:, :s]
                times = np.asarray(seq.action_times_ms, dtype=np.int64)[:, :s]
            except Exception as exc:  # StoreUnavailableError, timeouts, anything: degrade
                log.warning("realtime sequence unavailable for user %d: %s", user_id, exc)
                degraded.append("realtime_sequence")
        action_emb = np.zeros((1, s, spec.d_item), dtype=np.float32)
        valid = (types[0] != 0) & (action_items[0] >= 0) & (action_items[0] < self.items.n_items)
        stale = (types[0] != 0) & ~valid
        if stale.any():  # an action on an item the table no longer has: drop it, say so
            log.warning("user %d: %d actions on unknown items ignored", user_id, int(stale.sum()))
            types[0, stale] = 0
            degraded.append("action_items")
        if valid.any():
            action_emb[0, valid] = self.items.rows(action_items[0, valid])[0]

        user_emb = np.zeros((1, spec.d_user), dtype=np.float32)
        if self.user_embeddings is not None and spec.d_user > 0:
            try:
                got = np.asarray(
                    self.user_embeddings.lookup(
                        np.array([user_id], np.int64), np.array([request_time_ms], np.int64)
                    ),
                    dtype=np.float32,
                ).reshape(1, -1)
                if got.shape != user_emb.shape or not np.isfinite(got).all():
                    raise ValueError(f"bad user embedding shape {got.shape} or non-finite")
                user_emb = got
            except Exception as exc:
                log.warning("user embedding unavailable for user %d: %s", user_id, exc)
                degraded.append("user_embedding")
        tensors = RequestTensors(
            categorical=torch.from_numpy(categorical),
            numerical=torch.from_numpy(numerical),
            candidate_embedding=torch.from_numpy(np.ascontiguousarray(emb)),
            candidate_item_id=torch.from_numpy(item_ids.copy()),
            user_embedding=torch.from_numpy(user_emb),
            action_types=torch.from_numpy(np.ascontiguousarray(types)),
            action_embeddings=torch.from_numpy(action_emb),
            action_times_ms=torch.from_numpy(np.ascontiguousarray(times)),
            request_time_ms=torch.tensor([request_time_ms], dtype=torch.int64),
        )
        return AssembledRequest(tensors, degraded)

    def assemble_many(
        self,
        user_ids: np.ndarray,
        request_times_ms: np.ndarray,
        offsets: np.ndarray,
        item_ids: np.ndarray,
        context: Mapping[str, float] | None = None,
    ) -> list[AssembledRequest]:
        """:meth:`assemble` for R requests at once, with one read per feature source.

        Request ``i`` is user ``user_ids[i]`` at ``request_times_ms[i]`` ranking
        ``item_ids[offsets[i]:offsets[i + 1]]`` (``offsets`` ``[R + 1]``); ``context`` is
        the same for all (``hour_of_day`` is derived per request unless given). One
        sequence-store multi-get, one item-cache read for all candidates and all actions,
        one user-embedding lookup and one attribute read per distinct user replace R of
        each; the result equals calling :meth:`assemble` per request (tested), with each
        request's tensors as views of batch-wide arrays. A failing source degrades the
        requests it concerns (all of them for one failed read), as :meth:`assemble` does.
        """
        spec = self.spec
        users = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        times = np.asarray(request_times_ms, dtype=np.int64).reshape(-1)
        offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
        item_ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        r_n = users.shape[0]
        if times.shape[0] != r_n or offsets.shape[0] != r_n + 1 or offsets[-1] != item_ids.size:
            raise ValueError("assemble_many: need R users and times, R + 1 offsets ending at N")
        bad = np.flatnonzero((item_ids < 0) | (item_ids >= self.items.n_items))
        if bad.size:
            i = int(bad[0])
            r = int(np.searchsorted(offsets, i, side="right") - 1)
            self.items.check_ids(item_ids[offsets[r] : offsets[r + 1]], f"requests[{r}].candidates")
        row_request = np.repeat(np.arange(r_n), np.diff(offsets))
        degraded: list[list[str]] = [[] for _ in range(r_n)]
        categorical = np.zeros((item_ids.size, len(spec.categorical)), dtype=np.int64)
        numerical = np.zeros((item_ids.size, len(spec.numerical)), dtype=np.float32)
        context = dict(context or {})
        derive_hour = "hour_of_day" in self._cat_by_name and "hour_of_day" not in context
        self._fill_named(categorical, numerical, context, "context", "context")
        if derive_hour and r_n:
            hours = _hour_of_day_indices(times)
            categorical[:, self._cat_by_name["hour_of_day"][0]] = hours[row_request]
        self._fill_users(categorical, numerical, users, row_request, degraded)
        emb, icat, inum = self.items.rows(item_ids)
        for j, name in enumerate(self.items.cat_names):
            categorical[:, self._cat_by_name[name][0]] = icat[:, j]
        for j, name in enumerate(self.items.num_names):
            numerical[:, self._num_by_name[name][0]] = inum[:, j]

        s = spec.seq_len
        types = np.zeros((r_n, s), dtype=np.int64)
        action_items = np.full((r_n, s), PAD_ITEM, dtype=np.int64)
        seq_times = np.zeros((r_n, s), dtype=np.int64)
        if self.sequences is None:
            for d in degraded:
                d.append("realtime_sequence")
        elif r_n:
            try:
                seq = self.sequences.fetch(users, times)
                types = np.asarray(seq.action_types, dtype=np.int64)[:, :s].copy()
                action_items = np.asarray(seq.action_item_ids, dtype=np.int64)[:, :s]
                seq_times = np.asarray(seq.action_times_ms, dtype=np.int64)[:, :s]
            except Exception as exc:  # StoreUnavailableError, timeouts, anything: degrade
                log.warning("realtime sequences unavailable for %d requests: %s", r_n, exc)
                for d in degraded:
                    d.append("realtime_sequence")
        action_emb = np.zeros((r_n, s, spec.d_item), dtype=np.float32)
        valid = (types != 0) & (action_items >= 0) & (action_items < self.items.n_items)
        stale = (types != 0) & ~valid
        if stale.any():  # actions on items the table no longer has: drop them, say so
            log.warning("%d actions on unknown items ignored", int(stale.sum()))
            types[stale] = 0
            for r in np.flatnonzero(stale.any(axis=1)).tolist():
                degraded[r].append("action_items")
        if valid.any():
            action_emb[valid] = self.items.rows(action_items[valid])[0]

        user_emb = np.zeros((r_n, spec.d_user), dtype=np.float32)
        if self.user_embeddings is not None and spec.d_user > 0 and r_n:
            try:
                got = np.asarray(self.user_embeddings.lookup(users, times), dtype=np.float32)
                if got.shape != user_emb.shape:
                    raise ValueError(f"bad user embedding shape {got.shape}")
                finite = np.isfinite(got).all(axis=1)
                user_emb[finite] = got[finite]
                for r in np.flatnonzero(~finite).tolist():
                    degraded[r].append("user_embedding")
            except Exception as exc:
                log.warning("user embeddings unavailable for %d requests: %s", r_n, exc)
                for d in degraded:
                    d.append("user_embedding")
        t = {
            "categorical": torch.from_numpy(categorical),
            "numerical": torch.from_numpy(numerical),
            "candidate_embedding": torch.from_numpy(np.ascontiguousarray(emb)),
            "candidate_item_id": torch.from_numpy(item_ids.copy()),
            "user_embedding": torch.from_numpy(user_emb),
            "action_types": torch.from_numpy(types),
            "action_embeddings": torch.from_numpy(action_emb),
            "action_times_ms": torch.from_numpy(np.ascontiguousarray(seq_times)),
            "request_time_ms": torch.from_numpy(times.copy()),
        }
        out = []
        for r, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)):
            rows = {
                k: t[k][a:b]
                for k in ("categorical", "numerical", "candidate_embedding", "candidate_item_id")
            }
            users_r = {k: v[r : r + 1] for k, v in t.items() if k not in rows}
            out.append(AssembledRequest(RequestTensors(**rows, **users_r), degraded[r]))
        return out

    def _fill_users(
        self,
        categorical: np.ndarray,
        numerical: np.ndarray,
        users: np.ndarray,
        row_request: np.ndarray,
        degraded: list[list[str]],
    ) -> None:
        """User attributes of :meth:`assemble_many`: read once per distinct user, written
        into the rows of that user's requests."""
        distinct, inverse = np.unique(users, return_inverse=True)
        ucat = np.zeros((distinct.size, categorical.shape[1]), dtype=np.int64)
        unum = np.zeros((distinct.size, numerical.shape[1]), dtype=np.float32)
        failed = np.zeros(distinct.size, dtype=bool)
        for k, user in enumerate(distinct.tolist()):
            try:
                attrs = self.user_attributes.attributes(user)
            except Exception as exc:
                log.warning("user attributes unavailable for user %d: %s", user, exc)
                failed[k] = True
                continue
            self._fill_named(
                ucat[k : k + 1], unum[k : k + 1], attrs, "user", "user_attributes", client=False
            )
        for r in np.flatnonzero(failed[inverse]).tolist():
            degraded[r].append("user_attributes")
        cat_cols = [i for i, c in enumerate(self.spec.categorical) if c.group == "user"]
        num_cols = [i for i, n in enumerate(self.spec.numerical) if n.group == "user"]
        categorical[:, cat_cols] = ucat[inverse[row_request]][:, cat_cols]
        numerical[:, num_cols] = unum[inverse[row_request]][:, num_cols]

    def _fill_named(
        self,
        categorical: np.ndarray,
        numerical: np.ndarray,
        values: Mapping[str, float],
        group: str,
        field: str,
        client: bool = True,
    ) -> None:
        """Write named feature values of ``group`` into every row; bad client values raise."""
        for name, value in values.items():
            where = f"{field}.{name}"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadRequest(where, f"must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise BadRequest(where, f"must be finite, got {value!r}")
            if name in self._cat_by_name:
                col, feat = self._cat_by_name[name]
                if feat.group != group:
                    if client:
                        raise BadRequest(where, f"{name!r} is a {feat.group} feature, not {group}")
                    continue
                if float(value) != int(value):
                    raise BadRequest(where, f"categorical index must be an integer, got {value!r}")
                if not 0 <= int(value) < feat.cardinality:
                    raise BadRequest(where, f"{int(value)} outside 0..{feat.cardinality - 1}")
                categorical[:, col] = int(value)
            elif name in self._num_by_name:
                col, nfeat = self._num_by_name[name]
                if nfeat.group != group:
                    if client:
                        raise BadRequest(where, f"{name!r} is a {nfeat.group} feature, not {group}")
                    continue
                numerical[:, col] = float(value)
            elif client:
                known = sorted(
                    [c.name for c in self.spec.categorical if c.group == group]
                    + [n.name for n in self.spec.numerical if n.group == group]
                )
                raise BadRequest(where, f"unknown {group} feature; known: {known}")
