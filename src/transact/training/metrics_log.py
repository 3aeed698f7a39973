"""Per-step training metrics to TensorBoard event files and a CSV file.

On resume the CSV is cut back to the resumed step and the TensorBoard writer purges
events after it (``purge_step``), so a killed-and-resumed run leaves one clean curve.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

FIELDS = ("step", "epoch", "loss", "lr", "grad_norm", "examples", "examples_per_s", "wall_s")


class MetricsLogger:
    """Writes one row per logged step to ``DIR/metrics.csv`` and ``DIR/tensorboard/``.

    Args:
        directory: the run directory.
        resume_step: the step a resumed run restarts after; rows with a larger step are
            dropped from the CSV and TensorBoard purges its events from ``resume_step + 1``.
        tensorboard: also write TensorBoard event files.
    """

    def __init__(self, directory: str | Path, *, resume_step: int = 0, tensorboard: bool = True):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.directory / "metrics.csv"
        self._truncate_csv(resume_step)
        new = not self.csv_path.exists()
        self._csv_file = open(self.csv_path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.DictWriter(self._csv_file, fieldnames=FIELDS)
        if new:
            self._csv.writeheader()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(
                str(self.directory / "tensorboard"),
                purge_step=resume_step + 1 if resume_step > 0 else None,
            )

    def _truncate_csv(self, resume_step: int) -> None:
        if not self.csv_path.exists():
            return
        with open(self.csv_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= resume_step]
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.csv_path)

    def log(self, row: dict[str, float]) -> None:
        self._csv.writerow({k: row.get(k, "") for k in FIELDS})
        self._csv_file.flush()
        if self._tb is not None:
            step = int(row["step"])
            for k in ("loss", "lr", "grad_norm", "examples_per_s"):
                if k in row:
                    self._tb.add_scalar(f"train/{k}", float(row[k]), step)

    def close(self) -> None:
        self._csv_file.close()
        if self._tb is not None:
            self._tb.close()
