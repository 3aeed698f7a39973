"""Figure 5: transformer layers x FFN dimension, HIT@3 lift and forward latency.

TransAct is trained for every (layers, FFN dim) pair of the budget (paper: 1-4 layers,
FFN 32-384) and the eval-mode forward latency per batch of 256 is measured on this
machine. The paper prints no numbers for this figure except that 4 layers with FFN 384
was best and cost about 30% more latency than the chosen 2 layers with FFN 32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transact.experiments.budget import ExperimentBudget
from transact.experiments.spec import ExperimentSpec, Variant

NAME = "fig5"
BASELINE = Variant(key="baseline", label="Pinnability without sequence features", encoder="none")


def build(budget: ExperimentBudget) -> ExperimentSpec:
    """Figure 5 over ``budget.fig5_layers`` x ``budget.fig5_ffn_dims``."""
    rows = tuple(
        Variant(
            key=f"L{layers}_ffn{ffn}",
            label=f"TransAct {layers} layers, FFN {ffn}",
            encoder="transact",
            encoder_options=(("num_layers", layers), ("dim_feedforward", ffn)),
        )
        for layers in budget.fig5_layers
        for ffn in budget.fig5_ffn_dims
    )
    return ExperimentSpec(
        name=NAME,
        title="Effect of transformer hyperparameters on performance and latency (Figure 5)",
        baseline=BASELINE,
        variants=rows,
        columns=("repin/all", "hide/all"),
        figure=True,
        measure_latency=True,
        paper_claims=(
            "More layers and a wider FFN give higher latency and better HIT@3.",
            "4 layers x FFN 384 is best, at about +30% latency over 2 layers x FFN 32.",
        ),
        notes=(
            "Latency is the median eval-mode forward time of the whole ranker per batch of "
            "256 on this machine's CPU, taken while other work may share the cores.",
        ),
    )


def _grid(results: dict[str, Any], value) -> dict[int, list[tuple[int, float]]]:
    lines: dict[int, list[tuple[int, float]]] = {}
    for entry in results["variants"]:
        if not entry.get("metrics") or not entry["key"].startswith("L"):
            continue
        opts = entry["options"]
        y = value(entry)
        if y is not None:
            lines.setdefault(int(opts["num_layers"]), []).append((int(opts["dim_feedforward"]), y))
    return {k: sorted(v) for k, v in sorted(lines.items())}


def plot(results: dict[str, Any], out_dir: Path) -> None:
    """Write ``fig5.png``: repin lift, hide lift and latency against FFN dim per layer count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def lift(head: str):
        def get(entry: dict[str, Any]) -> float | None:
            v = entry["metrics"][head]["all"]["lift"]
            return None if v is None else v * 100

        return get

    # the paper's repin and hide columns, on the heads that play them on this dataset
    heads = [c.partition("/")[0] for c in results["columns"]]
    panels = (
        *((f"HIT@3/{h} lift (%)", lift(h)) for h in heads),
        ("forward latency, ms / batch 256", lambda e: e.get("latency_ms")),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    for ax, (ylabel, getter) in zip(axes[0], panels, strict=True):
        for layers, points in _grid(results, getter).items():
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=f"{layers} layer{'s' if layers > 1 else ''}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("FFN dim")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Figure 5 ({results['dataset'].get('name', '?')}, budget {results['budget']['name']})"
    )
    fig.tight_layout()
    fig.savefig(out_dir / "fig5.png", dpi=120)
    plt.close(fig)
