"""Time windows of requests: ``--start``/``--end`` parsing and the manifest's splits.

Training uses a window of requests (the world's weeks 1-2 by default, paper 4.1.1),
evaluation another (week 3); sliding-window retraining passes explicit bounds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path


def parse_time_ms(value: str | int) -> int:
    """``2026-01-15``, ``2026-01-15T06:00`` (UTC unless an offset is given) or epoch ms."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"time {value!r}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM or epoch milliseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def format_time_ms(ms: int) -> str:
    """Epoch milliseconds as ``YYYY-MM-DD HH:MM UTC``."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start_ms, end_ms)`` of requests."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ValueError(
                f"window end {format_time_ms(self.end_ms)} is not after start "
                f"{format_time_ms(self.start_ms)}"
            )

    def __str__(self) -> str:
        return f"[{format_time_ms(self.start_ms)}, {format_time_ms(self.end_ms)})"


def resolve_window(
    data_dir: str | Path, split: str, start: str | int | None = None, end: str | int | None = None
) -> Window:
    """The window to use: ``start``/``end`` when given, else the manifest's ``split``.

    ``split`` is ``train`` or ``eval`` (the world's weeks 1-2 and week 3, paper 4.1.1).
    Sliding-window retraining passes explicit ``start``/``end``.
    """
    from transact.data.io import load_manifest

    manifest = load_manifest(data_dir)
    if split == "train":
        default = (manifest.train_start_ms, manifest.train_end_ms)
    elif split == "eval":
        default = (manifest.eval_start_ms, manifest.eval_end_ms)
    else:
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    return Window(
        parse_time_ms(start) if start is not None else default[0],
        parse_time_ms(end) if end is not None else default[1],
    )
