"""Markdown and plots of an experiment's results: the paper's table beside ours, with verdicts.

Per column of the paper's table, three cells: the paper's number (``+9.40%``, ``*`` where
the paper marks it insignificant), ours (``+3.12% [-1.2, +7.4] p=0.16``: the lift of the
mean over seeds, its 95% interval over users and seeds, and its p-value) and the verdict
(``unsettled (MDE 6.1%)``: holds / contradicted / unsettled, the size against the paper's
value, and the minimum lift the run could detect at 80% power). ``lifts.png`` draws the
same: each lift with its interval, coloured by verdict, and the paper's value beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transact.experiments.agreement import agreement_lines

VERDICT_COLOURS = {
    "holds": "tab:green",
    "contradicted": "tab:red",
    "unsettled": "tab:grey",
    None: "tab:blue",
}


def fmt_pct(value: float | None, digits: int = 2) -> str:
    """``0.0312 -> '+3.12%'``; ``None -> 'n/a'``."""
    if value is None:
        return "n/a"
    return f"{value * 100:+.{digits}f}%"


def fmt_ci(ci: list[float | None] | None) -> str:
    """``[-0.012, 0.074] -> '[-1.2, +7.4]'`` (percent); ``''`` when undefined."""
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]"


def fmt_ours(cell: dict[str, Any] | None) -> str:
    """One of our cells: lift, 95% interval and p-value (``*`` when p >= 0.05)."""
    if not cell or cell.get("lift") is None:
        return "n/a"
    text = fmt_pct(cell["lift"])
    ci = fmt_ci(cell.get("ci95"))
    if ci:
        text += f" {ci}"
    p = cell.get("p_value")
    if p is not None:
        text += f" (p={p:.3g})" if p >= 1e-3 else " (p<0.001)"
        if p >= 0.05:
            text += "*"
    return text


def fmt_verdict(cell: dict[str, Any] | None) -> str:
    """``holds``/``contradicted``/``unsettled``, the size when it is not consistent, and the
    MDE: ``unsettled (smaller; MDE 6.1%)``; equivalence cells say ``(equiv. ±5%)``."""
    if not cell or cell.get("verdict") is None:
        return ""
    notes = []
    if cell.get("rule") == "equivalence":
        notes.append(f"equiv. ±{(cell.get('margin') or 0) * 100:.0f}%")
    elif cell.get("size") not in (None, "consistent"):
        notes.append(str(cell["size"]))
    if cell.get("mde") is not None:
        notes.append(f"MDE {cell['mde'] * 100:.1f}%")
    word = cell["verdict"]
    if word != "unsettled":
        word = f"**{word}**"
    return word + (f" ({'; '.join(notes)})" if notes else "")


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
    """The comparison table as markdown lines (paper, ours and verdict per column)."""
    columns = results["columns"]
    has_latency = any(v.get("latency_ms") is not None for v in results["variants"])
    has_paper = any(v.get("paper") for v in results["variants"])
    header = ["variant"]
    for c in columns:
        header += [f"paper {c}", f"ours {c}"] + ([f"verdict {c}"] if has_paper else [])
    if has_latency:
        header.append("latency ms / batch 256")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in results["variants"]:
        cells = [entry["label"] + (" (baseline)" if entry.get("is_baseline") else "")]
        for c in columns:
            ours = "—" if entry.get("is_baseline") else fmt_ours(column_cell(entry, c))
            verdict = "" if entry.get("is_baseline") else fmt_verdict(column_cell(entry, c))
            if entry.get("skipped"):
                ours, verdict = "skipped", ""
            cells += [fmt_paper(entry, c), ours] + ([verdict] if has_paper else [])
        if has_latency:
            lat = entry.get("latency_ms")
            cells.append(f"{lat:.1f}" if lat is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    oracle = results.get("oracle")
    if oracle:
        cells = ["oracle (ground-truth probabilities)"]
        for c in columns:
            head, _, group = c.partition("/")
            cells += ["", fmt_ours(oracle.get(head, {}).get(group))] + ([""] if has_paper else [])
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


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def calibration_table(results: dict[str, Any]) -> list[str]:
    """Per variant and head, on the evaluation week: mean predicted / observed and log loss
    of the raw probabilities -> the calibrated ones (mean over seeds)."""
    heads = list(results["heads"])
    body = []
    for entry in results["variants"]:
        per_seed = [c for c in entry.get("calibration") or [] if c]
        if not per_seed:
            continue
        cells = [entry["label"]]
        for h in heads:
            parts = []
            for what in ("ratio", "log_loss"):
                raw, cal = (
                    _mean(
                        [
                            c["eval"][h][which][what]
                            for c in per_seed
                            if c["eval"][h][which][what] is not None
                        ]
                    )
                    for which in ("raw", "calibrated")
                )
                fmt = "{:.2f}x" if what == "ratio" else "{:.4f}"
                raw_s = "n/a" if raw is None else fmt.format(raw)
                cal_s = "n/a" if cal is None else fmt.format(cal)
                parts.append(f"{raw_s} → {cal_s}")
            cells.append(f"{parts[0]}; log loss {parts[1]}")
        body.append(cells)
    if not body:
        return []
    first = next(c for v in results["variants"] for c in v.get("calibration") or [] if c)
    header = ["variant"] + [f"{h}: predicted/observed; log loss" for h in heads]
    return [
        "",
        "Calibration on the evaluation week, raw → calibrated probabilities "
        f"({first.get('method', '')}):",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(row) + " |" for row in body],
    ]


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """Write ``results.md``: caption, comparison table with verdicts, absolute HIT@3,
    calibration, verdict counts and agreement, skips, notes."""
    budget = results["budget"]
    data = results["dataset"]
    k = results["hit_k"]
    interval = results.get("interval", {})
    metric = (
        f"expected HIT@{k} (the ground-truth probability of the top-{k} items)"
        if any(
            (v.get("metrics") or {}).get(results["heads"][0], {}).get("all", {}).get("metric")
            == "expected_hit_at_3"
            for v in results["variants"]
        )
        else f"HIT@{k}"
    )
    lines = [
        f"# {results['experiment']}: {results['title']}",
        "",
        f"Dataset: `{data.get('name', '?')}`; budget `{budget['name']}` "
        f"({budget['train_steps']} steps x batch {budget['batch_size']}, seeds {results['seeds']}). "
        f"Lifts are relative {metric} over the baseline, on seed-averaged per-user values; "
        f"[a, b] is the 95% interval in percent (users by the {interval.get('method', 'delta')} "
        "method, plus the spread between seeds), p its two-sided p-value, * = p >= 0.05. "
        "Verdict: **holds** (the interval excludes 0 on the paper's side), **contradicted** "
        "(on the other side), unsettled (it includes 0); equivalence cells (the paper's "
        "insignificant or no-effect claims) hold when the interval rules out a benefit of "
        f"±{interval.get('equivalence_margin', 0.05) * 100:.0f}% or more. Size: the paper's "
        "value against our interval (smaller / larger when outside it). MDE: the smallest "
        "lift this run detects with 80% power. See docs/evaluation.md.",
        "",
    ]
    if results.get("error"):
        lines += [f"**Not run:** {results['error']}", ""]
    lines += results_table(results)
    lines += [
        "",
        f"Absolute HIT@{k} (sum of top-{k} hits per user, averaged over users; ±std over seeds):",
        "",
    ]
    lines += absolute_table(results)
    lines += calibration_table(results)
    skipped = [v for v in results["variants"] if v.get("skipped")]
    if skipped:
        lines += ["", "Skipped rows:"]
        lines += [f"- {v['label']}: {v['skipped']}" for v in skipped]
    agree = agreement_lines(results)
    if agree:
        lines += ["", "Verdicts and agreement with the paper's ordering (baseline counted as 0):"]
        lines += agree
    if results.get("paper_claims"):
        lines += ["", "The paper's claims checked here:"]
        lines += [f"- {c}" for c in results["paper_claims"]]
    if results.get("notes"):
        lines += ["", "Notes:"]
        lines += [f"- {n}" for n in results["notes"]]
    lines += ["", f"Wall time: {results.get('wall_s', 0):.0f} s.", ""]
    path.write_text("\n".join(lines))


def plot_lifts(results: dict[str, Any], path: Path) -> Path:
    """Write ``lifts.png``: per column, every row's lift with its 95% interval (coloured
    by verdict; blue where the paper has no number) and the paper's value (black diamond).

    Equivalence cells get a shaded ±margin band. The oracle is left out (its lift would
    set the scale); it is in ``results.md``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    columns = list(results["columns"])
    rows = [v for v in results["variants"] if v.get("metrics") and not v.get("is_baseline")]
    height = 1.2 + 0.42 * max(1, len(rows))
    fig, axes = plt.subplots(1, len(columns), figsize=(4.6 * len(columns), height), sharey=True)
    axes_list = list(axes) if len(columns) > 1 else [axes]
    for ax, column in zip(axes_list, columns, strict=True):
        for y, entry in enumerate(rows):
            cell = column_cell(entry, column) or {}
            lift, ci = cell.get("lift"), cell.get("ci95") or [None, None]
            colour = VERDICT_COLOURS.get(cell.get("verdict"), "tab:blue")
            if cell.get("rule") == "equivalence" and cell.get("margin"):
                m = cell["margin"] * 100
                ax.fill_betweenx([y - 0.35, y + 0.35], -m, m, color="tab:green", alpha=0.12)
            if lift is not None:
                lo = ci[0] if ci[0] is not None else lift
                hi = ci[1] if ci[1] is not None else lift
                ax.errorbar(
                    [lift * 100],
                    [y],
                    xerr=[[(lift - lo) * 100], [(hi - lift) * 100]],
                    fmt="o",
                    color=colour,
                    capsize=3,
                )
            paper = entry.get("paper", {}).get(column)
            if paper is not None:
                ax.plot([paper], [y], marker="D", color="black", markersize=5, linestyle="")
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_title(column)
        ax.set_xlabel("lift over the baseline (%)")
    axes_list[0].set_yticks(range(len(rows)))
    axes_list[0].set_yticklabels([e["label"] for e in rows], fontsize=8)
    axes_list[0].invert_yaxis()
    handles = [
        Line2D([], [], marker="o", color=VERDICT_COLOURS[v], linestyle="", label=str(v))
        for v in ("holds", "contradicted", "unsettled")
    ] + [
        Line2D([], [], marker="o", color="tab:blue", linestyle="", label="no paper value"),
        Line2D([], [], marker="D", color="black", linestyle="", label="paper"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    data = results["dataset"].get("name", "?")
    fig.suptitle(
        f"{results['experiment']} ({data}, budget {results['budget']['name']}): lifts with 95% "
        "intervals",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_calibration(results: dict[str, Any], path: Path) -> Path | None:
    """Write ``calibration.png``: reliability curves on the evaluation week of every
    variant's calibrated probabilities (first seed), and of the baseline's raw ones for
    contrast. ``None`` (nothing written) when the backend did not calibrate."""
    from transact.evaluation.reliability import reliability_plot

    reports: dict[str, dict[str, dict[str, Any]]] = {}
    raw: dict[str, dict[str, Any]] | None = None
    for entry in results["variants"]:
        first = next((c for c in entry.get("calibration") or [] if c), None)
        if first is None or "eval_bins" not in first:
            continue
        reports[entry["label"]] = {h: {"bins": b} for h, b in first["eval_bins"].items()}
        if entry.get("is_baseline"):
            raw = {h: {"bins": b} for h, b in first["eval_bins_raw"].items()}
    if not reports:
        return None
    if raw is not None:
        reports = {"baseline, raw (before calibration)": raw, **reports}
    data = results["dataset"].get("name", "?")
    return reliability_plot(
        reports,
        path,
        title=f"{results['experiment']} ({data}): calibration on the evaluation week",
    )
