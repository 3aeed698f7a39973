"""``transact model summary``: parameters and measured FLOPs per example of a ranker config."""

from __future__ import annotations

import argparse
import json

from transact.arguments import existing_file, output_file, reading

EPILOG_SUMMARY = """examples:
  transact model summary --preset small
  transact model summary --preset paper                   # Table 9: ~92M params, ~77M FLOPs
  transact model summary --preset paper --encoder none    # Pinnability without TransAct
  transact model summary --preset small --encoder bst --json runs/bst_summary.json
  transact model summary --preset small --spec runs/world/feature_spec.json

FLOPs are measured with torch.utils.flop_counter on one eval forward pass over random
inputs and divided by the batch size (matmuls, convolutions and attention; Table 9
counts per example). Without --spec the preset's example feature spec is used
(transact.models.example_feature_spec): the paper one has large hashed id features so
that the embedding tables reach production scale.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``model`` and its sub-commands to the top-level parser."""
    model = subparsers.add_parser(
        "model",
        help="ranking model tools: summary (parameters, FLOPs per example)",
        description=(
            "The Pinnability ranker with a pluggable sequence encoder (TransAct by default). "
            "`model summary` builds a preset and measures its size and cost."
        ),
    )
    model.set_defaults(handler=lambda _args: (model.print_help(), 2)[1])
    sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    p = sub.add_parser(
        "summary",
        help="print parameters and measured FLOPs per example",
        description=(
            "Build Pinnability from a preset (small: trains in minutes on 2 CPU cores; "
            "paper: Table 9 scale) and print its parameter count and FLOPs per example."
        ),
        epilog=EPILOG_SUMMARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="small", help="small | paper (default small)")
    p.add_argument(
        "--encoder",
        default=None,
        help="sequence encoder: none, transact, avg_pool, cnn, rnn, lstm, "
        "vanilla_transformer, bst, bst_positive, wdl_seq (default: the preset's, transact)",
    )
    p.add_argument(
        "--spec", type=existing_file, default=None, help="FeatureSpec JSON (FeatureSpec.to_dict())"
    )
    p.add_argument(
        "--json", type=output_file, default=None, help="also write the summary to this JSON file"
    )
    p.set_defaults(handler=_summary)


def _summary(args: argparse.Namespace) -> int:
    from transact.data.schema import FeatureSpec
    from transact.models.examples import example_feature_spec
    from transact.models.pinnability import PinnabilityConfig
    from transact.models.summary import summarize

    overrides = {"encoder": args.encoder} if args.encoder else {}
    config = PinnabilityConfig.preset(args.preset, **overrides)
    if args.spec:
        with reading("--spec", args.spec):
            spec = FeatureSpec.from_dict(json.loads(args.spec.read_text()))
    else:
        spec = example_feature_spec(args.preset)
    summary = summarize(spec, config, preset=args.preset)
    print(f"preset               {summary.preset}")
    print(f"encoder              {summary.encoder}")
    print(f"parameters           {summary.parameters:,} ({summary.parameters / 1e6:.1f}M)")
    print(f"  embedding tables   {summary.embedding_parameters:,}")
    print(f"DCN input width      {summary.input_dim}")
    print(
        f"FLOPs per example    {summary.flops_per_example:,.0f} "
        f"({summary.flops_per_example / 1e6:.1f}M)"
    )
    print(f"  sequence encoder   {summary.sequence_flops_per_example:,.0f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
