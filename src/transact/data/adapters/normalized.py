"""The normalized log: what every reader produces and the world writer takes.

A reader (:mod:`.impression_log`, :mod:`.event_log`, :mod:`.movielens`) streams its source
as :class:`LogChunk` s into :class:`~transact.data.adapters.writer.LogWorldWriter`, with
the log's :class:`~transact.data.schema.ActionVocabulary` and its *label actions* (the
actions an impression can carry as labels: the dataset's heads). The item side is an
:class:`ItemInput` when the log has an item file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from transact.data.schema import ActionVocabulary

KINDS = ("impressions", "actions", "sequence_only")
"""``impressions``: one row per impression, ``codes`` a bit mask of its labels (bit ``k`` =
``labels[k]``). ``actions``: one row per action (``codes`` = vocabulary ids), grouped into
impressions by the writer. ``sequence_only``: actions that feed sequences but belong to no
impression (MovieLens tags)."""


@dataclass
class LogChunk:
    """A batch of normalized log rows of one kind (:data:`KINDS`).

    Fields:
        kind: one of :data:`KINDS`.
        user_ids: ``[N]`` int64.
        item_keys: ``[N]`` the log's item ids (int64 or string Arrow array).
        times_ms: ``[N]`` int64 milliseconds.
        codes: ``[N]`` int64 label bit mask (impressions) or action id (the others).
        request_keys: ``[N]`` the log's request/session ids (int64 or string), or None.
        positions: ``[N]`` int64 display positions, or None.
        randomized: ``[N]`` bool (the request's order was shuffled), or None.
        surfaces: ``[N]`` string surface (tab, page) names, or None.
    """

    kind: str
    user_ids: np.ndarray
    item_keys: pa.Array
    times_ms: np.ndarray
    codes: np.ndarray
    request_keys: pa.Array | None = None
    positions: np.ndarray | None = None
    randomized: np.ndarray | None = None
    surfaces: pa.Array | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"LogChunk.kind {self.kind!r} not in {KINDS}")


@dataclass
class ItemInput:
    """Item side of a log: external ids (the item file's row order), texts to embed,
    genres (lists of strings) for the taxonomy."""

    external_ids: list[str]
    texts: list[str]
    genres: list[list[str]]
    extra: dict[str, Any] = field(default_factory=dict)


def log_vocabulary(
    labels: Sequence[str],
    *,
    negative: Sequence[str] = (),
    positive: Sequence[str] | None = None,
    impression: str = "impression",
    main_positive: str | None = None,
    main_negative: str | None = None,
    extra_actions: Sequence[str] = (),
) -> ActionVocabulary:
    """The vocabulary a log declares: ``impression`` first, then its label actions, then
    actions that only feed sequences (``extra_actions``).

    ``positive`` defaults to every label action that is not ``negative``;
    ``main_positive`` / ``main_negative`` default to the first positive / negative label
    action. Raises ``ValueError`` naming a bad name.
    """
    labels = tuple(labels)
    if not labels:
        raise ValueError("a log needs at least one label action")
    if impression in labels:
        raise ValueError(f"label action {impression!r} is the impression action's name")
    unknown = [a for a in negative if a not in labels]
    if unknown:
        raise ValueError(f"negative actions {unknown} are not label actions {list(labels)}")
    pos = tuple(a for a in labels if a not in negative) if positive is None else tuple(positive)
    unknown = [a for a in pos if a not in labels and a not in extra_actions]
    if unknown:
        raise ValueError(f"positive actions {unknown} are not actions of the log")
    main_pos = (
        main_positive if main_positive is not None else next((a for a in labels if a in pos), None)
    )
    main_neg = main_negative if main_negative is not None else next(iter(negative), None)
    return ActionVocabulary(
        names=(impression, *labels, *extra_actions),
        positive=pos,
        negative=tuple(negative),
        impression=impression,
        main_positive=main_pos,
        main_negative=main_neg,
    )
