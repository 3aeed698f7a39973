"""A run's heads by action name: which heads, their utility weights, the label-weight matrix.

Paper 3.1-3.2 define the ranker for any set of k actions: k heads, Eq. (2)'s label-weight
matrix M over them, and Eq. (3)'s utility weights u_h of the ranking score S. A run config
declares them by name in its ``[heads]`` table::

    [heads]
    names = ["click", "long_view", "like", "hate"]      # default: the dataset's label actions
    utility = { click = 1.0, long_view = 1.0, like = 4.0, hate = -20.0 }
    [heads.label_weights]                               # M[head][action]; optional
    like = { like = 10.0, hate = 50.0 }                 # the impression column: impression = w
    hate = { like = 5.0, hate = 10.0 }

:class:`HeadsConfig` checks the table's types when a run config is read;
:meth:`HeadsConfig.resolve` checks it against a dataset's :class:`ActionVocabulary` and
label actions (the manifest's ``heads``) and fills the defaults. Every bad name is one
line naming its field, e.g. ``heads.label_weights.like.hate: unknown action 'hate'``.

Defaults: every label action of the dataset is a head; ``u_h = -1`` for a negative action
(lower is better) and ``+1`` for every other head; M is the ``[loss]`` table's
(standard BCE unless it says otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transact.data.schema import ActionVocabulary

WHERE = "heads"
FIELDS = ("names", "utility", "label_weights")


def default_utility(heads: Sequence[str], actions: ActionVocabulary) -> dict[str, float]:
    """``u_h`` when a run names none: -1 for a negative action's head, +1 for the others."""
    return {h: -1.0 if actions.is_negative(h) else 1.0 for h in heads}


def _number(value: Any, where: str, errors: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append(f"{where}: expected a number, got {value!r}")
        return None
    if not math.isfinite(value):
        errors.append(f"{where}: must be finite, got {value}")
        return None
    return float(value)


@dataclass(frozen=True)
class ResolvedHeads:
    """The heads of one run on one dataset, every default filled in.

    Args:
        names: the heads, in the column order of labels and logits.
        utility: ``u_h`` of every head (Eq. 3).
        label_weights: M by name (``{head: {action: weight}}``), None for the ``[loss]``
            table's matrix.
    """

    names: tuple[str, ...]
    utility: dict[str, float]
    label_weights: dict[str, dict[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"names": list(self.names), "utility": dict(self.utility)}
        if self.label_weights is not None:
            out["label_weights"] = {h: dict(r) for h, r in self.label_weights.items()}
        return out


@dataclass(frozen=True)
class HeadsConfig:
    """The ``[heads]`` table of a run config (see the module docstring).

    Args:
        names: heads in order; None takes every label action of the dataset.
        utility: ``u_h`` by head name; None takes :func:`default_utility`.
        label_weights: M by name, ``{head: {action or impression: weight}}``; None keeps
            the ``[loss]`` table's matrix.
    """

    names: tuple[str, ...] | None = None
    utility: Mapping[str, float] | None = None
    label_weights: Mapping[str, Mapping[str, float]] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HeadsConfig:
        """Check the types of a ``[heads]`` table; raises one ``ValueError`` naming every
        bad field (``heads.utility.like: expected a number, got 'a lot'``)."""
        errors = [
            f"{WHERE}.{k}: unknown field (known: {list(FIELDS)})" for k in d if k not in FIELDS
        ]
        names = None
        if "names" in d:
            raw = d["names"]
            if not isinstance(raw, list | tuple) or not all(isinstance(n, str) for n in raw):
                errors.append(f"{WHERE}.names: expected a list of action names, got {raw!r}")
            elif not raw:
                errors.append(f"{WHERE}.names: empty; a ranker needs at least one head")
            elif len(set(raw)) != len(raw):
                errors.append(f"{WHERE}.names: duplicates in {list(raw)}")
            else:
                names = tuple(raw)
        utility = None
        if "utility" in d:
            raw = d["utility"]
            if not isinstance(raw, Mapping):
                errors.append(f"{WHERE}.utility: expected a table {{head = weight}}, got {raw!r}")
            else:
                utility = {}
                for head, value in raw.items():
                    number = _number(value, f"{WHERE}.utility.{head}", errors)
                    if number is not None:
                        utility[str(head)] = number
        label_weights: dict[str, dict[str, float]] | None = None
        if "label_weights" in d:
            raw = d["label_weights"]
            if not isinstance(raw, Mapping):
                errors.append(
                    f"{WHERE}.label_weights: expected a table {{head = {{action = weight}}}}, "
                    f"got {raw!r}"
                )
            else:
                label_weights = {}
                for head, row in raw.items():
                    where = f"{WHERE}.label_weights.{head}"
                    if not isinstance(row, Mapping):
                        errors.append(f"{where}: expected a table {{action = weight}}, got {row!r}")
                        continue
                    label_weights[str(head)] = {}
                    for action, value in row.items():
                        number = _number(value, f"{where}.{action}", errors)
                        if number is not None and number < 0:
                            errors.append(f"{where}.{action}: must be >= 0, got {number}")
                        elif number is not None:
                            label_weights[str(head)][str(action)] = number
        if errors:
            raise ValueError("\n".join(errors))
        return cls(names=names, utility=utility, label_weights=label_weights)

    def to_dict(self) -> dict[str, Any]:
        """The table as written (None fields left out)."""
        out: dict[str, Any] = {}
        if self.names is not None:
            out["names"] = list(self.names)
        if self.utility is not None:
            out["utility"] = dict(self.utility)
        if self.label_weights is not None:
            out["label_weights"] = {h: dict(r) for h, r in self.label_weights.items()}
        return out

    def resolve_names(self, actions: ActionVocabulary, available: Sequence[str]) -> tuple[str, ...]:
        """The heads on a dataset with ``actions`` whose label actions are ``available``."""
        if self.names is None:
            return tuple(available)
        errors = []
        for i, name in enumerate(self.names):
            where = f"{WHERE}.names[{i}]"
            if name not in actions.names:
                errors.append(f"{where}: unknown action {name!r} (actions: {list(actions.names)})")
            elif name == actions.impression:
                errors.append(f"{where}: {name!r} is the impression every example has, not a head")
            elif name not in available:
                errors.append(
                    f"{where}: the dataset has no labels of {name!r} (label actions: "
                    f"{list(available)})"
                )
        if errors:
            raise ValueError("\n".join(errors))
        return self.names

    def resolve(self, actions: ActionVocabulary, available: Sequence[str]) -> ResolvedHeads:
        """Check every name against the dataset and fill the defaults (module docstring).

        Args:
            actions: the dataset's action vocabulary.
            available: its label actions (the manifest's ``heads``), or a model's heads.

        Raises:
            ValueError: one line per bad name, e.g. ``heads.utility.hate: unknown action
                'hate'``.
        """
        names = self.resolve_names(actions, available)
        errors: list[str] = []

        def check(name: str, where: str, *, column: bool = False) -> bool:
            if column and name == (actions.impression or "impression"):
                return True
            if name not in actions.names:
                errors.append(f"{where}: unknown action {name!r}")
                return False
            if name not in names:
                extra = f" and {actions.impression or 'impression'!r}" if column else ""
                errors.append(f"{where}: {name!r} is not a head (heads: {list(names)}{extra})")
                return False
            return True

        utility = default_utility(names, actions)
        if self.utility is not None:
            utility = {h: 0.0 for h in names}
            for head, weight in self.utility.items():
                if check(head, f"{WHERE}.utility.{head}"):
                    utility[head] = float(weight)
            if not errors and not any(utility.values()):
                errors.append(f"{WHERE}.utility: every weight is 0; the ranking score would be 0")
        label_weights = None
        if self.label_weights is not None:
            label_weights = {}
            for head, row in self.label_weights.items():
                if not check(head, f"{WHERE}.label_weights.{head}"):
                    continue
                label_weights[head] = {
                    a: w
                    for a, w in row.items()
                    if check(a, f"{WHERE}.label_weights.{head}.{a}", column=True)
                }
        if errors:
            raise ValueError("\n".join(errors))
        return ResolvedHeads(names, utility, label_weights)
