"""Scoring many requests at once: each request's user sent once, the serving path's algebra.

An evaluation batch holds whole requests (one user, about 20 candidates each). Scored row
by row, the model copies the user's sequence onto every candidate and runs the sequence
encoder on each copy. :func:`group_by_request` sends each request's user-level fields once
(``[U, ...]`` with ``user_index [B]``, as the serving ranker does) and :func:`scoring_model`
makes a copy of a trained Pinnability that computes the same scores with less work:

* TransAct in a configuration the serving fast path computes
  (``transact.models.transact.serving_fast_path_blockers``): the fast encoder
  (:class:`~transact.models.fast_transact.FastTransAct`: the exact split first layer, only
  the user's visible positions, folded weights) applied one request at a time
  (:class:`~transact.models.fast_transact.per_user.PerUserFastTransAct`).
* An encoder whose output does not depend on the candidate (average pooling, CNN, RNN,
  LSTM, the vanilla transformer): encoded once per request and copied to its candidates
  (their ``forward_users``).
* Anything else (BST, a TransAct config off the fast path) keeps the model's own encoder,
  which gathers each candidate's user rows: the plain computation, and the reason is
  returned.

Exact: the scores equal the plain model's to float rounding
(``tests/models/test_scoring.py``). Both evaluation and the experiments score this way.
"""

from __future__ import annotations

import copy

import torch

from transact.data.schema import RankerInputs
from transact.models.fast_transact import FastTransAct
from transact.models.fast_transact.per_user import PerUserFastTransAct
from transact.models.pinnability import Pinnability
from transact.models.transact import TransAct, serving_fast_path_blockers

USER_FIELDS = ("user_embedding", "action_types", "action_embeddings", "action_times_ms",
               "request_time_ms")  # fmt: skip
"""The fields of :class:`RankerInputs` that belong to the request's user, not the candidate."""


def scoring_model(
    model: Pinnability, device: torch.device | str = "cpu"
) -> tuple[Pinnability, str | None]:
    """An eval-mode copy of ``model`` on ``device`` for :func:`group_by_request` inputs, and
    why its sequence encoder is the model's own (``None`` when it is the fast or per-request
    one). On a GPU the fast encoder takes all users of a batch at once (a loop over requests
    would launch kernels per request).

    The original is untouched; the copy's parameters do not require gradients.
    """
    device = torch.device(device)
    scorer = copy.deepcopy(model).eval().to(device)
    for p in scorer.parameters():
        p.requires_grad_(False)
    encoder = scorer.sequence_encoder
    if encoder is None or not encoder.reads_candidate:
        return scorer, None  # nothing to encode, or once per request (forward_users)
    if isinstance(encoder, TransAct):
        blockers = serving_fast_path_blockers(encoder.config)
        if not blockers:
            fast = FastTransAct.from_transact(encoder).to(device)
            one_by_one = device.type == "cpu"
            scorer.sequence_encoder = PerUserFastTransAct(fast) if one_by_one else fast
            return scorer, None
        return scorer, "; ".join(blockers)
    return scorer, f"{type(encoder).__name__} has no fast scoring path"


def group_by_request(
    inputs: RankerInputs, request_ids: torch.Tensor
) -> tuple[RankerInputs, torch.Tensor]:
    """``inputs`` with each request's user-level fields once: ``(inputs with [U, ...] user
    rows, user_index [B])``, for ``Pinnability.forward(inputs, user_index)``.

    ``request_ids`` ``[B]`` int64 names each row's request; rows of a request must carry
    the same user-level fields (:data:`USER_FIELDS`), which is checked on the
    action types, times, request time and user embedding: a mismatch raises
    ``ValueError`` naming the field and the row instead of scoring with another row's user.
    """
    first, user_index = _first_rows(request_ids)
    fields = inputs._asdict()
    for name in ("action_types", "action_times_ms", "request_time_ms", "user_embedding"):
        value = fields[name]
        same = value == value[first][user_index]
        if value.dim() > 1:
            same = same.flatten(1).all(dim=1)
        if not bool(same.all()):
            row = int((~same).nonzero()[0, 0])
            raise ValueError(
                f"RankerInputs.{name} of row {row} differs from row {int(first[user_index[row]])} "
                "of the same request: a request's rows must share its user's fields"
            )
    for name in USER_FIELDS:
        fields[name] = fields[name][first]
    return RankerInputs(**fields), user_index


def _first_rows(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``keys [B]``: the first row of each distinct key ``[U]`` and each row's key
    number ``[B]`` (in ``0..U-1``)."""
    _, inverse = torch.unique(keys, return_inverse=True)
    b = keys.shape[0]
    n_keys = int(inverse.max()) + 1 if b else 0
    rows = torch.arange(b, device=keys.device)
    first = torch.full((n_keys,), b, dtype=torch.long, device=keys.device)
    return first.scatter_reduce(0, inverse, rows, "amin"), inverse
