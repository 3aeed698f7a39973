"""``transact bench online``: simulated impressions/s of the online simulator on the demo.

The issue's speed goal: 14 days of the demo world with two model arms (the demo's baseline
and TransAct) through the serving path in at most 30 minutes on 2 cores. The benchmark
runs exactly that (half of the users each, models fixed) and, in the same process, the
first online day again with the plain reference scoring (every request assembled and
scored alone, as the HTTP service does), so the batched scoring's gain is a ratio of two
runs on the same machine at the same time. It reports wall and CPU time, the time split
by part, simulated impressions per second (of the day loop, and of the whole run
including the replay and the store's backfill), and the machine's load average (the
development machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transact.arguments import existing_dir, int_range, output_dir, output_file, positive_int

BENCH_DESCRIPTION = (
    "Simulated impressions/s of the online simulator: the demo world with its two models "
    "through the serving path, against the per-request reference path in the same run."
)

BENCH_EPILOG = """\
examples:
  transact bench online --json runs/bench/online.json                 # 14 days, the demo
  transact bench online --demo runs/demo --days 2 --json runs/bench/online_quick.json
  python benchmarks/bench_online.py --json runs/bench/online.json     # the same

needs the demo's world and models (`transact demo --out DIR` first). Simulates the demo
world with its two models (baseline, TransAct; half of the users each) through the serving
path, and the first day again with every request assembled and scored alone (the plain
per-request path of the HTTP service). Reports simulated impressions/s, the time split
(replay, backfill, env, assembly, forward, stream, logging, metrics), CPU time, the
machine's load, and the ratio of the batched to the per-request scoring."""

SPEED_GOAL_S = 30 * 60
"""14 simulated days of the demo world, two model arms: at most this many seconds."""

SETUP = ("replay", "backfill")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _one(config: Any, out: Path) -> dict[str, Any]:
    from transact.online.simulator import simulate

    wall0, cpu0, load0 = time.perf_counter(), _cpu_s(), os.getloadavg()
    result = simulate(config, out)
    wall, cpu = time.perf_counter() - wall0, _cpu_s() - cpu0
    setup = sum(result.timings.get(k, 0.0) for k in SETUP)
    loop = wall - setup
    requests = sum(a.scoring.get("requests", 0) for d in result.arms.values() for a in d.values())
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_per_wall": round(cpu / wall, 2) if wall else None,
        "setup_s": round(setup, 2),
        "day_loop_s": round(loop, 2),
        "impressions": result.impressions,
        "scored_requests": requests,
        "impressions_per_s": round(result.impressions / loop, 1) if loop > 0 else None,
        "impressions_per_s_with_setup": round(result.impressions / wall, 1),
        "seconds": {k: round(v, 2) for k, v in sorted(result.timings.items())},
        "load_average_before": [round(x, 2) for x in load0],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "dead_letters": sum(
            e["stream"]["dead_letters_total"] for e in result.environments.values()
        ),
        "repin_lift_buckets": result.lift("transact", "repins").to_dict(),
    }


def run_bench(
    demo_dir: str | Path,
    *,
    days: int = 14,
    paired: bool = False,
    threads: int | None = None,
    reference: bool = True,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the benchmark on a ``transact demo`` output directory (module docstring)."""
    import torch

    from transact.online.config import ArmSpec, OnlineConfig

    demo = Path(demo_dir)
    world, baseline, transact = (
        demo / "world",
        demo / "runs" / "baseline",
        demo / "runs" / "transact",
    )
    for path in (world, baseline / "model.pt", transact / "model.pt"):
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing; run `transact demo --out {demo}` first")
    if threads:
        torch.set_num_threads(threads)
    from transact.data.io import load_manifest
    from transact.online.replay import world_config_of

    pre_days = min(7, world_config_of(load_manifest(world), world).n_days)
    arms = (ArmSpec("baseline", str(baseline), 0.5), ArmSpec("transact", str(transact), 0.5))
    config = OnlineConfig(
        str(world), arms, days=days, paired=paired, pre_days=pre_days, progress=progress
    )
    with tempfile.TemporaryDirectory(prefix="bench-online-", dir=out_dir) as tmp:
        batched = _one(config, Path(tmp) / "batched")
        out: dict[str, Any] = {
            "benchmark": "online simulator",
            "config": {
                "world": str(world),
                "arms": {a.name: a.model for a in arms},
                "shares": {a.name: a.share for a in arms},
                "days": days,
                "paired": paired,
                "torch_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            "batched": batched,
            "speed_goal_s": SPEED_GOAL_S,
            "meets_speed_goal": batched["wall_s"] <= SPEED_GOAL_S if days == 14 else None,
        }
        if reference:
            one_day = OnlineConfig(
                str(world), arms, days=1, paired=paired, pre_days=pre_days,
                progress=progress, per_request_scoring=True,
            )  # fmt: skip
            ref = _one(one_day, Path(tmp) / "reference")
            first = _first_day_seconds(batched, days)
            out["reference_first_day"] = ref
            out["batched_first_day_loop_s_estimate"] = round(first, 2)
            scoring = ref["seconds"].get("assembly", 0) + ref["seconds"].get("forward", 0)
            fast = batched["seconds"].get("assembly", 0) + batched["seconds"].get("forward", 0)
            out["scoring_speedup_vs_per_request"] = (
                round((scoring / ref["scored_requests"]) / (fast / batched["scored_requests"]), 2)
                if fast and ref["scored_requests"] and batched["scored_requests"]
                else None
            )
    return out


def _first_day_seconds(batched: dict[str, Any], days: int) -> float:
    """The batched run's mean day-loop time (its days are alike in size)."""
    return batched["day_loop_s"] / max(days, 1)


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``transact bench online`` and ``benchmarks/bench_online.py`` (defined once)."""
    p.add_argument("--json", type=output_file, default=None, help="write the result here")
    p.add_argument("--demo", type=existing_dir, default=Path("runs/demo"),
                   help="a `transact demo` output: world/, runs/baseline, runs/transact (default runs/demo)")  # fmt: skip
    p.add_argument("--days", type=int_range(1, 14), default=14, help="online days (default 14)")
    p.add_argument("--paired", action="store_true", help="also the paired copies")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the per-request reference day")  # fmt: skip
    p.add_argument("--workdir", type=output_dir, default=None,
                   help="where the runs' stores and logs go (default: a temporary directory)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with the parsed flags; print (and write) the JSON."""
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    result = run_bench(
        args.demo, days=args.days, paired=args.paired, threads=args.threads,
        reference=not args.no_reference, out_dir=args.workdir, progress=not args.no_progress,
    )  # fmt: skip
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``benchmarks/bench_online.py``: the flags of ``transact bench online``, then :func:`run`."""
    from transact.arguments import ArgumentParser, run_command

    parser = ArgumentParser(
        prog="python benchmarks/bench_online.py",
        description=BENCH_DESCRIPTION,
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(parser)
    parser.set_defaults(handler=run)
    return run_command(parser, argv)
