"""Model outputs on an evaluation set, in plain numpy, with the keys HIT@K groups by.

Evaluation is split in two so each half is testable alone: :func:`predict` runs a model
over :class:`~transact.data.schema.LabeledBatch` es (torch), and everything in
``hit.py``/``metrics.py``/``report.py`` works on the resulting :class:`Predictions`
(numpy only). The oracle of the simulated world is the same object with the
ground-truth probabilities as scores (:meth:`Predictions.oracle`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from transact.data.schema import LabeledBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """Per-impression scores, labels and grouping keys of one model on one evaluation set.

    Args:
        heads: head names, the column order of ``scores``/``labels``/``gt_probs``.
        scores: ``[N, H]`` float64 predicted probabilities f(x)_h.
        labels: ``[N, H]`` int8 in {0, 1}.
        user_ids / request_ids / item_ids: ``[N]`` int64; a chunk is (user_id, request_id).
        is_core: ``[N]`` bool, the user's core flag at request time (paper 4.2.1).
        top_interest: ``[N]`` int64 top-level interest of each item (diversity, 4.4.4).
        gt_probs: ``[N, H]`` float64 ground-truth probabilities (NaN when unknown).

    Example::

        preds = predict(model, example_set.batches(4096, shuffle=False), spec.heads)
        oracle = preds.oracle()
    """

    heads: tuple[str, ...]
    scores: np.ndarray
    labels: np.ndarray
    user_ids: np.ndarray
    request_ids: np.ndarray
    item_ids: np.ndarray
    is_core: np.ndarray
    top_interest: np.ndarray
    gt_probs: np.ndarray

    def __post_init__(self) -> None:
        n, h = len(self.user_ids), len(self.heads)
        for name in ("scores", "labels", "gt_probs"):
            arr = getattr(self, name)
            if arr.shape != (n, h):
                raise ValueError(f"Predictions.{name} has shape {arr.shape}, expected {(n, h)}")
        for name in ("request_ids", "item_ids", "is_core", "top_interest"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"Predictions.{name} has shape {arr.shape}, expected {(n,)}")
        bad = ~np.isfinite(self.scores)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"Predictions.scores is not finite at row {row}, head {self.heads[col]!r}: "
                f"{self.scores[row, col]} ({int(bad.sum())} such values)"
            )
        bad_labels = (self.labels != 0) & (self.labels != 1)
        if bad_labels.any():
            row, col = np.argwhere(bad_labels)[0]
            raise ValueError(
                f"Predictions.labels must be 0/1; row {row}, head {self.heads[col]!r} "
                f"is {self.labels[row, col]}"
            )

    def __len__(self) -> int:
        return len(self.user_ids)

    def head_index(self, head: str) -> int:
        try:
            return self.heads.index(head)
        except ValueError:
            raise KeyError(f"unknown head {head!r}; heads are {list(self.heads)}") from None

    def subset(self, mask: np.ndarray) -> Predictions:
        """Rows where ``mask`` ([N] bool) is true, e.g. ``~preds.is_core`` for non-core users."""
        return Predictions(
            heads=self.heads,
            scores=self.scores[mask],
            labels=self.labels[mask],
            user_ids=self.user_ids[mask],
            request_ids=self.request_ids[mask],
            item_ids=self.item_ids[mask],
            is_core=self.is_core[mask],
            top_interest=self.top_interest[mask],
            gt_probs=self.gt_probs[mask],
        )

    def oracle(self) -> Predictions:
        """The same rows scored by the world's ground-truth probabilities (the HIT@K ceiling)."""
        missing = np.isnan(self.gt_probs)
        if missing.any():
            row, col = np.argwhere(missing)[0]
            raise ValueError(
                f"no oracle: gt_probs is NaN at row {row}, head {self.heads[col]!r} "
                "(real logs have no ground truth; only the simulated world does)"
            )
        return replace(self, scores=self.gt_probs.astype(np.float64))

    def with_scores(self, scores: np.ndarray) -> Predictions:
        """The same rows and labels with other scores (another model on the same set)."""
        return replace(self, scores=np.asarray(scores, dtype=np.float64))

    def save(self, path: str | Path) -> None:
        """Write a compressed ``.npz`` (written to a temp file, then renamed)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            heads=np.array(self.heads),
            scores=self.scores,
            labels=self.labels,
            user_ids=self.user_ids,
            request_ids=self.request_ids,
            item_ids=self.item_ids,
            is_core=self.is_core,
            top_interest=self.top_interest,
            gt_probs=self.gt_probs,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Predictions:
        with np.load(path) as z:
            return cls(
                heads=tuple(str(h) for h in z["heads"]),
                scores=z["scores"],
                labels=z["labels"],
                user_ids=z["user_ids"],
                request_ids=z["request_ids"],
                item_ids=z["item_ids"],
                is_core=z["is_core"],
                top_interest=z["top_interest"],
                gt_probs=z["gt_probs"],
            )

    @classmethod
    def concat(cls, parts: list[Predictions]) -> Predictions:
        if not parts:
            raise ValueError("Predictions.concat needs at least one part")
        heads = parts[0].heads
        for p in parts:
            if p.heads != heads:
                raise ValueError(f"Predictions.concat: heads differ: {heads} vs {p.heads}")
        return cls(
            heads=heads,
            **{
                f: np.concatenate([getattr(p, f) for p in parts])
                for f in (
                    "scores",
                    "labels",
                    "user_ids",
                    "request_ids",
                    "item_ids",
                    "is_core",
                    "top_interest",
                    "gt_probs",
                )
            },
        )


def batch_to_predictions(
    batch: LabeledBatch, probabilities: torch.Tensor, heads: tuple[str, ...]
) -> Predictions:
    """One batch's ``[B, H]`` probabilities plus its labels and keys, as numpy."""
    return Predictions(
        heads=heads,
        scores=probabilities.detach().float().cpu().numpy().astype(np.float64),
        labels=batch.labels.cpu().numpy().astype(np.int8),
        user_ids=batch.user_ids.cpu().numpy().astype(np.int64),
        request_ids=batch.request_ids.cpu().numpy().astype(np.int64),
        item_ids=batch.item_ids.cpu().numpy().astype(np.int64),
        is_core=batch.is_core.cpu().numpy().astype(bool),
        top_interest=batch.top_interest.cpu().numpy().astype(np.int64),
        gt_probs=batch.gt_probs.cpu().numpy().astype(np.float64),
    )


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    batches: Iterable[LabeledBatch],
    heads: tuple[str, ...],
    *,
    device: torch.device | str = "cpu",
    progress: bool = False,
    fast: bool = True,
) -> Predictions:
    """Run ``model`` (``RankerInputs -> [B, H]`` logits) in eval mode over ``batches``.

    The model is switched to eval mode (no dropout, no random time-window mask) and put
    back in its previous mode afterwards. Probabilities are ``sigmoid(logits)``.

    With ``fast`` (default) a :class:`~transact.models.Pinnability` scores each batch's
    requests with their user sent once (``transact.models.scoring``: the serving path's
    exact algebra for TransAct, one encoding per request for encoders that do not read the
    candidate): the same scores to float rounding, several times faster. A batch must then
    hold whole requests' rows with their ``request_ids`` (evaluation batches
    in order do; a request cut between batches is scored correctly, only less shared).
    ``fast=False``, or any other model, runs ``model(inputs)`` row by row.
    """
    from tqdm import tqdm

    from transact.models.pinnability import Pinnability
    from transact.models.scoring import group_by_request, scoring_model

    scorer = None
    if fast and isinstance(model, Pinnability):
        scorer, reason = scoring_model(model, device)
        if reason is not None:
            log.info("scoring %s with the model's own sequence encoder: %s",
                     type(model).__name__, reason)  # fmt: skip
    was_training = model.training
    model.eval()
    parts: list[Predictions] = []
    try:
        it = tqdm(batches, desc="predict", unit="batch", disable=not progress, leave=False)
        for batch in it:
            inputs = batch.inputs.to(device)
            if scorer is not None:
                logits = scorer(*group_by_request(inputs, batch.request_ids.to(device)))
            else:
                logits = model(inputs)
            if logits.shape != batch.labels.shape:
                raise ValueError(
                    f"model returned logits of shape {tuple(logits.shape)} for labels of "
                    f"shape {tuple(batch.labels.shape)}"
                )
            parts.append(batch_to_predictions(batch, torch.sigmoid(logits.float()), heads))
    finally:
        model.train(was_training)
    return Predictions.concat(parts)
