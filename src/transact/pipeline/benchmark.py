"""Training and scoring benchmark (``transact bench train``, ``benchmarks/bench_train.py``).

It lives in ``pipeline/`` because it composes two stages, as a run does: the trainer's
step (``training/``) and evaluation's scoring (``evaluation/``).

For each sequence encoder asked for (``--encoders``, default the paper's TransAct), the
``small`` Pinnability ranker (|S| = 100) is built once and copied, so every arm starts
from the same weights, and trained on the same batches of the demo world's training weeks
(batch 512 by default):

* **plain**: the trainer as it was before the fast path (``TrainConfig.training_path =
  "plain"``): the model's own forward.
* **fast**: ``training_path = "fast"`` (``transact.models.fast_training``), fp32.
* **fast_bf16** (``--bf16``, on CPUs with native bf16): the fast path under bf16 autocast.
* **plain_compiled** (``--compile``): the plain model through ``torch.compile``.

Steps are interleaved (plain, fast, ..., plain, fast, ...) so load from other processes
hits every arm alike, and each arm's step ``i`` starts from the same torch RNG state, so
every arm draws the same random time window. Each step is the trainer's own
:func:`~transact.training.trainer.optimizer_step` (Adam, clipping). Reported per arm:
examples/s (wall clock and process CPU time), the speed-up over plain, the nominal
training FLOPs of the plain step (``FlopCounterMode``) per second as a share of the fp32
GEMM peak measured in the same run at the same thread count, and the largest difference in
the loss after the same steps against plain. Dropout draws different random numbers in
the two paths, so that difference mixes sampling noise with numerics; the deterministic
check beside it (``deterministic``) trains plain and fast with dropout 0 from the same
weights on the same batches and reports their largest loss and parameter differences.

**Scoring** (same encoders): the evaluation week's examples (randomized requests, whole
requests, the first ``--score-examples`` of them), scored by
:func:`transact.evaluation.predictions.predict` plain (the model's forward over rows)
and optimized (each request's user once, the serving path's algebra), interleaved, with
examples/s, the speed-up and the largest probability difference.

Both arms run under the process's allocator, recorded as ``machine.malloc``: ``tuned``
(freed buffers kept for the next batch, :mod:`transact.memory`, what every ``transact``
command does) or ``default`` (``--default-malloc``: glibc's, under which the plain arm's
157 MB activations of a 4,096-row batch are faulted in again on every batch).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transact.data.schema import LabeledBatch
from transact.memory import keep_freed_memory, malloc_state, opted_out
from transact.pipeline.run import build_loss
from transact.training.config import TrainConfig
from transact.training.trainer import LossFn, optimizer_step

DEFAULT_CACHE = Path("runs/bench/data")
LOSS_TABLE = {"label_weights": "standard"}  # the experiments' loss (experiments/training.py)
BENCH_PRESET = "small"
TRANSFORMER_ENCODERS = ("transact", "vanilla_transformer", "bst", "bst_positive")


def machine(threads: int) -> dict[str, Any]:
    """What the numbers ran on: CPU model, cores, load, torch version and threads."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "bf16_native": bf16_native(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "malloc": malloc_state(),
    }


def bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16
    autocast is emulated and slower than fp32."""
    cpu = getattr(torch, "cpu", None)
    check = getattr(cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(cpu, "_is_amx_tile_supported", None)
    return bool((check and check()) or (amx and amx()))


def gemm_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The best fp32 ``n x n x n`` matmul rate at the current thread count, GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def prepare_data(data_dir: str | Path | None, cache_dir: Path = DEFAULT_CACHE) -> tuple[Any, Any]:
    """(training set, evaluation set) of ``data_dir``, or of the demo world generated once
    into ``cache_dir`` (about 15 s): negatives down-sampled 1:1 for training, randomized
    requests for evaluation, |S| = 100, no batch user embedding."""
    from transact.data.examples import build_split
    from transact.data.io import MANIFEST_NAME

    if data_dir is None:
        from transact.data.world import PRESETS, generate_world

        data_dir = Path(cache_dir) / "world-demo-seed0"
        if not (data_dir / MANIFEST_NAME).exists():
            generate_world(data_dir, PRESETS["demo"], seed=0, preset="demo", progress=False)
    train = build_split(data_dir, "train", negative_ratio=1.0, seed=0)
    evaluation = build_split(data_dir, "eval")
    return train, evaluation


def build_ranker(encoder: str, spec: Any, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """The ``small`` Pinnability with sequence encoder ``encoder`` (its overrides), seeded."""
    from transact.models import Pinnability, PinnabilityConfig

    torch.manual_seed(seed)
    config = PinnabilityConfig.preset(BENCH_PRESET, encoder=encoder, encoder_overrides=overrides)
    return Pinnability(spec, config)


def step_flops(model: torch.nn.Module, loss_fn: LossFn, batch: LabeledBatch) -> float:
    """Nominal FLOPs of one plain training step (forward and backward, matmuls and
    attention) on ``batch``, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        loss_fn(probe(batch.inputs).float(), batch).backward()
    return float(counter.get_total_flops())


class _Arm:
    """One way of training: its own copy of the model, optimizer and timings."""

    def __init__(
        self, name: str, model: torch.nn.Module, config: TrainConfig, compiled: bool = False
    ) -> None:
        from transact.models.fast_training import FastTrainingOptions, set_fast_training

        self.name = name
        self.model = copy.deepcopy(model).train()
        fast = FastTrainingOptions() if config.training_path == "fast" else None
        set_fast_training(self.model, fast)
        self.forward_model: torch.nn.Module = (
            torch.compile(self.model) if compiled else self.model  # type: ignore[assignment]
        )
        self.config = config
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=config.peak_lr)
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.losses: list[float] = []

    def step(self, loss_fn: LossFn, batch: LabeledBatch, seed: int, timed: bool) -> None:
        torch.manual_seed(seed)  # every arm's step i draws the same time window
        c, t = time.process_time(), time.perf_counter()
        loss, _ = optimizer_step(
            self.forward_model, loss_fn, batch, self.optimizer, self.scaler, self.config,
            self.params, where=f"benchmark arm {self.name}",
        )  # fmt: skip
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        self.losses.append(float(loss))
        if timed:
            self.wall.append(wall)
            self.cpu.append(cpu)


def bench_training(
    encoder: str,
    train_set: Any,
    *,
    steps: int,
    warmup: int,
    batch_size: int,
    bf16: bool,
    compile_arm: bool,
    peak_gflops: float,
    deterministic_steps: int = 3,
) -> dict[str, Any]:
    """The training section for one encoder (see the module docstring)."""
    spec = train_set.feature_spec
    loss_fn = build_loss(spec, LOSS_TABLE)
    model = build_ranker(encoder, spec)
    order = train_set.batches(batch_size, shuffle=True, seed=0)
    batches = [b for _, b in zip(range(warmup + steps), order, strict=False)]
    base = TrainConfig.preset("small", batch_size=batch_size, device="cpu", progress=False)
    arms = [
        _Arm("plain", model, replace(base, training_path="plain")),
        _Arm("fast", model, replace(base, training_path="fast")),
    ]
    if bf16:
        arms.append(_Arm("fast_bf16", model, replace(base, training_path="fast", precision="bf16")))
    if compile_arm:
        arms.append(_Arm("plain_compiled", model, replace(base, training_path="plain"), True))
    t_compile = None
    for i, batch in enumerate(batches):
        for arm in arms:
            t = time.perf_counter()
            arm.step(loss_fn, batch, seed=1000 + i, timed=i >= warmup)
            if arm.name == "plain_compiled" and i == 0:
                t_compile = time.perf_counter() - t
    flops = step_flops(model, loss_fn, batches[0])
    examples = sum(int(b.labels.shape[0]) for b in batches[warmup:])
    plain = arms[0]
    out: dict[str, Any] = {
        "encoder": encoder,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": batch_size,
        "steps_timed": len(batches) - warmup,
        "warmup_steps": warmup,
        "plain_step_gflop": flops / 1e9,
        "arms": {},
    }
    for arm in arms:
        wall, cpu = sum(arm.wall), sum(arm.cpu)
        rate = examples / wall
        out["arms"][arm.name] = {
            "examples_per_s": rate,
            "examples_per_cpu_s": examples / cpu,
            "median_step_ms": 1000 * statistics.median(arm.wall),
            "speedup": sum(plain.wall) / wall,
            "speedup_cpu_time": sum(plain.cpu) / cpu,
            "share_of_gemm_peak": flops * len(arm.wall) / wall / 1e9 / peak_gflops,
            "max_loss_diff_vs_plain": max(
                abs(a - b) for a, b in zip(arm.losses, plain.losses, strict=True)
            ),
            "final_loss": arm.losses[-1],
        }
    if t_compile is not None:
        out["arms"]["plain_compiled"]["first_step_s"] = t_compile
    out["deterministic"] = deterministic_check(
        encoder, spec, loss_fn, batches[:deterministic_steps], base
    )
    return out


def deterministic_check(
    encoder: str, spec: Any, loss_fn: LossFn, batches: list[LabeledBatch], base: TrainConfig
) -> dict[str, Any]:
    """Plain and fast fp32 training from the same weights with dropout 0 (so nothing random
    differs: the time window is drawn alike) on ``batches``: the largest loss difference
    after the same steps, and the largest parameter difference at the end."""
    # the transformer encoders' dropout off; the other encoders have none
    overrides: dict[str, Any] = {"dropout": 0.0} if encoder in TRANSFORMER_ENCODERS else {}
    model = build_ranker(encoder, spec, **overrides)
    arms = [
        _Arm("plain", model, replace(base, training_path="plain")),
        _Arm("fast", model, replace(base, training_path="fast")),
    ]
    for i, batch in enumerate(batches):
        for arm in arms:
            arm.step(loss_fn, batch, seed=2000 + i, timed=False)
    plain, fast = arms
    params = zip(plain.model.parameters(), fast.model.parameters(), strict=True)
    return {
        "steps": len(batches),
        "dropout": overrides.get("dropout"),
        "max_loss_diff": max(abs(a - b) for a, b in zip(plain.losses, fast.losses, strict=True)),
        "max_param_diff": max(float((a - b).detach().abs().max()) for a, b in params),
    }


def bench_scoring(
    encoder: str, train_set: Any, eval_set: Any, *, max_examples: int, repeats: int
) -> dict[str, Any]:
    """The scoring section for one encoder: plain against optimized ``predict`` on the
    first ``max_examples`` evaluation examples (whole requests), interleaved."""
    from transact.evaluation.predictions import predict

    spec = train_set.feature_spec
    model = build_ranker(encoder, spec).eval()
    requests = eval_set.example_request
    rows = np.arange(len(eval_set))
    if len(rows) > max_examples:  # cut at a request boundary (a request's rows are
        # contiguous, the request ids themselves need not be sorted)
        changes = np.flatnonzero(requests[max_examples:] != requests[max_examples - 1])
        end = max_examples + int(changes[0]) if len(changes) else len(rows)
        rows = rows[:end]
    heads = tuple(spec.heads)

    def batches() -> Any:
        for a in range(0, len(rows), 4096):
            yield eval_set.batch(rows[a : a + 4096])

    chunks = list(batches())
    times: dict[str, list[float]] = {"plain": [], "fast": []}
    scores: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name in times:
            t = time.perf_counter()
            preds = predict(model, chunks, heads, fast=name == "fast")
            times[name].append(time.perf_counter() - t)
            scores[name] = preds.scores
    best = {k: min(v) for k, v in times.items()}
    return {
        "encoder": encoder,
        "examples": len(rows),
        "requests": int(len(np.unique(requests[rows]))),
        "repeats": repeats,
        "plain_examples_per_s": len(rows) / best["plain"],
        "fast_examples_per_s": len(rows) / best["fast"],
        "speedup": best["plain"] / best["fast"],
        "max_prob_diff": float(np.abs(scores["plain"] - scores["fast"]).max()),
    }


def run(
    json_path: str | Path,
    *,
    threads: int = 2,
    steps: int = 10,
    warmup: int = 2,
    batch_size: int = 512,
    encoders: tuple[str, ...] = ("transact",),
    data: str | Path | None = None,
    bf16: bool = True,
    compile_arm: bool = False,
    score_examples: int = 20_000,
    score_repeats: int = 2,
    sections: tuple[str, ...] = ("train", "score"),
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark at ``threads`` torch threads and write ``json_path``."""
    torch.set_num_threads(threads)
    result: dict[str, Any] = {"machine": machine(threads), "started": time.time()}
    report(
        f"threads {threads}, malloc {result['machine']['malloc']}, load "
        f"{result['machine']['load_avg_1m']}; preparing data"
    )
    train_set, eval_set = prepare_data(data)
    peak = gemm_peak_gflops()
    result["fp32_gemm_peak_gflops"] = peak
    use_bf16 = bf16 and bf16_native()
    if bf16 and not use_bf16:
        result["bf16_skipped"] = "this CPU has no native bf16 (AVX-512 BF16 / AMX)"
    result["training"], result["scoring"] = {}, {}
    for encoder in encoders:
        if "train" in sections:
            report(f"training {encoder}: {warmup} + {steps} steps of {batch_size}")
            result["training"][encoder] = r = bench_training(
                encoder, train_set, steps=steps, warmup=warmup, batch_size=batch_size,
                bf16=use_bf16, compile_arm=compile_arm, peak_gflops=peak,
            )  # fmt: skip
            report(_train_line(r))
        if "score" in sections:
            report(f"scoring {encoder}")
            result["scoring"][encoder] = r = bench_scoring(
                encoder, train_set, eval_set, max_examples=score_examples, repeats=score_repeats
            )
            report(
                f"  scoring {encoder}: plain {r['plain_examples_per_s']:,.0f}/s, fast "
                f"{r['fast_examples_per_s']:,.0f}/s = {r['speedup']:.2f}x, max prob diff "
                f"{r['max_prob_diff']:.1e}"
            )
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    path = Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=_json_default))
    report(f"wrote {path}")
    return result


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def _train_line(r: dict[str, Any]) -> str:
    arms = r["arms"]
    parts = [
        f"{name} {a['examples_per_s']:,.0f}/s ({a['speedup']:.2f}x, {a['share_of_gemm_peak']:.2f} "
        f"of peak, loss diff {a['max_loss_diff_vs_plain']:.1e})"
        for name, a in arms.items()
    ]
    det = r["deterministic"]
    return (
        f"  training {r['encoder']}: " + "; ".join(parts) + f"; dropout-free check: loss diff "
        f"{det['max_loss_diff']:.1e}, param diff {det['max_param_diff']:.1e}"
    )


EPILOG = """\
examples:
  transact bench train --json runs/bench/train.json                    # TransAct, 2 threads
  transact bench train --json runs/bench/train_1t.json --threads 1 --steps 20
  transact bench train --json runs/bench/encoders.json --encoders transact,lstm,rnn,cnn,bst \\
      --steps 5 --sections train
  transact bench train --json runs/bench/train.json --compile          # + torch.compile arm

Without --data the demo world is generated once into runs/bench/data (about 15 s)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's flags (``transact bench train`` and ``benchmarks/bench_train.py``)."""
    from transact.models.encoders import SEQUENCE_ENCODERS

    def encoder_list(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        bad = [n for n in names if n not in SEQUENCE_ENCODERS]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"unknown encoder(s) {bad}; known: {','.join(SEQUENCE_ENCODERS)}"
            )
        return names

    def positive(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
        return value

    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--threads", type=positive, default=2, help="torch threads (default 2)")
    p.add_argument("--steps", type=positive, default=10, help="timed steps per arm (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--batch-size", type=positive, default=512)
    p.add_argument(
        "--encoders", type=encoder_list, default=("transact",),
        help="comma-separated sequence encoders (default transact), e.g. transact,lstm,bst",
    )  # fmt: skip
    p.add_argument("--data", default=None, help="a world/data dir (default: the demo world)")
    p.add_argument("--sections", nargs="+", choices=["train", "score"], default=["train", "score"])
    p.add_argument("--no-bf16", action="store_true", help="skip the fast bf16 arm")
    p.add_argument("--compile", action="store_true", help="add a torch.compile'd plain arm")
    p.add_argument("--score-examples", type=positive, default=20_000,
                   help="evaluation examples scored per arm (whole requests; default 20000)")  # fmt: skip
    p.add_argument(
        "--default-malloc", action="store_true",
        help="keep glibc's malloc defaults for both arms (default: freed buffers are kept "
        "and reused, as every transact command does; transact.memory)",
    )  # fmt: skip


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run` with parsed :func:`add_arguments` flags."""
    if args.warmup < 0:
        raise SystemExit("transact: --warmup must be >= 0")
    if args.data is not None and not Path(args.data).is_dir():
        raise SystemExit(f"transact: --data {args.data}: no such directory")
    if not opted_out(args.default_malloc):  # `transact bench train` did it already
        keep_freed_memory()
    run(
        args.json, threads=args.threads, steps=args.steps, warmup=args.warmup,
        batch_size=args.batch_size, encoders=args.encoders, data=args.data,
        bf16=not args.no_bf16, compile_arm=args.compile, score_examples=args.score_examples,
        sections=tuple(args.sections),
    )  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m transact.pipeline.benchmark --json PATH ...``"""
    p = argparse.ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
