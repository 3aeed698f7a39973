"""Batch user embeddings (PinnerFormer): training, daily generation, evaluation, hybrid helper.

Public API::

    from transact.embeddings import ensure_user_embeddings
    source = ensure_user_embeddings(data_dir, out_dir, preset="demo", seed=0)
    source.lookup(user_ids, request_time_ms)  # [B, 64], the day before each request

Lower level: :func:`transact.embeddings.train.train_pinnerformer`,
:func:`transact.embeddings.generate.generate_embeddings`,
:func:`transact.embeddings.evaluate.evaluate_embeddings`; the model is
:mod:`transact.models.pinnerformer`, the dated store :mod:`transact.embeddings.store`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ensure_user_embeddings"]


def __getattr__(name: str) -> Any:
    # lazy, so `transact --help` (which imports transact.embeddings.cli) does not load torch
    if name == "ensure_user_embeddings":
        from transact.embeddings.hybrid import ensure_user_embeddings

        return ensure_user_embeddings
    raise AttributeError(f"module 'transact.embeddings' has no attribute {name!r}")
