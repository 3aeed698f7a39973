"""The sequence-encoder registry: one name per row of Tables 1 and 3 (and TransAct itself).

``build_sequence_encoder(name, spec, **overrides)`` builds any encoder from the
:class:`~transact.data.schema.FeatureSpec` (d_item, seq_len, action vocabulary) plus config
overrides (field names of :class:`TransActConfig` for the transformer encoders, of
:class:`BaselineConfig` for the others). ``"none"`` means no sequence encoder and returns
``None`` (the ranker then has no sequence input).

Baseline choices (paper 4.2.2, 4.3.2, Chen et al. 2019 for BST):

* ``avg_pool``: mean of the action item embeddings.
* ``wdl_seq``: the same mean, used by the ranker as a wide (linear) feature.
* ``cnn``: 1-d CNN, 256 channels, kernel 4, stride 1, max over windows.
* ``rnn`` / ``lstm``: 2 layers, hidden 256, last hidden state.
* ``vanilla_transformer``: the transformer over item embeddings only (no action types, no
  early fusion), 2 layers, 1 head, hidden (FFN) 32, compressed like TransAct.
* ``bst`` / ``bst_positive``: Behavior Sequence Transformer: candidate appended as the
  last token, a time-difference positional encoding (linear projection of the action's
  age, as the paper's Appendix B reads BST), 1 layer, 8 heads, FFN 4d, dropout 0.2, all
  output columns concatenated; no action types. ``bst_positive`` reads only positive
  actions (``spec.actions.positive``).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from transact.data.schema import FeatureSpec
from transact.models.baselines import AveragePooling, BaselineConfig, CNNEncoder, RecurrentEncoder
from transact.models.config_utils import coerce_fields
from transact.models.sequence import SequenceEncoder
from transact.models.transact import TransAct, TransActConfig

SEQUENCE_ENCODERS = (
    "none",
    "transact",
    "avg_pool",
    "cnn",
    "rnn",
    "lstm",
    "vanilla_transformer",
    "bst",
    "bst_positive",
    "wdl_seq",
)


def _transformer_defaults(name: str, spec: FeatureSpec) -> dict[str, Any]:
    if name == "transact":
        return {}
    if name == "vanilla_transformer":
        return {"use_action_types": False, "fusion": "none", "time_window_max_ms": 0}
    bst = {
        "use_action_types": False,
        "fusion": "append",
        "positional_encoding": "linear_age",
        "num_layers": 1,
        "num_heads": 8,
        "dim_feedforward": 4 * spec.d_item,
        "dropout": 0.2,
        "compression": "all_cols",
        "time_window_max_ms": 0,
    }
    if name == "bst_positive":
        bst["attend_action_types"] = spec.actions.positive_ids()
    return bst


def transformer_encoder_config(name: str, spec: FeatureSpec, **overrides: Any) -> TransActConfig:
    """The :class:`TransActConfig` behind a transformer encoder name (``transact``,
    ``vanilla_transformer``, ``bst``, ``bst_positive``), with ``overrides`` applied last."""
    base = TransActConfig.from_spec(spec)
    _check_fields(name, TransActConfig, overrides)
    overrides = coerce_fields(TransActConfig, overrides, f"encoder {name!r} override")
    return replace(base, **{**_transformer_defaults(name, spec), **overrides})


def _check_fields(name: str, cls: type, overrides: dict[str, Any]) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"encoder {name!r}: unknown override(s) {unknown}; {cls.__name__} fields: "
            f"{sorted(known)}"
        )


def build_sequence_encoder(
    name: str, spec: FeatureSpec, **overrides: Any
) -> SequenceEncoder | None:
    """Build sequence encoder ``name`` for ``spec``; ``"none"`` returns ``None``.

    Args:
        name: one of :data:`SEQUENCE_ENCODERS`.
        spec: the ranker's feature spec (d_item, seq_len, actions).
        overrides: config fields to change, e.g. ``compression="max_pool"``.

    Example::

        enc = build_sequence_encoder("transact", spec, fusion="append")
        z = enc(action_types, action_embeddings, action_times_ms, request_time_ms, cand)
    """
    if name == "none":
        if overrides:
            raise ValueError(f"encoder 'none' takes no overrides, got {sorted(overrides)}")
        return None
    config = sequence_encoder_config(name, spec, **overrides)
    if isinstance(config, TransActConfig):
        return TransAct(config)
    if name in ("avg_pool", "wdl_seq"):
        return AveragePooling(config, wide=name == "wdl_seq")
    if name == "cnn":
        return CNNEncoder(config)
    return RecurrentEncoder(config, cell=name)


def sequence_encoder_config(
    name: str, spec: FeatureSpec, **overrides: Any
) -> TransActConfig | BaselineConfig:
    """The resolved config of sequence encoder ``name`` (not ``none``) for ``spec``: the
    encoder's defaults for the spec, then ``overrides`` (checked and coerced)."""
    if name in ("transact", "vanilla_transformer", "bst", "bst_positive"):
        return transformer_encoder_config(name, spec, **overrides)
    if name in ("avg_pool", "wdl_seq", "cnn", "rnn", "lstm"):
        _check_fields(name, BaselineConfig, overrides)
        overrides = coerce_fields(BaselineConfig, overrides, f"encoder {name!r} override")
        return BaselineConfig(**{"d_item": spec.d_item, "seq_len": spec.seq_len, **overrides})
    raise ValueError(f"unknown sequence encoder {name!r}; known: {list(SEQUENCE_ENCODERS)}")


def effective_overrides(name: str, spec: FeatureSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``overrides`` that change encoder ``name``'s config for ``spec``
    (an override equal to the encoder's default, such as the paper's 24 h time window
    spelled out, is dropped): two override sets build the same encoder exactly when their
    effective overrides are equal."""
    if name == "none" or not overrides:
        return dict(overrides)
    default = sequence_encoder_config(name, spec)
    resolved = sequence_encoder_config(name, spec, **overrides)
    return {k: v for k, v in overrides.items() if getattr(resolved, k) != getattr(default, k)}
