"""Table 3: base sequence encoders over the item-embedding sequence, lifts over no sequence.

Rows (paper 4.3.2): average pooling, 1-d CNN (256 channels, kernel 4, stride 1), RNN and
LSTM (2 layers, hidden 256), vanilla transformer over item embeddings only (2 layers,
hidden 32). The baseline is Pinnability without realtime sequence features.
"""

from __future__ import annotations

from transact.experiments.budget import ExperimentBudget
from transact.experiments.spec import ExperimentSpec, Variant

NAME = "table3"
COLUMNS = ("repin/all", "hide/all")

BASELINE = Variant(key="baseline", label="Pinnability without sequence features", encoder="none")


def _row(key: str, label: str, repin: float, hide: float) -> Variant:
    return Variant(
        key=key, label=label, encoder=key, paper=(("repin/all", repin), ("hide/all", hide))
    )


ROWS = (
    _row("avg_pool", "Average Pooling", 0.21, -1.61),
    _row("cnn", "CNN", 0.08, -1.29),
    _row("rnn", "RNN", -1.05, -2.46),
    _row("lstm", "LSTM", -0.75, -2.98),
    _row("vanilla_transformer", "Vanilla Transformer", 1.56, -8.45),
)


def build(budget: ExperimentBudget) -> ExperimentSpec:
    """Table 3 at ``budget`` (the rows do not depend on the budget)."""
    return ExperimentSpec(
        name=NAME,
        title="Offline evaluation of sequence encoder architectures (Table 3)",
        baseline=BASELINE,
        variants=ROWS,
        columns=COLUMNS,
        paper_claims=(
            "Even average pooling improves over no sequence feature.",
            "CNN, RNN and LSTM do not beat average pooling.",
            "The vanilla transformer is best: it lowers hide the most and lifts repin.",
        ),
    )
