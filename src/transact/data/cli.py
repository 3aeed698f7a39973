"""``transact data ...``: generate a world, import real logs, summarize, prepare example sets."""

from __future__ import annotations

import argparse
import json

from transact.arguments import (
    UserError,
    existing_dir,
    existing_file,
    existing_path,
    non_negative_float,
    non_negative_int,
    output_dir,
    output_file,
    positive_int,
)

_EPILOG = """\
examples:
  transact data generate --out runs/world --preset demo --seed 0
  transact data stats runs/world --json runs/world/stats.json
  transact data prepare runs/world --split train --negative-ratio 1.0
  transact data prepare runs/world --split eval
  transact data import movielens --path ../shared/datasets/movielens-100k --out runs/ml100k
  transact data import log --path log.csv --user-col uid --item-col pin \\
      --action-col action --time-col ts --time-unit s \\
      --items-path pins.csv --item-id-col pin_id --text-cols title --out runs/mylog

A world dir holds manifest.json, items.parquet, users.parquet and day-partitioned
events/ and impressions/ (docs/data.md). Example sets are what `transact train` and
`transact evaluate` read.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data",
        help="simulate or import logs, summarize them, prepare example sets",
        description=(
            "The data stage: a simulated Pinterest-like homefeed with ground truth "
            "(generate), real logs in the same layout (import), summary figures (stats) "
            "and the training / evaluation example sets with realtime sequences (prepare)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    gen = sub.add_parser(
        "generate",
        help="simulate a homefeed world into a world dir",
        description=(
            "Simulate users, items, requests and engagements (deterministic for a seed) and "
            "stream them to day-partitioned Parquet. Presets: tiny (tests, seconds), demo "
            "(the demo, ~4M impressions, ~20 s of CPU), large (10^8 impressions)."
        ),
        epilog="example:\n  transact data generate --out runs/world --preset demo --seed 0\n"
        "  transact data generate --out runs/w2 --config configs/world/demo.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("--out", type=output_dir, required=True, help="new directory to write")
    gen.add_argument("--preset", default="demo", help="tiny | demo | large (default demo)")
    gen.add_argument(
        "--config", type=existing_file, default=None, help="TOML WorldConfig (overrides --preset)"
    )
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--users", type=positive_int, default=None, help="override n_users")
    gen.add_argument(
        "--days", type=non_negative_int, nargs=3, default=None, metavar=("WARMUP", "TRAIN", "EVAL")
    )
    gen.set_defaults(handler=_generate)

    stats = sub.add_parser(
        "stats",
        help="print counts, label rates, action mix, sequence lengths, core split",
        description="Summarize a world dir; optionally write the figures as JSON.",
        epilog="examples:\n  transact data stats runs/world --json runs/world/stats.json\n"
        "  transact data stats runs/world --signal   # model-free realtime-signal check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("data_dir", type=existing_dir)
    stats.add_argument("--json", type=output_file, default=None, help="write the figures here")
    stats.add_argument("--seq-len", type=positive_int, default=100)
    stats.add_argument(
        "--signal",
        action="store_true",
        help="also score model-free rankings (static / daily profile / realtime / oracle) "
        "on the randomized eval requests: does the world reward recent actions? and the "
        "recency diagnostic: how much of the sequence's signal lies in actions of the last "
        "5 min, hour, day and week (docs/data.md)",
    )
    stats.set_defaults(handler=_stats)

    prep = sub.add_parser(
        "prepare",
        help="build and save a training or evaluation example set",
        description=(
            "Build the examples of a split with their realtime sequences and save them for "
            "the trainer/evaluator. train: the manifest's train range, optional negative "
            "down-sampling (--negative-ratio r keeps r negatives per positive). eval: the "
            "eval range, randomized requests only, never down-sampled."
        ),
        epilog="examples:\n  transact data prepare runs/world --split train --negative-ratio 1.0\n"
        "  transact data prepare runs/world --split eval --out runs/world/examples/eval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prep.add_argument("data_dir", type=existing_dir)
    prep.add_argument("--split", choices=("train", "eval"), required=True)
    prep.add_argument(
        "--out", type=output_dir, default=None, help="default DATA_DIR/examples/SPLIT"
    )
    prep.add_argument("--seq-len", type=positive_int, default=100)
    prep.add_argument("--negative-ratio", type=non_negative_float, default=None)
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument(
        "--sequence-actions",
        default="closeup,click,repin,hide",
        help="comma-separated actions kept in sequences, or 'all' (default engagements)",
    )
    prep.set_defaults(handler=_prepare)

    imp = sub.add_parser(
        "import",
        help="turn a real log (MovieLens or any CSV/Parquet) into a world dir",
        description=(
            "Adapters from real logs to the world-dir layout. movielens: ratings become "
            "actions by a configurable mapping, requests are time windows of a user's "
            "ratings, item embeddings come from titles+genres (sentence model, PCA). log: "
            "any CSV/Parquet with a column mapping."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("source", choices=("movielens", "log"))
    imp.add_argument(
        "--path", type=existing_path, required=True, help="dataset dir (movielens) or file (log)"
    )
    imp.add_argument("--out", type=output_dir, required=True)
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--d-item", type=positive_int, default=32)
    imp.add_argument(
        "--embeddings",
        choices=("auto", "text", "genre"),
        default="auto",
        help="item embeddings: sentence model (text), genre projection (genre) or auto",
    )
    imp.add_argument(
        "--rating-map",
        type=rating_map,
        default=None,
        help="movielens: e.g. 'repin>=4.5,click>=3.5,hide<=2'",
    )
    imp.add_argument("--user-col", default="user_id")
    imp.add_argument("--item-col", default="item_id")
    imp.add_argument("--action-col", default="action_type")
    imp.add_argument("--time-col", default="timestamp_ms")
    imp.add_argument("--time-unit", choices=("ms", "s"), default="ms")
    imp.add_argument(
        "--items-path", type=existing_file, default=None, help="log: optional item table with text"
    )
    imp.add_argument("--item-id-col", default="item_id", help="log: id column of --items-path")
    imp.add_argument("--text-cols", default="", help="log: item columns to embed, comma-separated")
    imp.set_defaults(handler=_import)


def rating_map(text: str):  # -> adapters.RatingMapping
    """``--rating-map``: parsed when the command line is, before any data is read."""
    from transact.data import adapters

    try:
        return adapters.RatingMapping.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _generate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from transact.data.world import PRESETS, WorldConfig, generate_world

    if args.config is not None:
        config = WorldConfig.from_toml(args.config)
        preset = args.config.stem
    else:
        if args.preset not in PRESETS:
            raise UserError(f"--preset {args.preset!r}: unknown; choose from {sorted(PRESETS)}")
        config, preset = PRESETS[args.preset], args.preset
    if args.users is not None:
        try:
            config = replace(config, n_users=args.users)
        except ValueError as exc:
            raise UserError(f"--users {args.users}: {exc}") from None
    if args.days is not None:
        warmup, train, evaluation = args.days
        try:
            config = replace(config, warmup_days=warmup, train_days=train, eval_days=evaluation)
        except ValueError as exc:
            raise UserError(f"--days {warmup} {train} {evaluation}: {exc}") from None
    out = generate_world(args.out, config, seed=args.seed, preset=preset)
    print(f"wrote {out} (preset {preset}, seed {args.seed}); next: transact data stats {out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from transact.data.stats import format_stats, world_stats

    stats = world_stats(args.data_dir, seq_len=args.seq_len)
    print(format_stats(stats))
    if args.signal:
        from transact.data.stats import realtime_signal_report

        stats["realtime_signal"] = sig = realtime_signal_report(args.data_dir, args.seq_len)
        for head, r in sig.get("heads", {}).items():
            scores = ", ".join(f"{k[5:]} {v:.4f}" for k, v in r.items() if k.startswith("hit3_"))
            print(
                f"HIT@3/{head}: {scores}; realtime vs daily p={r['p_realtime_vs_daily_profile']:.2g}"
            )
        from transact.data.stats import format_recency

        if sig.get("recency"):
            print(format_recency(sig))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(stats, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from transact.data.examples import build_split

    actions = None if args.sequence_actions == "all" else tuple(args.sequence_actions.split(","))
    ex = build_split(
        args.data_dir,
        args.split,
        seq_len=args.seq_len,
        negative_ratio=args.negative_ratio,
        seed=args.seed,
        include_actions=actions,
        progress=True,
    )
    out = args.out or args.data_dir / "examples" / args.split
    ex.save(out)
    rates = ", ".join(f"{h} {r:.2%}" for h, r in ex.label_rates().items())
    print(f"wrote {out}: {len(ex):,} examples, {ex.n_requests:,} requests; label rates {rates}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from transact.data import adapters

    if args.source == "movielens":
        out = adapters.import_movielens(
            args.path, args.out, d_item=args.d_item, embeddings=args.embeddings,
            rating_mapping=args.rating_map, seed=args.seed,
        )  # fmt: skip
    else:
        columns = adapters.LogColumns(
            user=args.user_col, item=args.item_col, action=args.action_col,
            timestamp=args.time_col, time_unit=args.time_unit, item_id_column=args.item_id_col,
        )  # fmt: skip
        out = adapters.import_log(
            args.path, args.out, columns, items_path=args.items_path,
            text_columns=tuple(c for c in args.text_cols.split(",") if c),
            d_item=args.d_item, embeddings=args.embeddings, seed=args.seed,
        )  # fmt: skip
    print(f"wrote {out}; next: transact data stats {out}")
    return 0
