"""Table 2: the realtime-batch hybrid ablation, drops relative to the full model.

Rows (paper 4.3.1): the full model (TransAct + PinnerFormer batch user embedding + other
user features); without the batch embedding; without TransAct; without the other user
features. Lifts are relative to the full model, so the paper's numbers are drops.
Rows that need the batch user embedding are skipped, with the reason, when the dataset
has none.
"""

from __future__ import annotations

from transact.experiments.budget import ExperimentBudget
from transact.experiments.spec import ExperimentSpec, Variant

NAME = "table2"
COLUMNS = ("repin/all", "hide/all")

FULL = Variant(key="full", label="TransAct + PF + other user features", encoder="transact")

ROWS = (
    FULL,
    Variant(
        key="no_pf",
        label="without PF (batch user embedding)",
        encoder="transact",
        user_embedding=False,
        paper=(("repin/all", -2.46), ("hide/all", 3.61)),
    ),
    Variant(
        key="no_transact",
        label="without TransAct",
        encoder="none",
        paper=(("repin/all", -8.59), ("hide/all", 17.45)),
    ),
    Variant(
        key="no_user_features",
        label="without other user features",
        encoder="transact",
        drop_feature_groups=("user",),
        paper=(("repin/all", -0.67), ("hide/all", 1.40)),
    ),
)


def build(budget: ExperimentBudget) -> ExperimentSpec:
    """Table 2 at ``budget``; the baseline is the full hybrid model."""
    return ExperimentSpec(
        name=NAME,
        title="Ablation study of the realtime-batch hybrid model (Table 2)",
        baseline=FULL,
        variants=ROWS,
        columns=COLUMNS,
        paper_claims=(
            "Removing TransAct costs the most (repin down, hide up).",
            "Removing the batch embedding (PF) costs less, but still costs.",
            "Removing the other user features costs the least.",
        ),
    )
