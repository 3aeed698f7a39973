"""Pinnability, Pinterest's Homefeed ranker (paper 3.1, Figure 2), with a pluggable sequence encoder.

``RankerInputs`` -> consolidated categorical embedding lookup (3.4.2) ‖ batch-normalized
numerical features ‖ candidate item embedding ‖ (optional, off by default) hashed
item-id embedding of the candidate ‖ batch user embedding (PinnerFormer) ‖
sequence-encoder output (TransAct by default) -> full-rank DCN v2 -> MLP -> one logit per
action head. The WDL + seq baseline's pooled sequence is a wide feature: a linear map
added to the logits instead of a crossed input.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from transact.data.schema import CategoricalFeature, FeatureSpec, RankerInputs
from transact.models.baselines import BaselineConfig
from transact.models.config_utils import dataclass_from_dict
from transact.models.encoders import SEQUENCE_ENCODERS, build_sequence_encoder
from transact.models.item_ids import HashedItemEmbedding
from transact.models.layers import MLP, ConsolidatedEmbedding, CrossNetV2
from transact.models.sequence import gather_user_rows, is_tracing
from transact.models.transact import TransActConfig

CROSS_MODES = ("stacked", "parallel")
PRESETS = ("small", "paper")
_TRANSFORMER_ENCODERS = ("transact", "vanilla_transformer", "bst", "bst_positive")


@dataclass(frozen=True)
class PinnabilityConfig:
    """Ranker hyperparameters (everything except the inputs, which the FeatureSpec fixes).

    Args:
        encoder: sequence encoder name (:data:`transact.models.SEQUENCE_ENCODERS`);
            ``"none"`` is Pinnability without realtime sequence features.
        encoder_overrides: encoder config fields to change (``{"compression": "max_pool"}``).
        num_cross_layers: full-rank DCN v2 cross layers (0 = no cross).
        cross_mode: ``stacked`` (cross then MLP) or ``parallel`` (cross ‖ MLP, DCN v2).
        mlp_dims: hidden widths of the MLP before the heads.
        dropout: MLP dropout.
        use_user_embedding: feed the batch user embedding (PinnerFormer) when d_user > 0.
        use_user_features: False drops every categorical/numerical feature whose group is
            ``user`` (Table 2's last row).
        categorical_embedding_dim: size of every categorical embedding; 0 takes the spec's
            per-feature ``embedding_dim`` (which must then agree: one consolidated table).
        validate_inputs: check input ranges/finiteness in eager mode (errors name the
            feature and row); skipped automatically under torch.export/compile.
        item_id_embedding: size of a trainable embedding of the candidate's item id,
            hashed into ``item_id_buckets`` rows (:mod:`transact.models.item_ids`) and fed
            to the DCN beside the content embedding; 0 (default, the paper) = off. For
            logs without item content; the sequence keeps the content embeddings.
        item_id_buckets: rows of that table (collisions trade against memory).
    """

    encoder: str = "transact"
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    num_cross_layers: int = 2
    cross_mode: str = "stacked"
    mlp_dims: tuple[int, ...] = (256, 128)
    dropout: float = 0.0
    use_user_embedding: bool = True
    use_user_features: bool = True
    categorical_embedding_dim: int = 0
    validate_inputs: bool = True
    item_id_embedding: int = 0
    item_id_buckets: int = 65_536

    def __post_init__(self) -> None:
        if self.encoder not in SEQUENCE_ENCODERS:
            raise ValueError(
                f"PinnabilityConfig.encoder={self.encoder!r} not in {list(SEQUENCE_ENCODERS)}"
            )
        if self.encoder == "none":
            known: set[str] = set()
        elif self.encoder in _TRANSFORMER_ENCODERS:
            known = {f.name for f in fields(TransActConfig)}
        else:
            known = {f.name for f in fields(BaselineConfig)}
        unknown = sorted(set(self.encoder_overrides) - known)
        if unknown:
            raise ValueError(
                f"PinnabilityConfig.encoder_overrides: unknown field(s) {unknown} for encoder "
                f"{self.encoder!r}; known: {sorted(known)}"
            )
        if self.num_cross_layers < 0:
            raise ValueError(f"PinnabilityConfig.num_cross_layers={self.num_cross_layers} < 0")
        if self.cross_mode not in CROSS_MODES:
            raise ValueError(
                f"PinnabilityConfig.cross_mode={self.cross_mode!r} not in {CROSS_MODES}"
            )
        if any(d < 1 for d in self.mlp_dims):
            raise ValueError(f"PinnabilityConfig.mlp_dims={self.mlp_dims}: widths must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"PinnabilityConfig.dropout={self.dropout} not in [0, 1)")
        if self.categorical_embedding_dim < 0:
            raise ValueError(
                f"PinnabilityConfig.categorical_embedding_dim={self.categorical_embedding_dim} < 0"
            )
        if self.item_id_embedding < 0:
            raise ValueError(f"PinnabilityConfig.item_id_embedding={self.item_id_embedding} < 0")
        if self.item_id_buckets < 1:
            raise ValueError(f"PinnabilityConfig.item_id_buckets={self.item_id_buckets} < 1")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> PinnabilityConfig:
        """``small`` (minutes on 2 CPU cores) or ``paper`` (Table 9 scale), then ``overrides``.

        Both keep TransAct at the paper's defaults; ``small`` keeps the DCN/MLP narrow.
        ``paper`` with :func:`example_feature_spec("paper")` measures about 92M parameters
        and 77M FLOPs per example (``transact model summary --preset paper``).
        """
        if name == "small":
            base = cls(num_cross_layers=1, mlp_dims=(128, 64), categorical_embedding_dim=16)
        elif name == "paper":
            base = cls(num_cross_layers=6, mlp_dims=(4096, 1280, 256), categorical_embedding_dim=32)
        else:
            raise ValueError(f"unknown preset {name!r}; known: {list(PRESETS)}")
        return replace(base, **overrides) if overrides else base

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PinnabilityConfig:
        """Build from a TOML/JSON table. A ``preset`` key starts from that preset; every
        unknown or mistyped field raises with its name."""
        d = dict(d)
        preset = d.pop("preset", None)
        config = dataclass_from_dict(cls, d)
        if preset is None:
            return config
        if not isinstance(preset, str):
            raise TypeError(f"PinnabilityConfig.preset: expected a string, got {preset!r}")
        return cls.preset(preset, **{k: getattr(config, k) for k in d})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (round-trips through :meth:`from_dict`)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }


class Pinnability(nn.Module):
    """The ranker: ``RankerInputs`` -> ``[B, H]`` logits, one per head in ``spec.heads``.

    Args:
        spec: the input features (from the data stage).
        config: :class:`PinnabilityConfig`.

    Example::

        model = Pinnability(spec, PinnabilityConfig.preset("small"))
        logits = model(inputs)            # [B, len(spec.heads)]
        probs = model.predict_proba(inputs)
    """

    categorical_columns: torch.Tensor
    numerical_columns: torch.Tensor

    def __init__(self, spec: FeatureSpec, config: PinnabilityConfig | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.config = cfg = config or PinnabilityConfig()
        keep = (lambda group: group != "user") if not cfg.use_user_features else (lambda _g: True)
        cat_keep = [i for i, c in enumerate(spec.categorical) if keep(c.group)]
        num_keep = [i for i, n in enumerate(spec.numerical) if keep(n.group)]
        self.register_buffer("categorical_columns", torch.tensor(cat_keep, dtype=torch.long))
        self.register_buffer("numerical_columns", torch.tensor(num_keep, dtype=torch.long))
        self.register_buffer(
            "categorical_cardinalities",
            torch.tensor([c.cardinality for c in spec.categorical], dtype=torch.long),
            persistent=False,
        )
        kept_cats = [spec.categorical[i] for i in cat_keep]
        width = 0
        self.embedding: ConsolidatedEmbedding | None = None
        if kept_cats:
            dim = cfg.categorical_embedding_dim or _shared_embedding_dim(kept_cats)
            self.embedding = ConsolidatedEmbedding([c.cardinality for c in kept_cats], dim)
            width += self.embedding.out_dim
        self.numerical_norm = nn.BatchNorm1d(len(num_keep)) if num_keep else None
        width += len(num_keep)
        width += spec.d_item  # candidate embedding
        self.item_id_embedding: HashedItemEmbedding | None = None
        if cfg.item_id_embedding:
            self.item_id_embedding = HashedItemEmbedding(cfg.item_id_buckets, cfg.item_id_embedding)
            width += cfg.item_id_embedding
        self.use_user_embedding = cfg.use_user_embedding and spec.d_user > 0
        width += spec.d_user if self.use_user_embedding else 0
        self.sequence_encoder = build_sequence_encoder(
            cfg.encoder, spec, **dict(cfg.encoder_overrides)
        )
        self.wide: nn.Linear | None = None
        if self.sequence_encoder is not None:
            if self.sequence_encoder.wide:
                self.wide = nn.Linear(self.sequence_encoder.out_dim, len(spec.heads))
            else:
                width += self.sequence_encoder.out_dim
        self.input_dim = width
        self.cross = CrossNetV2(width, cfg.num_cross_layers) if cfg.num_cross_layers else None
        self.mlp = MLP(width, cfg.mlp_dims, cfg.dropout)
        head_in = self.mlp.out_dim
        if cfg.cross_mode == "parallel":
            head_in += width
        self.heads = nn.Linear(head_in, len(spec.heads))

    def forward(self, inputs: RankerInputs, user_index: torch.Tensor | None = None) -> torch.Tensor:
        """``RankerInputs`` with batch B -> ``[B, H]`` logits (apply sigmoid for probabilities).

        ``user_index`` (``[B]`` int64, optional) says that the user-level fields of
        ``inputs`` (``user_embedding``, ``action_*``, ``request_time_ms``) hold one row per
        user, ``[U, ...]``, and that candidate ``b`` belongs to user ``user_index[b]``: a
        request's user travels once, and the sequence encoder gets the users as they are
        (:meth:`SequenceEncoder.forward_users`). ``None``: every field has B rows. An
        argument beside ``RankerInputs`` rather than a field of it, so that the data stage,
        training and every other caller keep their B-row inputs unchanged.
        """
        if self.config.validate_inputs and not is_tracing():
            check_ranker_inputs(self.spec, inputs, user_index)
        features = []
        if self.embedding is not None:
            features.append(
                self.embedding(inputs.categorical.index_select(1, self.categorical_columns))
            )
        if self.numerical_norm is not None:
            numerical = inputs.numerical.index_select(1, self.numerical_columns)
            features.append(self.numerical_norm(numerical.float()))
        features.append(inputs.candidate_embedding.float())
        if self.item_id_embedding is not None:
            features.append(self.item_id_embedding(inputs.candidate_item_id))
        if self.use_user_embedding:
            user_embedding = inputs.user_embedding.float()
            if user_index is not None:
                user_embedding = gather_user_rows(user_embedding, user_index)
            features.append(user_embedding)
        wide_logits = None
        if self.sequence_encoder is not None:
            sequence_inputs = (
                inputs.action_types,
                inputs.action_embeddings.float(),
                inputs.action_times_ms,
                inputs.request_time_ms,
                inputs.candidate_embedding.float(),
            )
            if user_index is None:
                sequence = self.sequence_encoder(*sequence_inputs)
            else:
                sequence = self.sequence_encoder.forward_users(*sequence_inputs, user_index)
            if self.wide is not None:
                wide_logits = self.wide(sequence)
            else:
                features.append(sequence)
        x0 = torch.cat(features, dim=1)
        crossed = self.cross(x0) if self.cross is not None else x0
        if self.config.cross_mode == "stacked":
            hidden = self.mlp(crossed)
        else:
            hidden = torch.cat([crossed, self.mlp(x0)], dim=1)
        logits = self.heads(hidden)
        return logits + wide_logits if wide_logits is not None else logits

    def predict_proba(
        self, inputs: RankerInputs, user_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B, H]`` probabilities f(x) (sigmoid of the logits)."""
        return torch.sigmoid(self.forward(inputs, user_index))


def _shared_embedding_dim(features: list[CategoricalFeature]) -> int:
    dims = {c.embedding_dim for c in features}
    if len(dims) != 1:
        by_dim = {c.name: c.embedding_dim for c in features}
        raise ValueError(
            "one consolidated embedding table needs one embedding size, but the spec's "
            f"categorical features differ: {by_dim}; set "
            "PinnabilityConfig.categorical_embedding_dim"
        )
    return dims.pop()


def check_ranker_inputs(
    spec: FeatureSpec, inputs: RankerInputs, user_index: torch.Tensor | None = None
) -> None:
    """Raise ``ValueError`` naming the field, feature and row of the first bad input value.

    Checks shapes against ``spec``, categorical indices in ``0..cardinality-1`` (an index
    out of range would silently read another feature's rows of the consolidated table),
    integer candidate item ids >= 0,
    finite numerical/embedding values, and with ``user_index`` (see
    :meth:`Pinnability.forward`) that the user-level fields hold U rows and every index
    names one of them.
    """
    cat = inputs.categorical
    b = cat.shape[0]
    users = b if user_index is None else inputs.user_embedding.shape[0]
    expected = {
        "categorical": (b, len(spec.categorical)),
        "numerical": (b, len(spec.numerical)),
        "candidate_embedding": (b, spec.d_item),
        "user_embedding": (users, spec.d_user),
    }
    for name, shape in expected.items():
        got = tuple(getattr(inputs, name).shape)
        if got != shape:
            raise ValueError(f"RankerInputs.{name} must have shape {shape}, got {got}")
    if user_index is not None:
        _check_user_index(inputs, user_index, b, users)
    _check_candidate_item_id(inputs.candidate_item_id, b)
    if cat.dtype.is_floating_point:
        raise TypeError(f"RankerInputs.categorical must be integer indices, got {cat.dtype}")
    cards = torch.tensor([c.cardinality for c in spec.categorical], device=cat.device)
    bad = (cat < 0) | (cat >= cards)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        feat = spec.categorical[col]
        raise ValueError(
            f"RankerInputs.categorical[{row}, {col}] (feature {feat.name!r}) = "
            f"{int(cat[row, col])} is outside 0..{feat.cardinality - 1}"
        )
    for name in ("numerical", "candidate_embedding", "user_embedding", "action_embeddings"):
        t = getattr(inputs, name)
        if t.numel() and not bool(torch.isfinite(t).all()):
            idx = (~torch.isfinite(t)).nonzero()[0].tolist()
            label = ""
            if name == "numerical":
                label = f" (feature {spec.numerical[idx[1]].name!r})"
            raise ValueError(f"RankerInputs.{name}{idx}{label} is not finite: {t[tuple(idx)]}")


def _check_candidate_item_id(item_ids: torch.Tensor, b: int) -> None:
    """``candidate_item_id [B]``, integer, no negative index (the hash needs ids >= 0)."""
    if tuple(item_ids.shape) != (b,):
        raise ValueError(
            f"RankerInputs.candidate_item_id must have shape ({b},), got {tuple(item_ids.shape)}"
        )
    if item_ids.dtype.is_floating_point or item_ids.dtype == torch.bool:
        raise TypeError(f"RankerInputs.candidate_item_id must be integer, got {item_ids.dtype}")
    bad = item_ids < 0
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"RankerInputs.candidate_item_id[{row}] = {int(item_ids[row])} is negative; "
            "candidates are dense item indices >= 0"
        )


def _check_user_index(inputs: RankerInputs, user_index: torch.Tensor, b: int, users: int) -> None:
    """``user_index [B]`` integer, in ``0..U-1``, and U rows in every user-level field."""
    if tuple(user_index.shape) != (b,):
        raise ValueError(f"user_index must have shape ({b},), got {tuple(user_index.shape)}")
    if user_index.dtype.is_floating_point or user_index.dtype == torch.bool:
        raise TypeError(f"user_index must be integer row indices, got {user_index.dtype}")
    for name in ("action_types", "action_embeddings", "action_times_ms", "request_time_ms"):
        rows = getattr(inputs, name).shape[0]
        if rows != users:
            raise ValueError(
                f"RankerInputs.{name} has {rows} rows; with user_index it needs one per "
                f"user, U={users} (the rows of user_embedding)"
            )
    bad = (user_index < 0) | (user_index >= users)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"user_index[{row}] = {int(user_index[row])} is outside 0..{users - 1} (U={users})"
        )
