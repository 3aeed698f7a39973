"""Feature stage: realtime action sequences for the ranker.

Realtime path (paper 3.4.3, docs/realtime.md): ``events`` (validation, dead letters) ->
``processor`` (dedup, lateness, per-user sequence update) -> ``store`` (RocksDB or Redis,
offsets committed atomically with the values) -> ``reader`` (``SequenceReader``, the
``SequenceSource`` serving and training-consistency tests read). ``sources``/``kafka``
feed it, ``runner`` loops, ``cli`` is ``transact stream``.

The batch user embeddings (PinnerFormer, daily) are their own stage:
:mod:`transact.embeddings`.
"""
