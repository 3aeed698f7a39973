"""The picture of a comparison: every model's lift over the baseline with its 95% interval.

:func:`comparison_lift_plot` draws, per head, each model's lift for all and non-core
users with its interval, and the paper's values beside them when given, so a reader sees
at a glance which lifts exclude 0 and where the paper's numbers fall. ``transact compare``
writes it as ``lifts.png``; the experiments draw their tables with
``transact.experiments.report.plot_lifts``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from transact.evaluation.report import SEGMENTS, Comparison


def comparison_lift_plot(
    cmp: Comparison,
    path: str | Path,
    *,
    paper: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "",
) -> Path:
    """Write a PNG of every non-baseline model's lift per head and segment.

    Args:
        cmp: the comparison (:func:`~transact.evaluation.report.compare`).
        path: the PNG to write.
        paper: the paper's lifts in percent, ``{model: {"repin/all": 9.40, ...}}``,
            drawn as black diamonds beside ours.
        title: the figure's title.

    The lifts are of the expected HIT@K when the comparison has ground truth (no
    label-draw noise), else of the sampled HIT@K. A lift whose interval excludes 0 is
    drawn filled, one that does not hollow. The oracle is left out (its lift would set
    the scale).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix = "expected_" if cmp.has_expected else ""
    models = [m for m in cmp.rows if m not in (cmp.baseline, cmp.oracle)]
    ys = [(m, s) for m in models for s in SEGMENTS]
    fig, axes = plt.subplots(
        1, len(cmp.heads), figsize=(4.2 * len(cmp.heads), 1.4 + 0.38 * len(ys)), sharey=True
    )
    axes_list = list(axes) if len(cmp.heads) > 1 else [axes]
    for ax, head in zip(axes_list, cmp.heads, strict=True):
        for y, (model, segment) in enumerate(ys):
            r = cmp.rows[model][head][segment]
            lift, (lo, hi) = r[f"{prefix}lift_vs_baseline"], r[f"{prefix}ci95"]
            if all(v is not None and math.isfinite(v) for v in (lift, lo, hi)):
                filled = lo > 0 or hi < 0
                ax.errorbar(
                    [lift * 100],
                    [y],
                    xerr=[[(lift - lo) * 100], [(hi - lift) * 100]],
                    fmt="o",
                    color="tab:blue" if segment == "all" else "tab:orange",
                    mfc=None if filled else "white",
                    capsize=3,
                )
            value = (paper or {}).get(model, {}).get(f"{head}/{segment}")
            if value is not None:
                ax.plot([value], [y], marker="D", color="black", markersize=5, linestyle="")
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"HIT@{cmp.config.k}/{head}")
        ax.set_xlabel("lift over the baseline (%)")
    axes_list[0].set_yticks(range(len(ys)))
    axes_list[0].set_yticklabels([f"{m} ({s.replace('_', '-')})" for m, s in ys], fontsize=8)
    axes_list[0].invert_yaxis()
    metric = "expected HIT" if prefix else "HIT"
    fig.suptitle(
        (title + ": " if title else "")
        + f"{metric}@{cmp.config.k} lifts over {cmp.baseline} with 95% intervals"
        + (" (black: the paper)" if paper else ""),
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
