"""The error policy and argument types of every command line (transact.arguments)."""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import pytest

from transact.arguments import (
    ArgumentParser,
    UserError,
    date,
    device,
    float_range,
    one_line,
    output_dir,
    output_file,
    port,
    positive_float,
    reading,
    run_command,
)


def _parser(handler) -> ArgumentParser:  # noqa: ANN001
    parser = ArgumentParser(prog="tool")
    sub = parser.add_subparsers(dest="command")
    cmd = sub.add_parser("go")
    cmd.add_argument("--n", type=port, default=1)
    cmd.set_defaults(handler=handler)
    return parser


def _raise(exc: BaseException):  # noqa: ANN202
    def handler(_args: argparse.Namespace) -> int:
        raise exc

    return handler


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad field x\n  [model] a: no\n  [train] b: no"),
        FileNotFoundError("some/file: no such file"),
        PermissionError("some/dir: no permission"),
        UserError("--flag: bad"),
    ],
)
def test_user_errors_are_one_line_naming_the_subcommand(exc, capsys) -> None:
    assert run_command(_parser(_raise(exc)), ["go"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tool go: error: ")
    assert one_line(exc) in err


def test_a_multi_line_message_becomes_one_line() -> None:
    assert one_line(ValueError("head:\n  a: x\n\n  b: y\n")) == "head: a: x; b: y"
    assert one_line(ValueError("")) == "ValueError"


def test_bugs_keep_their_traceback_and_debug_shows_user_errors(capsys) -> None:
    with pytest.raises(RuntimeError):  # not a user error: never hidden
        run_command(_parser(_raise(RuntimeError("bug"))), ["go"])
    for argv in (["go", "--debug"], ["--debug", "go"]):
        with pytest.raises(ValueError, match="bad"):
            run_command(_parser(_raise(ValueError("bad"))), argv)


def test_interrupt_is_one_line_and_130(capsys) -> None:
    assert run_command(_parser(_raise(KeyboardInterrupt())), ["go"]) == 130
    assert capsys.readouterr().err == "tool go: interrupted\n"


def test_argparse_errors_are_one_line(capsys) -> None:
    assert run_command(_parser(_raise(ValueError())), ["go", "--n", "70000"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "tool go: error: argument --n: '70000' is not an integer >= 1 and <= 65535 "
        "(see tool go --help)\n"
    )


def test_no_handler_prints_help_and_returns_2(capsys) -> None:
    assert run_command(_parser(_raise(ValueError())), []) == 2
    assert "usage: tool" in capsys.readouterr().out
    assert run_command(_parser(_raise(ValueError())), ["go", "--help"]) == 0
    assert "--debug" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("parse", "good", "bad"),
    [
        (port, {"1": 1, "65535": 65535}, ["0", "65536", "-1", "80.5", "x", ""]),
        (positive_float, {"0.5": 0.5, "3": 3.0}, ["0", "-1", "nan", "inf", "x"]),
        (float_range(0.0, 1000.0), {"0": 0.0, "1000": 1000.0}, ["1000.1", "-0.1", "nan"]),
        (date, {"2026-01-14": "2026-01-14"}, ["2026-1-14", "14/01/2026", "2026-02-30", "x"]),
        (device, {"cpu": "cpu", "cuda:1": "cuda:1"}, ["gpu", "cuda:", "CPU"]),
    ],
)
def test_value_types_accept_and_refuse(parse, good, bad) -> None:  # noqa: ANN001
    for text, value in good.items():
        assert parse(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text).replace("\\", "")):
            parse(text)


def test_output_paths(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    assert output_file(str(tmp_path / "new" / "deeper" / "out.json")) == (
        tmp_path / "new" / "deeper" / "out.json"
    )
    assert output_file(str(tmp_path / "file")) == tmp_path / "file"  # overwritten
    assert output_dir(str(tmp_path / "dir")) == tmp_path / "dir"
    assert output_dir(str(tmp_path / "new" / "run")) == tmp_path / "new" / "run"
    for parse, path, why in [
        (output_file, tmp_path / "dir", "is a directory"),
        (output_file, tmp_path / "file" / "out.json", "file is a file"),
        (output_dir, tmp_path / "file", "is a file, not a directory"),
        (output_dir, tmp_path / "file" / "a" / "b", "file is a file"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            parse(str(path))
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_paths_need_write_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(argparse.ArgumentTypeError, match="no write permission"):
        output_file(str(locked / "out.json"))
    with pytest.raises(argparse.ArgumentTypeError, match="not writable"):
        output_dir(str(locked))


def test_reading_names_the_argument_and_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    for exc in (pickle.UnpicklingError("invalid load key"), EOFError(), KeyError("model")):
        with (
            pytest.raises(UserError, match=r"^--model .*model\.pt: cannot be read: ") as info,
            reading("--model", path),
        ):
            raise exc
        assert info.value.__cause__ is exc  # --debug shows where it came from
    with pytest.raises(AttributeError), reading("--model", path):  # a bug is not the file's
        raise AttributeError("no such attribute")


def test_prepare_runs_after_the_parse_and_before_the_handler() -> None:
    calls: list[str] = []

    def handler(args: argparse.Namespace) -> int:
        calls.append(f"handler {args.n}")
        return 0

    def prepare(args: argparse.Namespace) -> None:
        calls.append(f"prepare {args.n}")

    assert run_command(_parser(handler), ["go", "--n", "7"], prepare=prepare) == 0
    assert calls == ["prepare 7", "handler 7"]
    calls.clear()
    # a line that does not parse, or only asks for help, prepares nothing
    assert run_command(_parser(handler), ["go", "--n", "70000"], prepare=prepare) == 2
    assert run_command(_parser(handler), ["go", "--help"], prepare=prepare) == 0
    assert calls == []
