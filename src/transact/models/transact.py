"""TransAct (paper section 3.3, Figure 3): a transformer over the realtime action sequence.

Pipeline per example: action-type embedding ``[S, d_action]`` ‖ action item embedding
``[S, d_item]`` (3.3.1) → early fusion with the candidate (3.3.2: ``concat`` copies it onto
every action, d = d_action + 2 d_item; ``append`` adds it as a last token with a zero
action-type vector; ``none``) → optional positional encoding (Appendix B) → transformer
encoder with a key mask (padding, future actions, and in training a random time window,
3.3.4) → output compression (3.3.5, Table 4; default first K=10 columns + max pool).

Masking fallback for rows with no readable action (a brand-new user, or a time window that
hides the whole history): attention runs on that row with its mask lifted over zeroed
tokens (so the softmax is finite), and every output column of a masked position is zeroed,
so the row's output is exactly 0 and its gradients are 0, never NaN. More generally a
masked position never contributes to the output: its token is zeroed before the encoder,
it is never attended to, and its own output column is zeroed before compression (the
published module keeps those columns, so a time-window-masked action still leaked into
the "first K" columns through the residual connection).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from transact.data.schema import MS_PER_HOUR, ActionVocabulary, FeatureSpec
from transact.models.attention import ATTENTION_IMPLS, Encoder
from transact.models.config_utils import dataclass_from_dict
from transact.models.fast_training import fast_training_forward
from transact.models.sequence import SequenceEncoder, check_sequence_inputs, history_mask

FUSIONS = ("concat", "append", "none")
COMPRESSIONS = (
    "random_col",
    "first_col",
    "random_k_cols",
    "first_k_cols",
    "all_cols",
    "max_pool",
    "first_k_max_pool",
    "all_cols_max_pool",
)
POSITIONAL_ENCODINGS = ("none", "learned", "sinusoidal", "linear_age")
POSITIONAL_ENCODING_ALIASES = {"linear_time": "linear_age", "from_scratch": "learned"}


@dataclass(frozen=True)
class TransActConfig:
    """TransAct hyperparameters; the defaults are the paper's (section 4.1.2).

    Args:
        num_action_types: size of the action-type table including padding id 0
            (``ActionVocabulary.size``).
        d_action: action-type embedding size (32).
        d_item: item embedding size (PinSage, 32).
        seq_len: |S|, the number of most recent actions read (100).
        num_layers / num_heads / dim_feedforward / dropout: transformer encoder (2, 1, 32, 0.1).
        positional_encoding: ``none`` (paper), or Appendix B's ``learned`` (from scratch),
            ``sinusoidal``, ``linear_age`` (linear projection of log1p(age in hours)).
        fusion: early fusion ``concat`` (paper), ``append`` (BST-style) or ``none``.
        compression: a Table 4 variant (default ``first_k_max_pool``), with ``k`` = K (10).
        time_window_max_ms: training-only random window T ~ U[0, max] ms; actions in
            (request - T, request] are hidden (3.3.4; 24 h). 0 disables it.
        time_window_per_example: sample T per example instead of once per batch.
        random_action_mask_rate: training-only share of the real actions hidden at random,
            each independently (0 disables it). Not the paper's model: one of the two
            alternatives to the time window it reports as costing engagement (4.4.4).
        use_action_types: embed action types (False for the vanilla transformer and BST).
        attend_action_types: if non-empty, only these action ids are read (BST on
            positive actions only); every other action is masked like padding.
        attention: ``sdpa`` (fast) or ``reference`` (plain PyTorch), same math.
        random_cols_seed: seed of the fixed column choice of ``random_col``/``random_k_cols``.
        validate_inputs: check input values (action-type range) in eager mode.
    """

    num_action_types: int = ActionVocabulary().size
    d_action: int = 32
    d_item: int = 32
    seq_len: int = 100
    num_layers: int = 2
    num_heads: int = 1
    dim_feedforward: int = 32
    dropout: float = 0.1
    positional_encoding: str = "none"
    fusion: str = "concat"
    compression: str = "first_k_max_pool"
    k: int = 10
    time_window_max_ms: int = 24 * MS_PER_HOUR
    time_window_per_example: bool = False
    random_action_mask_rate: float = 0.0
    use_action_types: bool = True
    attend_action_types: tuple[int, ...] = ()
    attention: str = "sdpa"
    random_cols_seed: int = 0
    validate_inputs: bool = True

    def __post_init__(self) -> None:
        if self.positional_encoding in POSITIONAL_ENCODING_ALIASES:
            canonical = POSITIONAL_ENCODING_ALIASES[self.positional_encoding]
            object.__setattr__(self, "positional_encoding", canonical)

        def need(ok: bool, field: str, msg: str) -> None:
            if not ok:
                raise ValueError(f"TransActConfig.{field}={getattr(self, field)!r}: {msg}")

        need(self.num_action_types >= 2, "num_action_types", "needs padding + >= 1 action")
        need(self.d_action >= 1, "d_action", "must be >= 1")
        need(self.d_item >= 1, "d_item", "must be >= 1")
        need(self.seq_len >= 1, "seq_len", "must be >= 1")
        need(self.num_layers >= 1, "num_layers", "must be >= 1")
        need(self.num_heads >= 1, "num_heads", "must be >= 1")
        need(self.dim_feedforward >= 1, "dim_feedforward", "must be >= 1")
        need(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        need(self.positional_encoding in POSITIONAL_ENCODINGS, "positional_encoding",
             f"not in {POSITIONAL_ENCODINGS}")  # fmt: skip
        need(self.fusion in FUSIONS, "fusion", f"not in {FUSIONS}")
        need(self.compression in COMPRESSIONS, "compression", f"not in {COMPRESSIONS}")
        need(1 <= self.k <= self.seq_len, "k", f"must be in 1..seq_len={self.seq_len}")
        need(self.time_window_max_ms >= 0, "time_window_max_ms", "must be >= 0")
        need(0.0 <= self.random_action_mask_rate < 1.0, "random_action_mask_rate",
             "must be in [0, 1)")  # fmt: skip
        need(self.attention in ATTENTION_IMPLS, "attention", f"not in {ATTENTION_IMPLS}")
        need(
            all(1 <= a < self.num_action_types for a in self.attend_action_types),
            "attend_action_types",
            f"ids must be real actions 1..{self.num_action_types - 1}",
        )
        need(
            self.d_model % self.num_heads == 0,
            "num_heads",
            f"must divide the model width d={self.d_model}",
        )

    @property
    def d_model(self) -> int:
        """Transformer width d: d_action + d_item (+ d_item again with ``concat`` fusion)."""
        d = self.d_item + (self.d_action if self.use_action_types else 0)
        return d + (self.d_item if self.fusion == "concat" else 0)

    @property
    def num_tokens(self) -> int:
        """Transformer sequence length: |S|, plus one candidate token with ``append``."""
        return self.seq_len + (1 if self.fusion == "append" else 0)

    @property
    def num_output_columns(self) -> int:
        """How many d-wide columns the compression keeps (Table 4's "Size" column / d)."""
        return {
            "random_col": 1,
            "first_col": 1,
            "random_k_cols": self.k,
            "first_k_cols": self.k,
            "all_cols": self.num_tokens,
            "max_pool": 1,
            "first_k_max_pool": self.k + 1,
            "all_cols_max_pool": self.num_tokens + 1,
        }[self.compression]

    @classmethod
    def from_spec(cls, spec: FeatureSpec, **overrides: Any) -> TransActConfig:
        """Paper defaults with d_item, seq_len and the action vocabulary taken from ``spec``."""
        base = cls(
            num_action_types=spec.actions.size,
            d_item=spec.d_item,
            seq_len=spec.seq_len,
            k=min(cls.k, spec.seq_len),
        )
        return replace(base, **overrides) if overrides else base

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransActConfig:
        """Build from a TOML/JSON table; every unknown or mistyped field raises naming it."""
        return dataclass_from_dict(cls, d)


SERVING_FAST_PATH_FIELDS: tuple[tuple[str, object], ...] = (
    ("fusion", "concat"),
    ("positional_encoding", "none"),
    ("compression", "first_k_max_pool"),
    ("use_action_types", True),
    ("attend_action_types", ()),
)
"""The :class:`TransActConfig` values the serving fast path computes (the paper's TransAct):
its exact split of layer 1 needs concat fusion and no positional term, and its output is
first K + max pool. Other fields (dropout, the training time window, ``attention``) do not
change inference."""


def serving_fast_path_blockers(config: TransActConfig) -> list[str]:
    """Why the serving fast path (``transact.models.fast_transact``) and its plain
    reference cannot compute ``config``: one ``"TransActConfig.<field>=<value>: need
    <value>"`` per field off the supported values; empty when they can.

    The one definition of that rule: the fast path, its reference and the serving ranker's
    choice between the fast and the model's own encoder all read it, so a model trained
    with a config serving does not speed up is served by its own encoder, never wrongly.
    """
    return [
        f"TransActConfig.{name}={getattr(config, name)!r}: need {want!r}"
        for name, want in SERVING_FAST_PATH_FIELDS
        if getattr(config, name) != want
    ]


def require_serving_fast_path(config: TransActConfig, who: str) -> None:
    """Raise ``ValueError`` naming every field of :func:`serving_fast_path_blockers`."""
    blockers = serving_fast_path_blockers(config)
    if blockers:
        raise ValueError(f"{who}: unsupported TransAct config: {'; '.join(blockers)}")


def sinusoidal_table(num_positions: int, d: int) -> torch.Tensor:
    """``[num_positions, d]`` sine/cosine position table of Vaswani et al. (odd d allowed)."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(num_positions, d)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: d // 2])
    return table


class TransAct(SequenceEncoder):
    """Transformer-based realtime user action encoder (paper 3.3); ``[B, S, ...] -> [B, out_dim]``.

    Args:
        config: :class:`TransActConfig` (defaults = paper).

    Example::

        model = TransAct(TransActConfig())
        z = model(action_types, action_embeddings, action_times_ms, request_time_ms,
                  candidate_embedding)          # [B, (10 + 1) * 96]
    """

    random_cols: torch.Tensor
    attend_action_types: torch.Tensor
    sinusoidal_positions: torch.Tensor

    def __init__(self, config: TransActConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or TransActConfig()
        d = cfg.d_model
        self.action_embedding = (
            nn.Embedding(cfg.num_action_types, cfg.d_action, padding_idx=0)
            if cfg.use_action_types
            else None
        )
        self.learned_positions = (
            nn.Embedding(cfg.num_tokens, d) if cfg.positional_encoding == "learned" else None
        )
        self.age_projection = nn.Linear(1, d) if cfg.positional_encoding == "linear_age" else None
        self.register_buffer(
            "sinusoidal_positions",
            sinusoidal_table(cfg.num_tokens, d)
            if cfg.positional_encoding == "sinusoidal"
            else torch.zeros(0),
            persistent=False,
        )
        self.encoder = Encoder(
            d, cfg.num_layers, cfg.num_heads, cfg.dim_feedforward, cfg.dropout, cfg.attention
        )
        generator = torch.Generator().manual_seed(cfg.random_cols_seed)
        n_random = 1 if cfg.compression == "random_col" else cfg.k
        random_cols = torch.randperm(cfg.num_tokens, generator=generator)[:n_random].sort().values
        self.register_buffer("random_cols", random_cols, persistent=True)
        self.register_buffer(
            "attend_action_types",
            torch.tensor(cfg.attend_action_types, dtype=torch.long),
            persistent=False,
        )

    @property
    def out_dim(self) -> int:
        return self.config.num_output_columns * self.config.d_model

    @property
    def reads_candidate(self) -> bool:
        """Without early fusion (the vanilla transformer) the candidate is not read."""
        return self.config.fusion != "none"

    def sequence_mask(
        self,
        action_types: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
    ) -> torch.Tensor:
        """``[B, S]`` bool, True = hidden: padding, future actions, filtered action types,
        and in training the random time window (request - T, request] of 3.3.4 and the
        random action mask (``random_action_mask_rate``)."""
        cfg = self.config
        mask = history_mask(action_types, action_times_ms, request_time_ms)
        if cfg.attend_action_types:
            mask = mask | ~torch.isin(action_types, self.attend_action_types)
        if self.training and cfg.time_window_max_ms > 0:
            rows = action_types.shape[0] if cfg.time_window_per_example else 1
            window = torch.randint(
                0, cfg.time_window_max_ms + 1, (rows, 1), device=action_types.device
            )
            mask = mask | (action_times_ms > request_time_ms.reshape(-1, 1) - window)
        if self.training and cfg.random_action_mask_rate > 0:
            drop = torch.rand(action_types.shape, device=action_types.device)
            mask = mask | (drop < cfg.random_action_mask_rate)
        return mask

    def forward(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> torch.Tensor:
        """Encode ``[B, S]`` actions against ``[B, d_item]`` candidates into ``[B, out_dim]``.

        Sequences longer than ``seq_len`` are cut to their ``seq_len`` most recent actions.
        In training with :attr:`fast_training` set, the same function is computed by
        :func:`transact.models.fast_training.fast_training_forward` (visible positions only).
        """
        cfg = self.config
        action_types, action_embeddings, action_times_ms, request_time_ms = check_sequence_inputs(
            action_types,
            action_embeddings,
            action_times_ms,
            request_time_ms,
            candidate_embedding,
            seq_len=cfg.seq_len,
            d_item=cfg.d_item,
            num_action_types=cfg.num_action_types,
            check_values=cfg.validate_inputs,
        )
        if self.training and self.fast_training is not None:
            return fast_training_forward(
                self, action_types, action_embeddings, action_times_ms, request_time_ms,
                candidate_embedding, self.fast_training,
            )  # fmt: skip
        masked = self.sequence_mask(action_types, action_times_ms, request_time_ms)
        tokens = self.fused_tokens(
            action_types, action_embeddings, action_times_ms, request_time_ms, candidate_embedding
        )  # [B, S', d]
        if cfg.fusion == "append":  # the candidate token is always readable
            masked = torch.cat([masked, masked.new_zeros(masked.shape[0], 1)], dim=1)
        hidden = masked[:, :, None]
        tokens = torch.where(hidden, 0.0, tokens)
        # Fallback: a row with nothing to read attends over its zeroed tokens instead (finite
        # softmax); its output columns are all zeroed below, so it returns exactly 0.
        empty = masked.all(dim=1, keepdim=True)
        out = self.encoder(tokens, masked & ~empty)  # [B, S', d]
        out = torch.where(hidden, 0.0, out)
        return self._compress(out, masked)

    def fused_tokens(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> torch.Tensor:
        """The encoder's input tokens ``[B, S', d]`` of checked inputs: action type ‖ item
        embedding, early-fused with the candidate (3.3.2), plus the positional encoding.
        Hidden positions are not zeroed here (the caller masks them)."""
        cfg = self.config
        b, s = action_types.shape
        parts = []
        if self.action_embedding is not None:
            parts.append(self.action_embedding(action_types))
        parts.append(action_embeddings)
        candidate = candidate_embedding.to(action_embeddings.dtype)
        if cfg.fusion == "concat":
            parts.append(candidate[:, None, :].expand(b, s, cfg.d_item))
        tokens = torch.cat(parts, dim=-1)  # [B, S, d]
        if cfg.fusion == "append":
            lead = cfg.d_action if cfg.use_action_types else 0
            candidate_token = torch.cat([candidate.new_zeros(b, lead), candidate], dim=-1)
            tokens = torch.cat([tokens, candidate_token[:, None, :]], dim=1)
        return self._add_positions(tokens, action_times_ms, request_time_ms)

    def _add_positions(
        self, tokens: torch.Tensor, action_times_ms: torch.Tensor, request_time_ms: torch.Tensor
    ) -> torch.Tensor:
        if self.learned_positions is not None:
            return tokens + self.learned_positions.weight[None]
        if self.config.positional_encoding == "sinusoidal":
            return tokens + self.sinusoidal_positions[None].to(tokens.dtype)
        if self.age_projection is not None:
            age_ms = (request_time_ms.reshape(-1, 1) - action_times_ms).clamp(min=0)
            age = torch.log1p(age_ms.to(tokens.dtype) / MS_PER_HOUR)
            if self.config.fusion == "append":  # the candidate is shown now: age 0
                age = torch.cat([age, age.new_zeros(age.shape[0], 1)], dim=1)
            return tokens + self.age_projection(age[:, :, None])
        return tokens

    def _compress(self, out: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Table 4 compression of ``[B, S', d]`` (masked columns already zero) to ``[B, out_dim]``."""
        cfg = self.config
        c = cfg.compression
        if c == "first_col":
            return out[:, 0]
        if c in ("random_col", "random_k_cols"):
            return out[:, self.random_cols].flatten(1)
        if c == "first_k_cols":
            return out[:, : cfg.k].flatten(1)
        if c == "all_cols":
            return out.flatten(1)
        pooled = masked_max_pool(out, masked)
        if c == "max_pool":
            return pooled
        if c == "first_k_max_pool":
            return torch.cat([out[:, : cfg.k].flatten(1), pooled], dim=1)
        return torch.cat([out.flatten(1), pooled], dim=1)  # all_cols_max_pool


def masked_max_pool(values: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Max over the unmasked positions of ``[B, S, d]`` -> ``[B, d]``; 0 for a fully masked row."""
    filled = values.masked_fill(masked[:, :, None], float("-inf"))
    pooled = filled.max(dim=1).values
    any_valid = (~masked).any(dim=1, keepdim=True)
    return torch.where(any_valid, pooled, torch.zeros_like(pooled))
