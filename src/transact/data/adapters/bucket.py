"""Pass 2 of the import: one bucket of users' rows -> impressions and events.

A bucket holds every row of its users (:class:`~.spill.BucketSpill`), so everything that
needs a user's whole history is done here, vectorized over the bucket
(:meth:`BucketProcessor.process`): actions grouped into impressions and impressions into
requests (:mod:`.requests`), the core flag at each request (a ``main_positive`` action in
the 28 days before), every label of an impression as a ``label_<action>`` column, the
event log rows (an impression event at request time per shown item, every action at its
own time), and the statistics the writer needs after the pass (:class:`BucketStats`):
request times and sizes (the split and the prior), per-item counts (``items.parquet``),
per-user first time and active days (``users.parquet``).

Buckets are independent, so the writer processes a few at once on threads (numpy's sorts
and Arrow's kernels run without the GIL). Ids are local to a bucket (request ``0..R-1``
in time order, action serial ``0..E-1``); pass 3 adds each bucket's offset, so the ids
do not depend on which thread finished first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transact.data.adapters.requests import form_requests, group_actions
from transact.data.adapters.spill import time_order
from transact.data.io import DataError
from transact.data.item_stats import ItemStatsConfig
from transact.data.schema import MS_PER_DAY

if TYPE_CHECKING:
    from transact.data.adapters.writer import LogWorldWriter

KIND_CODE = {"impressions": 0, "actions": 1, "sequence_only": 2}
MAX_POSITION = np.iinfo(np.int16).max
POPULARITY_WINDOW_MS = ItemStatsConfig().popularity_window_ms


@dataclass
class BucketStats:
    """What the writer keeps of one bucket after pass 2.

    Fields:
        bucket: its index.
        n_requests / n_events: requests and action events it made (id offsets of the
            next buckets).
        skipped: impressions in requests under ``min_items``.
        req_times / req_sizes / req_engaged: ``[R]`` request time, impressions, engaged
            impressions (an impression with a positive label).
        item_shown / item_engaged / item_recent: ``[n_items]`` counts over its requests
            (``recent``: in the popularity window before the log's end).
        user_ids / user_first / user_days: ``[U]`` its users, first time, active days.
    """

    bucket: int
    n_requests: int
    n_events: int
    skipped: int
    req_times: np.ndarray
    req_sizes: np.ndarray
    req_engaged: np.ndarray
    item_shown: np.ndarray
    item_engaged: np.ndarray
    item_recent: np.ndarray
    user_ids: np.ndarray
    user_first: np.ndarray
    user_days: np.ndarray


POSITION_BITS = 16


def event_key(request: np.ndarray, position: np.ndarray) -> np.ndarray:
    """``[N]`` int64 key of impression events: ``request << 16 | position`` (positions are
    under 2^15, :data:`MAX_POSITION`). An action event's key is ``-1 - serial``, so one
    column carries what its event id is made of (``i<request>:<position>`` or
    ``e<serial>``, :func:`~transact.data.adapters.day_tables.event_ids`)."""
    return (request.astype(np.int64) << POSITION_BITS) | position.astype(np.int64)


def user_time_order(users: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``[N]`` the stable order of rows by (user, time): one sort of one int64 key
    ``user * span + (time - t_min)`` (numpy's ``lexsort`` of two keys is slower), with the
    user as ``user - u_min`` where that fits, else as its rank among the users."""
    if users.size == 0:
        return np.zeros(0, np.int64)
    t_min = int(times.min())
    span = int(times.max()) - t_min + 1
    u_min = int(users.min())
    if (int(users.max()) - u_min + 1) * span < 2**62:
        return np.argsort((users - u_min) * span + (times - t_min), kind="stable")
    uniq, rank = np.unique(users, return_inverse=True)
    if uniq.size * span >= 2**62:
        return np.lexsort((times, users))
    return np.argsort(rank.astype(np.int64) * span + (times - t_min), kind="stable")


class BucketProcessor:
    """Turns one bucket into spill tables and :class:`BucketStats` (module docstring).

    Args:
        writer: the writer (its vocabulary, labels, request config, seed, flags).
        item_dict: the item keys in item-table order (a row's item index is its key's
            position here).
        n_items: the item table's size.
        surfaces: the surface vocabulary.
        end: the log's end (popularity counts the window before it).
    """

    def __init__(
        self,
        writer: LogWorldWriter,
        item_dict: pa.Array,
        n_items: int,
        surfaces: list[str],
        end: int,
    ) -> None:
        self.w = writer
        self.item_dict = item_dict
        self.n_items = n_items
        self.surfaces = pa.array(surfaces, pa.string())
        self.end = end
        vocab = writer.actions
        self.impression_id = vocab.id(vocab.impression) if vocab.impression else 0
        # action id -> label bit (0 for actions that are no label)
        self.bit_of_action = np.zeros(vocab.size, np.int64)
        for k, a in enumerate(writer.labels):
            self.bit_of_action[vocab.id(a)] = 1 << k
        self.positive_mask = (
            int(self.bit_of_action[list(vocab.positive_ids())].sum()) if vocab.positive else 0
        )
        core = (
            [vocab.id(vocab.main_positive)] if vocab.main_positive else list(vocab.positive_ids())
        )
        self.core_actions = np.array(core, np.int64)

    def process(self, bucket: int, table: pa.Table) -> tuple[pa.Table, pa.Table, BucketStats]:
        """One bucket's rows -> (impressions, events) spill tables and its statistics.

        Both tables are in time order (impressions by request time, events by
        :func:`~.spill.time_order`) and hold numbers only (surfaces and actions as codes,
        ids local to the bucket, spilled as its part): spilling them by day is slicing,
        pass 3 merges sorted runs, makes the ids global and the strings once per day
        (:func:`~transact.data.adapters.day_tables.events_table`).
        """
        w = self.w
        users = np.asarray(table.column("user_id"))
        times = np.asarray(table.column("time_ms"))
        order = user_time_order(users, times)  # every step below reads rows in this order
        users, times = users[order], times[order]
        kind = np.asarray(table.column("kind"))[order]
        items = np.asarray(pc.index_in(table.column("item_key"), value_set=self.item_dict))[order]
        codes = np.asarray(table.column("code"))[order]
        # optional columns the log lacks are null columns of the spill: nothing to gather
        surface = np.zeros(users.size, np.int32)
        has_surface = table.column("surface").null_count < table.num_rows
        if has_surface:
            surface = np.asarray(
                pc.index_in(table.column("surface"), value_set=self.surfaces).fill_null(0)
            ).astype(np.int32)[order]
        rkeys = positions = randomized = None
        if w.has.get("request_keys"):
            col = table.column("request_key").combine_chunks()
            rkeys = np.asarray(pc.index_in(col, value_set=pc.unique(col))).astype(np.int64)[order]
        if w.has.get("positions"):
            positions = np.asarray(table.column("position"))[order]
        if w.has.get("randomized"):
            randomized = np.asarray(table.column("randomized"))[order]

        # impressions: rows of impression tables, and actions grouped into impressions
        imp_rows = np.flatnonzero(kind == KIND_CODE["impressions"])
        act_rows = np.flatnonzero(kind == KIND_CODE["actions"])
        seq_rows = np.flatnonzero(kind == KIND_CODE["sequence_only"])
        src, labels = imp_rows, codes[imp_rows]
        if act_rows.size:
            a = act_rows
            imp_id, first = group_actions(
                users[a], items[a], times[a], codes[a] == self.impression_id, w.rc.window_ms
            )
            labels_act = np.zeros(first.size, np.int64)
            np.bitwise_or.at(labels_act, imp_id, self.bit_of_action[codes[a]])
            src = np.concatenate([src, a[first]])  # the row that describes each impression
            labels = np.concatenate([labels, labels_act])
            by_row = np.argsort(src, kind="stable")  # back to (user, time) order
            src, labels = src[by_row], labels[by_row]
        req = form_requests(
            users[src],
            times[src],
            w.rc,
            np.random.default_rng([w.seed, bucket]),
            request_keys=rkeys[src] if rkeys is not None else None,
            positions=positions[src] if positions is not None else None,
            presorted=True,
        )
        if req.position.size and int(req.position.max()) >= MAX_POSITION:
            raise DataError(f"{w.dataset}: a request has over {MAX_POSITION} impressions")
        n_req = req.request_time_ms.size
        rows = src[req.rows]
        r_time = req.request_time_ms[req.request]
        rnd_req = np.ones(n_req, bool)
        if randomized is not None and rows.size:  # randomized when all its rows say so
            starts = np.flatnonzero(np.r_[True, req.request[1:] != req.request[:-1]])
            rnd_req = np.minimum.reduceat(randomized[rows], starts).astype(bool)
        surf_req = surface[src[req.first_row]]

        # events: label events of impression rows at their time, every action at its own
        ev_rows_parts, ev_action_parts = [], []
        labels_imp = codes[imp_rows]
        for k, name in enumerate(w.labels):
            hit = imp_rows[(labels_imp >> k) & 1 == 1]
            ev_rows_parts.append(hit)
            ev_action_parts.append(np.full(hit.size, w.actions.id(name), np.int64))
        acts = act_rows[codes[act_rows] != self.impression_id]
        ev_rows = np.concatenate([*ev_rows_parts, acts, seq_rows])
        ev_action = np.concatenate([*ev_action_parts, codes[acts], codes[seq_rows]])

        core = self._is_core(users[ev_rows], times[ev_rows], ev_action, users[src[req.first_row]],
                             req.request_time_ms)  # fmt: skip
        kept_labels = labels[req.rows]
        engaged = (kept_labels & self.positive_mask) != 0
        recent = r_time >= self.end - POPULARITY_WINDOW_MS
        n = self.n_items
        stats = BucketStats(
            bucket=bucket,
            n_requests=n_req,
            n_events=int(ev_rows.size),
            skipped=req.skipped_rows,
            req_times=req.request_time_ms,
            req_sizes=np.bincount(req.request, minlength=n_req),
            req_engaged=np.bincount(req.request, weights=engaged, minlength=n_req),
            item_shown=np.bincount(items[rows], minlength=n).astype(np.float64),
            item_engaged=np.bincount(items[rows], weights=engaged, minlength=n),
            item_recent=np.bincount(items[rows[recent]], minlength=n).astype(np.float64),
            **self._user_stats(users, times),
        )

        imp_cols: dict[str, Any] = {
            "request_id": req.request,  # local: pass 3 adds the bucket's offset
            "user_id": users[rows],
            "request_time_ms": r_time,
            "item_id": items[rows],
            "position": req.position,
            "randomized": rnd_req[req.request],
            "is_core": core[req.request],
            "surface": surf_req[req.request],
        }
        for k, name in enumerate(w.labels):
            imp_cols[f"label_{name}"] = ((kept_labels >> k) & 1).astype(np.int8)
        # the events in time order (stable: a user's keep theirs), so the day spill and
        # pass 3 need no sort of their own; each column is gathered once
        ev_time = np.concatenate([r_time, times[ev_rows]])
        order = time_order(ev_time, sorted_prefix=rows.size)  # impression events: by request
        ev_src = np.concatenate([rows, ev_rows])[order]
        events = {
            "user_id": users[ev_src],
            "item_id": items[ev_src],
            "action": np.concatenate(
                [np.full(rows.size, self.impression_id, np.int8), ev_action.astype(np.int8)]
            )[order],
            "timestamp_ms": ev_time[order],
            "surface": (
                np.concatenate([surf_req[req.request], surface[ev_rows]])[order]
                if has_surface
                else np.zeros(order.size, np.int32)
            ),
            # the event id in one number (:func:`event_key`): one column to sort and spill
            "event_key": np.concatenate(
                [event_key(req.request, req.position), -1 - np.arange(ev_rows.size)]
            )[order],
        }
        as_table = lambda cols: pa.table({k: pa.array(v) for k, v in cols.items()})  # noqa: E731
        return as_table(imp_cols), as_table(events), stats

    def _is_core(
        self,
        ev_users: np.ndarray,
        ev_times: np.ndarray,
        ev_actions: np.ndarray,
        req_users: np.ndarray,
        req_times: np.ndarray,
    ) -> np.ndarray:
        """``[R]`` a core action (``main_positive``) in the core window before each request."""
        keep = np.isin(ev_actions, self.core_actions)
        u, t = ev_users[keep], ev_times[keep]
        if u.size == 0 or req_users.size == 0:
            return np.zeros(req_users.size, bool)
        order = user_time_order(u, t)
        u, t = u[order], t[order]
        last = _last_before(u, t, req_users, req_times)
        return (last >= 0) & (t[np.maximum(last, 0)] >= req_times - self.w.rc.core_window_ms)

    @staticmethod
    def _user_stats(users: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
        """First time and active UTC days of each user, from rows in (user, time) order."""
        if users.size == 0:
            empty = np.zeros(0, np.int64)
            return {"user_ids": empty, "user_first": empty, "user_days": empty}
        new_user = np.r_[True, users[1:] != users[:-1]]
        starts = np.flatnonzero(new_user)
        day = times // MS_PER_DAY
        new_day = new_user | np.r_[True, day[1:] != day[:-1]]
        return {
            "user_ids": users[starts],
            "user_first": times[starts],
            "user_days": np.add.reduceat(new_day.astype(np.int64), starts),
        }


def _last_before(
    sorted_users: np.ndarray, sorted_times: np.ndarray, users: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """For each query (user, time), the index of that user's last row strictly before the
    time in rows sorted by (user, time), or -1 (one int64 key, one ``searchsorted``)."""
    everyone = np.unique(np.r_[sorted_users, users])
    base = int(min(sorted_times.min(), times.min()))
    span = int(max(sorted_times.max(), times.max())) - base + 2
    if everyone.size * span >= 2**62:
        raise ValueError(f"{everyone.size} users x time span {span} ms overflows the int64 key")
    keys = np.searchsorted(everyone, sorted_users) * span + (sorted_times - base)
    hi = np.searchsorted(keys, np.searchsorted(everyone, users) * span + (times - base), "left")
    prev = hi - 1
    ok = (prev >= 0) & (sorted_users[np.maximum(prev, 0)] == users)
    return np.where(ok, prev, -1)
