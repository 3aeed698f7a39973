"""What an experiment is: a baseline and variants of the ranker, plus the paper's numbers.

Each paper table/figure module builds one :class:`ExperimentSpec`; the shared runner
(:mod:`transact.experiments.runner`) trains every variant with the same data, budget and
seeds, evaluates them on the same held-out week and compares them to the baseline.
Variants are identified by their *fingerprint* (every field but the label), so a variant
that appears in several tables (TransAct with the paper's defaults appears in five) is
trained once per seed in an ``experiment all`` run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from transact.evaluation.verdict import DEFAULT_EQUIVALENCE_MARGIN

COLUMN_GROUPS = ("all", "non_core")


def _is_default(encoder: str, option: str, value: Any) -> bool:
    """Whether ``option=value`` is TransAct's default (only TransAct's are known here)."""
    if encoder != "transact":
        return False
    from dataclasses import fields

    from transact.models.transact import TransActConfig

    defaults = {f.name: f.default for f in fields(TransActConfig)}
    return option in defaults and defaults[option] == value


@dataclass(frozen=True)
class Variant:
    """One ranker configuration to train and evaluate.

    Args:
        key: short stable name used in results.json (``"transact"``, ``"cnn"``).
        label: the row label as the paper prints it (``"BST (all actions)"``).
        encoder: sequence-encoder name understood by the model stage (``"none"``,
            ``"transact"``, ``"avg_pool"``, ``"cnn"``, ``"rnn"``, ``"lstm"``,
            ``"vanilla_transformer"``, ``"bst"``, ``"bst_positive"``, ``"wdl_seq"``).
        encoder_options: overrides of the encoder config as ``(field, value)`` pairs, e.g.
            ``(("fusion", "append"),)``; names are the model stage's config fields.
        seq_len: realtime sequence length |S|; ``None`` takes the budget's.
        user_embedding: feed the batch (PinnerFormer) user embedding when the dataset
            has one (Table 2 turns it off).
        drop_feature_groups: feature groups (``"user"``, ``"item"``, ``"context"``) whose
            categorical and numerical features the ranker does not see (Table 2).
        paper: the paper's numbers for this row, ``{"repin/all": 9.40, ...}`` in percent;
            a trailing ``"*"`` in ``paper_marks`` flags the paper's insignificant cells.
        paper_marks: cells the paper marks as statistically insignificant.
    """

    key: str
    label: str
    encoder: str = "transact"
    encoder_options: tuple[tuple[str, Any], ...] = ()
    seq_len: int | None = None
    user_embedding: bool = True
    drop_feature_groups: tuple[str, ...] = ()
    paper: tuple[tuple[str, float | None], ...] = ()
    paper_marks: tuple[str, ...] = ()

    def options(self) -> dict[str, Any]:
        return dict(self.encoder_options)

    def paper_value(self, column: str) -> float | None:
        return dict(self.paper).get(column)

    def resolved(self, default_seq_len: int) -> Variant:
        """This variant with ``seq_len`` filled in from the budget."""
        if self.seq_len is not None:
            return self
        return Variant(
            key=self.key,
            label=self.label,
            encoder=self.encoder,
            encoder_options=self.encoder_options,
            seq_len=default_seq_len,
            user_embedding=self.user_embedding,
            drop_feature_groups=self.drop_feature_groups,
            paper=self.paper,
            paper_marks=self.paper_marks,
        )

    def config_dict(self) -> dict[str, Any]:
        """Everything that defines the trained model; options equal to the encoder's
        defaults are dropped, so ``fusion="concat"`` is the same model as no option."""
        return {
            "encoder": self.encoder,
            "encoder_options": {
                k: v for k, v in sorted(self.encoder_options) if not _is_default(self.encoder, k, v)
            },
            "seq_len": self.seq_len,
            "user_embedding": self.user_embedding,
            "drop_feature_groups": sorted(self.drop_feature_groups),
        }

    def fingerprint(self) -> str:
        """Identity of the trained model: two variants with equal fingerprints are one."""
        return json.dumps(self.config_dict(), sort_keys=True, default=str)


@dataclass(frozen=True)
class ExperimentSpec:
    """One paper table or figure as a runnable comparison.

    Args:
        name: command name (``"table1"``).
        title: the paper's caption.
        baseline: the variant every lift is relative to.
        variants: the rows, in the paper's order (the baseline may be one of them).
        columns: ``"head/group"`` cells of the paper's table, in its order
            (``"repin/all"``, ``"hide/non_core"``).
        paper_claims: the paper's qualitative claims this experiment checks, one line each.
        skipped: rows that could not run, as ``(label, reason)``.
        figure: a figure's sweep (trend over a grid): trained with the budget's
            ``figure_seeds`` instead of ``seeds``.
        measure_latency: also time the forward pass of every variant (Figure 5).
        notes: lines the report prints under the table (deviations, budget cuts).
        null_claim: the table's claim is "no real effect" (Table 8: positional encodings
            "do not add much value"), so every cell is judged by the equivalence rule of
            :mod:`transact.evaluation.verdict`, as the paper's insignificant cells are.
        equivalence_margin: the relative lift below which a change counts as no real
            effect under that rule.
    """

    name: str
    title: str
    baseline: Variant
    variants: tuple[Variant, ...]
    columns: tuple[str, ...] = ("repin/all", "hide/all")
    paper_claims: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    measure_latency: bool = False
    figure: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    null_claim: bool = False
    equivalence_margin: float = DEFAULT_EQUIVALENCE_MARGIN

    def __post_init__(self) -> None:
        if not self.equivalence_margin > 0:
            raise ValueError(
                f"ExperimentSpec {self.name!r}: equivalence_margin must be > 0, "
                f"got {self.equivalence_margin}"
            )
        for column in self.columns:
            head, _, group = column.partition("/")
            if not head or group not in COLUMN_GROUPS:
                raise ValueError(
                    f"ExperimentSpec {self.name!r}: column {column!r} must be 'head/all' or "
                    "'head/non_core'"
                )
        keys = [v.key for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError(f"ExperimentSpec {self.name!r}: duplicate variant keys {keys}")
