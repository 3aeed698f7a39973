"""The normalized log: the one shape every log reader produces and the world writer takes.

A reader (:mod:`.movielens`, :mod:`.event_log`) turns its source files into a
:class:`LogInput` (one row per action) and an :class:`ItemInput` (the item side);
:func:`transact.data.adapters.writer.write_log_world` turns those into a world dir.
Action names are those of :data:`LOG_ACTIONS`; the ranker's heads are :data:`HEADS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transact.data.schema import ActionVocabulary

LOG_ACTIONS = ActionVocabulary(
    names=("impression", "closeup", "click", "repin", "hide", "tag"),
    positive=("closeup", "click", "repin", "tag"),
)
HEADS = ("click", "repin", "hide")


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
