"""Why the random time-window mask costs TransAct its lift here: lift against the window.

Not a table of the paper: the paper trains with a random time window (3.3.4, T ~ U[0,
24 h] per example, actions of the last T hidden) and reports it online (4.4.4: it brings
back impression diversity without hurting engagement). On data whose short-term signal
lies in the last hours, the mask hides in training what the model needs at serving time.
This experiment measures how much: TransAct trained with a window maximum of 0 (no mask),
1 h, 6 h and 24 h (the paper's), each against the no-sequence baseline. Run it on worlds
that differ in how long users' current interests persist
(``current_interest_half_life_hours``; :func:`persistence_world`) to see what the result
depends on. The expectation that shorter persistence makes the mask cost more was measured
and contradicted: at ``settle`` the 24 h mask costs 3.2 points of repin lift on a 6 h
world and 8.1 on a 168 h one (docs/results.md, "The `settle` run").
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from transact.data.schema import MS_PER_HOUR
from transact.experiments.budget import ExperimentBudget
from transact.experiments.spec import ExperimentSpec, Variant

NAME = "mask"
WINDOW_HOURS = (0, 1, 6, 24)
BASELINE = Variant(key="baseline", label="Pinnability without sequence features", encoder="none")


def _key(hours: int) -> str:
    return "transact" if hours == 24 else f"transact_window_{hours}h"


def build(budget: ExperimentBudget) -> ExperimentSpec:
    """TransAct with a random time-window maximum of 0, 1, 6 and 24 h against the baseline
    (24 h is TransAct at the paper's defaults, the row Table 1 trains too)."""
    rows = tuple(
        Variant(
            key=_key(h),
            label=f"TransAct, time window U[0, {h} h]" if h else "TransAct, no time window",
            encoder="transact",
            encoder_options=() if h == 24 else (("time_window_max_ms", h * MS_PER_HOUR),),
        )
        for h in WINDOW_HOURS
    )
    return ExperimentSpec(
        name=NAME,
        title="TransAct's lift against the random time window's maximum (3.3.4)",
        baseline=BASELINE,
        variants=rows,
        columns=("click/all", "repin/all", "hide/all"),
        figure=True,
        paper_claims=(
            "The paper trains with T ~ U[0, 24 h] and reports no offline cost of the mask; "
            "its online diversity gain is 4.4.4's claim (`transact experiment diversity`).",
        ),
    )


def window_hours(entry: dict[str, Any]) -> float:
    """The window maximum of a results row, in hours (24 for the paper's default)."""
    options = dict(entry.get("config", {}).get("encoder_options", {}) or {})
    return float(options.get("time_window_max_ms", 24 * MS_PER_HOUR)) / MS_PER_HOUR


def points(results: dict[str, Any], head: str) -> list[tuple[float, float, float, float]]:
    """``(window hours, lift %, interval low %, interval high %)`` of every trained row."""
    out = []
    for entry in results["variants"]:
        if entry.get("is_baseline") or not entry.get("metrics"):
            continue
        cell = entry["metrics"][head]["all"]
        lo, hi = cell["ci95"]
        if cell["lift"] is None or lo is None or hi is None:
            continue
        out.append((window_hours(entry), 100 * cell["lift"], 100 * lo, 100 * hi))
    return sorted(out)


def _errorbar(ax: Any, pts: list[tuple[float, float, float, float]], **kwargs: Any) -> None:
    """``(x, y, low, high)`` points as markers with their interval."""
    if not pts:
        return
    xs, ys, lo, hi = zip(*pts, strict=True)
    below = [y - a for y, a in zip(ys, lo, strict=True)]
    above = [b - y for y, b in zip(ys, hi, strict=True)]
    ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, **kwargs)


def plot(results: dict[str, Any], out_dir: Path) -> None:
    """Write ``mask.png``: each head's lift with its 95% interval against the window's
    maximum (0 drawn at the left edge of a symmetric-log axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = ("click", "repin", "hide")
    fig, axes = plt.subplots(1, len(heads), figsize=(11, 3.4))
    for ax, head in zip(axes, heads, strict=True):
        _errorbar(ax, points(results, head))
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xticks([0, 1, 6, 24])
        ax.set_xticklabels(["0", "1 h", "6 h", "24 h"])
        ax.set_xlabel("time window maximum in training")
        ax.set_ylabel(f"HIT@3/{head} lift vs baseline (%)")
        ax.set_title(head)
    name = results["dataset"].get("name", "?")
    fig.suptitle(f"TransAct's lift vs the random time window ({name}, {results['budget']['name']})")
    fig.tight_layout()
    fig.savefig(out_dir / "mask.png", dpi=120)
    plt.close(fig)


def persistence_world(
    out_dir: Path, half_life_hours: float, *, preset: str = "demo", seed: int = 0
) -> Path:
    """Generate (once) the ``preset`` world with users' current interests persisting
    ``half_life_hours`` (the default world: 36 h) and nothing else changed; returns its
    directory, which ``transact experiment mask --dataset DIR`` reads."""
    from transact.data.io import load_manifest
    from transact.data.world import PRESETS, generate_world

    config = replace(PRESETS[preset], current_interest_half_life_hours=float(half_life_hours))
    if (out_dir / "manifest.json").exists():
        m = load_manifest(out_dir)
        got = m.extra.get("config", {}).get("current_interest_half_life_hours")
        if got == float(half_life_hours):
            return out_dir
        raise FileExistsError(
            f"{out_dir}: holds a world with half-life {got} h, not {half_life_hours} h"
        )
    generate_world(out_dir, config, seed=seed, preset=preset, progress=False)
    return out_dir


def plot_persistence(runs: dict[float, dict[str, Any]], path: Path, head: str = "repin") -> None:
    """``runs``: half-life (hours) -> the mask experiment's results on that world. Draws the
    lift of each window maximum against the half-life of current interests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    by_window: dict[float, list[tuple[float, float, float, float]]] = {}
    for half_life, results in sorted(runs.items()):
        for window, lift, low, high in points(results, head):
            by_window.setdefault(window, []).append((half_life, lift, low, high))
    for w, pts in sorted(by_window.items()):
        _errorbar(ax, pts, label=f"window {w:g} h")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("half-life of users' current interests (hours)")
    ax.set_ylabel(f"HIT@3/{head} lift vs baseline (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_persistence(
    half_lives: tuple[float, ...],
    *,
    budget: ExperimentBudget,
    out_root: Path,
    device: str = "cpu",
    progress: bool = True,
    user_embeddings: bool = True,
    variants: tuple[str, ...] | None = None,
) -> dict[float, dict[str, Any]]:
    """The mask experiment on one world per half-life of current interests, results under
    ``out_root/mask-hl<H>h/``, and ``out_root/mask/persistence.png`` (repin lift per window
    against the half-life).

    A half-life other than the preset's own gets a world generated under
    ``out_root/_work/worlds`` and its own run cache. The preset's own half-life (the
    default world: 36 h) is the budget's default world itself, trained in the same cache
    as ``transact experiment mask`` (``out_root/_work``): a sweep that includes it reuses
    the plain run's models instead of retraining them on a copy of the same world.
    ``variants`` keeps only those window rows beside the baseline (e.g.
    ``("transact_window_0h", "transact")``: no mask against the paper's 24 h), as
    ``--variants`` does for every experiment.
    """
    from transact.data.world import PRESETS
    from transact.experiments.suite import run_named

    own = PRESETS[budget.world_preset].current_interest_half_life_hours
    runs: dict[float, dict[str, Any]] = {}
    for h in half_lives:
        if h == own:
            dataset, work_dir = "world", out_root / "_work"
        else:
            world = persistence_world(
                out_root / "_work" / "worlds" / f"{budget.world_preset}-hl{h:g}h",
                h,
                preset=budget.world_preset,
            )
            dataset, work_dir = str(world), None
        sub = out_root / f"mask-hl{h:g}h"
        runs[h] = run_named(
            NAME,
            dataset=dataset,
            budget=budget,
            out_root=sub,
            device=device,
            progress=progress,
            user_embeddings=user_embeddings,
            variants=variants,
            work_dir=work_dir,
        )[NAME]
    (out_root / NAME).mkdir(parents=True, exist_ok=True)
    plot_persistence(runs, out_root / NAME / "persistence.png")
    return runs
