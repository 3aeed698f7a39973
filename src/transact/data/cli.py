"""``transact data ...``: generate a world, import real logs, summarize, prepare example sets."""

from __future__ import annotations

import argparse
import json

from transact.arguments import (
    UserError,
    existing_dir,
    existing_file,
    existing_path,
    float_range,
    non_negative_float,
    non_negative_int,
    output_dir,
    output_file,
    positive_float,
    positive_int,
)
from transact.data.spill_sizes import BUCKET_ROWS

_EPILOG = """\
examples:
  transact data generate --out runs/world --preset demo --seed 0
  transact data stats runs/world --json runs/world/stats.json
  transact data prepare runs/world --split train --negative-ratio 1.0
  transact data prepare runs/world --split eval
  transact data import movielens --path ../shared/datasets/movielens-100k --out runs/ml100k
  transact data import impressions --path log.parquet --out runs/sv \\
      --labels is_click=click,long_view,is_like=like,is_hate=hate --negative hate
  transact data import events --path events.csv --out runs/shop --action-col event
  transact data item-embeddings runs/sv --method item2vec --out runs/sv-i2v

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
        default="engagements",
        help="comma-separated actions kept in sequences, 'all', or 'engagements' (default: "
        "every action of the dataset's vocabulary but the impression)",
    )
    prep.set_defaults(handler=_prepare)

    imp = sub.add_parser(
        "import",
        help="turn a real log (impression table, event log, MovieLens) into a world dir",
        description=(
            "Adapters from real logs to the world-dir layout, streamed in bounded memory. "
            "impressions: one row per shown item with 0/1 label columns (short-video and "
            "feed logs). events: one row per action, grouped into impressions by (user, "
            "item). movielens: ratings become actions by a mapping. Each declares its action "
            "vocabulary (names, negative actions, the paper's repin/hide roles)."
        ),
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    isub = imp.add_subparsers(dest="import_source", metavar="SOURCE")
    imp.set_defaults(handler=lambda _a: (imp.print_help(), 2)[1])

    ml = isub.add_parser(
        "movielens",
        help="a MovieLens release (any GroupLens layout or RecBole atomic files)",
        description="Ratings become actions by --rating-map; titles and genres are embedded.",
        epilog="example:\n  transact data import movielens --path ../shared/datasets/movielens-100k "
        "--out runs/ml100k",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ml.add_argument("--path", type=existing_dir, required=True, help="the release's folder")
    _add_output_flags(ml)
    ml.add_argument(
        "--embeddings",
        choices=("auto", "text", "genre"),
        default="auto",
        help="item embeddings: sentence model (text), genre projection (genre) or auto",
    )
    ml.add_argument(
        "--rating-map",
        type=rating_map,
        default=None,
        help="rating -> action rules, first match wins, e.g. 'repin>=4.5,click>=3.5,hide<=2'",
    )
    _add_request_flags(ml, with_keys=False)
    ml.set_defaults(handler=_import_movielens)

    im = isub.add_parser(
        "impressions",
        help="one row per impression with 0/1 label columns (short-video, feed logs)",
        description=(
            "One row per item shown to a user; --labels maps each 0/1 column to an action "
            "name. Every label of an impression is kept. Requests come from --request-col "
            "or from time gaps; item statistics are point-in-time (no target leakage)."
        ),
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    im.add_argument(
        "--path", type=existing_path, required=True, help="a CSV/Parquet file or folder"
    )
    _add_output_flags(im)
    _add_id_flags(im)
    im.add_argument(
        "--labels",
        type=label_map,
        required=True,
        help="label columns as COLUMN=ACTION, e.g. is_click=click,is_like=like,long_view",
    )
    _add_vocabulary_flags(im)
    _add_item_flags(im)
    _add_request_flags(im, with_keys=True)
    im.set_defaults(handler=_import_impressions)

    ev = isub.add_parser(
        "events",
        help="one row per action, grouped into impressions by (user, item)",
        description=(
            "One row per action of a user on an item. An impression row (--impression-value) "
            "opens an impression; actions on the same (user, item) within --window-min join "
            "it (without impression rows, a burst of actions on an item is one impression). "
            "Every action becomes a label of its impression."
        ),
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument(
        "--path", type=existing_path, required=True, help="a CSV/Parquet file or folder"
    )
    _add_output_flags(ev)
    _add_id_flags(ev)
    ev.add_argument("--action-col", default="action", help="the action column (default action)")
    ev.add_argument(
        "--actions",
        type=label_map,
        default=None,
        help="raw action values as VALUE=ACTION (default: every value is its own action)",
    )
    ev.add_argument(
        "--impression-value",
        default="impression",
        help="the action value of an impression row (default impression)",
    )
    ev.add_argument(
        "--window-min",
        type=non_negative_float,
        default=30.0,
        help="an action joins an impression of the same item at most this long after it "
        "(default 30)",
    )
    _add_vocabulary_flags(ev)
    _add_item_flags(ev)
    _add_request_flags(ev, with_keys=True)
    ev.set_defaults(handler=_import_events)

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
    emb.add_argument("data_dir", type=existing_dir, help="a world dir")
    where = emb.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=output_dir, default=None, help="new directory for the copy")
    where.add_argument("--in-place", action="store_true", help="rewrite DATA_DIR itself")
    emb.add_argument("--method", choices=("item2vec", "mf"), default="item2vec")
    emb.add_argument(
        "--actions",
        default=None,
        help="comma-separated actions that count as engagement (default: the manifest's "
        "positive actions)",
    )
    emb.add_argument("--dim", type=positive_int, default=None, help="vector size (default: d_item)")
    emb.add_argument(
        "--window", type=positive_int, default=5, help="co-engagement window (default 5)"
    )
    emb.add_argument("--seed", type=int, default=0)
    emb.set_defaults(handler=_item_embeddings)


IMPORT_EPILOG = """\
examples:
  # a short-video log: one row per impression, 0/1 label columns, no item content
  transact data import impressions --path log.parquet --out runs/sv \\
      --user-col user_id --item-col video_id --time-col time_ms \\
      --labels is_click=click,long_view=long_view,is_like=like,is_hate=hate \\
      --negative hate --main-positive like --main-negative hate --history-days 2

  # an event log with impression rows and an item file with titles
  transact data import events --path events.csv --out runs/shop --time-unit s \\
      --action-col event --actions view=impression,cart=cart,buy=buy \\
      --impression-value view --items-path items.csv --text-cols title

A world dir holds manifest.json, items.parquet, users.parquet and day-partitioned
events/ and impressions/ (docs/data.md section 5)."""


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=output_dir, required=True, help="new world dir to write")
    p.add_argument("--seed", type=int, default=0, help="seed of shuffled positions (default 0)")
    p.add_argument("--d-item", type=positive_int, default=32, help="item embedding size (32)")


def _add_id_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user-col", default="user_id", help="integer user ids (default user_id)")
    p.add_argument("--item-col", default="item_id", help="item ids (default item_id)")
    p.add_argument("--time-col", default="timestamp_ms", help="time (default timestamp_ms)")
    p.add_argument("--time-unit", choices=("ms", "s"), default="ms")


def _add_vocabulary_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--negative", type=name_list, default=(), help="negative actions, e.g. hate,dislike"
    )
    p.add_argument(
        "--positive",
        type=name_list,
        default=None,
        help="positive actions (default: every action that is not negative)",
    )
    p.add_argument(
        "--main-positive", help="the action that plays the paper's repin (default: first positive)"
    )
    p.add_argument(
        "--main-negative", help="the action that plays the paper's hide (default: first negative)"
    )
    p.add_argument(
        "--impression-action",
        default="impression",
        help="name of the action every shown item has (default impression)",
    )


def _add_item_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--items-path", type=existing_file, default=None, help="optional item file")
    p.add_argument("--item-id-col", default="item_id", help="id column of --items-path")
    p.add_argument("--text-cols", type=name_list, default=(), help="item columns to embed")
    p.add_argument(
        "--item-repr",
        type=item_repr,
        default=None,
        help="item representation: text (needs --text-cols), genre, id-string (the id's text: "
        "no meaning), learned[:item2vec|mf] (from training engagements); default text "
        "with --text-cols, else learned",
    )


def _add_request_flags(p: argparse.ArgumentParser, *, with_keys: bool) -> None:
    if with_keys:
        p.add_argument("--request-col", help="request/session id column (default: time gaps)")
        p.add_argument("--position-col", help="display position column")
        p.add_argument("--randomized-col", help="0/1: the request's order was shuffled")
        p.add_argument("--surface-col", help="surface (tab, page) column")
    p.add_argument(
        "--session-gap-min", type=positive_float, default=30.0,
        help="without request ids: a gap over this many minutes starts a request (30)",
    )  # fmt: skip
    p.add_argument("--max-items", type=positive_int, default=30, help="items per request (30)")
    p.add_argument(
        "--min-items", type=positive_int, default=4, help="smaller requests are dropped (4)"
    )
    p.add_argument(
        "--eval-fraction", type=float_range(0.0, 1.0, low_open=True), default=0.2,
        help="share of the requests after the history that evaluate (0.2)",
    )  # fmt: skip
    p.add_argument(
        "--history-days", type=non_negative_float, default=0.0,
        help="first days of the log that feed sequences only (default 0)",
    )  # fmt: skip
    p.add_argument(
        "--memory-rows", type=positive_int, default=BUCKET_ROWS,
        help=f"log rows held in memory at once (the spill's bucket; default {BUCKET_ROWS:,})",
    )  # fmt: skip


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

    actions = (
        args.sequence_actions
        if args.sequence_actions in ("all", "engagements")
        else tuple(a for a in args.sequence_actions.split(",") if a)
    )
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


def label_map(text: str) -> tuple[tuple[str, str], ...]:
    """``--labels`` / ``--actions``: ``COLUMN=ACTION,...`` pairs."""
    from transact.data.adapters import parse_pairs

    try:
        return parse_pairs(text, "map")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def name_list(text: str) -> tuple[str, ...]:
    """A comma-separated list of names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: expected name,name,...")
    return names


def item_repr(text: str):  # -> adapters.ItemRepresentation
    """``--item-repr``: text | genre | id-string | learned[:item2vec|mf]."""
    from transact.data.adapters import ItemRepresentation

    try:
        return ItemRepresentation.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _request_config(args: argparse.Namespace, **more: float):  # -> RequestConfig
    from transact.data.adapters import RequestConfig

    try:
        return RequestConfig(
            session_gap_ms=int(args.session_gap_min * 60_000),
            max_items=args.max_items,
            min_items=args.min_items,
            eval_fraction=args.eval_fraction,
            history_days=args.history_days,
            **more,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _context(args: argparse.Namespace):  # -> ContextColumns
    from transact.data.adapters import ContextColumns

    return ContextColumns(
        request=args.request_col, position=args.position_col,
        randomized=args.randomized_col, surface=args.surface_col,
    )  # fmt: skip


def _vocabulary(args: argparse.Namespace) -> dict:
    return {
        "negative": args.negative,
        "positive": args.positive,
        "main_positive": args.main_positive,
        "main_negative": args.main_negative,
        "impression": args.impression_action,
    }


def _items(args: argparse.Namespace) -> dict:
    return {
        "items_path": args.items_path,
        "item_id_column": args.item_id_col,
        "text_columns": args.text_cols,
        "item_repr": args.item_repr,
        "d_item": args.d_item,
    }


def _import_movielens(args: argparse.Namespace) -> int:
    from transact.data import adapters

    out = adapters.import_movielens(
        args.path, args.out, d_item=args.d_item, embeddings=args.embeddings,
        rating_mapping=args.rating_map, seed=args.seed, requests=_request_config(args),
    )  # fmt: skip
    print(f"wrote {out}; next: transact data stats {out}")
    return 0


def _import_impressions(args: argparse.Namespace) -> int:
    from transact.data import adapters

    columns = adapters.ImpressionColumns(
        labels=args.labels, user=args.user_col, item=args.item_col, time=args.time_col,
        time_unit=args.time_unit, context=_context(args),
    )  # fmt: skip
    out = adapters.import_impressions(
        args.path, args.out, columns, **_vocabulary(args), **_items(args),
        requests=_request_config(args), seed=args.seed, bucket_rows=args.memory_rows,
        progress=True,
    )  # fmt: skip
    print(f"wrote {out}; next: transact data stats {out}")
    return 0


def _import_events(args: argparse.Namespace) -> int:
    from transact.data import adapters

    columns = adapters.EventColumns(
        user=args.user_col, item=args.item_col, action=args.action_col, time=args.time_col,
        time_unit=args.time_unit, context=_context(args),
    )  # fmt: skip
    out = adapters.import_events(
        args.path, args.out, columns, actions=args.actions,
        impression_value=args.impression_value, **_vocabulary(args), **_items(args),
        requests=_request_config(args, window_ms=int(args.window_min * 60_000)),
        seed=args.seed, bucket_rows=args.memory_rows, progress=True,
    )  # fmt: skip
    print(f"wrote {out}; next: transact data stats {out}")
    return 0


def _item_embeddings(args: argparse.Namespace) -> int:
    from transact.data.item_repr import ItemReprConfig
    from transact.data.item_repr_world import rewrite_item_embeddings

    try:
        config = ItemReprConfig(window=args.window)
    except ValueError as exc:
        raise UserError(f"--window: {exc}") from None
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
