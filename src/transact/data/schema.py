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

from collections.abc import Sequence
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
    """A dataset's named user-action types: data, declared by the dataset (its manifest).

    Id ``i + 1`` is ``names[i]``; id 0 is padding. The defaults are the simulated world's
    (the paper's Pinterest) vocabulary; a log with other actions declares every field
    (``transact data import ...`` writes it into the manifest).

    Args:
        names: every real action type, in id order.
        positive: positive engagements (BST's "positive actions only" variant attends to
            these; item ``quality`` counts them).
        negative: negative engagements (a hide, a "hate"): lower HIT@K is better for a
            head of a negative action.
        impression: the action every shown item has (an impression, a view), or None when
            the log has none. It is never a head; the label-weight matrix M keeps an
            always-present column under this name (``../shared/README.md``).
        main_positive / main_negative: the actions that play the paper's "repin" (its main
            positive engagement) and "hide" (its main negative): the columns of the
            paper's tables on this dataset, and the non-core rule of 4.2.1 (no
            ``main_positive`` action in the last 28 days). None when there is none.

    Every action but the impression is an *engagement* (:attr:`engagements`): those feed
    the realtime sequences by default.

    Example::

        vocab = ActionVocabulary()
        vocab.id("repin")   # 4
        vocab.name(4)       # "repin"
        vocab.engagements   # ("closeup", "click", "repin", "hide")
    """

    names: tuple[str, ...] = ("impression", "closeup", "click", "repin", "hide")
    positive: tuple[str, ...] = ("closeup", "click", "repin")
    negative: tuple[str, ...] = ("hide",)
    impression: str | None = "impression"
    main_positive: str | None = "repin"
    main_negative: str | None = "hide"

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("ActionVocabulary.names: no actions")
        bad = [n for n in self.names if not isinstance(n, str) or not n or n != n.strip()]
        if bad:
            raise ValueError(f"ActionVocabulary.names: not a name: {bad}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"ActionVocabulary.names has duplicates: {self.names}")
        for what in ("positive", "negative"):
            unknown = [p for p in getattr(self, what) if p not in self.names]
            if unknown:
                raise ValueError(f"ActionVocabulary.{what} names unknown actions {unknown}")
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise ValueError(f"ActionVocabulary: {both} both positive and negative")
        if self.impression is not None:
            if self.impression not in self.names:
                raise ValueError(
                    f"ActionVocabulary.impression {self.impression!r} is not an action "
                    f"{list(self.names)}"
                )
            if self.impression in self.positive or self.impression in self.negative:
                raise ValueError(
                    f"ActionVocabulary.impression {self.impression!r} is every shown item's "
                    "action, so it is neither positive nor negative"
                )
        for what, group in (("main_positive", "positive"), ("main_negative", "negative")):
            value = getattr(self, what)
            if value is not None and value not in getattr(self, group):
                raise ValueError(
                    f"ActionVocabulary.{what} {value!r} is not one of the {group} actions "
                    f"{list(getattr(self, group))}"
                )

    @property
    def size(self) -> int:
        """Embedding-table size: real actions plus the padding id 0."""
        return len(self.names) + 1

    @property
    def engagements(self) -> tuple[str, ...]:
        """Every action but the impression, in id order: the default sequence actions."""
        return tuple(n for n in self.names if n != self.impression)

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

    def negative_ids(self) -> tuple[int, ...]:
        return tuple(self.id(n) for n in self.negative)

    def is_negative(self, name: str) -> bool:
        """Whether ``name`` is a negative action (its HIT@K is better when lower)."""
        return name in self.negative

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "positive": list(self.positive),
            "negative": list(self.negative),
            "impression": self.impression,
            "main_positive": self.main_positive,
            "main_negative": self.main_negative,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ActionVocabulary:
        """From :meth:`to_dict`. A vocabulary written before the ``negative`` /
        ``impression`` / ``main_*`` keys existed (schema 1 files from before issue 17)
        gets those fields from the defaults, kept where its names have them."""
        names = tuple(d["names"])
        default = cls()

        def legacy(field_name: str) -> object:
            value = getattr(default, field_name)
            if isinstance(value, tuple):
                return tuple(v for v in value if v in names)
            return value if value in names else None

        fields_ = ("negative", "impression", "main_positive", "main_negative")
        kwargs = {f: d[f] if f in d else legacy(f) for f in fields_}
        kwargs["negative"] = tuple(kwargs["negative"])  # type: ignore[arg-type]
        return cls(names=names, positive=tuple(d["positive"]), **kwargs)  # type: ignore[arg-type]


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
        heads: action heads of the ranker, each an action of ``actions`` other than the
            impression (the defaults are the simulated world's).
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
        if len(set(self.heads)) != len(self.heads):
            raise ValueError(f"FeatureSpec.heads has duplicates: {self.heads}")
        for h in self.heads:
            self.actions.id(h)  # raises with the head's name if unknown
            if h == self.actions.impression:
                raise ValueError(
                    f"FeatureSpec.heads: {h!r} is the impression every example has, not a head"
                )
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
            "actions": self.actions.to_dict(),
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
            actions=ActionVocabulary.from_dict(d["actions"]),
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


def impressions_schema(heads: Sequence[str]) -> pa.Schema:
    """One row per item shown in a request (chunk): labels and ground-truth probabilities.

    ``heads`` are the dataset's label actions (the manifest's ``heads``). ``is_core`` is
    computed at request time: the user took the vocabulary's ``main_positive`` action (a
    repin on Pinterest) in the 28 days before ``request_time_ms`` (paper 4.2.1).
    ``gt_prob_<head>`` is the simulator's
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


def requests_schema() -> pa.Schema:
    """One row per request of a simulated world (additive table ``requests/``, optional).

    ``time_spent_ms`` is the simulator's time-spent proxy (browsing the feed plus the
    dwell of closeups); ``feed_quality`` the mean relevance of the shown items (what a
    user perceives); ``satisfaction`` the user's recent satisfaction after the request
    (it sets how often they return); ``continued`` whether the session went on after it.
    Real logs have no such table; readers must not require it.
    """
    return pa.schema(
        [
            pa.field("request_id", pa.int64(), nullable=False),
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("session_id", pa.int64(), nullable=False),
            pa.field("request_time_ms", pa.int64(), nullable=False),
            pa.field("n_shown", pa.int16(), nullable=False),
            pa.field("randomized", pa.bool_(), nullable=False),
            pa.field("session_start", pa.bool_(), nullable=False),
            pa.field("continued", pa.bool_(), nullable=False),
            pa.field("time_spent_ms", pa.int64(), nullable=False),
            pa.field("feed_quality", pa.float32(), nullable=False),
            pa.field("satisfaction", pa.float32(), nullable=False),
        ],
        metadata={"schema_version": str(SCHEMA_VERSION), "table": "requests"},
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
