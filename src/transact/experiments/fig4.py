"""Figure 4: early fusion (concat vs append) and sequence length, lifts over no sequence.

TransAct is trained with each early-fusion method at each sequence length of the budget
(paper: 10, 20, 50, 100). The figure plots HIT@3/repin and HIT@3/hide lifts against the
sequence length, one line per fusion method. The paper prints no numbers for this
figure, only the claims below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transact.experiments.budget import ExperimentBudget
from transact.experiments.spec import ExperimentSpec, Variant

NAME = "fig4"
FUSIONS = ("concat", "append")
BASELINE = Variant(key="baseline", label="Pinnability without sequence features", encoder="none")


def build(budget: ExperimentBudget) -> ExperimentSpec:
    """Figure 4 over ``budget.fig4_seq_lens`` x {concat, append}."""
    rows = tuple(
        Variant(
            key=f"{fusion}_{seq_len}",
            label=f"TransAct {fusion}, S={seq_len}",
            encoder="transact",
            encoder_options=(("fusion", fusion),),
            seq_len=seq_len,
        )
        for fusion in FUSIONS
        for seq_len in budget.fig4_seq_lens
    )
    return ExperimentSpec(
        name=NAME,
        title="Effect of early fusion and sequence length (Figure 4)",
        baseline=BASELINE,
        variants=rows,
        columns=("repin/all", "hide/all"),
        figure=True,
        paper_claims=(
            "Longer sequences give larger lifts, growing sub-linearly with the length.",
            "Concat early fusion beats append at every length.",
        ),
    )


def plot(results: dict[str, Any], out_dir: Path) -> None:
    """Write ``fig4.png``: repin and hide lift against |S|, one line per fusion method,
    with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the paper's repin and hide columns, on the heads that play them on this dataset
    heads = [c.partition("/")[0] for c in results["columns"]]
    fig, axes = plt.subplots(1, len(heads), figsize=(4.5 * len(heads), 3.6), squeeze=False)
    for ax, head in zip(axes[0], heads, strict=True):
        for fusion, marker in zip(FUSIONS, ("o", "s"), strict=True):
            points = []
            for entry in results["variants"]:
                if entry.get("metrics") and entry["key"].startswith(fusion + "_"):
                    cell = entry["metrics"][head]["all"]
                    lo, hi = cell["ci95"]
                    if cell["lift"] is not None and lo is not None and hi is not None:
                        lift = cell["lift"] * 100
                        points.append(
                            (entry["config"]["seq_len"], lift, lift - lo * 100, hi * 100 - lift)
                        )
            points.sort()
            if points:
                xs, ys, below, above = zip(*points, strict=True)
                ax.errorbar(xs, ys, yerr=[below, above], marker=marker, capsize=3, label=fusion)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("sequence length |S|")
        ax.set_ylabel(f"HIT@3/{head} lift vs no sequence (%)")
        ax.set_title(f"HIT@3/{head}")
        ax.legend()
    fig.suptitle(
        f"Figure 4 ({results['dataset'].get('name', '?')}, budget {results['budget']['name']})"
    )
    fig.tight_layout()
    fig.savefig(out_dir / "fig4.png", dpi=120)
    plt.close(fig)
