import json

import numpy as np
import pytest

from transact.cli import build_parser, main
from transact.evaluation.predictions import Predictions

MY_COMMANDS = ("train", "evaluate", "compare", "demo")


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return parser, action.choices


def test_top_level_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in MY_COMMANDS:
        assert f"    {name}" in out


@pytest.mark.parametrize("name", MY_COMMANDS)
def test_every_command_help_teaches_with_examples(name):
    _, choices = _subparsers()
    sub = choices[name]
    assert len(sub.description or "") > 80
    assert "examples:" in (sub.epilog or "")
    assert f"transact {name}" in sub.epilog


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "usage: transact" in capsys.readouterr().out


def _preds(rng, quality):
    n_users, n_items = 60, 10
    user = np.repeat(np.arange(n_users), n_items)
    req = user + 1000
    labels = (rng.random((len(user), 3)) < [0.2, 0.1, 0.05]).astype(np.int8)
    noise = rng.random((len(user), 3))
    scores = quality * labels + (1 - quality) * noise
    return Predictions(
        heads=("click", "repin", "hide"),
        scores=np.clip(scores, 0, 1),
        labels=labels,
        user_ids=user,
        request_ids=req,
        item_ids=np.arange(len(user)),
        is_core=user % 3 == 0,
        top_interest=np.arange(len(user)) % 7,
        gt_probs=np.clip(0.9 * labels + 0.05, 0, 1).astype(np.float64),
    )


def test_compare_command_writes_the_lift_table(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base = _preds(rng, 0.0)
    good = base.with_scores(_preds(np.random.default_rng(0), 0.6).scores)
    base.save(tmp_path / "base.npz")
    (tmp_path / "good" / "eval").mkdir(parents=True)
    good.save(tmp_path / "good" / "eval" / "predictions.npz")
    rc = main(
        ["compare", f"baseline={tmp_path / 'base.npz'}", str(tmp_path / "good"), "--oracle",
         "--out", str(tmp_path / "cmp"), "--utility", "repin=1"]
    )  # fmt: skip
    assert rc == 0
    metrics = json.loads((tmp_path / "cmp" / "metrics.json").read_text())
    r = metrics["models"]["good"]["repin"]["all"]
    assert r["lift_vs_baseline"] > 0.5 and r["p_value"] < 1e-6
    assert metrics["utility"] == {"repin": 1.0}
    assert 0 < r["share_of_oracle_lift"] <= 1.0
    assert "Relative lift of HIT@3" in (tmp_path / "cmp" / "report.md").read_text()
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "base.npz"), "--out", str(tmp_path / "c2")]) == 2
    assert "at least two models" in capsys.readouterr().err


def _all_parsers(parser, path=("transact",)):
    """Every parser under ``parser`` (itself first), with its command path."""
    yield path, parser
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):  # subcommands; other choices are values
            for name, sub in choices.items():
                yield from _all_parsers(sub, (*path, name))


def test_help_examples_are_lines_a_shell_can_run():
    # an example continued with a backslash in a Python string loses its newline unless
    # the backslash is escaped; argparse then prints one line with the indentation inside
    seen = 0
    for path, parser in _all_parsers(build_parser()):
        for line in (parser.epilog or "").splitlines():
            text = line.split(" #")[0].strip()  # aligned comments may follow a command
            if text.startswith("transact "):
                seen += 1
                assert "   " not in text, f"{' '.join(path)} --help: {text!r}"
    assert seen > 50
