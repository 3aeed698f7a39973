"""Pinnability's weighted multi-head binary cross-entropy (paper 3.1 Eq. 1-2, Appendix A).

Per example and head h: ``w_u * w_h * BCE(f(x)_h, y_h)`` (Eq. 1; its printed
``(1 - y) (1 - log f)`` is the standard ``(1 - y) log(1 - f)``), with

* Eq. 2 ``sum_a M[h, a] * y_a`` over the action columns of the label-weight matrix M
  ``[H, H+1]``, plus a last, always-present impression column ``M[h, H]``: every logged
  example is an impression, so an example with no positive label still weighs (Eq. 2
  alone gives it weight 0; see ``../shared/README.md``). Two ways to combine them:
  ``combine="max"`` (default): ``w_h = max(sum_a M[h, a] y_a, M[h, H])``, the impression
  weight is a floor. With M diagonal (identity) and unit impression weight this is exactly
  standard multi-head BCE, as the paper states for a diagonal M, and Table 7 gives the
  appendix's worked weights (100, 100, 5) unchanged, its "0" becoming the floor.
  M is data: :func:`label_weight_matrix` builds it from weights by action name (a run
  config's ``[heads.label_weights]``; ``configs/transact_paper.toml`` writes Table 7).
  ``combine="sum"``: ``w_h = sum_a M[h, a] y_a + M[h, H]`` (the impression as one more
  always-1 action); standard BCE is then ``M = [0 | 1]``.
* ``w_u = prod_f factor_f[user attribute f]``: product of per-attribute factors (user
  state, location, gender, ...), read from categorical user features; 1 by default.

The loss is the mean over the batch of the per-example weighted sum over heads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transact.data.schema import ActionVocabulary, FeatureSpec

COMBINE_MODES = ("max", "sum")


def label_weight_matrix(
    heads: Sequence[str],
    rows: Mapping[str, Mapping[str, float]],
    *,
    impression: str = "impression",
    impression_weight: float = 1.0,
    where: str = "heads.label_weights",
) -> torch.Tensor:
    """The ``[H, H+1]`` label-weight matrix M written by action name (paper Eq. 2, Table 7).

    ``rows[head][action]`` is ``M[head, action]``: the weight head ``head``'s cross-entropy
    gets when the example's label ``action`` is 1. The columns are the heads (paper: ``a in
    H``) and ``impression``, the always-present column every example carries. A head
    without a row, and a row without the ``impression`` key, take ``impression_weight``
    there and 0 elsewhere (a missing row is standard BCE). Every bad name raises one
    ``ValueError`` listing each as ``where.head.action: why``.

    Example (the paper's Appendix A, Table 7)::

        label_weight_matrix(("click", "repin", "hide"), {
            "click": {"click": 100, "hide": 100},
            "repin": {"repin": 100, "hide": 100},
            "hide": {"click": 1, "repin": 5, "hide": 10},
        })
    """
    heads = tuple(heads)
    errors = [f"{where}.{h}: not a head (heads: {list(heads)})" for h in rows if h not in heads]
    m = torch.zeros(len(heads), len(heads) + 1)
    m[:, -1] = float(impression_weight)
    for i, head in enumerate(heads):
        for action, weight in rows.get(head, {}).items():
            if action == impression:
                col = len(heads)
            elif action in heads:
                col = heads.index(action)
            else:
                errors.append(
                    f"{where}.{head}.{action}: not a head; M's columns are the heads "
                    f"{list(heads)} and {impression!r}"
                )
                continue
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                errors.append(f"{where}.{head}.{action}: expected a number, got {weight!r}")
            elif not (math.isfinite(weight) and weight >= 0):
                errors.append(f"{where}.{head}.{action}: must be finite and >= 0, got {weight}")
            else:
                m[i, col] = float(weight)
    if errors:
        raise ValueError("\n".join(errors))
    return m


def standard_matrix(num_heads: int, impression_weight: float = 1.0) -> torch.Tensor:
    """``[H, H+1]`` matrix ``[0 | w]``: every head weighs ``impression_weight`` on every example
    in both combine modes, i.e. standard multi-head BCE (times that weight)."""
    m = torch.zeros(num_heads, num_heads + 1)
    m[:, -1] = impression_weight
    return m


def diagonal_matrix(
    num_heads: int, weight: float = 1.0, impression_weight: float = 0.0
) -> torch.Tensor:
    """``[H, H+1]``: ``weight`` on the diagonal (Eq. 2 with M diagonal) + impression column."""
    m = torch.zeros(num_heads, num_heads + 1)
    m[:, :num_heads] = torch.eye(num_heads) * weight
    m[:, -1] = impression_weight
    return m


class WeightedMultiHeadBCE(nn.Module):
    """Eq. 1 with Eq. 2 head weights and per-user weights: ``([B,H], [B,H], [B,F]) -> scalar``.

    Args:
        heads: head names, in the label/logit column order.
        label_weights: M, ``[H, H+1]``; row = head, column = action (same order as
            ``heads``) then the always-present impression column. Default
            :func:`standard_matrix` (plain multi-head BCE).
        user_weights: ``{feature_name: {local_index: weight}}``; unlisted indices weigh 1.
            Each feature must be in ``spec.user_weight_features``.
        spec: the FeatureSpec (needed when ``user_weights`` is given, to find the
            feature's column in ``categorical`` and its cardinality).
        combine: ``"max"`` (impression weight is a floor, default) or ``"sum"`` (impression
            is one more always-present action); see the module docstring.

    Example::

        m = label_weight_matrix(spec.heads, {"like": {"like": 10, "hate": 50}})
        loss_fn = WeightedMultiHeadBCE(spec.heads, m, {"user_state": {1: 2.0}}, spec=spec)
        loss = loss_fn(logits, labels, inputs.categorical)
    """

    label_weights: torch.Tensor

    def __init__(
        self,
        heads: Sequence[str],
        label_weights: torch.Tensor | Sequence[Sequence[float]] | None = None,
        user_weights: Mapping[str, Mapping[int, float]] | None = None,
        spec: FeatureSpec | None = None,
        combine: str = "max",
    ) -> None:
        super().__init__()
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine={combine!r} not in {COMBINE_MODES}")
        self.combine = combine
        self.heads = tuple(heads)
        h = len(self.heads)
        if h == 0:
            raise ValueError("WeightedMultiHeadBCE needs at least one head")
        m = standard_matrix(h) if label_weights is None else torch.as_tensor(label_weights)
        m = m.to(torch.float32)
        if m.shape != (h, h + 1):
            raise ValueError(
                f"label_weights must be [H={h}, H+1={h + 1}] (heads {self.heads} + impression), "
                f"got {tuple(m.shape)}"
            )
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
            raise ValueError(f"label_weights must be finite and >= 0, got {m.tolist()}")
        self.register_buffer("label_weights", m)
        self.user_weight_columns: list[int] = []
        tables: list[torch.Tensor] = []
        for name, factors in (user_weights or {}).items():
            if spec is None:
                raise ValueError("user_weights need the FeatureSpec (spec=...) to find features")
            if name not in spec.user_weight_features:
                raise ValueError(
                    f"user_weights feature {name!r} is not in spec.user_weight_features "
                    f"{spec.user_weight_features}"
                )
            col = spec.categorical_index(name)
            card = spec.categorical[col].cardinality
            table = torch.ones(card)
            for index, weight in factors.items():
                if not 0 <= int(index) < card:
                    raise ValueError(
                        f"user_weights[{name!r}] index {index} is outside 0..{card - 1}"
                    )
                if not float(weight) >= 0:
                    raise ValueError(f"user_weights[{name!r}][{index}] = {weight} must be >= 0")
                table[int(index)] = float(weight)
            self.user_weight_columns.append(col)
            tables.append(table)
        self.user_weight_tables = nn.ParameterList(
            nn.Parameter(t, requires_grad=False) for t in tables
        )

    def head_weights(self, labels: torch.Tensor) -> torch.Tensor:
        """Eq. 2 plus impression: ``[B, H]`` labels -> ``[B, H]`` weights w_h."""
        m = self.label_weights.to(labels.dtype)
        from_labels = labels @ m[:, :-1].T
        if self.combine == "sum":
            return from_labels + m[:, -1]
        return torch.maximum(from_labels, m[:, -1].expand_as(from_labels))

    def user_weight(self, categorical: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """``[B]`` per-example w_u (product of the configured factors; 1 without any)."""
        w = torch.ones(batch_size, device=self.label_weights.device)
        if not self.user_weight_columns:
            return w
        if categorical is None:
            raise ValueError("user_weights are configured, so forward needs `categorical`")
        for col, table in zip(self.user_weight_columns, self.user_weight_tables, strict=True):
            w = w * table[categorical[:, col]]
        return w

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, categorical: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean over the batch of ``w_u * sum_h w_h * BCE(sigmoid(logits_h), labels_h)``.

        Args:
            logits: ``[B, H]`` raw scores.
            labels: ``[B, H]`` in {0, 1}.
            categorical: ``[B, F]`` categorical local indices (for w_u).
        """
        if logits.shape != labels.shape or logits.dim() != 2 or logits.shape[1] != len(self.heads):
            raise ValueError(
                f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must both be "
                f"[B, H={len(self.heads)}]"
            )
        logits = logits.float()  # BCE in fp32 also under bf16/fp16 autocast
        labels = labels.to(logits.dtype)
        bad = (labels != 0) & (labels != 1)
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"labels[{row}, {col}] (head {self.heads[col]!r}) = {float(labels[row, col])} "
                "is not 0 or 1"
            )
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        per_example = (self.head_weights(labels) * bce).sum(dim=1)
        w_u = self.user_weight(categorical, logits.shape[0]).to(logits.dtype)
        return (w_u * per_example).mean()


@dataclass(frozen=True)
class LossConfig:
    """Loss settings as they appear in a run config (TOML ``[loss]`` table).

    Args:
        label_weights: "standard" (plain BCE) or an explicit ``[H][H+1]`` matrix in head
            order. Weights by action name (the paper's Table 7) are a run config's
            ``[heads.label_weights]`` (:func:`label_weight_matrix`).
        impression_weight: the impression column of "standard" and of the by-name rows.
        user_weights: ``{feature_name: {local_index: weight}}`` (TOML keys are strings;
            they are converted to ints).
        combine: ``"max"`` or ``"sum"`` (see :class:`WeightedMultiHeadBCE`).
    """

    label_weights: str | tuple[tuple[float, ...], ...] = "standard"
    impression_weight: float = 1.0
    user_weights: dict[str, dict[int, float]] = field(default_factory=dict)
    combine: str = "max"

    def __post_init__(self) -> None:
        if self.label_weights == "table7":
            raise ValueError(
                "LossConfig.label_weights='table7': the paper's Table 7 is written by action "
                "name in [heads.label_weights] (see configs/transact_paper.toml)"
            )
        if isinstance(self.label_weights, str) and self.label_weights != "standard":
            raise ValueError(
                f"LossConfig.label_weights={self.label_weights!r}: expected 'standard' or a "
                "matrix (weights by action name go in [heads.label_weights])"
            )
        if self.combine not in COMBINE_MODES:
            raise ValueError(f"LossConfig.combine={self.combine!r} not in {COMBINE_MODES}")
        if not self.impression_weight >= 0:
            raise ValueError(f"LossConfig.impression_weight={self.impression_weight} must be >= 0")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LossConfig:
        """Validate a TOML/JSON table; errors name the bad field."""
        known = {"label_weights", "impression_weight", "user_weights", "combine"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"LossConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        if "label_weights" in d:
            lw = d["label_weights"]
            if isinstance(lw, str):
                kwargs["label_weights"] = lw
            elif isinstance(lw, list | tuple) and all(isinstance(r, list | tuple) for r in lw):
                try:
                    kwargs["label_weights"] = tuple(tuple(float(v) for v in r) for r in lw)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"LossConfig.label_weights: non-numeric entry in {lw!r}"
                    ) from None
            else:
                raise TypeError(
                    f"LossConfig.label_weights: expected a name or a matrix, got {lw!r}"
                )
        if "impression_weight" in d:
            iw = d["impression_weight"]
            if isinstance(iw, bool) or not isinstance(iw, int | float):
                raise TypeError(f"LossConfig.impression_weight: expected a number, got {iw!r}")
            kwargs["impression_weight"] = float(iw)
        if "user_weights" in d:
            uw = d["user_weights"]
            if not isinstance(uw, Mapping):
                raise TypeError(f"LossConfig.user_weights: expected a table, got {uw!r}")
            parsed: dict[str, dict[int, float]] = {}
            for name, factors in uw.items():
                if not isinstance(factors, Mapping):
                    raise TypeError(
                        f"LossConfig.user_weights.{name}: expected a table, got {factors!r}"
                    )
                try:
                    parsed[str(name)] = {int(k): float(v) for k, v in factors.items()}
                except (TypeError, ValueError):
                    raise ValueError(
                        f"LossConfig.user_weights.{name}: keys must be integer indices and values "
                        f"numbers, got {dict(factors)!r}"
                    ) from None
            kwargs["user_weights"] = parsed
        if "combine" in d:
            if not isinstance(d["combine"], str):
                raise TypeError(f"LossConfig.combine: expected a string, got {d['combine']!r}")
            kwargs["combine"] = d["combine"]
        return cls(**kwargs)

    def matrix(
        self,
        heads: Sequence[str],
        by_name: Mapping[str, Mapping[str, float]] | None = None,
        impression: str = "impression",
    ) -> torch.Tensor:
        """The ``[H, H+1]`` label-weight matrix for ``heads``: ``by_name`` (a run config's
        ``[heads.label_weights]``, columns by action name) when given, else this table's."""
        if by_name is not None:
            if self.label_weights != "standard":
                raise ValueError(
                    "[loss].label_weights and [heads.label_weights] both set M; keep one"
                )
            return label_weight_matrix(
                heads, by_name, impression=impression, impression_weight=self.impression_weight
            )
        if self.label_weights == "standard":
            return standard_matrix(len(heads), self.impression_weight)
        return torch.tensor(self.label_weights, dtype=torch.float32)

    def build(
        self, spec: FeatureSpec, by_name: Mapping[str, Mapping[str, float]] | None = None
    ) -> WeightedMultiHeadBCE:
        """The loss module for ``spec`` (heads and user-weight features); ``by_name`` as in
        :meth:`matrix` (its impression column is the vocabulary's impression action)."""
        return WeightedMultiHeadBCE(
            spec.heads,
            self.matrix(spec.heads, by_name, impression_key(spec.actions)),
            self.user_weights or None,
            spec=spec,
            combine=self.combine,
        )


def impression_key(actions: ActionVocabulary) -> str:
    """The name of M's always-present column: the vocabulary's impression action, or
    ``"impression"`` for a vocabulary without one."""
    return actions.impression or "impression"
