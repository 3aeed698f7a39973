"""``transact demo``: the main job, end to end on the embedded simulated world.

The demo is a list of :class:`Stage` s run in order over one shared :class:`DemoContext`:

1. ``world``     generate the simulated world (skipped when the same one exists)
2. ``examples``  build the training examples (weeks 1-2) and the evaluation examples
                 (week 3, randomized requests only), realtime sequences included
3. ``baseline``  train Pinnability without sequence features (``configs/baseline_small.toml``)
4. ``transact``  train Pinnability + TransAct (``configs/transact_small.toml``)
5. ``evaluate``  score both on week 3, add the oracle (ground-truth probabilities)
6. ``online``    an online A/B test of the two models in the simulated world after its
                 offline weeks (``transact.online``, paired copies and buckets): the
                 demo's bar (:func:`acceptance_checks`)
7. ``report``    write ``report.md`` (Table 1-style HIT@3 lifts + oracle share, the
                 online table in Table 5's layout), ``metrics.json``, ``lifts.png`` and
                 ``reliability.png``

The two models are the run configs ``baseline_small.toml`` and ``transact_small.toml``
(shipped with the package, linked from the repository's ``configs/``; ``--configs DIR``
reads them from another directory), so editing a TOML changes what the demo trains. The
demo only overrides what its flags set (presets, seed, step cap, progress bars).

Later stages of the system (realtime feature store, batch embeddings, serving) add
themselves with :func:`add_stage` without touching the others.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transact.arguments import int_range
from transact.demo_report import (
    PAPER_TABLE1_TRANSACT,
    acceptance_checks,
    acceptance_line,
    offline_verdict_lines,
    online_lines,
)


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    Args:
        out_dir: everything goes here (world, runs, report).
        world_preset: the simulated world's preset (``demo``; ``tiny`` for smoke tests).
        world_seed: the world's seed.
        configs_dir: where the run configs (:data:`DEMO_RUNS`) are read from; None: the
            ones shipped with the package (the repository's ``configs/``).
        train_preset: replaces ``[train] preset`` of both run configs (None: as written;
            ``tiny`` for tests).
        model_preset: replaces ``[model] preset`` of both run configs (None: as written).
        seed: training and sampling seed of both models (None: as written).
        max_steps: cap on optimizer steps per model (0: as written).
        progress: show progress bars (False turns them off in both run configs).
        online_days: simulated days of the closing online A/B test (0 skips it, and the
            demo's bar falls back to the offline one: :func:`acceptance_checks`).
    """

    out_dir: Path = Path("runs/demo")
    world_preset: str = "demo"
    world_seed: int = 0
    configs_dir: Path | None = None
    train_preset: str | None = None
    model_preset: str | None = None
    seed: int | None = None
    max_steps: int = 0
    progress: bool = True
    online_days: int = 3


@dataclass
class DemoContext:
    """Shared state of one demo run: config, paths, and what stages hand each other."""

    config: DemoConfig
    state: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.perf_counter)

    @property
    def world_dir(self) -> Path:
        return self.config.out_dir / "world"

    @property
    def runs_dir(self) -> Path:
        return self.config.out_dir / "runs"

    def log(self, message: str) -> None:
        print(f"[demo] {message}", flush=True)


@dataclass(frozen=True)
class Stage:
    """One step of the demo: a name, a one-line description and a function."""

    name: str
    description: str
    run: Callable[[DemoContext], None]


# ---------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------

DEMO_RUNS = {"baseline": "baseline_small.toml", "transact": "transact_small.toml"}
"""The demo's models: name -> run config file. The first one is the baseline of the
comparison; both must build the same examples (equal ``[data]`` tables)."""


def demo_configs_dir(config: DemoConfig) -> Path:
    """The directory the demo reads its run configs from."""
    from transact.pipeline.run_config import shipped_configs_dir

    return config.configs_dir if config.configs_dir is not None else shipped_configs_dir()


def demo_run_config(config: DemoConfig, name: str) -> Any:
    """The run config of demo model ``name``: its TOML file with the demo's overrides.

    Only what the demo's flags set is overridden (``[train] preset/seed/max_steps/
    progress``, ``[model] preset``, ``[data] seed``); everything else is the file's.
    """
    from transact.pipeline.run_config import load_run_config

    c = config
    train: dict[str, Any] = {}
    if c.train_preset is not None:
        train["preset"] = c.train_preset
    if c.seed is not None:
        train["seed"] = c.seed
    if c.max_steps:
        train["max_steps"] = c.max_steps
    if not c.progress:
        train["progress"] = False
    overrides: dict[str, dict[str, Any]] = {"train": train}
    if c.model_preset is not None:
        overrides["model"] = {"preset": c.model_preset}
    if c.seed is not None:
        overrides["data"] = {"seed": c.seed}
    return load_run_config(demo_configs_dir(c) / DEMO_RUNS[name], overrides)


def demo_run_configs(config: DemoConfig) -> dict[str, Any]:
    """Every demo model's run config; raises when their ``[data]`` or ``[eval]`` differ
    (both models are trained and scored on the same examples and compared by one rule)."""
    configs = {name: demo_run_config(config, name) for name in DEMO_RUNS}
    first_name, first = next(iter(configs.items()))
    for name, other in configs.items():
        for table, attr in (("data", "data"), ("eval", "evaluation")):
            if getattr(other, attr) != getattr(first, attr):
                raise ValueError(
                    f"demo run configs {DEMO_RUNS[first_name]} and {DEMO_RUNS[name]} differ in "
                    f"[{table}]; the demo compares both models on the same examples"
                )
    return configs


def stage_world(ctx: DemoContext) -> None:
    from transact.data.io import load_manifest
    from transact.data.world import PRESETS, generate_world

    c = ctx.config
    world_config = PRESETS[c.world_preset]
    wanted = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(world_config).items()}
    if (ctx.world_dir / "manifest.json").exists():
        m = load_manifest(ctx.world_dir)
        if m.seed == c.world_seed and m.extra.get("config") == wanted:
            ctx.log(f"world: {ctx.world_dir} already holds this world; skipping generation")
            ctx.state["manifest"] = m
            return
        ctx.log(f"world: {ctx.world_dir} holds another world; regenerating it")
        shutil.rmtree(ctx.world_dir)
        shutil.rmtree(ctx.runs_dir, ignore_errors=True)  # models of the old world
    generate_world(
        ctx.world_dir, world_config, seed=c.world_seed, preset=c.world_preset, progress=c.progress
    )
    ctx.state["manifest"] = load_manifest(ctx.world_dir)


def stage_examples(ctx: DemoContext) -> None:
    from transact.pipeline.run import build_examples
    from transact.pipeline.windows import resolve_window

    ctx.state["run_configs"] = demo_run_configs(ctx.config)
    config = next(iter(ctx.state["run_configs"].values()))  # [data] is the same in all
    train_window = resolve_window(ctx.world_dir, "train")
    eval_window = resolve_window(ctx.world_dir, "eval")
    # A stage inserted before this one (batch user embeddings) may leave a
    # UserEmbeddingSource here; both models then read it (Pinnability's hybrid input).
    user_embeddings = ctx.state.get("user_embeddings")
    ctx.state["train_set"] = build_examples(
        ctx.world_dir, train_window, config, evaluation=False, user_embeddings=user_embeddings
    )
    ctx.state["eval_set"] = build_examples(
        ctx.world_dir, eval_window, config, evaluation=True, user_embeddings=user_embeddings
    )
    ctx.state["windows"] = {"train": train_window, "eval": eval_window}
    ctx.log(
        f"examples: {len(ctx.state['train_set']):,} training {train_window}, "
        f"{len(ctx.state['eval_set']):,} evaluation {eval_window} (randomized requests)"
    )


def _train_stage(name: str) -> Callable[[DemoContext], None]:
    def run(ctx: DemoContext) -> None:
        from transact.pipeline.run import train_run

        config = ctx.state["run_configs"][name]
        train_set = ctx.state["train_set"]
        out = ctx.runs_dir / name
        window = ctx.state["windows"]["train"]
        metadata = {
            "data": {
                "dir": str(ctx.world_dir),
                "start_ms": window.start_ms,
                "end_ms": window.end_ms,
                "n_examples": len(train_set),
            }
        }
        try:
            result = train_run(
                config, train_set, train_set.feature_spec, out, resume=True, metadata=metadata
            )
        except ValueError as exc:
            if "cannot resume" not in str(exc):
                raise
            ctx.log(f"{name}: settings changed since the last demo; training from scratch")
            shutil.rmtree(out)
            result = train_run(config, train_set, train_set.feature_spec, out, metadata=metadata)
        ctx.state.setdefault("train_results", {})[name] = result
        _calibrate(ctx, name, out, config, window)
        if result.resumed_from_step >= result.steps:  # nothing left to train: no loss to show
            ctx.log(f"{name}: already trained ({result.steps} steps), reusing {out}")
        else:
            ctx.log(
                f"{name}: {result.steps} steps, {result.examples:,} examples, "
                f"final loss {result.final_loss:.4f}, {result.wall_s:.0f} s"
            )

    return run


def _calibrate(ctx: DemoContext, name: str, out: Path, config: Any, window: Any) -> None:
    """Fit the run's calibration as ``transact train`` does (``pipeline/calibrate.py``) and
    write it into its ``model.pt``; a model that already has one keeps it."""
    from transact.models.artifact import read_model
    from transact.pipeline.calibrate import calibrate_run

    if "calibration" in read_model(out).metadata:
        return
    cal = calibrate_run(
        out,
        ctx.world_dir,
        window.start_ms,
        window.end_ms,
        train_set=ctx.state["train_set"],
        seq_len=config.data.seq_len,
        batch_size=config.data.eval_batch_size,
    )
    if cal is None:
        raise RuntimeError(f"{name}: the world's training window has no randomized request")
    ctx.log(
        f"{name}: calibrated (keep rate {cal.keep_rate:.4f} undone, Platt on "
        f"{cal.fitted_on.get('examples', 0):,} randomized impressions)"
    )


def stage_evaluate(ctx: DemoContext) -> None:
    from transact.evaluation.calibration import Calibration
    from transact.evaluation.pipeline import PREDICTIONS_FILE, score_model
    from transact.evaluation.report import compare
    from transact.models.artifact import load_model

    eval_set = ctx.state["eval_set"]
    configs = ctx.state["run_configs"]
    baseline = next(iter(configs))
    preds = {}
    for name, config in configs.items():
        model, spec, md = load_model(ctx.runs_dir / name)
        raw = score_model(
            model,
            eval_set,
            spec.heads,
            batch_size=config.data.eval_batch_size,
            progress=ctx.config.progress,
        )
        # ranked and reported as served: on the calibrated probabilities (saved so)
        cal = Calibration.from_dict(md["calibration"], source=f"{name} model.pt")
        preds[name] = raw.with_scores(cal.apply(raw.scores))
        (ctx.runs_dir / name / "eval").mkdir(parents=True, exist_ok=True)
        preds[name].save(ctx.runs_dir / name / "eval" / PREDICTIONS_FILE)
    preds["oracle"] = preds[baseline].oracle()
    evaluation = configs[baseline].evaluation  # the same [eval] in all (demo_run_configs)
    ctx.state["comparison"] = compare(preds, baseline, oracle="oracle", config=evaluation)


ONLINE_SHARE = 0.5
"""Share of the users in each arm of the demo's online A/B test: halves, so that every
user is in an arm and so in both paired copies (the size the mask decision was made at,
docs/online.md "The mask decision")."""


def stage_online(ctx: DemoContext) -> None:
    """The demo's online A/B test of its two models: the world continues after its
    offline weeks for ``online_days`` days, half of the users on each model (buckets,
    CUPED) and every user on each (paired copies, common random numbers: the design the
    demo's bar reads); the models are fixed. Writes ``OUT/online/`` (the simulator's
    report.json/md and figures). About 5 minutes of 2 cores on the demo world."""
    from transact.data.io import load_manifest
    from transact.online import ArmSpec, OnlineConfig, simulate, write_report
    from transact.online.replay import world_config_of

    c = ctx.config
    if c.online_days <= 0:
        ctx.log("online: skipped (--online-days 0)")
        return
    names = list(ctx.state["run_configs"])
    arms = tuple(ArmSpec(n, str(ctx.runs_dir / n), ONLINE_SHARE) for n in names)
    n_days = world_config_of(load_manifest(ctx.world_dir), ctx.world_dir).n_days
    config = OnlineConfig(
        str(ctx.world_dir), arms, days=c.online_days, paired=True, pre_days=min(7, n_days),
        progress=c.progress,
    )  # fmt: skip
    out = c.out_dir / "online"
    if out.exists():
        shutil.rmtree(out)  # stores and logs of an earlier run
    result = simulate(config, out)
    write_report(result, out)
    ctx.state["online"] = result
    x = result.lift(names[1], "repins", design="paired")
    ctx.log(
        f"online: {c.online_days} days, {result.impressions:,} impressions; repin volume "
        f"{100 * x.lift:+.1f}% [{100 * x.ci_low:+.1f}, {100 * x.ci_high:+.1f}] (paired)"
    )


def stage_report(ctx: DemoContext) -> None:
    from transact.evaluation.pipeline import write_json
    from transact.evaluation.plots import comparison_lift_plot
    from transact.evaluation.reliability import reliability_plot

    cmp = ctx.state["comparison"]
    out = ctx.config.out_dir
    metrics = cmp.to_dict()
    online: list[str] = []
    if "online" in ctx.state:
        online, metrics["online"] = online_lines(ctx.state["online"])
    comparison_lift_plot(cmp, out / "lifts.png", paper={"transact": PAPER_TABLE1_TRANSACT})
    if cmp.calibration:
        reliability_plot(cmp.calibration, out / "reliability.png")
    checks = acceptance_checks(metrics)
    manifest = ctx.state["manifest"]
    counts = manifest.extra.get("counts", {})
    wall = time.perf_counter() - ctx.started_at
    metrics["demo"] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(ctx.config).items()},
        "world": {"dataset": manifest.dataset, "seed": manifest.seed, **counts},
        "n_train_examples": len(ctx.state["train_set"]),
        "n_eval_examples": len(ctx.state["eval_set"]),
        "checks": checks,
        "timings_s": {k: round(v, 1) for k, v in ctx.timings_s.items()},
        "wall_s": round(wall, 1),
        "notes": ctx.notes,
    }
    write_json(out / "metrics.json", metrics)
    k = cmp.config.k
    repin = metrics["models"]["transact"].get("repin", {}).get("all", {})
    verdict = "PASSED" if checks["passed"] else "NOT MET"
    lines = [
        "# TransAct demo: HIT@3 on the simulated world's evaluation week",
        "",
        f"World `{manifest.dataset}` (seed {manifest.seed}): {manifest.n_users:,} users, "
        f"{manifest.n_items:,} items, {counts.get('impressions', 0):,} impressions. "
        f"Trained on weeks 1-2 ({len(ctx.state['train_set']):,} examples), evaluated on "
        f"week 3's randomized requests ({len(ctx.state['eval_set']):,} impressions, "
        f"{repin.get('n_users', 0):,} users), as in paper 4.1.1 and 4.2.1. Ranking score "
        f"S = {' + '.join(f'{w:g}*{h}' for h, w in cmp.config.utility.items())} (Eq. 3); "
        f"HIT@{k} per Eq. (4).",
        "",
        acceptance_line(checks),
        "",
        *offline_verdict_lines(checks),
        cmp.to_markdown(),
        *online,
        "Plots: `lifts.png` (the lifts beside the paper's Table 1), `reliability.png` "
        "(calibration).",
        "",
        "### Stage timings",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {s} | {t:.1f} |" for s, t in ctx.timings_s.items()],
        f"| total (to the report) | {wall:.1f} |",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    ctx.log(f"report: {out / 'report.md'} and {out / 'metrics.json'} ({verdict})")


STAGES: list[Stage] = [
    Stage("world", "generate the simulated world (skip if the same one exists)", stage_world),
    Stage("examples", "build training and evaluation examples with sequences", stage_examples),
    Stage("baseline", "train Pinnability without sequence features", _train_stage("baseline")),
    Stage("transact", "train Pinnability + TransAct", _train_stage("transact")),
    Stage("evaluate", "score week 3 (randomized requests), add the oracle", stage_evaluate),
    Stage("online", "a short online A/B test of the two models (paired, buckets)", stage_online),
    Stage("report", "write report.md and metrics.json", stage_report),
]


def add_stage(stage: Stage, *, after: str) -> None:
    """Insert ``stage`` after the stage named ``after`` (for later system stages)."""
    names = [s.name for s in STAGES]
    if stage.name in names:
        raise ValueError(f"demo stage {stage.name!r} exists already")
    if after not in names:
        raise KeyError(f"no demo stage {after!r}; stages: {names}")
    STAGES.insert(names.index(after) + 1, stage)


def run_demo(config: DemoConfig, stages: list[Stage] | None = None) -> DemoContext:
    """Run every stage in order and return the context (its ``state`` holds the results)."""
    ctx = DemoContext(config=config)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    for stage in stages or STAGES:
        ctx.log(f"stage {stage.name}: {stage.description}")
        start = time.perf_counter()
        stage.run(ctx)
        ctx.timings_s[stage.name] = time.perf_counter() - start
    ctx.log(f"done in {time.perf_counter() - ctx.started_at:.0f} s")
    return ctx


EPILOG = """\
examples:
  transact demo                          # the full demo (~10 min on 2 idle cores)
  transact demo --out runs/demo2 --seed 1
  transact demo --world-preset tiny --train-preset tiny   # a smoke run, under a minute
  cp -r configs my-configs && $EDITOR my-configs/transact_small.toml
  transact demo --configs my-configs      # the demo with your edited run configs

outputs: OUT/report.md (the demo's bar and its verdict first: TransAct's paired online
repin volume over the baseline, all users; a verdict per Table 1 and Table 5 claim; the
HIT@3 lift table like the paper's Table 1, oracle and share of its lift; the online
table), OUT/metrics.json (models.<model>.<head>.<all|non_core>.{hit_at_3,
lift_vs_baseline, p_value}, online.claims, demo.checks), OUT/online/ (the simulator's
report), OUT/world/, OUT/runs/<model>/ (checkpoints, TensorBoard)."""


def _handle(args: argparse.Namespace) -> int:
    config = DemoConfig(
        out_dir=Path(args.out),
        world_preset=args.world_preset,
        world_seed=args.world_seed,
        configs_dir=Path(args.configs) if args.configs else None,
        train_preset=args.train_preset,
        seed=args.seed,
        max_steps=args.max_steps,
        progress=not args.no_progress,
        online_days=args.online_days,
    )
    run_demo(config)
    checks = json.loads((config.out_dir / "metrics.json").read_text())["demo"]["checks"]
    print((config.out_dir / "report.md").read_text())
    return 0 if checks["passed"] or not args.strict else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``transact demo``."""
    p = subparsers.add_parser(
        "demo",
        help="the main job: world -> baseline and TransAct -> HIT@3 report",
        description=(
            "End to end on the embedded simulated world (no server, no download): generate "
            "the world, build realtime sequence features, train Pinnability without "
            "sequence features and Pinnability + TransAct, evaluate both and the oracle on "
            "week 3's randomized requests, and write a Table 1-style HIT@3 report. "
            "Stages: " + ", ".join(s.name for s in STAGES) + "."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--world-preset", default="demo", help="world preset (demo, tiny, large)")
    p.add_argument("--world-seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument(
        "--configs",
        metavar="DIR",
        help="read baseline_small.toml and transact_small.toml from DIR "
        "(default: the shipped configs/)",
    )
    p.add_argument(
        "--train-preset", help="trainer preset for both models (default: the configs'; tiny)"
    )
    p.add_argument("--seed", type=int, help="training seed of both models (default: the configs')")
    p.add_argument("--max-steps", type=int, default=0, help="cap optimizer steps per model")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--online-days",
        type=int_range(0, 14),
        default=DemoConfig.online_days,
        help="simulated days of the closing online A/B test, the demo's bar (0 skips it and "
        f"the bar is offline; default {DemoConfig.online_days})",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when the demo's bar is not met (report.md's Acceptance line)",
    )
    p.set_defaults(handler=_handle)
