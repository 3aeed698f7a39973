"""From a user's impressions to requests (chunks), and from actions to impressions.

What public logs lack and the paper's evaluation needs (4.2.1): the *chunks*, items shown
together, that HIT@K ranks. Two vectorized steps over the rows of a set of users (one
spill bucket, :mod:`.writer`), each documented in ``docs/data.md``:

* :func:`group_actions` (event logs, one row per action): actions become impressions.
  Rows of a (user, item) are taken in time order. An ``impression`` row opens an
  impression; an action attaches to the latest impression of the same (user, item) that
  opened at most ``window_ms`` before it. An action with no such impression is an
  *orphan*: the first orphan of a (user, item) opens an impression at its own time, and
  every later orphan within ``window_ms`` of the previous orphan joins it (logs without
  impression rows: each burst of actions on an item is one impression). An impression's
  labels are every action attached to it, so a click and a like on one item are one
  impression with two labels. :func:`group_actions_reference` is the plain loop it is
  tested against.
* :func:`form_requests`: impressions become requests. With a request-id column, a request
  is the impressions of one (user, request id). Without one, a user's impressions are cut
  into sessions at gaps over ``session_gap_ms`` and sessions into chunks of at most
  ``max_items``. A request's time is 1 ms before its first impression, so its own
  actions are labels and never in its sequence. Requests with fewer than ``min_items``
  impressions are not requests (their actions stay in the event log; the manifest counts
  them). Positions: the log's position column ranked within the request, else a seeded
  shuffle (every such request is then ``randomized``: no position effect exists).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transact.data.schema import MS_PER_DAY


@dataclass(frozen=True)
class RequestConfig:
    """How a log becomes impressions, requests and a train/eval split.

    Args:
        session_gap_ms: without a request-id column, a gap longer than this starts a new
            session (and request).
        max_items: without a request-id column, sessions are cut into chunks of at most
            this many impressions.
        min_items: requests with fewer impressions are dropped (counted in the manifest).
        eval_fraction: requests after the last ``eval_fraction`` quantile of request times
            (among those after the history) evaluate, the rest train (paper 4.1.1: the
            last week of three).
        history_days: the first days of the log feed sequences only: training starts
            this many days after the log's first UTC day (the world's warm-up days).
        window_ms: event logs: how long after an impression an action still belongs to
            it (and how far apart orphan actions of one impression may be).
        core_window_ms: a user is *core* at a request with a ``main_positive`` action in
            this window before it (paper 4.2.1: a save in the last 28 days).
    """

    session_gap_ms: int = 30 * 60_000
    max_items: int = 30
    min_items: int = 4
    eval_fraction: float = 0.2
    history_days: float = 0.0
    window_ms: int = 30 * 60_000
    core_window_ms: int = 28 * MS_PER_DAY

    def __post_init__(self) -> None:
        if self.session_gap_ms < 1:
            raise ValueError(
                f"RequestConfig.session_gap_ms must be >= 1, got {self.session_gap_ms}"
            )
        if self.max_items < 1 or self.min_items < 1:
            raise ValueError("RequestConfig.max_items and min_items must be >= 1")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(
                f"RequestConfig.eval_fraction must be in (0, 1), got {self.eval_fraction}"
            )
        if self.history_days < 0:
            raise ValueError(f"RequestConfig.history_days must be >= 0, got {self.history_days}")
        if self.window_ms < 0:
            raise ValueError(f"RequestConfig.window_ms must be >= 0, got {self.window_ms}")


def _runs(new_run: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run id of each row (0, 1, ...) and the first row of each run, from a start flag."""
    run = np.cumsum(new_run) - 1
    return run, np.flatnonzero(new_run)


def group_actions(
    users: np.ndarray,
    items: np.ndarray,
    times_ms: np.ndarray,
    is_impression: np.ndarray,
    window_ms: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign every action row to an impression (module docstring).

    Args:
        users / items / times_ms: ``[N]`` int64 rows of a log (one per action).
        is_impression: ``[N]`` bool, the row is the log's impression action.
        window_ms: how long an impression (or an orphan action) keeps attracting actions.

    Returns:
        ``impression [N]`` int64: the impression each row belongs to, numbered 0..I-1 in
        (user, item, time) order; ``opener [I]`` int64: the row that opened each one.
    """
    n = users.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # impression rows first among ties, so a click logged in the impression's millisecond
    # attaches to it
    order = np.lexsort((~is_impression, times_ms, items, users))
    u, it, t, imp = users[order], items[order], times_ms[order], is_impression[order]
    idx = np.arange(n)
    new_group = np.r_[True, (u[1:] != u[:-1]) | (it[1:] != it[:-1])]
    _, group_first = _runs(new_group)
    group_start = group_first[np.cumsum(new_group) - 1]
    last_imp = np.maximum.accumulate(np.where(imp, idx, -1))
    attached = ~imp & (last_imp >= group_start) & (t - t[np.maximum(last_imp, 0)] <= window_ms)
    orphan = ~imp & ~attached
    # orphans, in order: a new impression when first in the group or after a long gap
    o = np.flatnonzero(orphan)
    o_new = np.ones(o.size, bool)
    if o.size > 1:
        same_group = group_start[o[1:]] == group_start[o[:-1]]
        o_new[1:] = ~same_group | (t[o[1:]] - t[o[:-1]] > window_ms)
    opens = imp.copy()
    opens[o[o_new]] = True
    number = np.cumsum(opens) - 1  # impression id of each opener row (sorted order)
    impression = np.empty(n, np.int64)
    impression[opens] = number[opens]
    att = np.flatnonzero(attached)
    impression[att] = number[last_imp[att]]
    if o.size:
        chain_opener = o[np.maximum.accumulate(np.where(o_new, np.arange(o.size), 0))]
        follow = ~o_new
        impression[o[follow]] = number[chain_opener[follow]]
    out = np.empty(n, np.int64)
    out[order] = impression
    return out, order[np.flatnonzero(opens)]


def group_actions_reference(
    users: np.ndarray,
    items: np.ndarray,
    times_ms: np.ndarray,
    is_impression: np.ndarray,
    window_ms: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The plain per-row loop :func:`group_actions` is tested against."""
    n = len(users)
    order = sorted(range(n), key=lambda r: (users[r], items[r], times_ms[r], not is_impression[r]))
    impression = [-1] * n
    openers: list[int] = []
    last_imp: dict[tuple[int, int], tuple[int, int]] = {}  # (user, item) -> (time, id)
    last_orphan: dict[tuple[int, int], tuple[int, int]] = {}
    for r in order:
        key, t = (int(users[r]), int(items[r])), int(times_ms[r])
        if is_impression[r]:
            impression[r] = len(openers)
            openers.append(r)
            last_imp[key] = (t, impression[r])
        elif key in last_imp and t - last_imp[key][0] <= window_ms:
            impression[r] = last_imp[key][1]
        elif key in last_orphan and t - last_orphan[key][0] <= window_ms:
            impression[r] = last_orphan[key][1]
            last_orphan[key] = (t, impression[r])
        else:
            impression[r] = len(openers)
            openers.append(r)
            last_orphan[key] = (t, impression[r])
    return np.array(impression, np.int64), np.array(openers, np.int64)


@dataclass
class Requests:
    """Impressions cut into requests (rows index the input impressions).

    Fields:
        rows: ``[K]`` impressions kept (those in requests of >= ``min_items``), ordered by
            request then position.
        request: ``[K]`` request of each kept row, 0..R-1 in request-time order.
        position: ``[K]`` int16 display position within the request (0 = first).
        request_time_ms: ``[R]`` 1 ms before the request's first impression.
        first_row: ``[R]`` the first impression (in time) of each request.
        skipped_rows: impressions in requests under ``min_items``.
    """

    rows: np.ndarray
    request: np.ndarray
    position: np.ndarray
    request_time_ms: np.ndarray
    first_row: np.ndarray
    skipped_rows: int


def form_requests(
    users: np.ndarray,
    times_ms: np.ndarray,
    config: RequestConfig,
    rng: np.random.Generator,
    request_keys: np.ndarray | None = None,
    positions: np.ndarray | None = None,
    *,
    presorted: bool = False,
) -> Requests:
    """Cut impressions ``[N]`` (user, time) into requests (module docstring).

    Args:
        users / times_ms: ``[N]`` int64 impressions.
        config: gap, chunk size, minimum size.
        rng: draws the shuffled positions when the log has none.
        request_keys: ``[N]`` int64 request key per impression (a request is one (user,
            key)), or None to cut sessions by time.
        positions: ``[N]`` the log's display positions, or None.
        presorted: the rows are in (user, time) order already (skips a sort).
    """
    n = users.shape[0]
    if n == 0:
        empty = np.zeros(0, np.int64)
        return Requests(empty, empty, np.zeros(0, np.int16), empty, empty, 0)
    if request_keys is not None:
        order = np.lexsort((times_ms, request_keys, users))
        u, k = users[order], request_keys[order]
        new_chunk = np.r_[True, (u[1:] != u[:-1]) | (k[1:] != k[:-1])]
    else:
        order = np.arange(n) if presorted else np.lexsort((times_ms, users))
        u, t = (users, times_ms) if presorted else (users[order], times_ms[order])
        new_sess = np.r_[True, (u[1:] != u[:-1]) | (t[1:] - t[:-1] > config.session_gap_ms)]
        sess, sess_first = _runs(new_sess)
        rank = np.arange(n) - sess_first[sess]
        new_chunk = new_sess | ((rank % config.max_items) == 0)
    chunk, chunk_first = _runs(new_chunk)
    size = np.diff(np.r_[chunk_first, n])
    identity = presorted and request_keys is None  # ``order`` is 0..n-1: no gathers
    chunk_time = np.minimum.reduceat(times_ms if identity else times_ms[order], chunk_first)
    kept = np.flatnonzero(size >= config.min_items)
    kept = kept[np.argsort(chunk_time[kept], kind="stable")]  # request ids in time order
    request_of_chunk = np.full(chunk_first.size, -1, np.int64)
    request_of_chunk[kept] = np.arange(kept.size)
    req = request_of_chunk[chunk]
    keep = req >= 0
    rows, req = (np.flatnonzero(keep) if identity else order[keep]), req[keep]
    if positions is not None:
        by_position = np.lexsort((positions[rows], req))
    else:  # a seeded shuffle within each request: one sort of (request, random draw)
        by_position = np.argsort(
            req * (1 << 31) + rng.integers(0, 1 << 31, rows.size), kind="stable"
        )
    rows, req = rows[by_position], req[by_position]
    sizes = np.bincount(req, minlength=kept.size)
    position = (np.arange(rows.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)).astype(np.int16)
    return Requests(
        rows=rows,
        request=req,
        position=position,
        request_time_ms=chunk_time[kept] - 1,
        first_row=order[chunk_first[kept]],
        skipped_rows=int(n - keep.sum()),
    )
