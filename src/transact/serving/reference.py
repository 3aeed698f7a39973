"""Plain eager TransAct on ``nn.TransformerEncoder``: the baseline every fast path is tested on.

This is the computation of paper section 3.3 written the way the authors' published module
(pinterest/transformer_user_action) writes it: action-type embedding, concat early fusion
with the candidate copied onto every position, a stock ``nn.TransformerEncoder`` with a
float key-padding mask, then the first K output columns and a max-pooled column. It follows
the masking rules of this project's :class:`transact.models.TransAct` (hidden positions are
padding or actions at/after the request time; their tokens and output columns are zero; an
empty row returns 0), so the two agree and :meth:`ReferenceTransAct.from_transact` copies a
trained model's weights in. Nothing here is optimized on purpose: the serving fast path
(:mod:`transact.serving.fast_transact`) must reproduce these outputs within 1e-5 in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from transact.data.schema import PAD_ACTION


@dataclass(frozen=True)
class ReferenceTransActConfig:
    """Shape of the reference TransAct (defaults: the paper's serving configuration).

    Args:
        n_action_types: action-embedding table size, padding id 0 included.
        d_action: action-type embedding size (32).
        d_item: item (PinSage) embedding size (32).
        n_layers: transformer encoder layers (2).
        n_heads: attention heads (1).
        d_feedforward: feed-forward hidden size (32).
        latest_k: output columns kept from the front (most recent) of the sequence (K=10).
    """

    n_action_types: int = 6
    d_action: int = 32
    d_item: int = 32
    n_layers: int = 2
    n_heads: int = 1
    d_feedforward: int = 32
    latest_k: int = 10

    @property
    def d_model(self) -> int:
        """Transformer width with concat early fusion: d_action + 2 * d_item."""
        return self.d_action + 2 * self.d_item

    @property
    def out_dim(self) -> int:
        return (self.latest_k + 1) * self.d_model


def hidden_positions(
    action_types: torch.Tensor, action_times_ms: torch.Tensor, request_time_ms: torch.Tensor
) -> torch.Tensor:
    """Positions nobody may read at inference, ``[B, S]`` bool (True = hidden).

    Padding (action type 0) and actions at or after the request time (they would leak the
    future), the rule of ``transact.models.sequence.history_mask``.
    """
    return (action_types == PAD_ACTION) | (action_times_ms >= request_time_ms.reshape(-1, 1))


class ReferenceTransAct(nn.Module):
    """TransAct as the authors wrote it: ``nn.TransformerEncoder`` over concat-fused actions.

    Forward takes ``action_types [B, S]`` int64, ``action_embeddings [B, S, d_item]``,
    ``action_times_ms [B, S]`` int64, ``request_time_ms [B]`` int64 and
    ``candidate_embedding [B, d_item]``, and returns ``[B, (K + 1) * d_model]``: the first
    K output columns flattened, then the max-pooled column (over visible positions).

    Example::

        ref = ReferenceTransAct(ReferenceTransActConfig()).eval()
        z = ref(types, embs, times, request_time, candidates)  # [B, 11 * 96]
    """

    def __init__(self, config: ReferenceTransActConfig) -> None:
        super().__init__()
        self.config = config
        self.action_embedding = nn.Embedding(
            config.n_action_types, config.d_action, padding_idx=PAD_ACTION
        )
        layer = nn.TransformerEncoderLayer(
            d_model=config.d_model,
            nhead=config.n_heads,
            dim_feedforward=config.d_feedforward,
            dropout=0.0,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)

    @classmethod
    def from_transact(cls, model: Any) -> ReferenceTransAct:
        """Copy the weights of a ``transact.models.TransAct`` (concat fusion, no positions,
        ``first_k_max_pool``) into a reference module; raises naming the unsupported field."""
        cfg = model.config
        for field, want in (
            ("fusion", "concat"),
            ("positional_encoding", "none"),
            ("compression", "first_k_max_pool"),
            ("use_action_types", True),
            ("attend_action_types", ()),
        ):
            if getattr(cfg, field) != want:
                raise ValueError(f"TransActConfig.{field}={getattr(cfg, field)!r}: need {want!r}")
        ref = cls(
            ReferenceTransActConfig(
                n_action_types=cfg.num_action_types,
                d_action=cfg.d_action,
                d_item=cfg.d_item,
                n_layers=cfg.num_layers,
                n_heads=cfg.num_heads,
                d_feedforward=cfg.dim_feedforward,
                latest_k=cfg.k,
            )
        )
        with torch.no_grad():
            ref.action_embedding.weight.copy_(model.action_embedding.weight)
            for mine, theirs in zip(ref.encoder.layers, model.encoder.layers, strict=True):
                mine.self_attn.in_proj_weight.copy_(theirs.self_attn.in_proj.weight)
                mine.self_attn.in_proj_bias.copy_(theirs.self_attn.in_proj.bias)
                mine.self_attn.out_proj.load_state_dict(theirs.self_attn.out_proj.state_dict())
                for name in ("linear1", "linear2", "norm1", "norm2"):
                    getattr(mine, name).load_state_dict(getattr(theirs, name).state_dict())
        return ref.eval()

    def forward(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> torch.Tensor:
        seq_len = action_types.shape[1]
        hidden = hidden_positions(action_types, action_times_ms, request_time_ms)
        tokens = torch.cat(
            [
                self.action_embedding(action_types),
                action_embeddings,
                candidate_embedding.unsqueeze(1).expand(-1, seq_len, -1),
            ],
            dim=-1,
        )
        tokens = tokens.masked_fill(hidden.unsqueeze(-1), 0.0)
        empty = hidden.all(dim=1, keepdim=True)  # nothing to read: attend to zero tokens
        float_mask = torch.zeros(hidden.shape, dtype=tokens.dtype, device=tokens.device)
        float_mask.masked_fill_(hidden & ~empty, float("-inf"))
        out = self.encoder(tokens, src_key_padding_mask=float_mask)
        out = out.masked_fill(hidden.unsqueeze(-1), 0.0)
        pooled = out.masked_fill(hidden.unsqueeze(-1), float("-inf")).max(dim=1).values
        pooled = pooled.masked_fill(empty, 0.0)
        return torch.cat([out[:, : self.config.latest_k].flatten(1), pooled], dim=1)
