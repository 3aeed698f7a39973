"""Command-line flags of the realtime stage that more than one entry point takes, defined once.

* The operator's rules: ``transact stream run`` and the PyFlink job
  (:mod:`transact.features.flink_job`) run the same operator, so they take the same flags:
  :func:`add_operator_arguments` adds them and :func:`configs_from_args` turns them into
  the :class:`ValidationConfig` and :class:`ProcessorConfig` both run with. A flag left
  out keeps the config's own default, so the defaults live in one place (the configs).
* The stream benchmark's: ``transact stream bench``, ``python -m transact.features.bench``
  and ``benchmarks/bench_stream.py`` (:func:`add_bench_arguments`).

Light on purpose (nothing heavy is imported until the configs are built): the parsers of
``python -m transact.features.cli`` are built by every supervisor and producer process.
"""

from __future__ import annotations

import argparse
from typing import Any

from transact.arguments import (
    int_range,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
)


def add_operator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--seq-len``, ``--allowed-lateness-ms``, ``--dedup-window-ms``,
    ``--max-future-ms``, ``--n-items`` and ``--include-actions`` to ``parser``."""
    g = parser.add_argument_group("operator rules (defaults: ProcessorConfig / ValidationConfig)")
    g.add_argument(
        "--seq-len", type=int_range(1, 65_535), default=None,
        help="actions kept per user (default 100, the paper's |S|)",
    )  # fmt: skip
    g.add_argument(
        "--allowed-lateness-ms", type=non_negative_int, default=None,
        help="max lag behind the user's newest action (default 300000)",
    )  # fmt: skip
    g.add_argument(
        "--dedup-window-ms", type=non_negative_int, default=None,
        help="how long dedup keys live, in event time (default 3600000)",
    )  # fmt: skip
    g.add_argument(
        "--max-future-ms", type=non_negative_int, default=None,
        help="tolerated client clock lead over server time (default 300000)",
    )  # fmt: skip
    g.add_argument(
        "--n-items", type=positive_int, default=None,
        help="item table size (item_id must be < it; default: only >= 0 is checked)",
    )  # fmt: skip
    g.add_argument(
        "--include-actions", default=None,
        help="comma-separated action names to store, or 'all' (default: the training "
        "sequences' engagements closeup,click,repin,hide)",
    )  # fmt: skip


def configs_from_args(args: argparse.Namespace):  # -> (ValidationConfig, ProcessorConfig)
    """The validation and processor configs from the flags of :func:`add_operator_arguments`.

    Raises ``ValueError`` naming the field when the combination is invalid (an unknown
    action name, a dedup window shorter than the allowed lateness).
    """
    from transact.arguments import UserError
    from transact.data.schema import ActionVocabulary
    from transact.features.events import ValidationConfig
    from transact.features.processor import ProcessorConfig

    actions = ActionVocabulary()
    processor: dict[str, Any] = {"actions": actions}
    if args.seq_len is not None:
        processor["capacity"] = args.seq_len
    if args.allowed_lateness_ms is not None:
        processor["allowed_lateness_ms"] = args.allowed_lateness_ms
    if args.dedup_window_ms is not None:
        processor["dedup_window_ms"] = args.dedup_window_ms
    if args.include_actions == "all":
        processor["include_actions"] = None
    elif args.include_actions:
        names = tuple(a for a in args.include_actions.split(",") if a)
        unknown = [a for a in names if a not in actions.names]
        if unknown:
            raise UserError(
                f"--include-actions: unknown action(s) {unknown}; known: {list(actions.names)}"
            )
        processor["include_actions"] = names
    validation: dict[str, Any] = {"actions": actions, "n_items": args.n_items}
    if args.max_future_ms is not None:
        validation["max_future_ms"] = args.max_future_ms
    return ValidationConfig(**validation), ProcessorConfig(**processor)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the stream benchmark (:func:`transact.features.bench.run`)."""
    parser.add_argument("--json", type=output_file, required=True, help="output JSON path")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--skip-kafka", action="store_true", help="no Kafka freshness run")
    parser.add_argument("--skip-redis", action="store_true", help="no Redis throughput run")
    parser.add_argument(
        "--events", type=positive_int, default=None,
        help="events for the throughput runs (default 400000; 60000 with --quick)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=positive_float, default=10_000.0,
        help="Kafka produce rate of the freshness run, events/s (default 10000)",
    )  # fmt: skip
