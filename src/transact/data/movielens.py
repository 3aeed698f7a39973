"""MovieLens entry point: ``prepare_movielens(source, out_dir)`` (see :mod:`.adapters`).

A thin name for callers that only want "a MovieLens release as a world dir"; the
mapping, request construction and item embeddings live in :mod:`transact.data.adapters`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transact.data.adapters import RatingMapping, RequestConfig, import_movielens

__all__ = ["RatingMapping", "RequestConfig", "prepare_movielens"]


def prepare_movielens(source: Path | str, out_dir: Path | str, **kwargs: Any) -> Path:
    """Convert the MovieLens release at ``source`` (GroupLens CSV or RecBole atomic files)
    into a world dir at ``out_dir``; keyword arguments go to
    :func:`~transact.data.adapters.import_movielens` (``d_item``, ``embeddings``,
    ``rating_mapping``, ``requests``, ``seed``)."""
    return import_movielens(source, out_dir, **kwargs)
