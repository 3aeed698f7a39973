"""The one schema every stage speaks: event/item/user/impression tables and model tensors.

Stages talk through this module only (see STYLE.md): ``data`` writes tables in the Arrow
schemas below, ``features`` keeps sequences in the layout of :class:`SequenceTensors`,
``models`` consume :class:`RankerInputs`, ``training``/``evaluation`` consume
:class:`LabeledBatch`, and ``serving`` assembles :class:`RankerInputs` from the stores
through the small protocols at the bottom of this file.

Conventions (the paper's, section 3.2, plus the notes in ``../shared/README.md``):

* Sequences are sorted newest first: position 0 is the most recent action.
* Padding sits at the end of a sequence and is marked by action type 0
  (:data:`PAD_ACTION`), which is never a real action. Padded positions have item index
  :data:`PAD_ITEM` (-1), a zero embedding and timestamp 0.
* Times are integer milliseconds since the Unix epoch (``*_ms``), always ``int64``.
* Items are addressed by a dense *item index* ``0..n_items-1`` (the row in the item
  table); adapters map external ids onto it and keep the external id in the table.

Bump :data:`SCHEMA_VERSION` on any incompatible change; readers check it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import torch

SCHEMA_VERSION = 1

PAD_ACTION = 0
"""Action type id reserved for padding; never a real action."""

PAD_ITEM = -1
"""Item index of a padded sequence position (gathers the zero row of an embedding table)."""

DEFAULT_SEQ_LEN = 100
DEFAULT_D_ITEM = 32
MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000


# --------------------------------------------------------------------------------------
# Vocabularies and feature specs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionVocabulary:
    """Named user-action types. Id ``i + 1`` is ``names[i]``; id 0 is padding.

    Args:
        names: every real action type, in id order.
        positive: the action types that count as positive engagement (BST's
            "positive actions only" variant reads this).

    Example::

        vocab = ActionVocabulary()
        vocab.id("repin")   # 4
        vocab.name(4)       # "repin"
    """

    names: tuple[str, ...] = ("impression", "closeup", "click", "repin", "hide")
    positive: tuple[str, ...] = ("closeup", "click", "repin")

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"ActionVocabulary.names has duplicates: {self.names}")
        unknown = [p for p in self.positive if p not in self.names]
        if unknown:
            raise ValueError(f"ActionVocabulary.positive names unknown actions {unknown}")

    @property
    def size(self) -> int:
        """Embedding-table size: real actions plus the padding id 0."""
        return len(self.names) + 1

    def id(self, name: str) -> int:
        try:
            return self.names.index(name) + 1
        except ValueError:
            raise KeyError(f"unknown action type {name!r}; known: {list(self.names)}") from None

    def name(self, action_id: int) -> str:
        if not 1 <= action_id <= len(self.names):
            raise KeyError(f"action id {action_id} is not a real action (1..{len(self.names)})")
        return self.names[action_id - 1]

    def positive_ids(self) -> tuple[int, ...]:
        return tuple(self.id(n) for n in self.positive)


FEATURE_GROUPS = ("user", "item", "context")


@dataclass(frozen=True)
class CategoricalFeature:
    """One categorical id feature of the ranker; local index 0 means missing/unknown.

    ``group`` says whose feature it is (user, item or context); Table 2's "without other
    user features" ablation drops the ``user`` group.
    """

    name: str
    cardinality: int
    embedding_dim: int = 16
    group: str = "user"

    def __post_init__(self) -> None:
        if self.group not in FEATURE_GROUPS:
            raise ValueError(
                f"CategoricalFeature {self.name!r}: group {self.group!r} not in {FEATURE_GROUPS}"
            )
        if self.cardinality < 1:
            raise ValueError(f"CategoricalFeature {self.name!r}: cardinality must be >= 1")


@dataclass(frozen=True)
class NumericalFeature:
    """One numerical feature of the ranker (batch-normalized inside the model)."""

    name: str
    group: str = "item"

    def __post_init__(self) -> None:
        if self.group not in FEATURE_GROUPS:
            raise ValueError(
                f"NumericalFeature {self.name!r}: group {self.group!r} not in {FEATURE_GROUPS}"
            )


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a model needs to know about its inputs, produced by the data stage.

    Args:
        categorical: categorical id features, in the column order of
            ``RankerInputs.categorical``.
        numerical: numerical features, in the column order of ``RankerInputs.numerical``.
        d_item: item content-embedding size (the paper's PinSage, 32).
        d_user: batch user-embedding size (PinnerFormer); 0 when there is none.
        seq_len: realtime sequence length |S| (paper: 100).
        heads: action heads of the ranker, each a name in ``actions``.
        actions: the action vocabulary of the sequences and labels.
        user_weight_features: categorical features (names in ``categorical``) that the
            loss's per-user weight w_u may read (paper: user state, location, gender).
    """

    categorical: tuple[CategoricalFeature, ...]
    numerical: tuple[NumericalFeature, ...]
    d_item: int = DEFAULT_D_ITEM
    d_user: int = 64
    seq_len: int = DEFAULT_SEQ_LEN
    heads: tuple[str, ...] = ("click", "repin", "hide")
    actions: ActionVocabulary = field(default_factory=ActionVocabulary)
    user_weight_features: tuple[str, ...] = ("user_state", "country", "gender")

    def __post_init__(self) -> None:
        for h in self.heads:
            self.actions.id(h)  # raises with the head's name if unknown
        names = [c.name for c in self.categorical]
        for f in self.user_weight_features:
            if f not in names:
                raise ValueError(
                    f"FeatureSpec.user_weight_features names {f!r}, not a categorical feature {names}"
                )

    def categorical_index(self, name: str) -> int:
        for i, c in enumerate(self.categorical):
            if c.name == name:
                return i
        raise KeyError(f"no categorical feature {name!r}")

    def to_dict(self) -> dict:
        return {
            "categorical": [
                {
                    "name": c.name,
                    "cardinality": c.cardinality,
                    "embedding_dim": c.embedding_dim,
                    "group": c.group,
                }
                for c in self.categorical
            ],
            "numerical": [{"name": n.name, "group": n.group} for n in self.numerical],
            "d_item": self.d_item,
            "d_user": self.d_user,
            "seq_len": self.seq_len,
            "heads": list(self.heads),
            "actions": {"names": list(self.actions.names), "positive": list(self.actions.positive)},
            "user_weight_features": list(self.user_weight_features),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        return cls(
            categorical=tuple(CategoricalFeature(**c) for c in d["categorical"]),
            numerical=tuple(NumericalFeature(**n) for n in d["numerical"]),
            d_item=int(d["d_item"]),
            d_user=int(d["d_user"]),
            seq_len=int(d["seq_len"]),
            heads=tuple(d["heads"]),
            actions=ActionVocabulary(
                names=tuple(d["actions"]["names"]), positive=tuple(d["actions"]["positive"])
            ),
            user_weight_features=tuple(d.get("user_weight_features", ())),
        )


# --------------------------------------------------------------------------------------
# Arrow table schemas (Parquet on disk, partitioned by day: DIR/<table>/day=YYYY-MM-DD/)
# --------------------------------------------------------------------------------------


def events_schema() -> pa.Schema:
    """User-action events: the stream the realtime features are built from."""
    return pa.schema(
        [
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("item_id", pa.int64(), nullable=False),  # dense item index
            pa.field("action_type", pa.string(), nullable=False),  # name in ActionVocabulary
            pa.field("timestamp_ms", pa.int64(), nullable=False),
            pa.field("surface", pa.string(), nullable=False),
        ],
        metadata={"schema_version": str(SCHEMA_VERSION), "table": "events"},
    )


def items_schema(d_item: int = DEFAULT_D_ITEM) -> pa.Schema:
    """Items: content embedding (PinSage stand-in), interest taxonomy, categorical attributes."""
    return pa.schema(
        [
            pa.field("item_id", pa.int64(), nullable=False),  # dense index 0..n-1
            pa.field("external_id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), d_item), nullable=False),
            pa.field("top_interest", pa.int32(), nullable=False),
            pa.field("taxonomy_path", pa.string(), nullable=False),  # "art/painting/watercolor"
            pa.field("category", pa.int32(), nullable=False),  # categorical attribute
            pa.field("quality", pa.float32(), nullable=False),  # numerical attribute
        ],
        metadata={"schema_version": str(SCHEMA_VERSION), "table": "items", "d_item": str(d_item)},
    )


def users_schema() -> pa.Schema:
    """Users: attributes for the ranker and for the loss's user weights."""
    return pa.schema(
        [
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("user_state", pa.string(), nullable=False),  # e.g. daily/weekly/monthly/new
            pa.field("gender", pa.string(), nullable=False),
            pa.field("country", pa.string(), nullable=False),
            pa.field("signup_time_ms", pa.int64(), nullable=False),
        ],
        metadata={"schema_version": str(SCHEMA_VERSION), "table": "users"},
    )


def impressions_schema(heads: tuple[str, ...] = ("click", "repin", "hide")) -> pa.Schema:
    """One row per item shown in a request (chunk): labels and ground-truth probabilities.

    ``is_core`` is computed at request time: the user saved (repinned) at least once in the
    28 days before ``request_time_ms`` (paper 4.2.1). ``gt_prob_<head>`` is the simulator's
    true probability (NaN for real logs); the oracle ranks by it.
    """
    fields = [
        pa.field("request_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("request_time_ms", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("position", pa.int16(), nullable=False),
        pa.field("randomized", pa.bool_(), nullable=False),
        pa.field("is_core", pa.bool_(), nullable=False),
        pa.field("surface", pa.string(), nullable=False),
    ]
    fields += [pa.field(f"label_{h}", pa.int8(), nullable=False) for h in heads]
    fields += [pa.field(f"gt_prob_{h}", pa.float32(), nullable=False) for h in heads]
    return pa.schema(
        fields,
        metadata={
            "schema_version": str(SCHEMA_VERSION),
            "table": "impressions",
            "heads": ",".join(heads),
        },
    )


# --------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------


class SequenceTensors(NamedTuple):
    """A batch of realtime action sequences, newest first, padded at the end.

    Built offline by ``data`` and online by ``features``; the two must agree exactly for
    the same events (train/serve consistency).

    Fields:
        action_types: ``[B, S]`` int64, 0 at padding.
        action_item_ids: ``[B, S]`` int64 dense item indices, ``PAD_ITEM`` at padding.
        action_times_ms: ``[B, S]`` int64, 0 at padding.
    """

    action_types: torch.Tensor
    action_item_ids: torch.Tensor
    action_times_ms: torch.Tensor


class RankerInputs(NamedTuple):
    """Every tensor the ranker reads, one row per (user, candidate) pair.

    Fields:
        categorical: ``[B, F]`` int64, per-feature local indices (0 = missing); the model
            adds per-feature offsets and does ONE lookup (paper 3.4.2).
        numerical: ``[B, N]`` float32, raw values (the model batch-normalizes them).
        candidate_embedding: ``[B, d_item]`` float32.
        candidate_item_id: ``[B]`` int64 dense item index of the candidate (read only by
            the ranker's optional hashed item-id embedding, ``PinnabilityConfig``).
        user_embedding: ``[B, d_user]`` float32 batch (PinnerFormer) embedding, zeros if absent.
        action_types: ``[B, S]`` int64 (0 = padding).
        action_embeddings: ``[B, S, d_item]`` float32 (zeros at padding).
        action_times_ms: ``[B, S]`` int64.
        request_time_ms: ``[B]`` int64.

    Serving sends a request's user once: with a ``user_index [B]`` passed beside the inputs
    (``Pinnability.forward(inputs, user_index)``), the user-level fields (``user_embedding``,
    ``action_*``, ``request_time_ms``) hold one row per user, ``[U, ...]``, instead of B.
    The per-candidate fields come first (:data:`CANDIDATE_FIELDS` of them), the user-level
    fields after them.
    """

    categorical: torch.Tensor
    numerical: torch.Tensor
    candidate_embedding: torch.Tensor
    candidate_item_id: torch.Tensor
    user_embedding: torch.Tensor
    action_types: torch.Tensor
    action_embeddings: torch.Tensor
    action_times_ms: torch.Tensor
    request_time_ms: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> RankerInputs:
        return RankerInputs(*(t.to(device, non_blocking=non_blocking) for t in self))


CANDIDATE_FIELDS = 4
"""``RankerInputs[:CANDIDATE_FIELDS]`` have one row per candidate; the rest are user-level."""


@dataclass
class LabeledBatch:
    """A training/evaluation batch: model inputs plus labels and the keys HIT@K groups by.

    Fields:
        inputs: the model inputs.
        labels: ``[B, H]`` float32 in {0, 1}, columns in ``FeatureSpec.heads`` order.
        user_ids / request_ids / item_ids: ``[B]`` int64 (evaluation groups by
            (user_id, request_id), paper Eq. 3-4).
        is_core: ``[B]`` bool.
        top_interest: ``[B]`` int64 top-level interest of the candidate (diversity, 4.4.4).
        gt_probs: ``[B, H]`` float32 ground-truth probabilities (NaN when unknown).
    """

    inputs: RankerInputs
    labels: torch.Tensor
    user_ids: torch.Tensor
    request_ids: torch.Tensor
    item_ids: torch.Tensor
    is_core: torch.Tensor
    top_interest: torch.Tensor
    gt_probs: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> LabeledBatch:
        """Every tensor of the batch on ``device`` (new fields move without code changes)."""
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in fields(self)
        }
        return LabeledBatch(**moved)


# --------------------------------------------------------------------------------------
# Interfaces between stages
# --------------------------------------------------------------------------------------


@runtime_checkable
class ItemEmbeddingSource(Protocol):
    """Item content embeddings by dense item index."""

    d_item: int

    def embeddings(self, item_ids: np.ndarray) -> np.ndarray:
        """``[...]`` int64 item indices -> ``[..., d_item]`` float32; ``PAD_ITEM`` -> zeros."""
        ...


@runtime_checkable
class UserEmbeddingSource(Protocol):
    """Batch (daily) user embeddings, as of the day before the request (no leakage)."""

    d_user: int

    def lookup(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> np.ndarray:
        """``[B]`` users and request times -> ``[B, d_user]`` float32; zeros when missing."""
        ...


@runtime_checkable
class SequenceSource(Protocol):
    """Realtime action sequences for a batch of users at given request times."""

    seq_len: int

    def fetch(self, user_ids: np.ndarray, request_time_ms: np.ndarray) -> SequenceTensors:
        """Latest ``seq_len`` actions strictly before each request time, newest first."""
        ...


def gather_item_embeddings(table: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
    """Gather ``[..., d]`` embeddings from a ``[n_items + 1, d]`` table whose last row is zero.

    ``PAD_ITEM`` (-1) indexes that zero row, so padding needs no mask.
    """
    return table[item_ids]


def padded_embedding_table(embeddings: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[n_items, d]`` -> ``[n_items + 1, d]`` float32 with a trailing zero row for ``PAD_ITEM``."""
    t = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    return torch.cat([t, torch.zeros(1, t.shape[1], dtype=t.dtype)], dim=0)
