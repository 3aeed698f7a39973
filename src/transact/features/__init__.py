"""Feature stage: realtime action sequences and batch user embeddings for the ranker.

Realtime path (paper 3.4.3, docs/realtime.md): ``events`` (validation, dead letters) ->
``processor`` (dedup, lateness, per-user sequence update) -> ``store`` (RocksDB or Redis,
offsets committed atomically with the values) -> ``reader`` (``SequenceReader``, the
``SequenceSource`` serving and training-consistency tests read). ``sources``/``kafka``
feed it, ``runner`` loops, ``cli`` is ``transact stream``.

Batch path: ``batch_embeddings`` (dated PinnerFormer user embeddings).
"""
