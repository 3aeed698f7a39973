"""Real logs in the world-dir layout: impression tables, event logs, MovieLens.

Public logs lack what TransAct needs (paper 4.1.1): action types, item content
embeddings and shown-together chunks. The adapters make them (``docs/data.md``), one
module per concern:

* :mod:`.impression_log`: one row per impression with 0/1 label columns
  (:func:`import_impressions`, :class:`ImpressionColumns`): short-video and feed logs.
* :mod:`.event_log`: one row per action (:func:`import_events`, :class:`EventColumns`),
  grouped into impressions by (user, item) within a window.
* :mod:`.movielens`: MovieLens releases (every GroupLens layout, RecBole atomic files),
  ratings -> actions by :class:`RatingMapping`.
* :mod:`.normalized`: what every reader produces (:class:`LogChunk`, :class:`ItemInput`)
  and the vocabulary a log declares (:func:`log_vocabulary`).
* :mod:`.log_source` (streaming CSV/Parquet in record batches, checked values),
  :mod:`.log_columns` (optional columns, item file), :mod:`.source_files` (whole-file
  readers for MovieLens and item files).
* :mod:`.requests`: actions -> impressions -> requests (:class:`RequestConfig`).
* :mod:`.item_content`: item representations (text, genre, id-string, learned).
* :mod:`.spill`, :mod:`.bucket`, :mod:`.day_tables`, :mod:`.writer`:
  :class:`LogWorldWriter`, the bounded-memory writer of the world dir (its spills, pass 2
  per bucket of users, pass 3 per day).

Example::

    from transact.data.adapters import ImpressionColumns, import_impressions
    import_impressions("log.parquet", "runs/sv", ImpressionColumns(
        labels=(("is_click", "click"), ("is_like", "like"), ("is_hate", "hate")),
        user="user_id", item="video_id", time="time_ms"), negative=("hate",))
"""

from transact.data.adapters.event_log import EventColumns, import_events
from transact.data.adapters.impression_log import ImpressionColumns, import_impressions
from transact.data.adapters.item_content import ItemEmbedder, ItemRepresentation
from transact.data.adapters.log_columns import ContextColumns, parse_pairs
from transact.data.adapters.movielens import RatingMapping, import_movielens
from transact.data.adapters.normalized import ItemInput, LogChunk, log_vocabulary
from transact.data.adapters.requests import RequestConfig
from transact.data.adapters.writer import LogWorldWriter

__all__ = [
    "ContextColumns",
    "EventColumns",
    "ImpressionColumns",
    "ItemEmbedder",
    "ItemInput",
    "ItemRepresentation",
    "LogChunk",
    "LogWorldWriter",
    "RatingMapping",
    "RequestConfig",
    "import_events",
    "import_impressions",
    "import_movielens",
    "log_vocabulary",
    "parse_pairs",
]
