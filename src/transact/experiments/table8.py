"""Table 8 (Appendix B): positional encodings, lifts relative to TransAct without one.

Rows: none (TransAct, the baseline), learned from scratch, sinusoidal, and a linear
projection of each action's age (request time minus action time, as in BST). The paper
prints HIT@3/hide before HIT@3/repin, and marks the linear-projection row with a star.
"""

from __future__ import annotations

from transact.experiments.budget import ExperimentBudget
from transact.experiments.spec import ExperimentSpec, Variant

NAME = "table8"
COLUMNS = ("hide/all", "repin/all")

BASELINE = Variant(key="transact", label="None (TransAct)", encoder="transact")

ROWS = (
    BASELINE,
    Variant(
        key="pe_learned",
        label="From scratch",
        encoder="transact",
        encoder_options=(("positional_encoding", "learned"),),
        paper=(("hide/all", 0.86), ("repin/all", -0.61)),
    ),
    Variant(
        key="pe_sinusoidal",
        label="Sinusoidal",
        encoder="transact",
        encoder_options=(("positional_encoding", "sinusoidal"),),
        paper=(("hide/all", 0.78), ("repin/all", -0.13)),
    ),
    Variant(
        key="pe_linear_age",
        label="Linear projection",
        encoder="transact",
        encoder_options=(("positional_encoding", "linear_age"),),
        paper=(("hide/all", 2.29), ("repin/all", 0.19)),
        paper_marks=("hide/all", "repin/all"),
    ),
)


def build(budget: ExperimentBudget) -> ExperimentSpec:
    """Table 8 at ``budget``; the baseline is TransAct without positional encoding."""
    return ExperimentSpec(
        name=NAME,
        title="Offline evaluation of positional encoding methods vs TransAct (Table 8)",
        baseline=BASELINE,
        variants=ROWS,
        columns=COLUMNS,
        paper_claims=(
            "No positional encoding adds much value: every row is within a few percent, "
            "hide gets slightly worse (higher) with each.",
        ),
        null_claim=True,
        notes=(
            "The paper's star on 'Linear projection' is read as 'statistically insignificant' "
            "for both of its cells.",
            "The table's claim is 'no real effect', so every cell is judged by the "
            "equivalence rule (holds when the interval rules out a benefit of the margin "
            "or more; docs/evaluation.md, 'Verdicts').",
        ),
    )
