"""Plain eager TransAct on ``nn.TransformerEncoder``: the baseline every fast path is tested on.

This is the computation of paper section 3.3 written the way the authors' published module
(pinterest/transformer_user_action) writes it: action-type embedding, concat early fusion
with the candidate copied onto every position, a stock ``nn.TransformerEncoder`` with a
float key-padding mask, then the first K output columns and a max-pooled column. It follows
the masking rules of this project's :class:`transact.models.TransAct` (hidden positions are
padding or actions at/after the request time; their tokens and output columns are zero; an
empty row returns 0), so the two agree and :meth:`ReferenceTransAct.from_transact` copies a
trained model's weights in. Nothing here is optimized on purpose: the serving fast path
(:mod:`transact.models.fast_transact`) must reproduce these outputs within 1e-5 in fp32.
The rules it shares with the model are imported, not restated: which positions are hidden
(``transact.models.sequence.history_mask``) and which TransAct configs this computation
covers (``transact.models.transact.serving_fast_path_blockers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from transact.data.schema import PAD_ACTION
from transact.models.sequence import history_mask
from transact.models.transact import require_serving_fast_path


@dataclass(frozen=True)
class ReferenceTransActConfig:
    """Shape of the reference TransAct (defaults: the paper's serving configuration).

    Args (named as in :class:`transact.models.TransActConfig`):
        num_action_types: action-embedding table size, padding id 0 included.
        d_action: action-type embedding size (32).
        d_item: item (PinSage) embedding size (32).
        num_layers: transformer encoder layers (2).
        num_heads: attention heads (1).
        dim_feedforward: feed-forward hidden size (32).
        k: output columns K kept from the front (most recent) of the sequence (10).
    """

    num_action_types: int = 6
    d_action: int = 32
    d_item: int = 32
    num_layers: int = 2
    num_heads: int = 1
    dim_feedforward: int = 32
    k: int = 10

    @property
    def d_model(self) -> int:
        """Transformer width with concat early fusion: d_action + 2 * d_item."""
        return self.d_action + 2 * self.d_item

    @property
    def out_dim(self) -> int:
        return (self.k + 1) * self.d_model


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
            config.num_action_types, config.d_action, padding_idx=PAD_ACTION
        )
        layer = nn.TransformerEncoderLayer(
            d_model=config.d_model,
            nhead=config.num_heads,
            dim_feedforward=config.dim_feedforward,
            dropout=0.0,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)

    @classmethod
    def from_transact(cls, model: Any) -> ReferenceTransAct:
        """Copy the weights of a ``transact.models.TransAct`` into a reference module; raises
        ``ValueError`` naming every config field it does not compute (concat fusion, no
        positions, ``first_k_max_pool``: ``serving_fast_path_blockers``)."""
        cfg = model.config
        require_serving_fast_path(cfg, "ReferenceTransAct")
        ref = cls(
            ReferenceTransActConfig(
                num_action_types=cfg.num_action_types,
                d_action=cfg.d_action,
                d_item=cfg.d_item,
                num_layers=cfg.num_layers,
                num_heads=cfg.num_heads,
                dim_feedforward=cfg.dim_feedforward,
                k=cfg.k,
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
        hidden = history_mask(action_types, action_times_ms, request_time_ms)
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
        return torch.cat([out[:, : self.config.k].flatten(1), pooled], dim=1)
