"""The sequence-encoder interface and the masking rules every encoder shares.

A sequence encoder turns a user's realtime action sequence (newest first, padded at the
end with action type 0) plus the candidate item into one vector per example. TransAct and
every baseline of Tables 1 and 3 implement :class:`SequenceEncoder`, so the ranker swaps
them by name (see :func:`transact.models.build_sequence_encoder`).

:func:`history_mask` is THE rule of which actions a prediction may read (no padding, nothing
at or after the request); training, the serving fast path and its reference all import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from transact.data.schema import PAD_ACTION

if TYPE_CHECKING:
    from transact.models.fast_training import FastTrainingOptions


class SequenceEncoder(nn.Module):
    """Base class: ``forward(action_types, action_embeddings, action_times_ms, request_time_ms,
    candidate_embedding) -> [B, out_dim]``.

    Inputs (the argument order of Pinterest's published TransAct module):
        action_types: ``[B, S]`` integer action ids, 0 = padding.
        action_embeddings: ``[B, S, d_item]`` item embeddings of the actions.
        action_times_ms: ``[B, S]`` integer action timestamps in ms.
        request_time_ms: ``[B]`` (or ``[B, 1]``) integer request time in ms.
        candidate_embedding: ``[B, d_item]`` embedding of the item being ranked.

    ``wide`` says the ranker should treat the output as a wide (linear) feature instead of
    feeding it to the feature cross (the WDL + seq baseline of Table 1).

    ``fast_training`` (``transact.models.fast_training.FastTrainingOptions`` or ``None``)
    says how an encoder with a fast training path computes its training forward: the same
    function with less work. The trainer sets it (``TrainConfig.training_path``); ``None``
    and eval mode run the plain forward.
    """

    wide: bool = False
    fast_training: FastTrainingOptions | None = None

    @property
    def reads_candidate(self) -> bool:
        """Whether the output depends on the candidate (early fusion); when not, an
        eval-mode :meth:`forward_users` encodes each user once for all its candidates."""
        return True

    @property
    def out_dim(self) -> int:
        """Width of the encoder's output vector."""
        raise NotImplementedError

    def forward(  # pragma: no cover - interface
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError

    def forward_users(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
        user_index: torch.Tensor,
    ) -> torch.Tensor:
        """Encode ``U`` users' sequences against ``B`` candidates -> ``[B, out_dim]``.

        The sequence inputs hold one row per user (``[U, S]``, ``[U, S, d_item]``,
        ``[U, S]``, ``[U]``), ``candidate_embedding`` is ``[B, d_item]`` and ``user_index
        [B]`` int64 names each candidate's user. This is how a request (one user, many
        candidates) reaches the encoder without copying the user's sequence per candidate.
        The base class is the reference: it gathers each candidate's user rows
        (:func:`gather_user_rows`) and runs :meth:`forward`; an encoder that shares per-user
        work (the serving ``FastTransAct``) overrides it. In eval mode an encoder that does
        not read the candidate (:attr:`reads_candidate`) runs :meth:`forward` on the ``U``
        users and copies each output to the user's candidates: the same values.
        """
        if not self.training and not self.reads_candidate:
            n_users, d_item = action_types.shape[0], candidate_embedding.shape[1]
            unread = candidate_embedding.new_zeros(n_users, d_item)  # shapes only
            per_user = self(action_types, action_embeddings, action_times_ms, request_time_ms,
                            unread)  # fmt: skip
            return gather_user_rows(per_user, user_index)
        rows = [
            gather_user_rows(t, user_index)
            for t in (action_types, action_embeddings, action_times_ms, request_time_ms)
        ]
        return self(*rows, candidate_embedding)


def is_tracing() -> bool:
    """True while torch.export / torch.compile / TorchScript trace the model (skip data checks)."""
    return bool(
        torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or torch.jit.is_scripting()
        or torch.jit.is_tracing()
    )


def check_sequence_inputs(
    action_types: torch.Tensor,
    action_embeddings: torch.Tensor,
    action_times_ms: torch.Tensor,
    request_time_ms: torch.Tensor,
    candidate_embedding: torch.Tensor,
    *,
    seq_len: int,
    d_item: int,
    num_action_types: int | None = None,
    check_values: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check shapes/dtypes (always) and values (eager only); return inputs cut to ``seq_len``.

    Like the published module, a longer sequence is cut to its ``seq_len`` most recent
    actions (newest first, so the kept prefix is the latest history); a shorter one raises.
    ``request_time_ms`` ``[B, 1]`` is flattened to ``[B]``. Returns ``(action_types,
    action_embeddings, action_times_ms, request_time_ms)``.
    """
    if action_types.dim() != 2:
        raise ValueError(f"action_types must be [B, S], got shape {tuple(action_types.shape)}")
    b, s = action_types.shape
    if s < seq_len:
        raise ValueError(f"action_types has S={s} positions, fewer than seq_len={seq_len}")
    if action_types.dtype.is_floating_point or action_types.dtype == torch.bool:
        raise TypeError(f"action_types must be an integer tensor, got {action_types.dtype}")
    if action_embeddings.shape != (b, s, d_item):
        raise ValueError(
            f"action_embeddings must be [B={b}, S={s}, d_item={d_item}], "
            f"got {tuple(action_embeddings.shape)}"
        )
    if action_times_ms.shape != (b, s):
        raise ValueError(
            f"action_times_ms must be [B={b}, S={s}], got {tuple(action_times_ms.shape)}"
        )
    if action_times_ms.dtype.is_floating_point:
        raise TypeError(f"action_times_ms must be integer ms (int64), got {action_times_ms.dtype}")
    if request_time_ms.dim() == 2 and request_time_ms.shape[1] == 1:
        request_time_ms = request_time_ms.reshape(-1)
    if request_time_ms.shape != (b,):
        raise ValueError(f"request_time_ms must be [B={b}], got {tuple(request_time_ms.shape)}")
    if request_time_ms.dtype.is_floating_point:
        raise TypeError(f"request_time_ms must be integer ms (int64), got {request_time_ms.dtype}")
    if candidate_embedding.shape != (b, d_item):
        raise ValueError(
            f"candidate_embedding must be [B={b}, d_item={d_item}], "
            f"got {tuple(candidate_embedding.shape)}"
        )
    if check_values and num_action_types is not None and not is_tracing():
        bad = (action_types < 0) | (action_types >= num_action_types)
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"action_types[{row}, {col}] = {int(action_types[row, col])} is outside "
                f"0..{num_action_types - 1} (0 = padding)"
            )
    if s > seq_len:
        action_types = action_types[:, :seq_len]
        action_embeddings = action_embeddings[:, :seq_len]
        action_times_ms = action_times_ms[:, :seq_len]
    return action_types, action_embeddings, action_times_ms, request_time_ms


def history_mask(
    action_types: torch.Tensor, action_times_ms: torch.Tensor, request_time_ms: torch.Tensor
) -> torch.Tensor:
    """``[B, S]`` bool, True where a position must never be read: padding or not before the request.

    Padding is action type 0; an action at or after ``request_time_ms`` would leak the
    future into the prediction, so it is hidden in training and in serving alike.
    """
    return (action_types == PAD_ACTION) | (action_times_ms >= request_time_ms.reshape(-1, 1))


def gather_user_rows(x: torch.Tensor, user_index: torch.Tensor) -> torch.Tensor:
    """Per-user rows ``[U, ...]`` -> per-candidate rows ``[B, ...]`` for ``user_index [B]``.

    One user (``U == 1``) is expanded as a stride-0 view (never copied per candidate; the
    index is then 0 everywhere by definition); several are gathered.
    """
    if x.shape[0] == 1:
        return x.expand(user_index.shape[0], *x.shape[1:])
    return x.index_select(0, user_index)
