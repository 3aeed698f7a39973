"""The ``transact`` command: one entry point for every stage.

Each stage owns its sub-commands in its own ``<stage>/cli.py`` with a function
``register(subparsers)`` that adds them; this file only collects them, so a stage can add
a command without touching the others. Heavy imports happen inside the handlers, so
``transact --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order here is the order in ``transact --help``.
STAGE_CLIS = (
    "transact.data.cli",  # data generate | prepare | stats
    "transact.features.cli",  # stream run | produce | bench
    "transact.models.cli",  # model summary
    "transact.embeddings.cli",  # embed train | generate
    "transact.training.cli",  # train
    "transact.evaluation.cli",  # evaluate | compare
    "transact.serving.cli",  # serve | bench inference
    "transact.experiments.cli",  # experiment NAME
    "transact.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transact",
        description=(
            "TransAct (Pinterest, KDD 2023) as a system: simulate or load feed logs, build "
            "realtime action sequences, train the Pinnability ranker with TransAct, evaluate "
            "HIT@3 the paper's way, and serve it. Start with `transact demo`."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in STAGE_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name + ".").startswith(exc.name + "."):  # not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    result = args.handler(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
