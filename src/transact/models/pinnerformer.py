"""PinnerFormer-style batch user encoder, item tower and dense all-action loss.

PinnerFormer (Pancha et al., KDD 2022; reference [20] of the TransAct paper) turns a
user's long-term action history into one L2-normalized embedding, generated once a day
and served as a batch feature. TransAct's ranker reads that embedding beside the realtime
sequence (the "realtime-batch hybrid", Table 2).

Layout here follows the project convention: sequences are newest first, position 0 is the
most recent action, padding sits at the end with action type 0 (``PAD_ACTION``) and item
index ``PAD_ITEM``. The encoder is causal in time: position ``i`` attends only to itself and
to older actions (positions ``j >= i``), so every position's output is a user embedding "as
of that action", which is what the dense all-action loss trains, and position 0's output is
the user embedding.

Example::

    cfg = PinnerFormerConfig()
    encoder, tower = PinnerFormerEncoder(cfg), ItemTower(cfg)
    states = encoder(action_types, action_embeddings, action_times_ms)  # [B, S, d_user]
    user_embedding = states[:, 0]                                       # [B, d_user]
    item_vectors = tower(content_embeddings)                            # [N, d_user]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from transact.data.schema import DEFAULT_D_ITEM, MS_PER_DAY, MS_PER_HOUR, PAD_ACTION

N_TIME_FEATURES = 5
"""log1p(gap to the previous action, hours), sin/cos hour of day, sin/cos day of week."""


@dataclass(frozen=True)
class PinnerFormerConfig:
    """Architecture of the PinnerFormer user encoder and its item tower.

    Args:
        d_item: item content-embedding size (the world's PinSage stand-in, 32).
        d_user: output embedding size; ``FeatureSpec.d_user`` (64) by default. PinnerFormer
            used 256; 64 fits the ranker's default and the simulated world.
        d_model: transformer width.
        num_layers / num_heads / dim_feedforward / dropout: transformer encoder shape
            (pre-LayerNorm).
        num_action_types: size of the action-type table (``ActionVocabulary.size``, with 0 =
            padding).
        max_seq_len: longest history the encoder reads (PinnerFormer: 255 actions + 1).
        d_item_tower_hidden: hidden width of the item tower's projection MLP.
    """

    d_item: int = DEFAULT_D_ITEM
    d_user: int = 64
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.1
    num_action_types: int = 6
    max_seq_len: int = 256
    d_item_tower_hidden: int = 128

    def __post_init__(self) -> None:
        for name in ("d_item", "d_user", "d_model", "num_layers", "num_heads", "dim_feedforward"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"PinnerFormerConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.d_model % self.num_heads:
            raise ValueError(
                f"PinnerFormerConfig.d_model ({self.d_model}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"PinnerFormerConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.num_action_types < 2:
            raise ValueError(
                "PinnerFormerConfig.num_action_types must count padding plus >= 1 action"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PinnerFormerConfig:
        """From :meth:`to_dict`. Checkpoints written before the fields took the names of
        ``TransActConfig`` and PyTorch (``n_layers``, ``n_heads``, ``d_ff``,
        ``n_action_types``) still load."""
        return cls(**{_RENAMED_FIELDS.get(k, k): v for k, v in d.items()})


_RENAMED_FIELDS = {
    "n_layers": "num_layers",
    "n_heads": "num_heads",
    "d_ff": "dim_feedforward",
    "n_action_types": "num_action_types",
}


def time_features(action_times_ms: torch.Tensor, action_types: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` times (newest first) -> ``[B, S, 5]`` causal time features.

    The gap to the previous (older) action in log-hours, and the hour of day and day of
    week as sin/cos pairs. Only the action's own time and the older neighbour's are read, so
    the features of position ``i`` never depend on anything newer than action ``i``. Zero
    at padding.
    """
    times = action_times_ms.to(torch.float64)
    older = torch.cat([times[:, 1:], times[:, -1:]], dim=1)
    valid = action_types != PAD_ACTION
    older_valid = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1)
    gap_hours = torch.where(older_valid, (times - older).clamp(min=0) / MS_PER_HOUR, 0.0)
    hour = torch.remainder(times, MS_PER_DAY) / MS_PER_DAY * (2 * math.pi)
    day = torch.remainder(times, 7 * MS_PER_DAY) / (7 * MS_PER_DAY) * (2 * math.pi)
    feats = torch.stack(
        [torch.log1p(gap_hours), hour.sin(), hour.cos(), day.sin(), day.cos()], dim=-1
    )
    return torch.where(valid.unsqueeze(-1), feats, 0.0).to(torch.float32)


def causal_attention_mask(action_types: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[B, S]`` action types -> ``[B * num_heads, S, S]`` additive float mask (0 or -inf).

    Query ``i`` may attend to key ``j`` when ``j >= i`` (older or same action, newest-first
    order) and ``j`` is not padding; the diagonal is always allowed so padded queries do
    not produce NaN (their outputs are ignored).
    """
    b, s = action_types.shape
    idx = torch.arange(s, device=action_types.device)
    older_or_self = idx.unsqueeze(0) >= idx.unsqueeze(1)  # [S(query), S(key)]
    key_real = (action_types != PAD_ACTION).unsqueeze(1)  # [B, 1, S]
    allowed = (older_or_self.unsqueeze(0) & key_real) | torch.eye(
        s, dtype=torch.bool, device=action_types.device
    ).unsqueeze(0)
    mask = torch.zeros(b, s, s, device=action_types.device)
    mask = mask.masked_fill(~allowed, float("-inf"))
    return mask.repeat_interleave(num_heads, dim=0)


def chronological_index(action_types: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` newest-first types -> ``[B, S]`` gather index to oldest-first order.

    Reverses each row's real prefix and leaves the trailing padding in place; the map is
    its own inverse, so the same index brings outputs back to newest first. Raises when a
    row has padding before a real action (the schema puts padding at the end only).
    """
    real = action_types != PAD_ACTION
    lengths = real.sum(dim=1, keepdim=True)
    k = torch.arange(action_types.shape[1], device=action_types.device).unsqueeze(0)
    if not torch.equal(real, k < lengths):
        row = int(torch.nonzero((real != (k < lengths)).any(dim=1))[0, 0])
        raise ValueError(f"action_types row {row}: padding (0) before a real action")
    return torch.where(k < lengths, lengths - 1 - k, k)


class PinnerFormerBlock(nn.Module):
    """Pre-LayerNorm transformer block (self-attention + GELU MLP) with two attention paths.

    ``forward(x, mask=None)``: with ``mask=None`` the input is oldest first with padding at
    the end, and attention is causal (``scaled_dot_product_attention(is_causal=True)``,
    fused kernels, no ``[S, S]`` mask in memory). With an additive ``[B, H, S, S]`` mask it
    is the plain reference: explicit scores, mask, softmax.
    """

    def __init__(self, config: PinnerFormerConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.norm1 = nn.LayerNorm(config.d_model)
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.attn_out = nn.Linear(config.d_model, config.d_model)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.dim_feedforward),
            nn.GELU(),
            nn.Linear(config.dim_feedforward, config.d_model),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (
            t.view(b, s, self.num_heads, d // self.num_heads).transpose(1, 2) for t in (q, k, v)
        )
        p = self.dropout if self.training else 0.0
        if mask is None:
            attn = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.num_heads) + mask
            attn = F.dropout(scores.softmax(dim=-1), p=p, training=self.training) @ v
        x = x + self.drop(self.attn_out(attn.transpose(1, 2).reshape(b, s, d)))
        return x + self.drop(self.mlp(self.norm2(x)))


class PinnerFormerEncoder(nn.Module):
    """Causal transformer over a long-term action history -> per-position user embeddings.

    Each action's input is the sum of a projection of its item content embedding, an
    action-type embedding and a projection of its time features. The output at position
    ``i`` is an L2-normalized ``d_user`` vector that summarizes actions ``i..S-1`` (action
    ``i`` and everything older); position 0 is the user embedding.

    The fast path (default) reverses each row's real prefix to oldest first, so "older or
    same" becomes the standard causal mask with padding at the end, and runs fused causal
    attention; ``reference=True`` runs newest first with the explicit
    :func:`causal_attention_mask` (``[B, H, S, S]`` in memory). A test compares them.

    Args:
        config: the architecture.

    Example::

        states = PinnerFormerEncoder(PinnerFormerConfig())(types, item_emb, times)  # [B, S, 64]
    """

    def __init__(self, config: PinnerFormerConfig) -> None:
        super().__init__()
        self.config = config
        self.item_proj = nn.Linear(config.d_item, config.d_model)
        self.action_embedding = nn.Embedding(
            config.num_action_types, config.d_model, padding_idx=PAD_ACTION
        )
        self.time_proj = nn.Linear(N_TIME_FEATURES, config.d_model)
        self.blocks = nn.ModuleList(PinnerFormerBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.d_model)
        self.out_proj = nn.Linear(config.d_model, config.d_user)

    def forward(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        reference: bool = False,
    ) -> torch.Tensor:
        """``[B, S]`` types, ``[B, S, d_item]`` item embeddings, ``[B, S]`` times -> ``[B, S, d_user]``."""
        if action_types.shape != action_times_ms.shape:
            raise ValueError(
                f"action_types {tuple(action_types.shape)} and action_times_ms "
                f"{tuple(action_times_ms.shape)} must have the same [B, S] shape"
            )
        if action_embeddings.shape[:2] != action_types.shape:
            raise ValueError(
                f"action_embeddings {tuple(action_embeddings.shape)} must be [B, S, d_item] "
                f"with [B, S] = {tuple(action_types.shape)}"
            )
        x = (
            self.item_proj(action_embeddings)
            + self.action_embedding(action_types)
            + self.time_proj(time_features(action_times_ms, action_types))
        )
        if reference:
            b, s = action_types.shape
            mask = causal_attention_mask(action_types, self.config.num_heads).view(
                b, self.config.num_heads, s, s
            )
            for block in self.blocks:
                x = block(x, mask)
        else:
            index = chronological_index(action_types).unsqueeze(-1).expand_as(x)
            x = torch.gather(x, 1, index)
            for block in self.blocks:
                x = block(x)
            x = torch.gather(x, 1, index)
        return F.normalize(self.out_proj(self.final_norm(x)), dim=-1)

    def user_embedding(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        reference: bool = False,
    ) -> torch.Tensor:
        """The user embedding: position 0 of :meth:`forward`, ``[B, d_user]``."""
        return self.forward(action_types, action_embeddings, action_times_ms, reference)[:, 0]


class ItemTower(nn.Module):
    """Item side of the two-tower objective: content embedding + learned projection.

    ``[..., d_item]`` content embeddings -> ``[..., d_user]`` L2-normalized vectors: a
    linear map of the content embedding plus a residual MLP, so the tower starts near a
    fixed projection of the content space and learns corrections (PinnerFormer scores
    users against PinSage-based item embeddings the same way).
    """

    def __init__(self, config: PinnerFormerConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(config.d_item, config.d_user)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_item, config.d_item_tower_hidden),
            nn.GELU(),
            nn.Linear(config.d_item_tower_hidden, config.d_user),
        )

    def forward(self, content_embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(content_embeddings) + self.mlp(content_embeddings), dim=-1)


def dense_all_action_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    positive_ids: torch.Tensor,
    positive_log_q: torch.Tensor,
    negatives: torch.Tensor,
    negative_ids: torch.Tensor,
    negative_log_q: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Sampled-softmax loss of PinnerFormer's dense all-action objective, with log-Q correction.

    Row ``n`` pairs an anchor (the encoder output at some position of some user's history)
    with one positive engagement from that position's future window. Its candidates are its
    own positive, every other row's positive (in-batch negatives) and the shared random
    negatives. Each candidate ``c`` scores ``<anchor, c> / temperature - log q_c``, where
    ``q_c`` is the probability that ``c`` shows up as a sampled candidate (popularity for
    in-batch items, uniform for random ones), which removes the sampler's popularity bias
    (Yi et al., 2019). Candidates with the same item id as the row's positive are masked
    (accidental hits). The loss is the mean over rows of ``-log softmax`` at the positive.

    Args:
        anchors: ``[N, D]`` L2-normalized user states.
        positives: ``[N, D]`` item-tower vectors of each row's positive.
        positive_ids: ``[N]`` int64 item indices of the positives.
        positive_log_q: ``[N]`` log sampling probability of each positive as an in-batch
            candidate.
        negatives: ``[M, D]`` item-tower vectors of random negatives (M may be 0).
        negative_ids: ``[M]`` int64 item indices of the random negatives.
        negative_log_q: ``[M]`` log sampling probability of each random negative.
        temperature: softmax temperature (> 0).

    Returns:
        scalar loss.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = anchors.shape[0]
    if n == 0:
        raise ValueError("dense_all_action_loss needs at least one (anchor, positive) row")
    in_batch = anchors @ positives.T / temperature - positive_log_q.unsqueeze(0)  # [N, N]
    same_item = positive_ids.unsqueeze(0) == positive_ids.unsqueeze(1)
    own = torch.eye(n, dtype=torch.bool, device=anchors.device)
    in_batch = in_batch.masked_fill(same_item & ~own, float("-inf"))
    random = anchors @ negatives.T / temperature - negative_log_q.unsqueeze(0)  # [N, M]
    random = random.masked_fill(
        negative_ids.unsqueeze(0) == positive_ids.unsqueeze(1), float("-inf")
    )
    logits = torch.cat([in_batch, random], dim=1)
    target = torch.arange(n, device=anchors.device)
    return F.cross_entropy(logits, target)
