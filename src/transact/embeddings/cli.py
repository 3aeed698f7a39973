"""``transact embed train | generate | evaluate | export``: the batch user-embedding pipeline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transact.arguments import (
    UserError,
    date,
    device,
    existing_dir,
    existing_file,
    output_dir,
    output_file,
    positive_int,
    reading,
)

EPILOG_TRAIN = """examples:
  transact embed train --data runs/world --out runs/pf
  transact embed train --data runs/world --out runs/pf --preset full --seed 1 --train-end 2026-01-14
"""
EPILOG_GENERATE = """examples:
  transact embed generate --data runs/world --model runs/pf/pinnerformer.pt --date 2026-01-14
  transact embed generate --data runs/world --model runs/pf/pinnerformer.pt \\
      --date 2026-01-14 --out runs/pf/user_embeddings --shards 64   # rerun resumes
  # several machines / processes: each rank writes its own shards
  torchrun --nproc_per_node 2 -m transact.embeddings.generate --data runs/world \\
      --model runs/pf/pinnerformer.pt --date 2026-01-14 --out runs/pf/user_embeddings
"""
EPILOG_EVALUATE = """examples:
  transact embed evaluate --data runs/world --model runs/pf/pinnerformer.pt --date 2026-01-14
  transact embed evaluate --data runs/world --model runs/pf/pinnerformer.pt \\
      --date 2026-01-14 --k 10 50 --window-days 7 --json runs/pf/recall.json
"""
EPILOG_EXPORT = """examples:
  transact embed export --root runs/pf/user_embeddings --db runs/serving/user_emb.rdb
  transact embed export --root runs/pf/user_embeddings --db runs/serving/user_emb.rdb --date 2026-01-14
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``embed`` and its sub-commands to the top-level parser."""
    embed = subparsers.add_parser(
        "embed",
        help="batch user embeddings (PinnerFormer): train, generate daily, evaluate, export",
        description=(
            "Batch half of the realtime-batch hybrid: a PinnerFormer-style encoder turns each "
            "user's long-term engagement history into a 64-d embedding, generated once a day. "
            "The ranker reads the table of the day before each request."
        ),
    )
    embed.set_defaults(handler=lambda _args: (embed.print_help(), 2)[1])
    sub = embed.add_subparsers(dest="embed_command", metavar="SUBCOMMAND")
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "train",
        help="train the encoder with the dense all-action loss",
        description=(
            "Train PinnerFormer on a world's training days (up to the day before the "
            "manifest's evaluation range)."
        ),
        epilog=EPILOG_TRAIN,
        formatter_class=fmt,
    )
    p.add_argument(
        "--data", type=existing_dir, required=True, help="world directory (items.parquet, events/)"
    )
    p.add_argument(
        "--out", type=output_dir, required=True, help="output directory for pinnerformer.pt"
    )
    p.add_argument("--preset", default="demo", help="tiny | demo | full (default demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=positive_int, default=None, help="override the preset's steps")
    p.add_argument("--train-end", type=date, default=None, help="last training day YYYY-MM-DD")
    p.add_argument("--device", type=device, default="cpu", help="cpu | cuda (default cpu)")
    p.set_defaults(handler=_train)

    p = sub.add_parser(
        "generate",
        help="write the dated embedding table of one day (resumable, sharded)",
        description=(
            "Encode every user's history up to the end of --date into "
            "OUT/date=D/part-*.parquet; parts already written are skipped (resume)."
        ),
        epilog=EPILOG_GENERATE,
        formatter_class=fmt,
    )
    p.add_argument("--data", type=existing_dir, required=True)
    p.add_argument(
        "--model", type=existing_file, required=True, help="checkpoint from `transact embed train`"
    )
    p.add_argument(
        "--date", type=date, required=True, help="YYYY-MM-DD; served to requests of the next day"
    )
    p.add_argument(
        "--out", type=output_dir, default=None, help="table root (default: next to the model)"
    )
    p.add_argument("--shards", type=positive_int, default=16, help="user shards = part files")
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.add_argument("--no-resume", action="store_true", help="rewrite existing parts")
    p.set_defaults(handler=_generate)

    p = sub.add_parser(
        "evaluate",
        help="recall@K of future engagements vs mean-embedding and popularity baselines",
        description=(
            "Nearest-neighbour recall@K of each user's engagements in the --window-days after "
            "--date, for PinnerFormer, the mean of the user's item embeddings, and popularity."
        ),
        epilog=EPILOG_EVALUATE,
        formatter_class=fmt,
    )
    p.add_argument("--data", type=existing_dir, required=True)
    p.add_argument("--model", type=existing_file, required=True)
    p.add_argument("--date", type=date, default=None, help="default: the model's last training day")
    p.add_argument("--k", type=positive_int, nargs="+", default=[10, 50, 100])
    p.add_argument("--window-days", type=positive_int, default=7)
    p.add_argument("--json", type=output_file, default=None, help="also write the result here")
    p.set_defaults(handler=_evaluate)

    p = sub.add_parser(
        "export",
        help="load dated tables into a rocksdict store for serving",
        description="Copy complete dated tables into a RocksDB (rocksdict) key-value store.",
        epilog=EPILOG_EXPORT,
        formatter_class=fmt,
    )
    p.add_argument("--root", type=existing_dir, required=True, help="table root (date=*/ folders)")
    p.add_argument("--db", type=output_dir, required=True, help="rocksdict path")
    p.add_argument(
        "--date", type=date, action="append", default=None, help="dates to export (default all)"
    )
    p.set_defaults(handler=_export)


def _train(args: argparse.Namespace) -> int:
    from transact.embeddings.train import PRESETS, preset, train_pinnerformer

    if args.preset not in PRESETS:
        raise UserError(f"--preset {args.preset!r}: unknown; choose from {sorted(PRESETS)}")
    overrides: dict = {"seed": args.seed}
    if args.steps is not None:
        overrides["steps"] = args.steps
    path = train_pinnerformer(
        args.data, args.out, preset(args.preset, **overrides), args.train_end, device=args.device
    )
    log = json.loads((Path(args.out) / "train_log.json").read_text())
    print(
        f"wrote {path} ({log['model_version']}): loss {log['loss_first20']:.3f} -> "
        f"{log['loss_last20']:.3f} over {log['steps']} steps, {log['seconds']:.0f}s"
    )
    return 0


def _generate(args: argparse.Namespace) -> int:
    from transact.embeddings.generate import generate_embeddings
    from transact.embeddings.train import load_pinnerformer

    out = args.out or args.model.parent / "user_embeddings"
    with reading("--model", args.model):
        model = load_pinnerformer(args.model)
    path = generate_embeddings(
        args.data,
        model,
        args.date,
        out,
        n_shards=args.shards,
        batch_size=args.batch_size,
        resume=not args.no_resume,
    )
    print(f"wrote {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from transact.embeddings.evaluate import evaluate_embeddings
    from transact.embeddings.train import load_pinnerformer

    with reading("--model", args.model):
        model = load_pinnerformer(args.model)
    result = evaluate_embeddings(
        args.data, model, args.date or model.train_end_date, tuple(args.k), args.window_days
    )
    print(f"date {result['date']}, next {result['window_days']} days, {result['n_users']} users")
    for method, by_k in result["recall"].items():
        print(f"  {method:22s} " + "  ".join(f"recall@{k}={v:.4f}" for k, v in by_k.items()))
    if result["interest_precision"]:
        ip = result["interest_precision"]
        print(f"  long-term interest precision (chance {ip['chance']:.3f}):")
        for method in result["recall"]:
            print(f"    {method:20s} " + "  ".join(f"@{k}={v:.3f}" for k, v in ip[method].items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _export(args: argparse.Namespace) -> int:
    from transact.embeddings.store import complete_dates, export_to_rocksdict

    dates = args.date or complete_dates(args.root)
    n = export_to_rocksdict(args.root, dates, args.db)
    print(f"exported {n} rows of {len(dates)} dates to {args.db}")
    return 0
