"""Real logs in the world-dir layout: MovieLens and any CSV/Parquet log with a column map.

Public logs lack what TransAct needs (paper 4.1.1): action types, item content
embeddings and shown-together chunks. The adapters make them (``docs/data.md``), one
module per concern:

* :mod:`.movielens`: MovieLens releases (every GroupLens layout, RecBole atomic files),
  ratings -> actions by :class:`RatingMapping`.
* :mod:`.event_log`: any action log with a :class:`LogColumns` map.
* :mod:`.normalized`: the normalized log (:class:`LogInput`, :class:`ItemInput`) that both
  readers produce; :mod:`.source_files`: their checked CSV/Parquet readers.
* :mod:`.item_content`: item content embeddings (sentence model + PCA, genre fallback).
* :mod:`.writer`: :func:`write_log_world`, the normalized log cut into requests and
  written as a world dir (:class:`RequestConfig`).

Example::

    from transact.data.adapters import import_movielens
    import_movielens("../shared/datasets/movielens-100k", "runs/ml100k")
"""

from transact.data.adapters.event_log import LogColumns, import_log
from transact.data.adapters.movielens import RatingMapping, import_movielens
from transact.data.adapters.normalized import ItemInput, LogInput
from transact.data.adapters.writer import RequestConfig, write_log_world

__all__ = [
    "ItemInput",
    "LogColumns",
    "LogInput",
    "RatingMapping",
    "RequestConfig",
    "import_log",
    "import_movielens",
    "write_log_world",
]
