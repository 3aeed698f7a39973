"""Table 4: every transformer-output compression, lifts over no-sequence Pinnability.

Rows (paper 4.3.5): a random column, the first column, K random columns, the first K
columns, all columns, max pooling, first K + max pooling (TransAct's choice, K = 10), all
columns + max pooling. The paper's numbers are lifts over the baseline of Table 1 (its
"first K + max pool" row equals Table 1's TransAct row).
"""

from __future__ import annotations

from transact.experiments.budget import ExperimentBudget
from transact.experiments.spec import ExperimentSpec, Variant

NAME = "table4"
COLUMNS = ("repin/all", "hide/all")

BASELINE = Variant(key="baseline", label="Pinnability without sequence features", encoder="none")

# (model-stage compression name, row label, output size, paper repin %, paper hide %)
COMPRESSIONS = (
    ("random_col", "a random col", "d", 6.80, -10.96),
    ("first_col", "first col", "d", 7.82, -11.28),
    ("random_k_cols", "random K cols", "Kd", 7.42, -12.12),
    ("first_k_cols", "first K cols", "Kd", 9.38, -14.33),
    ("all_cols", "all cols", "|S|d", 8.86, -15.70),
    ("max_pool", "max pooling", "d", 6.38, -14.15),
    ("first_k_max_pool", "first K cols + max pool", "(K+1)d", 9.41, -14.86),
    ("all_cols_max_pool", "all cols + max pool", "(|S|+1)d", 8.67, -12.64),
)

ROWS = tuple(
    Variant(
        key=name,
        label=f"{label} [{size}]",
        encoder="transact",
        encoder_options=(("compression", name),),
        paper=(("repin/all", repin), ("hide/all", hide)),
    )
    for name, label, size, repin, hide in COMPRESSIONS
)


def build(budget: ExperimentBudget) -> ExperimentSpec:
    """Table 4 at ``budget`` (the rows do not depend on the budget)."""
    return ExperimentSpec(
        name=NAME,
        title="Ablation study of transformer output compression (Table 4)",
        baseline=BASELINE,
        variants=ROWS,
        columns=COLUMNS,
        paper_claims=(
            "First K cols + max pool gives the highest HIT@3/repin.",
            "First K cols beats random K cols, and the first col beats a random col.",
            "All cols lowers hide slightly more, at a much larger size.",
        ),
    )
