"""``transact evaluate`` (one trained model) and ``transact compare`` (lift table)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from transact.arguments import (
    UserError,
    existing_dir,
    existing_file,
    existing_path,
    output_dir,
    positive_int,
    reading,
)
from transact.training.cli import time_arg

EVALUATE_EPILOG = """\
examples:
  # score a trained run on the world's evaluation week (randomized requests only)
  transact evaluate --model runs/train/transact --data runs/demo/world

  # another window, other utility weights for the ranking score S (Eq. 3)
  transact evaluate --model runs/train/transact --data DIR --start 2026-01-19 --end 2026-01-26 \\
      --utility click=1,repin=2,hide=-5

  # also score calibrated probabilities (a Calibration JSON; default: the model's
  # metadata["calibration"] when `transact train` wrote one)
  transact evaluate --model runs/train/transact --data DIR --calibration cal.json

writes OUT/predictions.npz, OUT/metrics.json and OUT/reliability.png (default OUT:
MODEL_RUN/eval): HIT@K and expected HIT@K (the ground-truth probability of the top-K
items, where the data has it) per head for all and non-core users, AUC, log loss, the
oracle's HIT@K, diversity, and calibration per head (mean predicted / observed, ECE,
reliability bins) of the raw and, with a calibration, the calibrated probabilities."""

COMPARE_EPILOG = """\
examples:
  # lift table of several evaluated runs against the first (the baseline), with the oracle
  transact compare baseline=runs/train/baseline transact=runs/train/transact \\
      --oracle --out runs/compare

  # paired bootstrap instead of the paired t-test
  transact compare runs/train/baseline runs/train/transact --test bootstrap

each argument is NAME=PATH or PATH (the name is then the directory name); PATH is a
predictions.npz, an evaluation dir or a run dir with eval/predictions.npz. Writes
OUT/report.md (Table 1-style lifts with 95% intervals, * = p >= 0.05; expected HIT@K
lifts where the data has ground truth; calibration per model), OUT/metrics.json,
OUT/lifts.png (every lift with its 95% interval) and OUT/reliability.png."""


def parse_utility(text: str) -> dict[str, float]:
    """``click=1,repin=2,hide=-5`` -> dict."""
    out: dict[str, float] = {}
    for part in text.split(","):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"{text!r}: expected head=weight,...")
        head, value = part.split("=", 1)
        try:
            out[head.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    return out


def _eval_config(args: argparse.Namespace, base: Any = None) -> Any:
    from dataclasses import replace

    from transact.evaluation.report import EvaluationConfig

    config = base or EvaluationConfig()
    changes: dict[str, Any] = {}
    if getattr(args, "k", None) is not None:
        changes["k"] = args.k
    if getattr(args, "utility", None) is not None:
        changes["utility"] = args.utility
    if getattr(args, "test", None) is not None:
        changes["test"] = args.test
    return replace(config, **changes) if changes else config


def _handle_evaluate(args: argparse.Namespace) -> int:
    from transact.evaluation.pipeline import (
        PREDICTIONS_FILE,
        RELIABILITY_FILE,
        evaluation_dict,
        score_model,
        write_json,
    )
    from transact.evaluation.reliability import reliability_plot
    from transact.models.artifact import load_model, model_file
    from transact.pipeline.run import build_examples
    from transact.pipeline.run_config import run_config_from_dict
    from transact.pipeline.windows import resolve_window

    with reading("--model", args.model):
        model, spec, md = load_model(args.model)
    calibration = _calibration(args, md)
    run_config = run_config_from_dict(md.get("run_config", {}), source=str(args.model))
    config = _eval_config(args, run_config.evaluation)
    window = resolve_window(args.data, "eval", args.start, args.end)
    out = args.out or output_dir(str(model_file(args.model).parent / "eval"))
    print(f"evaluate {args.model} on {args.data} {window} (randomized requests)")
    eval_set = build_examples(args.data, window, run_config, evaluation=True)
    preds = score_model(
        model, eval_set, spec.heads, batch_size=run_config.data.eval_batch_size, progress=True
    )
    out.mkdir(parents=True, exist_ok=True)
    preds.save(out / PREDICTIONS_FILE)
    result = evaluation_dict(preds, config, calibration)
    write_json(out / "metrics.json", result)
    reports = {"raw": result["calibration"]["raw"]}
    if "calibrated" in result["calibration"]:
        reports["calibrated"] = result["calibration"]["calibrated"]
    reliability_plot(reports, out / RELIABILITY_FILE, title=f"calibration of {args.model}")
    print(json.dumps(result["heads"], indent=1))
    for name, report in reports.items():
        summary = ", ".join(
            f"{h} {r['ratio']:.2f}x" if r["ratio"] is not None else f"{h} n/a"
            for h, r in report.items()
        )
        print(f"calibration ({name}): mean predicted / observed = {summary}")
    print(f"wrote {out / PREDICTIONS_FILE}, {out / 'metrics.json'}, {out / RELIABILITY_FILE}")
    return 0


def _calibration(args: argparse.Namespace, metadata: dict[str, Any]) -> Any:
    """The calibration to apply: ``--calibration FILE``, else the model's metadata's, else
    ``None``. A file that is not a calibration exits with one line naming it."""
    from pathlib import Path

    from transact.evaluation.calibration import Calibration

    if args.calibration:
        with reading("--calibration", args.calibration):
            data = json.loads(Path(args.calibration).read_text())
            return Calibration.from_dict(data, source=str(args.calibration))
    if "calibration" in metadata:
        return Calibration.from_dict(metadata["calibration"], source="model metadata")
    return None


def _handle_compare(args: argparse.Namespace) -> int:
    from transact.evaluation.pipeline import compare_files, write_comparison

    named: dict[str, str | Path] = {}
    for item in args.models:
        name, path = item.split("=", 1) if "=" in item else (Path(item).name, item)
        if name in named:
            raise UserError(f"model name {name!r} given twice")
        named[name] = path
    if len(named) < 2:
        raise UserError("give at least two models (a baseline and one more)")
    baseline = args.baseline or next(iter(named))
    if baseline not in named:
        raise UserError(f"--baseline {baseline!r} is not among {list(named)}")
    cmp = compare_files(named, baseline, with_oracle=args.oracle, config=_eval_config(args))
    out = args.out
    write_comparison(cmp, out, title=f"HIT@{cmp.config.k} lifts over {baseline}")
    print(cmp.to_markdown())
    print(f"wrote {out / 'report.md'}, {out / 'metrics.json'}, lifts.png and reliability.png")
    return 0


def _add_eval_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=positive_int, help="HIT@K cut-off (default 3, as the paper)")
    p.add_argument(
        "--utility",
        type=parse_utility,
        help="utility weights u_h of S = sum u_h f(x)_h, e.g. click=1,repin=2,hide=-5",
    )
    p.add_argument(
        "--test",
        choices=("t_test", "bootstrap"),
        help="paired significance test over users (default t_test)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``transact evaluate`` and ``transact compare``."""
    p = subparsers.add_parser(
        "evaluate",
        help="score a trained model: HIT@3 (sampled and expected), AUC, log loss, "
        "calibration, oracle, diversity",
        description=(
            "Score a trained model on the randomized requests of an evaluation window "
            "(default: the manifest's evaluation week) and compute HIT@K per head exactly "
            "as the paper's Eq. (3)-(4), for all and for non-core users, plus AUC, log "
            "loss, diversity and the oracle's HIT@K when the data has ground truth."
        ),
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", type=existing_path, required=True,
        help="run dir or model.pt from `transact train`",
    )  # fmt: skip
    p.add_argument(
        "--data", type=existing_dir, required=True, help="dataset directory with manifest.json"
    )
    p.add_argument("--start", type=time_arg, help="window start (default: manifest eval split)")
    p.add_argument("--end", type=time_arg, help="window end, exclusive")
    p.add_argument("--out", type=output_dir, help="output dir (default MODEL_RUN/eval)")
    p.add_argument(
        "--calibration",
        type=existing_file,
        help="a Calibration JSON to also score calibrated probabilities with (default: the "
        "model's metadata['calibration'], if any)",
    )
    _add_eval_flags(p)
    p.set_defaults(handler=_handle_evaluate)

    c = subparsers.add_parser(
        "compare",
        help="lift table of several evaluated models vs a baseline, with p-values",
        description=(
            "Compare evaluated models against a baseline on the same requests: relative "
            "HIT@K lift per head for all and non-core users, a paired significance test over "
            "users (p >= 0.05 marked insignificant, as in the paper), the oracle and the "
            "share of its lift each model reaches."
        ),
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("models", nargs="+", metavar="[NAME=]PATH", help="evaluated models")
    c.add_argument("--baseline", help="name of the baseline (default: the first model)")
    c.add_argument("--oracle", action="store_true", help="add the ground-truth oracle row")
    c.add_argument(
        "--out", type=output_dir, default="runs/compare", help="output dir (default runs/compare)"
    )
    _add_eval_flags(c)
    c.set_defaults(handler=_handle_compare)
