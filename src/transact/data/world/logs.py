"""What one environment step logs, as numpy columns and as Arrow tables of ``data/schema.py``.

A :class:`StepResult` holds three column dicts: the shown impressions (one row per item
shown), the events (every impression, then each engagement) and the requests (one row
per request: time spent, feed quality, session). Its ``*_table`` methods give exactly the
rows ``generate_world`` writes, in :func:`~transact.data.schema.impressions_schema`,
:func:`~transact.data.schema.events_schema` and
:func:`~transact.data.schema.requests_schema`, so the events of a step can be fed to the
realtime stream processor (``transact.features``) unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transact.data.schema import events_schema, impressions_schema, requests_schema
from transact.data.world.config import ACTIONS, SURFACES

IMPRESSION_COLUMNS = (
    "request_id", "user_id", "request_time_ms", "item_id", "position", "randomized",
    "is_core", "top_interest", "source",
    "label_closeup", "label_click", "label_repin", "label_hide",
    "gt_prob_closeup", "gt_prob_click", "gt_prob_repin", "gt_prob_hide",
)  # fmt: skip
"""Columns of :attr:`StepResult.impressions` (``[M]`` each, sorted by request, position)."""

EVENT_COLUMNS = ("request_id", "position", "user_id", "item_id", "action", "timestamp_ms")
"""Columns of :attr:`StepResult.events` (``action``: id in the world's ActionVocabulary)."""

REQUEST_COLUMNS = (
    "request_id", "user_id", "session_id", "request_time_ms", "n_shown", "randomized",
    "session_start", "continued", "time_spent_ms", "feed_quality", "satisfaction",
)  # fmt: skip
"""Columns of :attr:`StepResult.requests` (``[R]`` each)."""


@dataclass
class StepResult:
    """The logs of one round (or, concatenated, of a day).

    Attributes:
        impressions: :data:`IMPRESSION_COLUMNS`; labels int8, ground truth float32 for
            all four actions (the tables keep the heads'), ``top_interest`` of the item
            (impression diversity), ``source`` the candidate generator
            (:data:`~transact.data.world.config.CANDIDATE_SOURCES`).
        events: :data:`EVENT_COLUMNS`, sorted by time (stable).
        requests: :data:`REQUEST_COLUMNS`: ``time_spent_ms`` is the time-spent proxy
            (browsing plus closeup dwell), ``feed_quality`` the mean relevance of the
            shown items, ``satisfaction`` the user's recent satisfaction after it.
    """

    impressions: dict[str, np.ndarray] = field(default_factory=dict)
    events: dict[str, np.ndarray] = field(default_factory=dict)
    requests: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_impressions(self) -> int:
        return int(self.impressions["request_id"].size) if self.impressions else 0

    @staticmethod
    def concat(parts: list[StepResult]) -> StepResult:
        """One result holding the rows of ``parts`` in order (events re-sorted by time)."""
        parts = [p for p in parts if p.impressions]
        if not parts:
            return StepResult()

        def cat(name: str) -> dict[str, np.ndarray]:
            cols = getattr(parts[0], name).keys()
            return {c: np.concatenate([getattr(p, name)[c] for p in parts]) for c in cols}

        events = cat("events")
        order = np.argsort(events["timestamp_ms"], kind="stable")
        return StepResult(
            cat("impressions"), {k: v[order] for k, v in events.items()}, cat("requests")
        )

    def impressions_table(self, heads: tuple[str, ...]) -> pa.Table:
        """Rows in ``impressions_schema(heads)``, by (request time, request id, position)."""
        schema = impressions_schema(heads)
        if not self.impressions:
            return schema.empty_table()
        imp = self.impressions
        order = np.lexsort((imp["position"], imp["request_id"], imp["request_time_ms"]))
        cols: dict[str, pa.Array] = {
            c: pa.array(imp[c][order])
            for c in ("request_id", "user_id", "request_time_ms", "item_id", "position",
                      "randomized", "is_core")
        }  # fmt: skip
        cols["surface"] = _constant_string(SURFACES[0], order.size)
        for h in heads:
            cols[f"label_{h}"] = pa.array(imp[f"label_{h}"][order].astype(np.int8))
            cols[f"gt_prob_{h}"] = pa.array(imp[f"gt_prob_{h}"][order].astype(np.float32))
        return pa.table({n: cols[n] for n in schema.names}).cast(schema)

    def events_table(self) -> pa.Table:
        """Rows in ``events_schema()``, time-ordered; ``event_id`` is
        ``"<request_id>:<position>:<action>"`` (unique)."""
        schema = events_schema()
        if not self.events:
            return schema.empty_table()
        ev = self.events
        names = pa.array(list(ACTIONS.names), pa.string())
        action = pa.DictionaryArray.from_arrays(
            pa.array(ev["action"].astype(np.int8) - 1), names
        ).cast(pa.string())
        event_id = pc.binary_join_element_wise(
            pc.cast(pa.array(ev["request_id"]), pa.string()),
            pc.cast(pa.array(ev["position"]), pa.string()),
            action,
            ":",
        )
        return pa.table(
            {
                "event_id": event_id,
                "user_id": pa.array(ev["user_id"]),
                "item_id": pa.array(ev["item_id"]),
                "action_type": action,
                "timestamp_ms": pa.array(ev["timestamp_ms"]),
                "surface": _constant_string(SURFACES[0], ev["user_id"].size),
            },
            schema=schema,
        )

    def requests_table(self) -> pa.Table:
        """Rows in ``requests_schema()``, by (request time, request id)."""
        schema = requests_schema()
        if not self.requests:
            return schema.empty_table()
        req = self.requests
        order = np.lexsort((req["request_id"], req["request_time_ms"]))
        return pa.table({n: pa.array(req[n][order]) for n in schema.names}).cast(schema)


def event_rows(
    request_ids: np.ndarray,
    position: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    labels: dict[str, np.ndarray],
    times: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The events of ``[M]`` impressions: each impression (at ``times["impression"]``),
    then each action whose label is set, at its time; sorted by time (stable).

    Returns :data:`EVENT_COLUMNS` with ``action`` the id in the world's vocabulary.
    """
    parts = [("impression", np.ones(users.size, bool))]
    parts += [(a, labels[a]) for a in ("closeup", "click", "repin", "hide")]
    idx = [np.flatnonzero(mask) for _, mask in parts]
    events = {
        "request_id": np.concatenate([request_ids[i] for i in idx]),
        "position": np.concatenate([position[i] for i in idx]),
        "user_id": np.concatenate([users[i] for i in idx]),
        "item_id": np.concatenate([items[i] for i in idx]),
        "action": np.concatenate(
            [np.full(i.size, ACTIONS.id(a), np.int8) for (a, _), i in zip(parts, idx, strict=True)]
        ),
        "timestamp_ms": np.concatenate([times[a][i] for (a, _), i in zip(parts, idx, strict=True)]),
    }
    order = np.argsort(events["timestamp_ms"], kind="stable")
    return {k: v[order] for k, v in events.items()}


def _constant_string(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array([value])).cast(
        pa.string()
    )
