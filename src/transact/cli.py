"""The ``transact`` command: one entry point for every stage.

Each stage owns its sub-commands in its own ``<stage>/cli.py`` with a function
``register(subparsers)`` that adds them; this file only collects them, so a stage can add
a command without touching the others. Heavy imports happen inside the handlers, so
``transact --help`` stays fast.

Errors (:mod:`transact.arguments`): a user mistake (a bad flag value, a missing or
unwritable path, a bad config file) prints one line naming the argument or file and exits
2; ``--debug`` anywhere on the line shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from transact.arguments import ArgumentParser, run_command

# Order here is the order in ``transact --help``.
STAGE_CLIS = (
    "transact.data.cli",  # data generate | prepare | stats
    "transact.features.cli",  # stream run | produce | bench
    "transact.models.cli",  # model summary
    "transact.embeddings.cli",  # embed train | generate
    "transact.training.cli",  # train
    "transact.evaluation.cli",  # evaluate | compare
    "transact.serving.cli",  # serve | bench inference
    "transact.online.cli",  # online run | bench online (after serving: adds to `bench`)
    "transact.experiments.cli",  # experiment NAME
    "transact.demo",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    """The ``transact`` parser with every stage's sub-commands."""
    parser = ArgumentParser(
        prog="transact",
        description=(
            "TransAct (Pinterest, KDD 2023) as a system: simulate or load feed logs, build "
            "realtime action sequences, train the Pinnability ranker with TransAct, evaluate "
            "HIT@3 the paper's way, and serve it. Start with `transact demo`."
        ),
        epilog=(
            "A mistake on the command line (a bad value, a missing or unwritable path, a bad\n"
            "config file) ends in one line naming the argument or file, and exit status 2;\n"
            "add --debug anywhere on the line to see the Python traceback instead."
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
    """Run one ``transact`` command line; returns the exit status."""
    return run_command(build_parser(), argv, prepare=prepare_process)


def prepare_process(args: argparse.Namespace) -> None:
    """Before any command: glibc malloc keeps freed activation memory
    (:func:`transact.memory.keep_freed_memory`: batch scoring 2.3x faster without its page
    faults), unless ``--default-malloc`` or ``TRANSACT_MALLOC=default`` says otherwise."""
    from transact.memory import keep_freed_memory, opted_out

    if not opted_out(bool(getattr(args, "default_malloc", False))):
        keep_freed_memory()


if __name__ == "__main__":
    sys.exit(main())
