"""What the Flink job (:mod:`transact.features.flink_job`) writes, and how it reaches a store.

This module does not import PyFlink, so the project venv (which cannot hold PyFlink, see
docs/realtime.md) can read the job's output and load it into a :class:`SequenceStore`.

The job writes two directories of JSON lines (Flink ``FileSink`` part files, committed at
checkpoints, so a part file exists only once its records are covered by a checkpoint):

* ``upserts/``: one record per change of a user's value::

      {"user_id": 7, "version": 3, "value": "<base64 of the codec.py value>",
       "source": "file", "offset": 41}

  ``version`` counts the changes of that user's value (kept in Flink state next to it),
  so "highest version wins" folds the records into each user's final value whatever
  order the part files are read in, and a record replayed after a restore from a
  checkpoint cannot move a user back in time.
* ``dead_letters/``: :meth:`transact.features.events.DeadLetter.to_json` lines, the same
  records ``transact stream run --dead-letters`` writes.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

from transact.features.events import DeadLetter
from transact.features.store import SequenceStore

UPSERTS_DIR = "upserts"
DEAD_LETTERS_DIR = "dead_letters"


def upsert_record(user_id: int, version: int, value: bytes, source: str, offset: int) -> str:
    """One ``upserts/`` line: the user's whole new value and the event that caused it."""
    return json.dumps(
        {
            "user_id": user_id,
            "version": version,
            "value": base64.b64encode(value).decode("ascii"),
            "source": source,
            "offset": offset,
        },
        separators=(",", ":"),
    )


def _committed_lines(directory: str) -> Iterator[str]:
    """Lines of the committed part files under ``directory`` (Flink keeps in-progress and
    pending files hidden, with a leading dot; they are not output yet)."""
    if not os.path.isdir(directory):
        return
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith((".", "_")):
                continue
            with open(os.path.join(root, name), encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield line


def read_upserts(output_dir: str) -> dict[int, bytes]:
    """Each user's final value: the highest-version record under ``output_dir/upserts``.

    Two records of one user with the same version must carry the same value (a replay
    after a restore recomputes it from the same state); a mismatch raises ``ValueError``.
    """
    newest: dict[int, tuple[int, bytes]] = {}
    for line in _committed_lines(os.path.join(output_dir, UPSERTS_DIR)):
        rec = json.loads(line)
        user, version = int(rec["user_id"]), int(rec["version"])
        value = base64.b64decode(rec["value"])
        have = newest.get(user)
        if have is not None and have[0] == version and have[1] != value:
            raise ValueError(f"user {user} has two different values at version {version}")
        if have is None or version > have[0]:
            newest[user] = (version, value)
    return {u: v for u, (_, v) in sorted(newest.items())}


def read_dead_letters(output_dir: str) -> list[DeadLetter]:
    """Every dead letter under ``output_dir/dead_letters``, ordered by (source, offset)."""
    letters = [
        DeadLetter(**json.loads(line))
        for line in _committed_lines(os.path.join(output_dir, DEAD_LETTERS_DIR))
    ]
    letters.sort(key=lambda d: (d.source, d.offset, d.reason))
    return letters


def load_upserts(output_dir: str, store: SequenceStore) -> int:
    """Write every user's final value from ``output_dir`` into ``store`` (one atomic
    commit, no source offsets: Flink's checkpoints own those). Returns the user count.

    This is how a bounded Flink run (a backfill) becomes the store the ranker reads
    (``SequenceReader``); a live job would instead send its upserts to a compacted Kafka
    topic that a loader applies the same way (docs/realtime.md, Flink).
    """
    values = read_upserts(output_dir)
    store.commit(values, {})
    return len(values)
