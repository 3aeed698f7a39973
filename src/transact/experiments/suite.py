"""Named experiments and ``all``: one backend and one run cache shared by every table.

``run_named("all", ...)`` runs every experiment on one prepared dataset, so a variant
that several tables share (TransAct with the paper's defaults, the no-sequence baseline)
is trained once per seed. It also writes ``summary.md`` beside the experiments' folders:
one line per experiment and column on whether the paper's ordering held.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from transact.experiments.budget import ExperimentBudget

TRAINED = ("table1", "table2", "table4", "table8", "fig4", "fig5", "table3", "mask")
EXPERIMENTS = (*TRAINED, "table9")


def experiment_module(name: str) -> Any:
    """The module ``transact.experiments.<name>`` (has ``build`` and maybe ``plot``)."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; known: {list(EXPERIMENTS)} and 'all'")
    return importlib.import_module(f"transact.experiments.{name}")


def run_named(
    name: str,
    *,
    dataset: str,
    budget: ExperimentBudget,
    out_root: Path,
    device: str = "cpu",
    progress: bool = True,
    backend: Any = None,
    user_embeddings: bool = True,
    variants: tuple[str, ...] | None = None,
    work_dir: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Run experiment ``name`` (or ``all``) and return ``{name: results}``.

    Outputs go to ``out_root/<name>/``; ``backend`` defaults to the real
    :class:`~transact.experiments.backend.PaperBackend` on ``dataset``, caching data,
    embeddings and trained runs in ``work_dir`` (default ``out_root/_work``). ``variants``
    keeps only the rows with those keys beside the baseline (a pilot, or a rerun of one
    row); a key that no chosen experiment has is a ``ValueError`` naming the known keys.
    """
    from transact.experiments.runner import RunCache, run_experiment

    names = list(EXPERIMENTS) if name == "all" else [name]
    specs = select_variants(names, budget, variants)  # fails on a bad name before any work
    out: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    if any(n in TRAINED for n in names) and backend is None:
        from transact.experiments.backend import PaperBackend

        backend = PaperBackend(
            dataset,
            budget,
            work_dir=out_root / "_work" if work_dir is None else work_dir,
            device=device,
            progress=progress,
            user_embeddings=user_embeddings,
        )
    cache = RunCache()
    for n in names:
        module = experiment_module(n)
        if n == "table9":
            out[n] = module.run(budget, out_root / n, device=device, progress=progress)
            continue
        out[n] = run_experiment(
            specs[n],
            backend,
            budget,
            out_root / n,
            cache=cache,
            plot=getattr(module, "plot", None),
            progress=progress,
        )
    if name == "all":
        write_summary(out, out_root, time.perf_counter() - start)
    return out


def select_variants(
    names: list[str], budget: ExperimentBudget, variants: tuple[str, ...] | None
) -> dict[str, Any]:
    """The specs of the trained experiments ``names`` at ``budget``, keeping only the rows
    ``variants`` (``None``: all). Raises ``KeyError`` for an unknown experiment and
    ``ValueError`` naming the known keys for an unknown row."""
    specs = {n: experiment_module(n).build(budget) for n in names if n != "table9"}
    if variants is None:
        return specs
    known = {v.key for spec in specs.values() for v in spec.variants}
    unknown = sorted(set(variants) - known)
    if unknown:
        raise ValueError(f"--variants {unknown}: no such row; known: {sorted(known)}")
    return {
        n: replace(spec, variants=tuple(v for v in spec.variants if v.key in variants))
        for n, spec in specs.items()
    }


def write_summary(all_results: dict[str, dict[str, Any]], out_root: Path, wall_s: float) -> None:
    """``summary.md`` and ``summary.json``: per experiment, per column, the agreement."""
    from transact.experiments.agreement import agreement_lines

    lines = ["# Paper experiments: summary", ""]
    summary: dict[str, Any] = {"wall_s": wall_s, "experiments": {}}
    for name, results in all_results.items():
        lines.append(f"## {name}: {results.get('title', '')}")
        if name == "table9":
            lines += ["", f"See {name}/results.md.", ""]
            summary["experiments"][name] = {"wall_s": results.get("wall_s")}
            continue
        agree = agreement_lines(results)
        lines += (
            [""] + (agree or ["- no paper numbers to compare (a figure): see its plot."]) + [""]
        )
        summary["experiments"][name] = {
            "agreement": results.get("agreement"),
            "wall_s": results.get("wall_s"),
            "skipped": [v["label"] for v in results["variants"] if v.get("skipped")],
        }
    lines.append(f"Total wall time: {wall_s:.0f} s.")
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "summary.md").write_text("\n".join(lines) + "\n")
    (out_root / "summary.json").write_text(json.dumps(summary, indent=2))
