"""``transact data ...``: generate a world, import real logs, summarize, prepare example sets."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

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
  transact data item-embeddings runs/mylog --method item2vec --out runs/mylog-i2v

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
            "(the demo, ~4M impressions, ~15 s), large (10^8 impressions)."
        ),
        epilog="example:\n  transact data generate --out runs/world --preset demo --seed 0\n"
        "  transact data generate --out runs/w2 --config configs/world/demo.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("--out", type=Path, required=True, help="new directory to write")
    gen.add_argument("--preset", default="demo", help="tiny | demo | large (default demo)")
    gen.add_argument(
        "--config", type=Path, default=None, help="TOML WorldConfig (overrides --preset)"
    )
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--users", type=int, default=None, help="override n_users")
    gen.add_argument("--days", type=int, nargs=3, default=None, metavar=("WARMUP", "TRAIN", "EVAL"))
    gen.set_defaults(handler=_clean_errors(_generate))

    stats = sub.add_parser(
        "stats",
        help="print counts, label rates, action mix, sequence lengths, core split",
        description="Summarize a world dir; optionally write the figures as JSON.",
        epilog="examples:\n  transact data stats runs/world --json runs/world/stats.json\n"
        "  transact data stats runs/world --signal   # model-free realtime-signal check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("data_dir", type=Path)
    stats.add_argument("--json", type=Path, default=None, help="write the figures here")
    stats.add_argument("--seq-len", type=int, default=100)
    stats.add_argument(
        "--signal",
        action="store_true",
        help="also score model-free rankings (static / daily profile / realtime / oracle) "
        "on the randomized eval requests: does the world reward recent actions?",
    )
    stats.set_defaults(handler=_clean_errors(_stats))

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
    prep.add_argument("data_dir", type=Path)
    prep.add_argument("--split", choices=("train", "eval"), required=True)
    prep.add_argument("--out", type=Path, default=None, help="default DATA_DIR/examples/SPLIT")
    prep.add_argument("--seq-len", type=int, default=100)
    prep.add_argument("--negative-ratio", type=float, default=None)
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument(
        "--sequence-actions",
        default="closeup,click,repin,hide",
        help="comma-separated actions kept in sequences, or 'all' (default engagements)",
    )
    prep.set_defaults(handler=_clean_errors(_prepare))

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
        "--path", type=Path, required=True, help="dataset dir (movielens) or file (log)"
    )
    imp.add_argument("--out", type=Path, required=True)
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--d-item", type=int, default=32)
    imp.add_argument(
        "--embeddings",
        choices=("auto", "text", "genre"),
        default="auto",
        help="item embeddings: sentence model (text), genre projection (genre) or auto",
    )
    imp.add_argument(
        "--rating-map", default=None, help="movielens: e.g. 'repin>=4.5,click>=3.5,hide<=2'"
    )
    imp.add_argument("--user-col", default="user_id")
    imp.add_argument("--item-col", default="item_id")
    imp.add_argument("--action-col", default="action_type")
    imp.add_argument("--time-col", default="timestamp_ms")
    imp.add_argument("--time-unit", choices=("ms", "s"), default="ms")
    imp.add_argument(
        "--items-path", type=Path, default=None, help="log: optional item table with text"
    )
    imp.add_argument("--item-id-col", default="item_id", help="log: id column of --items-path")
    imp.add_argument("--text-cols", default="", help="log: item columns to embed, comma-separated")
    imp.set_defaults(handler=_clean_errors(_import))

    emb = sub.add_parser(
        "item-embeddings",
        help="learn item embeddings from co-engagement (logs without item content)",
        description=(
            "Replace a world dir's item embeddings with vectors learned from the users' "
            "engagements in its training window (never the evaluation window): item2vec "
            "(skip-gram with negative sampling over each user's time-ordered engagements) "
            "or mf (truncated SVD of the positive PMI of co-engagement counts). Items with "
            "no co-engagement get the zero vector; learned ones have unit norm. The "
            "manifest records the method under extra.item_representation. Use it on a log "
            "imported without an item file, whose items are otherwise embedded from their "
            "id strings."
        ),
        epilog=(
            "examples:\n"
            "  # a learned copy of an imported log (the original stays as it is)\n"
            "  transact data item-embeddings runs/mylog --method item2vec --out runs/mylog-i2v\n"
            "  # in place, matrix factorization, clicks and repins only\n"
            "  transact data item-embeddings runs/mylog --method mf --in-place "
            "--actions click,repin\n\n"
            "item2vec reads ~10M pair updates (about a minute for 10^6 events on one core); "
            "mf takes seconds. docs/data.md 'Item representations' compares them."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    emb.add_argument("data_dir", type=Path, help="a world dir")
    where = emb.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, default=None, help="new directory for the copy")
    where.add_argument("--in-place", action="store_true", help="rewrite DATA_DIR itself")
    emb.add_argument("--method", choices=("item2vec", "mf"), default="item2vec")
    emb.add_argument(
        "--actions",
        default=None,
        help="comma-separated actions that count as engagement (default: the manifest's "
        "positive actions)",
    )
    emb.add_argument("--dim", type=int, default=None, help="vector size (default: d_item)")
    emb.add_argument("--window", type=int, default=5, help="co-engagement window (default 5)")
    emb.add_argument("--seed", type=int, default=0)
    emb.set_defaults(handler=_clean_errors(_item_embeddings))


def _clean_errors(
    handler: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """Bad input (DataError, a clash with an existing dir) ends with its message, exit 2."""

    def run(args: argparse.Namespace) -> int:
        from transact.data.io import DataError

        try:
            return handler(args)
        except (DataError, FileExistsError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def _generate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from transact.data.world import PRESETS, WorldConfig, generate_world

    if args.config is not None:
        config = WorldConfig.from_toml(args.config)
        preset = args.config.stem
    else:
        if args.preset not in PRESETS:
            raise SystemExit(f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
        config, preset = PRESETS[args.preset], args.preset
    if args.users is not None:
        config = replace(config, n_users=args.users)
    if args.days is not None:
        config = replace(
            config, warmup_days=args.days[0], train_days=args.days[1], eval_days=args.days[2]
        )
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


def _item_embeddings(args: argparse.Namespace) -> int:
    from transact.data.item_repr import ItemReprConfig
    from transact.data.item_repr_world import rewrite_item_embeddings

    try:
        config = ItemReprConfig(window=args.window)
    except ValueError as exc:
        print(f"error: --window: {exc}", file=sys.stderr)
        return 2
    if args.dim is not None and args.dim < 1:
        print(f"error: --dim {args.dim}: must be >= 1", file=sys.stderr)
        return 2
    actions = tuple(a for a in args.actions.split(",") if a) if args.actions else None
    note = rewrite_item_embeddings(
        args.data_dir, None if args.in_place else args.out, method=args.method,
        actions=actions, d_item=args.dim, seed=args.seed, config=config, progress=True,
    )  # fmt: skip
    out = args.data_dir if args.in_place else args.out
    print(
        f"wrote {out}/items.parquet: {note['method']} vectors (d={note['d_item']}) for "
        f"{note['learned_items']:,} items from {note['events']['count']:,} training-window "
        f"events ({', '.join(note['events']['actions'])}); {note['cold_items']:,} items "
        "without co-engagement get the zero vector"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from transact.data import adapters

    if args.source == "movielens":
        mapping = adapters.RatingMapping.parse(args.rating_map) if args.rating_map else None
        out = adapters.import_movielens(
            args.path, args.out, d_item=args.d_item, embeddings=args.embeddings,
            rating_mapping=mapping, seed=args.seed,
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
