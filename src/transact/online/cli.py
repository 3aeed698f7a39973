"""``transact online run`` (an A/B experiment in the simulated world) and ``transact bench online``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from transact.arguments import (
    UserError,
    device,
    existing_dir,
    existing_file,
    float_range,
    int_range,
    non_negative_int,
    output_dir,
    positive_int,
    reading,
)
from transact.evaluation.cli import parse_utility
from transact.online.config import TRAINING_DATA

RUN_EPILOG = """\
examples:
  # the demo's two models, half of the users each, 14 days, buckets and paired copies
  transact online run --arm control=runs/demo/runs/baseline \\
      --arm treatment=runs/demo/runs/transact --days 14 --paired --out runs/online

  # 1.5% buckets (the paper's), the rest served by the world's production ranker,
  # TransAct retrained twice a week on its bucket's logs with a 300-step budget
  transact online run --data runs/demo/world --arm control=runs/demo/runs/baseline \\
      --arm treatment=runs/demo/runs/transact --share control=0.015 --share treatment=0.015 \\
      --retrain fixed --arm-retrain treatment=every:3.5d --retrain-steps 300 --out runs/online2

  # a published serving version, and world policies as bounds (A/A: the same model twice)
  transact online run --arm a=runs/models/v3 --arm b=runs/models/v3 --paired --days 2 --out runs/aa
  transact online run --data runs/demo/world --arm prod=policy:production \\
      --arm oracle=policy:oracle --days 7 --out runs/bounds

  # hybrid models (TransAct + the batch PinnerFormer embedding): its daily tables are
  # regenerated from each environment's logs with this checkpoint
  transact online run --arm control=RUN_A --arm treatment=RUN_B \\
      --user-embedding-model runs/pf/pinnerformer.pt --out runs/online3

A model is a trained run (RUN or RUN/model.pt), a published version (MODELS/VERSION) or a
models directory (its newest verified version), or policy:production|oracle|random. The
first --arm is the control unless --control names another. Without --data the world is the
one the first model was trained on (its metadata). Writes OUT/report.json, OUT/report.md
(Table 5's layout: repin, hide and time-spent lifts for all and non-core users with 95%
intervals; CUPED in buckets, paired with --paired), OUT/fig6.png (daily repin-volume
gain), OUT/diversity.png, OUT/timings.json, and per environment its sequence store,
dead letters and logs (a world dir), and the retrained models under OUT/retrain/."""


def _named(what: str):  # noqa: ANN202
    def parse(text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise argparse.ArgumentTypeError(f"{text!r}: expected NAME={what}")
        return name.strip(), value.strip()

    parse.__name__ = f"NAME={what}"
    return parse


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``transact online run``."""
    p.add_argument("--arm", type=_named("MODEL"), action="append", required=True,
                   metavar="NAME=MODEL", help="an arm and its model (repeat; the first is the control)")  # fmt: skip
    p.add_argument("--days", type=int_range(1, 365), default=14, help="online days (default 14)")
    p.add_argument("--out", type=output_dir, required=True, help="output directory (new)")
    p.add_argument("--data", type=existing_dir, default=None,
                   help="the offline world dir (default: the first model's training data)")  # fmt: skip
    p.add_argument("--share", type=_named("FRACTION"), action="append", default=[],
                   metavar="NAME=FRACTION", help="an arm's share of the users (default: equal shares of all)")  # fmt: skip
    p.add_argument("--control", default=None, help="the control arm (default: the first --arm)")
    p.add_argument("--paired", action="store_true",
                   help="also simulate every arm as a counterfactual copy of the arms' users")  # fmt: skip
    p.add_argument("--retrain", default="fixed",
                   help="retraining schedule of every arm: fixed, every:3.5d, days:3,7 (default fixed)")  # fmt: skip
    p.add_argument("--arm-retrain", type=_named("SCHEDULE"), action="append", default=[],
                   metavar="NAME=SCHEDULE", help="one arm's own schedule")  # fmt: skip
    p.add_argument("--training-data", choices=TRAINING_DATA, default="own",
                   help="retrain on the arm's own bucket's logs (own), on all logs (pooled), "
                        "or buckets on all logs and paired copies on their own "
                        "(pooled-buckets) (default own)")  # fmt: skip
    p.add_argument("--bucket-model-copy", action="append", default=[], metavar="ARM",
                   help="with --paired and a retrain: one more paired copy of ARM's users, "
                        "all served by the model ARM's bucket retrains (paired/ARM@buckets), "
                        "to compare with ARM's own copy on every user: what retraining on "
                        "data the model shaped itself changes (the feedback loop); repeatable")  # fmt: skip
    p.add_argument("--window-days", type=int_range(1, 365), default=14,
                   help="sliding training window in days (default 14)")  # fmt: skip
    p.add_argument("--retrain-steps", type=non_negative_int, default=0,
                   help="optimizer steps per retrain (default 0: the run config's budget)")  # fmt: skip
    p.add_argument("--rest", default="policy:production",
                   help="policy or model serving users in no arm (default policy:production)")  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, default=0, help="experiment seed (default 0)")
    p.add_argument("--salt", default="", help="bucket-hash salt (default online-SEED)")
    p.add_argument("--randomized-share", type=float_range(0.0, 1.0), default=0.0,
                   help="share of shuffled requests online (default 0)")  # fmt: skip
    p.add_argument("--pre-days", type=positive_int, default=7,
                   help="offline days whose per-user values are CUPED's covariate (default 7)")  # fmt: skip
    p.add_argument("--utility", type=parse_utility, default=None,
                   help="ranking score weights, e.g. click=1,repin=2,hide=-5 (the service's default)")  # fmt: skip
    p.add_argument("--max-forward-candidates", type=positive_int, default=16_384,
                   help="candidates per model forward at most (default 16384)")  # fmt: skip
    p.add_argument("--user-embedding-model", type=existing_file, default=None,
                   help="PinnerFormer checkpoint (transact embed train) for models that read a batch user embedding")  # fmt: skip
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="served models' precision (default fp32, as trained)")  # fmt: skip
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default: torch's)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`OnlineConfig` of ``transact online run``'s flags (ValueError naming the
    flag or field for a bad one)."""
    from transact.models.artifact import read_model
    from transact.online.config import WORLD_UTILITY, ArmSpec, OnlineConfig, RetrainSchedule

    names = [n for n, _ in args.arm]
    shares: dict[str, float] = {}
    for name, value in args.share:
        if name not in names:
            raise UserError(f"--share {name}={value}: no arm {name!r} (arms: {names})")
        try:
            shares[name] = float(value)
        except ValueError:
            raise UserError(f"--share {name}={value}: not a number") from None
    schedules: dict[str, RetrainSchedule] = {}
    for name, value in args.arm_retrain:
        if name not in names:
            raise UserError(f"--arm-retrain {name}={value}: no arm {name!r} (arms: {names})")
        try:
            schedules[name] = RetrainSchedule.parse(value)
        except ValueError as exc:
            raise UserError(f"--arm-retrain {name}={value}: {exc}") from None
    try:
        retrain = RetrainSchedule.parse(args.retrain)
    except ValueError as exc:
        raise UserError(f"--retrain {args.retrain}: {exc}") from None
    arms = []
    for name, model in args.arm:
        if not model.startswith("policy:") and not Path(model).exists():
            raise UserError(f"--arm {name}={model}: no such model (run dir, model.pt or version)")
        arms.append(ArmSpec(name, model, shares.get(name), schedules.get(name)))
    data = args.data
    if data is None:
        model_arms = [a for a in arms if a.policy is None]
        recorded = None
        if model_arms:
            path = Path(model_arms[0].model)
            with reading(f"--arm {model_arms[0].name}", path):
                file = path / "model.pt" if (path / "model.pt").exists() else path
                if file.is_file():
                    recorded = read_model(file).metadata.get("data", {}).get("dir")
        if not recorded or not Path(recorded).is_dir():
            raise UserError(
                "--data: not given, and the first model records no world dir it was trained on"
            )
        data = Path(recorded)
    return OnlineConfig(
        data_dir=str(data),
        arms=tuple(arms),
        days=args.days,
        control=args.control,
        paired=args.paired,
        retrain=retrain,
        training_data=args.training_data,
        bucket_model_copies=tuple(args.bucket_model_copy),
        window_days=args.window_days,
        retrain_steps=args.retrain_steps,
        rest=args.rest,
        seed=args.seed,
        salt=args.salt,
        randomized_share=args.randomized_share,
        pre_days=args.pre_days,
        utility=args.utility or dict(WORLD_UTILITY),
        max_forward_candidates=args.max_forward_candidates,
        user_embedding_model=str(args.user_embedding_model) if args.user_embedding_model else None,
        device=args.device,
        precision=args.precision,
        progress=not args.no_progress,
    )


def check_new_out(out: Path) -> None:
    """An experiment never writes over another one's stores and logs."""
    if out.exists() and any((out / name).exists() for name in ("report.json", "buckets")):
        raise UserError(f"--out {out}: holds an experiment already; choose a new directory")


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_new_out(args.out)
    if not config.rest.startswith("policy:") and not Path(config.rest).exists():
        raise UserError(f"--rest {config.rest}: no such model")
    import torch

    from transact.online.report import format_lift, write_report
    from transact.online.simulator import simulate

    if args.threads:
        torch.set_num_threads(args.threads)
    result = simulate(config, args.out)
    paths = write_report(result, args.out)
    for design in result.designs:
        for arm in result.treatments:
            cells = []
            for metric in ("repins", "hides", "time_spent_min"):
                lift = result.lift(arm, metric, "all", design)
                cells.append(f"{metric} {format_lift(lift)}")
            print(f"{arm} over {result.control} ({design}): " + "; ".join(cells))
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The sub-command action of an existing parser (``transact bench``'s, made by the
    serving stage), so this stage can add its benchmark beside the others."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"{parser.prog} has no sub-commands")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``transact online run`` and ``transact bench online``."""
    online = subparsers.add_parser(
        "online",
        help="online A/B experiments of served models in the simulated world",
        description="Online experiments in the closed-loop simulated world (docs/online.md).",
    )
    osub = online.add_subparsers(dest="online_command", metavar="SUBCOMMAND")
    run = osub.add_parser(
        "run",
        help="simulate an A/B test: arms of served models, days, buckets and paired copies",
        description=(
            "Continue the offline world for --days days with every arm's model serving its "
            "bucket of users through the serving code, events through the stream processor "
            "into the sequence store, optional retraining on the logs; report Table 5."
        ),
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(run)
    run.set_defaults(handler=_run)
    online.set_defaults(handler=lambda _a: (online.print_help(), 2)[1])
    bench = subparsers.choices.get("bench")
    if bench is None:  # the serving stage's `transact bench` is not registered
        return
    from transact.online.bench import BENCH_DESCRIPTION, BENCH_EPILOG, add_bench_arguments, run

    b = _subcommands(bench).add_parser(
        "online",
        help="simulated impressions/s of the online simulator on the demo world",
        description=BENCH_DESCRIPTION,
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(b)
    b.set_defaults(handler=run)
