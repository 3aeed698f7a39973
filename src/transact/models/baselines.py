"""Non-transformer sequence encoders of Tables 1 and 3 (paper 4.2.2 and 4.3.2).

They read only the item-embedding sequence (the paper: "encode the PinSage embedding
sequence"), never the action types, and hide padding and future actions exactly as
TransAct does (:func:`transact.models.sequence.history_mask`); they have no random time
window (that is TransAct's 3.3.4). A row with nothing to read returns zeros. The
transformer baselines (vanilla transformer, BST) are TransAct configurations: see
:mod:`transact.models.encoders`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from transact.models.sequence import SequenceEncoder, check_sequence_inputs, history_mask
from transact.models.transact import masked_max_pool


@dataclass(frozen=True)
class BaselineConfig:
    """Hyperparameters of the non-transformer baselines (paper 4.3.2 defaults).

    Args:
        d_item: item embedding size.
        seq_len: |S|.
        channels: CNN output channels (256).
        kernel_size / stride: CNN kernel (4) and stride (1).
        hidden_size / num_layers: RNN and LSTM hidden size (256) and layers (2).
    """

    d_item: int = 32
    seq_len: int = 100
    channels: int = 256
    kernel_size: int = 4
    stride: int = 1
    hidden_size: int = 256
    num_layers: int = 2

    def __post_init__(self) -> None:
        for name in ("d_item", "seq_len", "channels", "kernel_size", "stride", "hidden_size",
                     "num_layers"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"BaselineConfig.{name}={getattr(self, name)} must be >= 1")
        if self.kernel_size > self.seq_len:
            raise ValueError(
                f"BaselineConfig.kernel_size={self.kernel_size} exceeds seq_len={self.seq_len}"
            )


class _Baseline(SequenceEncoder):
    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def reads_candidate(self) -> bool:
        """The baselines encode the sequence alone (no early fusion)."""
        return False

    def _prepare(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked ``[B, S, d_item]`` embeddings with masked positions zeroed, and the mask."""
        action_types, action_embeddings, action_times_ms, request_time_ms = check_sequence_inputs(
            action_types,
            action_embeddings,
            action_times_ms,
            request_time_ms,
            candidate_embedding,
            seq_len=self.config.seq_len,
            d_item=self.config.d_item,
        )
        masked = history_mask(action_types, action_times_ms, request_time_ms)
        x = torch.where(masked[:, :, None], torch.zeros_like(action_embeddings), action_embeddings)
        return x, masked


class AveragePooling(_Baseline):
    """Mean of the readable action item embeddings, ``[B, S, d_item] -> [B, d_item]``.

    With ``wide=True`` it is the WDL + seq baseline of Table 1: the ranker uses the pooled
    embedding as a wide (linear) feature instead of crossing it.
    """

    def __init__(self, config: BaselineConfig, wide: bool = False) -> None:
        super().__init__(config)
        self.wide = wide

    @property
    def out_dim(self) -> int:
        return self.config.d_item

    def forward(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> torch.Tensor:
        x, masked = self._prepare(
            action_types, action_embeddings, action_times_ms, request_time_ms, candidate_embedding
        )
        count = (~masked).sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
        return x.sum(dim=1) / count


class CNNEncoder(_Baseline):
    """1-d CNN (256 channels, kernel 4, stride 1) + ReLU + max over windows, ``-> [B, 256]``.

    Max pooling reads only windows that cover at least one readable action; the output is
    0 for an empty history.
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        self.conv = nn.Conv1d(config.d_item, config.channels, config.kernel_size, config.stride)

    @property
    def out_dim(self) -> int:
        return self.config.channels

    def forward(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> torch.Tensor:
        x, masked = self._prepare(
            action_types, action_embeddings, action_times_ms, request_time_ms, candidate_embedding
        )
        out = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # [B, W, C]
        k, st = self.config.kernel_size, self.config.stride
        readable = (~masked).to(x.dtype)[:, None, :]
        window_readable = nn.functional.max_pool1d(readable, k, st)[:, 0] > 0  # [B, W]
        return masked_max_pool(out, ~window_readable)


class RecurrentEncoder(_Baseline):
    """2-layer RNN or LSTM (hidden 256) over the readable actions, oldest to newest.

    Readable actions are compacted to the front of each row (padding and hidden actions
    removed), oldest first, so the output is the last layer's hidden state right after the
    most recent readable action, ``[B, hidden_size]``; 0 for an empty history.

    Two computations of that function (equal to float rounding, gradients included):

    * **packed** (the reference): the rows as a ``PackedSequence``, each run for exactly
      its own length. Training on the plain path (``fast_training`` unset) runs it.
    * **dense** (the fast training path and all inference): the compacted rows as one
      padded ``[B, L, d]`` batch, ``L`` the batch's longest readable history, and each
      row's output read at its own last step. A recurrence is causal, so the steps after a
      row's length change nothing it outputs, and no gradient reaches them. On CPU the
      packed recurrence runs step by step with a shrinking batch; the padded one takes
      torch's fused (oneDNN) kernels: 5.9x the packed one's training examples/s for the
      LSTM and 2.7x for the RNN at batch 512 (docs/performance.md, "Table 3's encoders
      and BST").
    """

    def __init__(self, config: BaselineConfig, cell: str) -> None:
        super().__init__(config)
        if cell not in ("rnn", "lstm"):
            raise ValueError(f"RecurrentEncoder cell={cell!r} not in ('rnn', 'lstm')")
        rnn_cls = nn.LSTM if cell == "lstm" else nn.RNN
        self.rnn = rnn_cls(
            config.d_item, config.hidden_size, num_layers=config.num_layers, batch_first=True
        )

    @property
    def out_dim(self) -> int:
        return self.config.hidden_size

    def forward(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> torch.Tensor:
        x, masked = self._prepare(
            action_types, action_embeddings, action_times_ms, request_time_ms, candidate_embedding
        )
        b, s, _ = x.shape
        position = torch.arange(s, device=x.device).expand(b, s)
        # Readable positions first, oldest (largest position) first; hidden ones after.
        order = torch.where(masked, s + position, -position).argsort(dim=1)
        chronological = x.gather(1, order[:, :, None].expand_as(x))
        lengths = (~masked).sum(dim=1)
        if self.training and self.fast_training is None:
            last = self._packed(chronological, lengths)
        else:
            last = self._dense(chronological, lengths)
        return torch.where((lengths > 0)[:, None], last, torch.zeros_like(last))

    def _packed(self, chronological: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The last layer's state after each row's last readable step, rows packed."""
        packed = pack_padded_sequence(
            chronological, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state  # [layers, B, H]
        return h_n[-1]

    def _dense(self, chronological: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The same as :meth:`_packed` from one padded run cut to the longest row: the top
        layer's output at each row's last readable step (step 0 for an empty row, which
        the caller zeroes)."""
        if lengths.numel() == 0:
            return chronological.new_zeros(0, self.config.hidden_size)
        longest = max(int(lengths.max()), 1)
        out, _ = self.rnn(chronological[:, :longest])  # [B, L, H]
        last_step = (lengths.clamp(min=1) - 1).to(out.device)
        return out[torch.arange(out.shape[0], device=out.device), last_step]
