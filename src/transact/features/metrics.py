"""Prometheus counters of the stream processor (exported by ``transact stream run --metrics-port``).

They live in prometheus_client's default registry, created once per process.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS = Counter(
    "transact_stream_events_total",
    "Events seen by the stream processor, by outcome (accepted, duplicate_*, late, filtered_action, invalid).",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "transact_stream_dead_letters_total",
    "Events written to the dead-letter output, by reason.",
    ["reason"],
)
CONFLICTS = Counter(
    "transact_stream_commit_conflicts_total",
    "Batches re-processed because another processor wrote one of their users (Redis).",
)
COMMITS = Counter("transact_stream_commits_total", "Atomic store commits (one per micro-batch).")
BATCH_SECONDS = Histogram(
    "transact_stream_batch_seconds",
    "Wall time of one micro-batch: validate + dedup + store commit.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PROCESSING_FAULTS = Counter(
    "transact_stream_processing_faults_total",
    "Batches whose validation or processing raised; their records were isolated and "
    "the ones that kept raising dead-lettered (reason processing_error).",
)
