"""Markdown for an experiment's results: the paper's table beside ours, column for column.

Cells read ``+9.40%`` for the paper and ``+3.12% ±0.40 (p=0.001)`` for ours (mean lift over
seeds, its standard deviation over seeds, and the paired p-value over users). A ``*``
marks a cell that is not significant at p < 0.05, the paper's convention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transact.experiments.agreement import agreement_lines


def fmt_pct(value: float | None, digits: int = 2) -> str:
    """``0.0312 -> '+3.12%'``; ``None -> 'n/a'``."""
    if value is None:
        return "n/a"
    return f"{value * 100:+.{digits}f}%"


def fmt_ours(cell: dict[str, Any] | None) -> str:
    """One of our cells: lift, spread over seeds, p-value and the insignificance mark."""
    if not cell or cell.get("lift") is None:
        return "n/a"
    text = fmt_pct(cell["lift"])
    if cell.get("lift_std"):
        text += f" ±{cell['lift_std'] * 100:.2f}"
    p = cell.get("p_value")
    if p is not None:
        text += f" (p={p:.3g})" if p >= 1e-3 else " (p<0.001)"
        if p >= 0.05:
            text += "*"
    return text


def fmt_paper(entry: dict[str, Any], column: str) -> str:
    value = entry.get("paper", {}).get(column)
    if value is None:
        return "—" if entry.get("is_baseline") else ""
    mark = "*" if column in entry.get("paper_insignificant", []) else ""
    return f"{value:+.2f}%{mark}"


def column_cell(entry: dict[str, Any], column: str) -> dict[str, Any] | None:
    head, _, group = column.partition("/")
    return entry.get("metrics", {}).get(head, {}).get(group)


def results_table(results: dict[str, Any]) -> list[str]:
    """The comparison table as markdown lines (paper beside ours per column)."""
    columns = results["columns"]
    has_latency = any(v.get("latency_ms") is not None for v in results["variants"])
    header = ["variant"]
    for c in columns:
        header += [f"paper {c}", f"ours {c}"]
    if has_latency:
        header.append("latency ms / batch 256")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in results["variants"]:
        cells = [entry["label"] + (" (baseline)" if entry.get("is_baseline") else "")]
        for c in columns:
            ours = "—" if entry.get("is_baseline") else fmt_ours(column_cell(entry, c))
            if entry.get("skipped"):
                ours = "skipped"
            cells += [fmt_paper(entry, c), ours]
        if has_latency:
            lat = entry.get("latency_ms")
            cells.append(f"{lat:.1f}" if lat is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    oracle = results.get("oracle")
    if oracle:
        cells = ["oracle (ground-truth probabilities)"]
        for c in columns:
            head, _, group = c.partition("/")
            cells += ["", fmt_ours(oracle.get(head, {}).get(group))]
        if has_latency:
            cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def absolute_table(results: dict[str, Any]) -> list[str]:
    """HIT@3 per head and group for every row (mean over seeds)."""
    heads = list(results["heads"])
    header = ["variant"] + [f"HIT@3/{h} {g}" for h in heads for g in ("all", "non_core")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in results["variants"]:
        metrics = entry.get("metrics")
        if not metrics:
            continue
        cells = [entry["label"]]
        for h in heads:
            for g in ("all", "non_core"):
                cell = metrics[h][g]
                value = cell.get("hit_at_3")
                std = cell.get("hit_at_3_std") or 0.0
                cells.append(
                    "n/a" if value is None else f"{value:.4f}" + (f" ±{std:.4f}" if std else "")
                )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """Write ``results.md``: caption, comparison table, absolute HIT@3, skips, notes."""
    budget = results["budget"]
    data = results["dataset"]
    lines = [
        f"# {results['experiment']}: {results['title']}",
        "",
        f"Dataset: `{data.get('name', '?')}`; budget `{budget['name']}` "
        f"({budget['train_steps']} steps x batch {budget['batch_size']}, seeds {results['seeds']}); "
        f"lifts are relative HIT@{results['hit_k']} over the baseline; ours = mean over seeds "
        "±std over seeds (paired t-test p over users on seed-averaged hits); * = p >= 0.05.",
        "",
    ]
    if results.get("error"):
        lines += [f"**Not run:** {results['error']}", ""]
    lines += results_table(results)
    lines += ["", "Absolute HIT@3 (sum of top-3 hits per user, averaged over users):", ""]
    lines += absolute_table(results)
    skipped = [v for v in results["variants"] if v.get("skipped")]
    if skipped:
        lines += ["", "Skipped rows:"]
        lines += [f"- {v['label']}: {v['skipped']}" for v in skipped]
    agree = agreement_lines(results)
    if agree:
        lines += ["", "Agreement with the paper's ordering (baseline counted as 0):"]
        lines += agree
    if results.get("paper_claims"):
        lines += ["", "The paper's claims checked here:"]
        lines += [f"- {c}" for c in results["paper_claims"]]
    if results.get("notes"):
        lines += ["", "Notes:"]
        lines += [f"- {n}" for n in results["notes"]]
    lines += ["", f"Wall time: {results.get('wall_s', 0):.0f} s.", ""]
    path.write_text("\n".join(lines))
