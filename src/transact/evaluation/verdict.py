"""Does a measured lift settle one cell of the paper's tables? holds / contradicted / unsettled.

A cell is a paper number (a relative lift in percent) and our lift with its 95% interval
(:class:`~transact.evaluation.significance.LiftInterval`). Two rules, chosen by what the
paper claims about the cell (docs/evaluation.md, "Verdicts"):

* **direction** (the paper reports a significant lift): the paper's side is the sign of
  its number, never the head's name (a hide lift the paper reports as negative has the
  negative side). ``holds`` when the interval excludes 0 on that side, ``contradicted``
  when it excludes 0 on the other side, ``unsettled`` otherwise.
* **equivalence** (the paper marks the cell insignificant, or the table claims "no
  effect", like Table 8's positional encodings): the claim is "no real benefit". With the
  head's *benefit direction* ``b`` (the sign of its utility weight u_h: data, not a name)
  and the interval in benefit units ``[B_lo, B_hi] = b * [lo, hi]``: ``holds`` when
  ``B_hi < margin`` (any benefit is shown to be below the margin), ``contradicted`` when
  ``B_lo > 0`` and ``B_hi >= margin`` (a significant benefit not shown to be small),
  ``unsettled`` otherwise. A head without a utility weight (``b = 0``) is judged two-sided:
  holds inside ``(-margin, margin)``, contradicted when the interval excludes 0 and leaves
  the band.

The simulated world is not Pinterest, so a lift of another *size* does not make the
paper's ordering wrong. The size is reported apart from the verdict: ``consistent`` (the
interval contains the paper's value), ``smaller`` or ``larger`` (in magnitude on the
paper's side). ``strict_verdict`` applies the issue's literal reading, in which an
interval that excludes the paper's value is also ``contradicted``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

VERDICTS = ("holds", "contradicted", "unsettled")
SIZES = ("consistent", "smaller", "larger")
RULES = ("direction", "equivalence")

DEFAULT_EQUIVALENCE_MARGIN = 0.05
"""Relative lift below which a change counts as "no real effect" (5% of HIT@3). The paper's
insignificant and "no effect" cells are all within 3.2% (Table 1's -3.14% the largest), while
the gains its main conclusions rest on (BST and TransAct in Table 1, the compressions of
Table 4, Table 3's transformer on hide) are 4.4% and more; 5% lies between the two. Each
experiment may set its own (``ExperimentSpec.equivalence_margin``)."""


@dataclass(frozen=True)
class CellVerdict:
    """The judgement of one cell: ``verdict`` (direction or equivalence rule, see the
    module docstring), ``size`` against the paper's value, ``rule`` used, and
    ``strict_verdict`` (``contradicted`` also when the interval excludes the paper's
    value). ``margin`` is the equivalence margin (``None`` under the direction rule)."""

    verdict: str
    size: str | None
    rule: str
    strict_verdict: str
    margin: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(*xs: float) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def size_against_paper(paper: float, ci_low: float, ci_high: float) -> str | None:
    """``consistent`` when ``ci_low <= paper <= ci_high``; otherwise ``smaller`` or
    ``larger`` by magnitude on the paper's side (an interval wholly on the other side of
    0 is ``smaller``). ``paper`` and the interval are fractions (0.094, not 9.4)."""
    if not _finite(paper, ci_low, ci_high):
        return None
    if ci_low <= paper <= ci_high:
        return "consistent"
    if paper >= 0:
        return "smaller" if ci_high < paper else "larger"
    return "smaller" if ci_low > paper else "larger"


def direction_verdict(paper: float, ci_low: float, ci_high: float) -> str:
    """``holds`` / ``contradicted`` / ``unsettled`` by the side of 0 the interval is on,
    the paper's side being the sign of ``paper`` (which must not be 0)."""
    if paper == 0:
        raise ValueError("the direction rule needs a non-zero paper value; use equivalence")
    if not _finite(ci_low, ci_high):
        return "unsettled"
    side = 1.0 if paper > 0 else -1.0
    lo, hi = sorted((side * ci_low, side * ci_high))
    if lo > 0:
        return "holds"
    if hi < 0:
        return "contradicted"
    return "unsettled"


def equivalence_verdict(ci_low: float, ci_high: float, *, benefit: int, margin: float) -> str:
    """The "no real benefit" rule of the module docstring; ``benefit`` in {-1, 0, +1}."""
    if margin <= 0:
        raise ValueError(f"equivalence margin must be > 0, got {margin}")
    if benefit not in (-1, 0, 1):
        raise ValueError(f"benefit must be -1, 0 or +1, got {benefit}")
    if not _finite(ci_low, ci_high):
        return "unsettled"
    if benefit == 0:
        if -margin < ci_low and ci_high < margin:
            return "holds"
        if ci_low > 0 or ci_high < 0:
            return "contradicted"
        return "unsettled"
    b_lo, b_hi = sorted((benefit * ci_low, benefit * ci_high))
    if b_hi < margin:
        return "holds"
    if b_lo > 0:
        return "contradicted"
    return "unsettled"


def judge_cell(
    paper: float,
    ci_low: float,
    ci_high: float,
    *,
    null_claim: bool,
    benefit: int,
    margin: float = DEFAULT_EQUIVALENCE_MARGIN,
) -> CellVerdict:
    """Judge one cell.

    Args:
        paper: the paper's lift as a fraction (``0.094`` for +9.40%).
        ci_low / ci_high: our 95% interval of the lift (fractions); NaN -> ``unsettled``.
        null_claim: the paper marks the cell insignificant or its table claims no effect:
            the equivalence rule applies. A paper value of exactly 0 is a null claim too.
        benefit: the head's benefit direction, the sign of its utility weight (+1: higher
            is better, -1: lower is better, 0: neither); used by the equivalence rule only.
        margin: equivalence margin (relative lift).
    """
    size = size_against_paper(paper, ci_low, ci_high)
    if null_claim or paper == 0:
        verdict = equivalence_verdict(ci_low, ci_high, benefit=benefit, margin=margin)
        return CellVerdict(verdict, size, "equivalence", verdict, margin)
    verdict = direction_verdict(paper, ci_low, ci_high)
    strict = verdict
    if verdict != "contradicted" and size in ("smaller", "larger"):
        strict = "contradicted"
    return CellVerdict(verdict, size, "direction", strict, None)


def benefit_direction(utility_weight: float) -> int:
    """The sign of a head's utility weight: +1, -1, or 0 for an unweighted head."""
    return 1 if utility_weight > 0 else -1 if utility_weight < 0 else 0
