"""An environment's logs as a world dir, and the training dirs a retrain reads.

:class:`LogWriter` keeps the logs of one simulated environment where the pipeline reads
logs: a world dir (``data/io.py``) whose offline days are the pre-period's (links to the
offline world's day partitions, never copies or writes into them) and whose online days
are written as the environment steps: events, impressions and requests in the schemas of
``data/schema.py``, day-partitioned Parquet, globally time-ordered (rows of sessions that
pass midnight are carried into the next day's batch, as ``generate_world`` does; the
offline world's own carried rows, its partition of the first online date, start the carry).

:func:`training_dir` lays out what one retrain may read: the events before the window's
end (sequences), the impressions of the window (examples), restricted to some users for
an arm that trains on its own bucket's logs. Nothing at or after the window's end is in
it, so a retrain cannot read a future day (tested).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transact.data.io import (
    DayPartitionWriter,
    day_string,
    load_manifest,
    partition_files,
    save_manifest,
)
from transact.data.schema import events_schema, impressions_schema, requests_schema
from transact.data.world.logs import StepResult

TABLES = ("events", "impressions", "requests")
TIME_COLUMN = {
    "events": "timestamp_ms",
    "impressions": "request_time_ms",
    "requests": "request_time_ms",
}
TIE_COLUMNS = {"events": [], "impressions": ["request_id", "position"], "requests": ["request_id"]}


def _schema(table: str, heads: tuple[str, ...]) -> pa.Schema:
    if table == "events":
        return events_schema()
    if table == "impressions":
        return impressions_schema(heads)
    return requests_schema()


def _sorted(table: pa.Table, name: str) -> pa.Table:
    keys = [(TIME_COLUMN[name], "ascending")] + [(c, "ascending") for c in TIE_COLUMNS[name]]
    return table.take(pc.sort_indices(table, sort_keys=keys))


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target.resolve(), link)


class LogWriter:
    """Writes one environment's online logs into ``root`` as a world dir (module doc).

    Args:
        root: the log directory (created; must not exist).
        world_dir: the offline world (its days are linked, never written).
        online_start_ms: UTC midnight of the first online day.
        description: what these logs are (``extra.online`` of the manifest).
    """

    def __init__(
        self,
        root: str | Path,
        world_dir: str | Path,
        online_start_ms: int,
        description: Mapping[str, Any],
    ) -> None:
        self.root = Path(root)
        self.world_dir = Path(world_dir)
        self.world = load_manifest(world_dir)
        self.heads = self.world.heads
        self.online_start_ms = online_start_ms
        self.description = dict(description)
        self.root.mkdir(parents=True, exist_ok=False)
        for name in ("items.parquet", "users.parquet"):
            _link(self.world_dir / name, self.root / name)
        first_online = day_string(online_start_ms)
        self.carry: dict[str, pa.Table | None] = {}
        for name in TABLES:
            carried = []
            for day, path in partition_files(self.world_dir, name):
                if day < first_online:
                    _link(path, self.root / name / f"day={day}" / path.name)
                else:  # the offline world's rows past its last midnight: carried online
                    carried.append(pq.read_table(path))
            (self.root / name).mkdir(exist_ok=True)
            self.carry[name] = pa.concat_tables(carried) if carried else None
        self.writers = {
            name: DayPartitionWriter(
                self.root, name, _schema(name, self.heads), TIME_COLUMN[name], 4_000_000
            )
            for name in TABLES
        }
        self._day: dict[str, list[pa.Table]] = {name: [] for name in TABLES}
        self.end_ms = self.world.end_ms
        self.rows = dict.fromkeys(TABLES, 0)
        self._write_manifest(online_start_ms)

    def add(self, result: StepResult) -> None:
        """Buffer one round's logs (written at :meth:`end_day`)."""
        if not result.impressions:
            return
        self._day["events"].append(result.events_table())
        self._day["impressions"].append(result.impressions_table(self.heads))
        self._day["requests"].append(result.requests_table())

    def end_day(self, day_end_ms: int) -> None:
        """Write the day's rows before ``day_end_ms`` (sorted by time), carry the rest."""
        for name, writer in self.writers.items():
            parts = self._day[name]
            if self.carry[name] is not None:
                parts = [self.carry[name], *parts]
            self._day[name] = []
            if not parts:
                continue
            table = _sorted(pa.concat_tables(parts), name)
            late = pc.greater_equal(table.column(TIME_COLUMN[name]), day_end_ms)
            self.carry[name] = table.filter(late)
            table = table.filter(pc.invert(late))
            writer.write(table)
            writer.close_days_before(day_end_ms)
            self.rows[name] += table.num_rows
            if name == "events" and table.num_rows:
                self.end_ms = max(
                    self.end_ms, int(pc.max(table.column("timestamp_ms")).as_py()) + 1
                )
        self._write_manifest(day_end_ms)

    def close(self) -> None:
        """Write the carried rows (sessions past the last midnight) and the manifest."""
        for name, writer in self.writers.items():
            carried = self.carry[name]
            if carried is not None and carried.num_rows:
                writer.write(_sorted(carried, name))
                self.rows[name] += carried.num_rows
                if name == "events":
                    top = int(pc.max(carried.column("timestamp_ms")).as_py()) + 1
                    self.end_ms = max(self.end_ms, top)
            self.carry[name] = None
            writer.close()
        self._write_manifest(self.end_ms)

    def _write_manifest(self, written_until_ms: int) -> None:
        extra = dict(self.world.extra)
        extra["online"] = {
            **self.description,
            "offline_world": str(self.world_dir.resolve()),
            "online_start_ms": self.online_start_ms,
            "written_until_ms": int(written_until_ms),
            "online_rows": dict(self.rows),
        }
        manifest = replace(self.world, end_ms=max(self.end_ms, written_until_ms), extra=extra)
        save_manifest(self.root, manifest)


def training_dir(
    log_dir: str | Path,
    out_dir: str | Path,
    start_ms: int,
    end_ms: int,
    users: np.ndarray | None = None,
) -> Path:
    """Lay out the world dir one retrain reads: window ``[start_ms, end_ms)`` (midnights).

    Events of the days before ``end_ms`` are linked (sequences read the history before
    each request); impressions of the window's days are linked, or with ``users`` given
    rewritten with those users' rows only (an arm training on its own bucket's logs).
    Nothing at or after ``end_ms`` is laid out. Returns ``out_dir``.
    """
    log_dir, out = Path(log_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=False)
    for name in ("items.parquet", "users.parquet"):
        _link(log_dir / name, out / name)
    last_day = day_string(end_ms - 1)
    first_day = day_string(start_ms)
    wanted = None if users is None else pa.array(np.asarray(users, np.int64))
    for day, path in partition_files(log_dir, "events"):
        if day <= last_day:
            _link(path, out / "events" / f"day={day}" / path.name)
    (out / "events").mkdir(exist_ok=True)
    (out / "impressions").mkdir(exist_ok=True)
    for day, path in partition_files(log_dir, "impressions"):
        if not first_day <= day <= last_day:
            continue
        dest = out / "impressions" / f"day={day}" / path.name
        if wanted is None:
            _link(path, dest)
            continue
        table = pq.read_table(path)
        table = table.filter(pc.is_in(table.column("user_id"), value_set=wanted))
        dest.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, dest, compression="zstd")
    manifest = load_manifest(log_dir)
    extra = dict(manifest.extra)
    extra["training_window"] = {
        "start_ms": start_ms,
        "end_ms": end_ms,
        "users": None if users is None else int(len(users)),
        "logs": str(log_dir.resolve()),
    }
    save_manifest(
        out,
        replace(
            manifest,
            end_ms=end_ms,
            train_start_ms=start_ms,
            train_end_ms=end_ms,
            eval_start_ms=start_ms,
            eval_end_ms=end_ms,
            extra=extra,
        ),
    )
    (out / "training_window.json").write_text(json.dumps(extra["training_window"], indent=1))
    return out
