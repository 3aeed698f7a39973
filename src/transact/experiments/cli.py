"""``transact experiment NAME``: rerun one of the paper's offline experiments, or all.

Registered by :mod:`transact.cli`; heavy imports happen inside the handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transact.arguments import (
    existing_file,
    int_range,
    output_dir,
    positive_float,
    positive_int,
)

OFFLINE = (
    "table1", "table2", "table3", "fig4", "fig5", "table4", "table8", "table9", "mask", "all",
)  # fmt: skip
ONLINE = ("table5", "fig6", "diversity", "feedback-loop", "mechanisms")
NAMES = OFFLINE + ONLINE
TOOLS = ("power", "combine")

EPILOG = """\
experiments (paper section):
  table1   existing methods vs TransAct (4.2.2): WDL+seq, BST all/positive, TransAct
  table2   realtime-batch hybrid ablation (4.3.1): without PF / TransAct / user features
  table3   sequence encoders (4.3.2): avg pool, CNN, RNN, LSTM, vanilla transformer
  fig4     early fusion concat vs append x sequence length (4.3.3), PNG plot
  fig5     transformer layers x FFN dim: HIT@3 and latency (4.3.4), PNG plot
  table4   transformer output compression variants (4.3.5)
  table8   positional encodings (Appendix B)
  table9   parameters, FLOPs/example, latency/batch 256 at the paper preset (Appendix C)
  mask     not in the paper: TransAct's lift against the random time window's maximum
           (0, 1 h, 6 h, 24 h; 3.3.4), PNG plot; with --persistence H,H,... once per world
           whose users' current interests persist H hours (the default world: 36)
  all      everything above, sharing trained variants; writes summary.md
  power    not an experiment: project from a pilot's results.json the minimum detectable
           lift of one cell for other numbers of users and seeds (--results, --cell)
  combine  not an experiment: pool independent runs (other --seeds) of one online
           experiment, claim by claim (--results A/results.json B/results.json ...):
           inverse-variance with a random effect between runs; writes
           OUT/EXPERIMENT-pooled/results.json, results.md, forest.png and cumulative.png
           (the pool after each run), and says how many runs each claim needs for an
           MDE of --target percent, for one look and read at any number of runs.
           Beside each verdict: an always-valid 95% interval, the one to judge by when
           the pool was read as runs arrived. A claim a later version of the experiment
           added pools over the runs that hold it; the others say they predate it

online experiments (the simulated world as a closed loop, `transact.online`):
  table5         TransAct vs the baseline in user buckets (4.4.2): repin, hide, time spent;
                 paired copies, buckets at a settling share and at the paper's 1.5%
  fig6           daily repin gain over 14 days, fixed against retrained twice a week (4.4.3)
  diversity      impression diversity: TransAct with/without the time-window mask, higher
                 dropout, random action masking (4.4.4)
  feedback-loop  a small bucket against full traffic (5.1): both TransAct models retrained
                 on every user's logs, shaped by the baseline in the bucket's world and
                 by TransAct in full traffic's; the bucket paired with its own users,
                 and the bucket's model served to every user against full traffic's
  mechanisms     not in the paper: what each world mechanism contributes to Table 5's
                 paired lifts (repin, hide, diversity, time spent): per world with one
                 mechanism off (--mechanisms, default all of them), a new world, new
                 models and a paired run, beside the reference world; finished worlds
                 are reused by a rerun (OUT/mechanisms/ROW/row.json)
  budgets: smoke (a 200-user world, 2 online days: seconds), quick (the demo world, 3
  online days) and default (the demo world, a week; two for fig6); --dataset
  runs/demo/world reuses `transact demo`'s models. Outputs: OUT/NAME/results.json,
  results.md (paper vs ours, verdict per claim with its interval and MDE), a plot, and
  per simulation the simulator's report.md/report.json. With --seeds 0,1,2 each seed is
  an independent replicate (its own models, buckets and random numbers) in
  OUT/NAME/seed-K/, and OUT/NAME/results.json pools them claim by claim (as `combine`).

budgets:
  smoke    tiny world, 1 seed, a few dozen steps: every experiment in minutes (numbers are noise)
  quick    demo world, 1 seed, 120 steps, 600 eval users, thinner figure grids
  default  demo world, 1 seed, 200 steps, 500 eval users, Figure 5 on {1,2} x {32,384}:
           about an hour per dataset on 2 cores (two datasets side by side: --threads 1)
  full     demo world, 3 seeds, 300 steps, every eval user, the paper's grids: ~9 h/dataset
  settle   demo world, 3 seeds, one epoch (415 x 512), every eval user: sized so that
           TransAct's repin lift has an mde <= 4.7% (see `power` below)
  large    longer training and 5 seeds, for more cores or a GPU

outputs: OUT/NAME/results.json (every variant, head, all/non_core: HIT@3, lift, p-value,
per-seed values), OUT/NAME/results.md (the paper's table beside ours), fig4.png, fig5.png.

examples:
  transact experiment table1 --budget smoke
  transact experiment all --budget default --out runs/experiments
  transact experiment table3 --dataset movielens-latest-small --budget default
  transact experiment table4 --dataset /data/my_logs --seeds 0,1 --steps 2000
  transact experiment table9 --device cuda
  # a pilot of two rows, then the seeds and users that settle TransAct's repin lift
  transact experiment table1 --variants transact --seeds 0,1 --budget settle --out runs/pilot
  transact experiment power --results runs/pilot/table1/results.json --cell transact:repin/all
  transact experiment table5 --budget smoke
  transact experiment table5 --dataset runs/demo/world --out runs/online-experiments
  transact experiment mechanisms --budget quick --mechanisms satiation,fresh_items
  # the feedback loop, three independent replicates pooled
  transact experiment feedback-loop --budget quick --dataset runs/demo/world --seeds 0,1,2
  transact experiment combine --results runs/a/feedback-loop/results.json \\
      runs/b/feedback-loop/results.json --out runs/pooled --target 2
  # two weeks, three retrains: does the loop compound?
  transact experiment feedback-loop --budget quick --days 14 --dataset runs/demo/world
  # Figure 6 with every retrain as long as the fixed models' training (one epoch)
  transact experiment fig6 --retrain-steps 0 --dataset runs/demo/world --out runs/fig6
"""

MECHANISM_HELP = """mechanisms (transact experiment mechanisms --mechanisms NAME,...; each row switches one
off in a world otherwise the reference's; docs/data.md 2.4):
  current_interest  current_interest_half_life_hours = 0: no current interests
  drift             drift_half_life_days = 0: long-term interests do not drift
  satiation         satiation_weight = 0: repeated exposure costs no engagement
  fresh_items       fresh_items_per_day = 0, freshness_weight = 0, no fresh candidates
  continue          continue_elasticity = 0: session length ignores the feed's quality
  return            return_elasticity = 0: sessions per day ignore recent satisfaction
  all               every mechanism off at once (WorldConfig.mechanisms_off())
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from transact.experiments.budget import BUDGETS  # dataclasses only: a light import

    parser = subparsers.add_parser(
        "experiment",
        help="rerun a paper table/figure (table1..table9, fig4, fig5, all; online: table5, "
        "fig6, diversity, feedback-loop, mechanisms)",
        description=(
            "Train every variant of one of the paper's offline experiments on the same "
            "training weeks, evaluate HIT@3 on the same held-out week, and write the "
            "paper's table beside ours: relative lifts over the baseline, spread over "
            "seeds, paired p-values over users, and the oracle."
        ),
        epilog=EPILOG + "\n" + MECHANISM_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=NAMES + TOOLS, help="which experiment (or all)")
    parser.add_argument(
        "--variants",
        type=key_list,
        help="run only these rows (comma-separated keys, as in results.json) beside the "
        "baseline; default: every row",
    )
    parser.add_argument(
        "--dataset",
        type=dataset_arg,
        default="world",
        help="world (simulated, default), movielens-latest-small, movielens-100k, or a "
        "prepared data directory (default: %(default)s)",
    )
    parser.add_argument(
        "--budget",
        default="default",
        choices=tuple(BUDGETS),  # every preset of experiments/budget.py
        help="scale preset (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=output_dir,
        default="runs/experiments",
        help="output root (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds",
        type=seed_list,
        help="comma-separated training seeds (overrides the budget); an online experiment "
        "runs one independent replicate per seed and pools them",
    )
    parser.add_argument(
        "--steps", type=positive_int, help="training steps per variant (overrides the budget)"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="training device")
    parser.add_argument(
        "--no-user-embeddings",
        action="store_true",
        help="skip the batch (PinnerFormer) user embedding in every variant (faster; "
        "Table 2's 'without PF' row is then skipped)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="torch intra-op threads (default: torch's choice, every core); use 1 per run "
        "when running two datasets side by side on 2 cores, since oversubscribed OpenMP "
        "threads are many times slower than one thread each",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--retrain-steps",
        type=int_range(0),
        help="online experiments only: optimizer steps of every retrain during the online "
        "period (overrides the budget's; 0 = the run config's own training, one epoch of "
        "the retraining window, as the fixed models were trained)",
    )
    parser.add_argument(
        "--days",
        type=positive_int,
        help="online experiments only: simulated online days (overrides the budget's days "
        "and Figure 6's; e.g. 14 gives the feedback loop three retrains at every:3.5d "
        "instead of one)",
    )
    parser.add_argument(
        "--persistence",
        type=hours_list,
        help="mask only: comma-separated half-lives (hours) of users' current interests; "
        "one world each, generated from the budget's preset with nothing else changed (the "
        "preset's own, 36, is the default world and reuses `transact experiment mask`'s "
        "models in the same --out); with --variants transact_window_0h,transact only no "
        "mask and the paper's 24 h are trained",
    )
    parser.add_argument(
        "--mechanisms",
        type=key_list,
        help="mechanisms only: comma-separated world mechanisms to switch off, one world "
        "each, beside the reference world (names below; default: every one and all)",
    )
    power = parser.add_argument_group("power and combine (transact experiment power|combine)")
    power.add_argument(
        "--results",
        type=existing_file,
        nargs="+",
        help="power: a pilot's results.json; combine: two or more online experiments' "
        "results.json, one per independent run",
    )
    power.add_argument(
        "--cell",
        default="transact:repin/all",
        type=cell_arg,
        help="ROW:HEAD/GROUP to plan for (default: %(default)s)",
    )
    power.add_argument(
        "--target",
        type=positive_float,
        help="the mde to reach, in percent. power: for the cell (default: half the paper's "
        "lift of the cell); combine and an online experiment's --seeds pool: the number of "
        "runs each claim needs for it (default: half the paper's value where the claim has "
        "a size; claims with only a direction get a number only with --target); also "
        "the scale the always-valid interval is tuned for (default there: one run's MDE)",
    )
    power.add_argument(
        "--users",
        type=key_list,
        help="numbers of evaluation users to project for, comma-separated (default: the pilot's)",
    )
    parser.set_defaults(handler=_handle)


def key_list(text: str) -> tuple[str, ...]:
    """A comma-separated list of names, at least one."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing")
    return keys


def hours_list(text: str) -> tuple[float, ...]:
    """``--persistence``: comma-separated positive numbers of hours."""
    try:
        hours = tuple(float(h) for h in text.split(",") if h.strip())
    except ValueError:
        hours = ()
    if not hours or any(not h > 0 for h in hours):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of hours > 0")
    return hours


def cell_arg(text: str) -> tuple[str, str]:
    """``--cell ROW:HEAD/GROUP``."""
    row, _, column = text.partition(":")
    if not row or "/" not in column:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected ROW:HEAD/GROUP, e.g. transact:repin/all"
        )
    return row, column


def dataset_arg(text: str) -> str:
    """``--dataset``: ``world``, a shared dataset's name, or an existing directory (what it
    holds is checked when the experiment prepares it)."""
    from transact.experiments.datasets import SHARED_DATASETS

    if text == "world" or text in SHARED_DATASETS or Path(text).is_dir():
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r}: not 'world', one of {list(SHARED_DATASETS)}, or a directory"
    )


def seed_list(text: str) -> tuple[int, ...]:
    """``--seeds``: comma-separated integers, at least one."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        seeds = ()
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers")
    return seeds


def _power(args: argparse.Namespace) -> int:
    import json

    from transact.arguments import UserError
    from transact.experiments.power import plan_markdown, power_plan

    if args.results is None:
        raise UserError("transact experiment power needs --results PATH (a pilot's results.json)")
    if len(args.results) != 1:
        raise UserError(f"transact experiment power takes one --results, got {len(args.results)}")
    args.results = args.results[0]
    try:
        users = tuple(int(u) for u in args.users) if args.users else ()
    except ValueError:
        raise UserError(f"--users {','.join(args.users)}: not integers") from None
    row, column = args.cell
    try:
        plan = power_plan(
            args.results,
            row=row,
            column=column,
            target=_target(args),
            users=users,
        )
    except (KeyError, ValueError) as exc:
        raise UserError(f"--results {args.results}: {exc.args[0]}") from None
    print(plan_markdown(plan))
    print(json.dumps(plan["smallest"]))
    return 0


def _combine(args: argparse.Namespace) -> int:
    from transact.arguments import UserError
    from transact.experiments.combine import combine_results, read_runs, write_combined

    if not args.results or len(args.results) < 2:
        raise UserError(
            "transact experiment combine needs --results A/results.json B/results.json ... "
            "(two or more runs of one online experiment)"
        )
    try:
        combined = combine_results(*read_runs(args.results), target=_target(args))
    except ValueError as exc:
        raise UserError(f"--results: {exc.args[0]}") from None
    out_dir = args.out / f"{combined['experiment'] or 'runs'}-pooled"
    write_combined(combined, out_dir)
    for cell, het in zip(combined["cells"], combined["heterogeneity"], strict=True):
        need = het.get("runs_for_target")
        plan = (
            f"; an MDE of {100 * het['target_mde']:.1f}% needs about {need} runs "
            f"({het['runs_for_target_any_look']} read at any number of runs)"
            if need is not None
            else ""
        )
        any_ = cell.get("anytime") or {}
        looks = (
            f"; at any number of runs [{100 * any_['ci_low']:+.1f}, "
            f"{100 * any_['ci_high']:+.1f}]: {any_['verdict']}"
            if any_.get("ci_low") is not None
            else ""
        )
        print(
            f"{cell['claim']}: {_pct_interval(cell)} ({cell['runs']} runs): {cell['verdict']}"
            f"{looks}{plan}"
        )
    print(f"combine: {out_dir / 'results.md'}")
    return 0


def _target(args: argparse.Namespace) -> float | None:
    """``--target`` (percent) as a fraction, or None when not given."""
    return None if args.target is None else args.target / 100


def _pct_interval(cell: dict) -> str:
    if cell.get("lift") is None or cell.get("ci_low") is None:
        return "n/a"
    return f"{100 * cell['lift']:+.1f}% [{100 * cell['ci_low']:+.1f}, {100 * cell['ci_high']:+.1f}]"


def _handle(args: argparse.Namespace) -> int:
    if args.mechanisms and args.name != "mechanisms":
        raise ValueError("--mechanisms: only for `transact experiment mechanisms`")
    if args.name in ONLINE:
        return _handle_online(args)
    if args.retrain_steps is not None:
        raise ValueError("--retrain-steps: only for the online experiments")
    if args.days is not None:
        raise ValueError("--days: only for the online experiments")
    from dataclasses import replace

    if args.name == "combine":
        return _combine(args)
    if args.name in TOOLS:
        return _power(args)

    from transact.experiments.budget import get_budget
    from transact.experiments.suite import run_named

    budget = get_budget(args.budget)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.seeds:
        budget = replace(budget, seeds=args.seeds)
    if args.steps:
        budget = replace(
            budget, train_steps=args.steps, warmup_steps=min(budget.warmup_steps, args.steps)
        )
    from transact.arguments import UserError

    if args.variants:
        from transact.experiments.suite import EXPERIMENTS, select_variants

        if args.name == "table9":
            raise UserError("--variants: table9 trains no variants")
        names = list(EXPERIMENTS) if args.name == "all" else [args.name]
        try:
            select_variants(names, budget, args.variants)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if args.persistence:
        if args.name != "mask":
            raise UserError("--persistence: only for `transact experiment mask`")
        from transact.experiments.mask import run_persistence

        run_persistence(
            args.persistence,
            budget=budget,
            out_root=args.out,
            device=args.device,
            progress=not args.no_progress,
            user_embeddings=not args.no_user_embeddings,
            variants=args.variants,
        )
        print(f"mask: {args.out / 'mask' / 'persistence.png'}")
        return 0
    results = run_named(
        args.name,
        dataset=args.dataset,
        budget=budget,
        out_root=args.out,
        device=args.device,
        progress=not args.no_progress,
        user_embeddings=not args.no_user_embeddings,
        variants=args.variants,
    )
    for name in results:
        print(f"{name}: {args.out / name / 'results.md'}")
    if args.name == "all":
        print(f"summary: {args.out / 'summary.md'}")
    return 0


def _handle_online(args: argparse.Namespace) -> int:
    from transact.experiments.budget import get_online_budget
    from transact.experiments.online import run_online_experiment

    for flag, value in (("--steps", args.steps), ("--device", args.device != "cpu" or None)):
        if value:
            raise ValueError(f"{flag} is for the offline experiments; {args.name} takes its budget")
    try:
        budget = get_online_budget(args.budget)
    except KeyError as exc:
        raise ValueError(f"--budget {args.budget}: {exc.args[0]}") from None
    from dataclasses import replace

    if args.retrain_steps is not None:
        budget = replace(budget, retrain_steps=args.retrain_steps)
    if args.days is not None:
        budget = replace(budget, days=args.days, fig6_days=args.days)
    if args.name == "feedback-loop":  # no retrain in the period: fail before any training
        from transact.experiments.feedback_loop import feedback_days

        try:
            feedback_days(budget)
        except ValueError as exc:
            flag = "--days" if args.days is not None else "--budget"
            raise ValueError(f"{flag}: {exc}") from None
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    seeds = args.seeds or (0,)
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"--seeds {','.join(map(str, seeds))}: a seed twice")
    options = {}
    if args.name == "mechanisms":
        from transact.experiments.mechanisms import parse_rows

        parse_rows(args.mechanisms)  # a bad name fails here, before any world is made
        options["rows"] = args.mechanisms
    out_dir = args.out / args.name
    # several seeds: independent replicates, one directory each, then pooled in out_dir
    run_dirs = [out_dir / f"seed-{s}" for s in seeds] if len(seeds) > 1 else [out_dir]
    for seed, run_dir in zip(seeds, run_dirs, strict=True):
        run_online_experiment(
            args.name, dataset=args.dataset, budget=budget, out_root=args.out,
            progress=not args.no_progress, seed=seed, options=options, out_dir=run_dir,
        )  # fmt: skip
        label = args.name if len(seeds) == 1 else f"{args.name} seed {seed}"
        print(f"{label}: {run_dir / 'results.md'}")
    if len(seeds) > 1:
        from transact.experiments.combine import combine_files

        combine_files([d / "results.json" for d in run_dirs], out_dir, target=_target(args))
        print(f"{args.name}, {len(seeds)} seeds pooled: {out_dir / 'results.md'}")
    return 0
