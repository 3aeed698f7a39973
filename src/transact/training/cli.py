"""``transact train``: train one model from a run config on a time window of a dataset."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from transact.arguments import existing_dir, existing_file, output_dir, reading

EPILOG = """\
examples:
  # train TransAct on the world's training weeks (manifest split), small preset
  transact train --config configs/transact_small.toml --data runs/demo/world --out runs/train/transact

  # sliding-window retraining from scratch (the paper retrains twice a week)
  transact train --config configs/transact_small.toml --data DIR \\
      --start 2026-01-05 --end 2026-01-19 --out runs/train/transact-2026-01-19

  # continue an interrupted run to the same result
  transact train --config configs/transact_small.toml --data DIR --out runs/train/transact --resume

  # override single fields without editing the file
  transact train --config configs/transact_small.toml --data DIR --out runs/t \\
      --set train.max_steps=200 --set model.encoder='"avg_pool"'

  # several processes (DDP; gloo on CPU, NCCL on GPU)
  torchrun --nproc_per_node 2 -m transact.cli train --config ... --data DIR --out runs/t

outputs in --out: model.pt, checkpoints/, metrics.csv, tensorboard/, train_summary.json
(`tensorboard --logdir OUT/tensorboard` shows the curves)."""


def parse_override(text: str) -> tuple[str, str, Any]:
    """``table.field=VALUE`` (VALUE in TOML syntax; a bare word is a string)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected table.field=value")
    key, raw = text.split("=", 1)
    table, field = key.split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return table.strip(), field.strip(), value


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[str, str, Any]]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for table, field, value in overrides:
        out.setdefault(table, {})[field] = value
    return out


def load_config_with_overrides(
    path: str | Path | None, overrides: list[tuple[str, str, Any]]
):  # -> RunConfig
    """A validated RunConfig from ``path`` (or defaults) with ``--set`` overrides applied.

    Any file content ends in the RunConfig or a ``ValueError``/``OSError`` naming the file
    (and every bad field): a missing file, bytes that are not UTF-8, TOML syntax, unknown
    tables or fields, values of the wrong type or out of range.
    """
    from transact.pipeline.run_config import run_config_from_dict

    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"--config {path}: no such file")
        with reading("--config", p):
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        source = str(p)
    return run_config_from_dict(apply_overrides(raw, overrides), source=source)


def time_arg(text: str) -> str:
    """``--start``/``--end``: YYYY-MM-DD[THH:MM] (UTC) or epoch ms, checked when parsed."""
    from transact.pipeline.windows import parse_time_ms

    try:
        parse_time_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _handle_train(args: argparse.Namespace) -> int:
    from transact.pipeline.run import build_examples, train_run
    from transact.pipeline.windows import resolve_window

    config = load_config_with_overrides(args.config, args.set or [])
    out = args.out or output_dir(f"runs/train/{config.name}")  # checked before any work
    window = resolve_window(args.data, "train", args.start, args.end)
    print(f"train {config.name}: data {args.data}, window {window}, out {out}")
    examples = build_examples(args.data, window, config, evaluation=False)
    print(f"  {len(examples):,} training examples")
    result = train_run(
        config,
        examples,
        examples.feature_spec,
        out,
        resume=args.resume,
        metadata={
            "data": {
                "dir": str(args.data),
                "start_ms": window.start_ms,
                "end_ms": window.end_ms,
                "n_examples": len(examples),
            }
        },
    )
    calibration = None
    if not args.no_calibrate:
        calibration = _calibrate(args.data, window, config, examples, out)
    print(
        json.dumps(
            {
                "model": str(out / "model.pt"),
                "calibration": calibration,
                "steps": result.steps,
                "examples": result.examples,
                "final_loss": round(result.final_loss, 5),
                "wall_s": round(result.wall_s, 1),
            }
        )
    )
    return 0


def _calibrate(data: Any, window: Any, config: Any, train_set: Any, out: Path) -> Any:
    """Fit the trained model's calibration on the randomized requests at the end of its
    training window and write it into ``model.pt``'s metadata; returns a summary of the
    fit (``None`` when the window has no randomized request, said on stderr: the model
    then serves raw probabilities)."""
    import sys

    from transact.pipeline.calibrate import calibrate_run

    cal = calibrate_run(
        out,
        data,
        window.start_ms,
        window.end_ms,
        train_set=train_set,
        seq_len=config.data.seq_len,
        batch_size=config.data.eval_batch_size,
    )
    if cal is None:
        print("  not calibrated: the window has no randomized request", file=sys.stderr)
        return None
    print(
        f"  calibrated: keep rate {cal.keep_rate:.4f} undone, per-head Platt on "
        f"{cal.fitted_on.get('examples', 0):,} randomized impressions of the last "
        f"{cal.fitted_on.get('days', 0):g} day(s)"
    )
    return {"keep_rate": round(cal.keep_rate, 6), "fitted_on": cal.fitted_on}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``transact train``."""
    p = subparsers.add_parser(
        "train",
        help="train a ranker (Pinnability +/- TransAct) on a time window",
        description=(
            "Train Pinnability with the sequence encoder named in the run config on the "
            "requests of one time window: Adam with linear warm-up and cosine annealing "
            "(paper 4.1.2), gradient clipping, optional bf16/fp16, atomic checkpoints with "
            "exact --resume, TensorBoard + CSV metrics. Without --start/--end the dataset "
            "manifest's training split is used."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", type=existing_file,
        help="run config TOML (configs/*.toml); default: small TransAct",
    )  # fmt: skip
    p.add_argument(
        "--data", type=existing_dir, required=True, help="dataset directory with manifest.json"
    )
    p.add_argument(
        "--start", type=time_arg, help="window start: YYYY-MM-DD[THH:MM] UTC or epoch ms"
    )
    p.add_argument("--end", type=time_arg, help="window end (exclusive)")
    p.add_argument("--out", type=output_dir, help="run directory (default runs/train/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip the calibration fitted after training (down-sampling undone + per-head "
        "Platt on the window's last randomized requests); the model then serves raw "
        "probabilities",
    )
    p.add_argument(
        "--set",
        action="append",
        type=parse_override,
        metavar="TABLE.FIELD=VALUE",
        help="override one config field (repeatable)",
    )
    p.set_defaults(handler=_handle_train)
