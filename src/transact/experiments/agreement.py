"""Does our ordering of the variants agree with the paper's? One number per column.

For each column of a table (``"repin/all"``), every pair of rows that has both a paper
number and one of ours is *concordant* when both put the pair in the same order, and the
sign of each row's lift agrees when both are on the same side of zero. The baseline row
counts as a lift of 0 so that "better than the baseline" is part of the ordering.
These are the figures the results document and the closing note quote table by table.
Beside them, the *verdicts* of the cells (holds / contradicted / unsettled,
:mod:`transact.evaluation.verdict`) are counted per column.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any


def column_agreement(results: dict[str, Any], column: str) -> dict[str, Any]:
    """Pairwise-order and sign agreement between the paper and us for one column.

    Returns ``{"verdicts", "pairs", "concordant", "concordance", "signs",
    "sign_agreement", "best_paper", "best_ours"}``; the ratios are ``None`` when nothing
    is comparable; ``verdicts`` counts the cells' holds / contradicted / unsettled.
    ``best_*`` name the best row (highest lift, or lowest for a head whose utility weight
    is negative: hide on the world).
    """
    head, _, group = column.partition("/")
    points: list[tuple[str, float, float]] = []
    for entry in results["variants"]:
        if entry.get("is_baseline"):
            paper = entry.get("paper", {}).get(column)
            points.append((entry["label"], 0.0 if paper is None else paper / 100, 0.0))
            continue
        paper = entry.get("paper", {}).get(column)
        cell = entry.get("metrics", {}).get(head, {}).get(group)
        if paper is None or not cell or cell.get("lift") is None:
            continue
        points.append((entry["label"], paper / 100, cell["lift"]))
    pairs = concordant = 0
    for (_, pa, oa), (_, pb, ob) in combinations(points, 2):
        if pa == pb:
            continue
        pairs += 1
        concordant += (pa - pb) * (oa - ob) > 0
    signs = [(p, o) for label, p, o in points if p != 0.0]
    sign_ok = sum((p > 0) == (o > 0) for p, o in signs)
    lower_is_better = results.get("utility", {}).get(head, 0.0) < 0

    def best(idx: int) -> str | None:
        if len(points) < 2:
            return None
        pick = min if lower_is_better else max
        return pick(points, key=lambda t: t[idx])[0]

    verdicts = {"holds": 0, "contradicted": 0, "unsettled": 0}
    for entry in results["variants"]:
        cell = entry.get("metrics", {}).get(head, {}).get(group) or {}
        if cell.get("verdict") in verdicts:
            verdicts[cell["verdict"]] += 1
    return {
        "verdicts": verdicts,
        "pairs": pairs,
        "concordant": int(concordant),
        "concordance": concordant / pairs if pairs else None,
        "signs": len(signs),
        "sign_agreement": sign_ok / len(signs) if signs else None,
        "best_paper": best(1),
        "best_ours": best(2),
    }


def agreement(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`column_agreement` for every column of the results."""
    return {c: column_agreement(results, c) for c in results["columns"]}


def agreement_lines(results: dict[str, Any]) -> list[str]:
    """Markdown bullet lines, one per column, for results.md and docs/results.md."""
    lines = []
    for column, a in results.get("agreement", {}).items():
        if not a["pairs"]:
            continue
        v = a.get("verdicts") or {}
        counts = ", ".join(f"{v.get(w, 0)} {w}" for w in ("holds", "contradicted", "unsettled"))
        lines.append(
            f"- {column}: verdicts {counts}; "
            f"{a['concordant']}/{a['pairs']} row pairs in the paper's order; "
            f"lift sign agrees for {round((a['sign_agreement'] or 0) * a['signs'])}/{a['signs']} rows; "
            f"best row: paper '{a['best_paper']}', ours '{a['best_ours']}'."
        )
    return lines
