"""Argument types and the error policy of every command line (``transact``, the benchmarks).

The policy: a mistake in what the user gave (a flag value, a path, a config file) ends in
ONE line on stderr that names the argument or the file, and exit status 2; anything else
is a bug and shows its traceback. ``--debug`` (accepted by every command) shows the
traceback of a user error too.

Which exceptions are user errors: :class:`UserError`, and the families the library
already raises for bad input, so that library code never needs to know it runs under a
command line: ``ValueError`` (its subclasses ``DataError``, ``TOMLDecodeError``,
``JSONDecodeError``, ``UnicodeDecodeError``; every config's ``__post_init__``) and the
``OSError`` of a path (missing, existing, a file where a directory is expected, no
permission). They are mapped to exit 2 only by :func:`run_command`, which every
``cli.py`` and benchmark entry point calls.

Output paths are checked by their argument type (:func:`output_file`,
:func:`output_dir`) when the command line is parsed, before any expensive work starts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import pickle
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn


class UserError(ValueError):
    """A command line that cannot run as given; the message names the argument or file."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    argparse.ArgumentTypeError,  # an argument type used on a derived value (a default path)
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (a multi-line list of bad fields joined by ';')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head, rest = lines[0], lines[1:]
    return f"{head} {'; '.join(rest)}" if rest else head


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line and that accepts ``--debug``.

    Sub-commands made with ``add_subparsers`` are of this class too, so every command of
    the tree reports a bad argument as ``PROG: error: argument --x: why (see PROG --help)``
    and exits 2, and takes ``--debug`` anywhere on the line.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "-" in self.prefix_chars:
            self.add_argument(
                "--debug",
                action="store_true",
                default=argparse.SUPPRESS,
                help="on a user error, show the Python traceback instead of one line",
            )
        self.set_defaults(command_prog=self.prog)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(Exception(message))} "
                  f"(see {self.prog} --help)\n")  # fmt: skip


def run_command(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    prepare: Callable[[argparse.Namespace], None] | None = None,
) -> int:
    """Parse ``argv``, run the chosen handler, map user errors to one line and exit 2.

    ``prepare(args)`` runs after a successful parse, before the handler (the process's
    settings that depend on the command line, such as its allocator).

    A parser (or sub-command) without a handler prints its help and returns 2. Ctrl-C ends
    with status 130 and one line. Never raises ``SystemExit``: ``--help`` returns 0 and a
    usage error 2 (after its one line), so in-process callers get a status like the shell.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    handler: Callable[[argparse.Namespace], int | None] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    prog = getattr(args, "command_prog", parser.prog)
    if prepare is not None:
        prepare(args)
    try:
        return int(handler(args) or 0)
    except USER_ERRORS as exc:
        if getattr(args, "debug", False):
            raise
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


# what goes wrong while a loader reads a file of the user's: a file that is not what it
# should be (truncated, another format, a pickle of something else) fails in any of these
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    TypeError,
    RuntimeError,
    pickle.UnpicklingError,
)


@contextmanager
def reading(argument: str, path: str | Path) -> Iterator[None]:
    """Within the block, a failure to read the user's file ``path`` (given as ``argument``)
    becomes a :class:`UserError` naming both: ``--model runs/x.pt: cannot be read: why``.

    Wrap only the call that loads the file, so that nothing else is blamed on it.
    """
    try:
        yield
    except UserError:
        raise
    except READ_ERRORS as exc:
        raise UserError(f"{argument} {path}: cannot be read: {one_line(exc)}") from exc


# ---- argument types: each raises ArgumentTypeError, which argparse reports as
# "argument --flag: <message>" (one line, exit 2)


def _bounded(kind: type, low: float | None, high: float | None, low_open: bool = False):  # noqa: ANN202
    """A parser of ``kind`` (int or float) in the given bounds; floats must be finite."""
    name = "an integer" if kind is int else "a number"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        parts.append(f"<= {high}")
    what = f"{name} {' and '.join(parts)}".strip()

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        bad = kind is float and not math.isfinite(value)
        bad = bad or (low is not None and (value <= low if low_open else value < low))
        bad = bad or (high is not None and value > high)
        if bad:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``low..high`` (an end is open when ``None``)."""
    return _bounded(int, low, high)


def float_range(
    low: float | None = None, high: float | None = None, low_open: bool = False
) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    return _bounded(float, low, high, low_open)


positive_int = int_range(1)
non_negative_int = int_range(0)
port = int_range(1, 65535)
positive_float = float_range(0.0, low_open=True)
non_negative_float = float_range(0.0)


def date(text: str) -> str:
    """A calendar day ``YYYY-MM-DD`` (returned as given)."""
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
    if len(text) != 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD")
    return text


def device(text: str) -> str:
    """A torch device name: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (not checked for presence)."""
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, cuda, cuda:N, mps)")
    return text


def _existing(text: str, kind: str) -> Path:
    """``text`` names an existing, readable ``kind``: "file", "directory" or "path"."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such {kind}")
    if kind == "file" and path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory, not a file")
    if kind == "directory" and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, not a directory")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable")
    return path


def existing_file(text: str) -> Path:
    """A readable file that exists."""
    return _existing(text, "file")


def existing_dir(text: str) -> Path:
    """A directory that exists."""
    return _existing(text, "directory")


def existing_path(text: str) -> Path:
    """A file or directory that exists."""
    return _existing(text, "path")


def _writable(text: str, kind: str) -> Path:
    """``text`` names a ``kind`` ("file" or "directory") the command may write: an existing
    writable one, or a new one whose nearest existing ancestor is a writable directory."""
    path = Path(text)
    if path.exists():
        if path.is_dir() != (kind == "directory"):
            other = "directory" if kind == "file" else "file"
            raise argparse.ArgumentTypeError(f"{text}: is a {other}, not a {kind}")
        if not os.access(path, os.W_OK | (os.X_OK if kind == "directory" else 0)):
            raise argparse.ArgumentTypeError(f"{text}: not writable")
        return path
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text}: cannot be created, {parent} is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise argparse.ArgumentTypeError(
                    f"{text}: cannot be created in {parent} (no write permission)"
                )
            break
    return path


def output_file(text: str) -> Path:
    """A file path the command may write: an existing writable file, or a new one whose
    directory exists or can be created. Checked before the work that produces it."""
    return _writable(text, "file")


def output_dir(text: str) -> Path:
    """A directory the command may write into: an existing writable directory, or a new
    one that can be created (not an existing file)."""
    return _writable(text, "directory")


def directory_or_new(text: str) -> Path:
    """A directory that may not exist yet (a watched one), but never a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, not a directory")
    return path


__all__ = [
    "READ_ERRORS",
    "USER_ERRORS",
    "ArgumentParser",
    "UserError",
    "date",
    "device",
    "directory_or_new",
    "existing_dir",
    "existing_file",
    "existing_path",
    "float_range",
    "int_range",
    "non_negative_float",
    "non_negative_int",
    "one_line",
    "output_dir",
    "output_file",
    "port",
    "positive_float",
    "positive_int",
    "reading",
    "run_command",
]
