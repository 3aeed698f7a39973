"""Inference benchmarks (``transact bench inference``, ``benchmarks/bench_inference.py``;
their flags: :mod:`transact.serving.bench_entry`).

Every optimized figure is measured against a plain reference in the same run, on the same
weights and inputs, with the timings interleaved (ref, fast, ref, fast, ...) so load from
other processes hits both alike; medians are reported with the output difference.

1. TransAct module, S=100, d_action=d_item=32, batch 256: as ONE request (one user, 256
   candidates) and as 256 distinct users. Plain: :class:`ReferenceTransAct`
   (``nn.TransformerEncoder``, eager, ``no_grad``). Fast: :class:`FastTransAct` (default
   options), with ablations without the split first layer, without folded weights and
   with the chunks run inline on the caller's threads (no chunk workers).
2. Full ranker at the ``paper`` preset, batch 256: the model's eager forward on 256 rows
   (Table 9's setting), the plain serving path and the optimized serving path on one
   256-candidate request; FLOPs per example counted with ``FlopCounterMode`` (matmuls and
   attention), achieved GFLOP/s against a measured fp32 GEMM peak.
3. On CUDA (when present): the same ranker's p50 forward per request of 256 candidates,
   plain fp32 against the optimized path in fp32/fp16/bf16, with captured CUDA graphs
   (``InferenceOptions.cuda_graphs``) and with ``torch.compile(mode="reduce-overhead")``;
   candidates/s at larger requests; the TransAct module alone; a profile of the fastest
   variant launched op by op.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from transact.memory import MALLOC_ENV
from transact.models.fast_transact import FastTransAct, FastTransActOptions
from transact.models.fast_transact.reference import ReferenceTransAct
from transact.serving.ranker import InferenceOptions, RequestTensors, ServingRanker


def machine() -> dict[str, Any]:
    """What the numbers ran on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "malloc": {k: os.environ[k] for k in MALLOC_ENV if k in os.environ} or "default",
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def interleaved(
    fns: Mapping[str, Callable[..., Any]], repeats: int, warmup: int = 2, sync: bool = False
) -> dict[str, dict[str, float]]:
    """Time each callable ``repeats`` times, round-robin; median/min/p90 in ms."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if sync:
                torch.cuda.synchronize()
            c = time.process_time()
            t = time.perf_counter()
            fn()
            if sync:
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t) * 1000)
            cpu[name].append((time.process_time() - c) * 1000)
    return {
        k: {
            "median_ms": statistics.median(v),
            "min_ms": min(v),
            "p90_ms": sorted(v)[int(0.9 * (len(v) - 1))],
            "median_process_cpu_ms": statistics.median(cpu[k]),
            "repeats": len(v),
        }
        for k, v in times.items()
    }


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, cpu_time: bool = False) -> float:
    """Best fp32 GEMM rate of this machine (n x n x n), GFLOP/s; ``cpu_time`` divides by
    the process CPU time per thread instead of wall time (robust to other processes)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    clock = time.process_time if cpu_time else time.perf_counter
    scale = torch.get_num_threads() if cpu_time else 1
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        a @ b
        best = min(best, (clock() - t) / scale)
    return 2 * n**3 / best / 1e9


def _sequence_batch(b: int, s: int, d: int, distinct: bool, seed: int = 0) -> list[torch.Tensor]:
    from transact.data.schema import MS_PER_DAY

    g = torch.Generator().manual_seed(seed)
    rows = b if distinct else 1
    lengths = torch.randint(s // 2, s + 1, (rows,), generator=g)
    valid = torch.arange(s)[None] < lengths[:, None]
    types = torch.randint(1, 6, (rows, s), generator=g) * valid
    embs = torch.randn(rows, s, d, generator=g) * valid[..., None]
    request = torch.full((rows,), 1_700_000_000_000)
    ages = torch.cumsum(torch.randint(1, 3 * MS_PER_DAY // s, (rows, s), generator=g), 1)
    times = torch.where(valid, request[:, None] - ages, torch.zeros_like(ages))
    cands = torch.randn(b, d, generator=g)
    seq = [types, embs, times, request]
    if not distinct:
        seq = [t.expand(b, *t.shape[1:]) for t in seq]
    return [*seq, cands]


def bench_transact(batch: int = 256, repeats: int = 20) -> dict[str, Any]:
    """Section 1: the TransAct module, plain ``nn.TransformerEncoder`` vs :class:`FastTransAct`."""
    from transact.models import TransAct, TransActConfig

    torch.manual_seed(0)
    model = TransAct(TransActConfig()).eval()  # paper: S=100, d=32+32+32, 2 layers, 1 head, ff 32
    ref = ReferenceTransAct.from_transact(model)
    fast = FastTransAct.from_transact(model)
    no_split = FastTransAct.from_transact(model, FastTransActOptions(split_first_layer=False))
    no_fold = FastTransAct.from_transact(model, FastTransActOptions(fold_weights=False))
    inline = FastTransAct.from_transact(model, FastTransActOptions(parallel_chunks=False))
    fast_bf16 = FastTransAct.from_transact(model).to(torch.bfloat16)
    out: dict[str, Any] = {"config": {"seq_len": 100, "d_action": 32, "d_item": 32, "batch": batch}}
    for case, distinct in (("one_request", False), ("distinct_users", True)):
        args = _sequence_batch(batch, 100, 32, distinct)
        # the fast module takes a request's user once ([1, ...] rows), as the ranker sends it
        users = [*(args[:4] if distinct else [t[:1] for t in args[:4]]), args[4]]
        with torch.no_grad():
            want = ref(*args)
            own = model(*args)
        got = fast.forward_users(*users)
        got_bf16 = fast_bf16.forward_users(*users)

        def run_ref(args: list[torch.Tensor] = args) -> None:
            with torch.no_grad():
                ref(*args)

        def run_model(args: list[torch.Tensor] = args) -> None:
            with torch.inference_mode():
                model(*args)

        t = interleaved(
            {
                "plain_nn_transformer_encoder": run_ref,
                "project_transact_eager": run_model,
                "fast": lambda users=users: fast.forward_users(*users),
                "fast_without_split": lambda users=users: no_split.forward_users(*users),
                "fast_without_fold": lambda users=users: no_fold.forward_users(*users),
                "fast_without_parallel_chunks": lambda users=users: inline.forward_users(*users),
                "fast_bf16": lambda users=users: fast_bf16.forward_users(*users),
            },
            repeats,
        )
        base = t["plain_nn_transformer_encoder"]["median_ms"]
        out[case] = {
            "timings": t,
            "speedup_fast_vs_plain": base / t["fast"]["median_ms"],
            "speedup_fast_bf16_vs_plain": base / t["fast_bf16"]["median_ms"],
            "speedup_fast_vs_plain_cpu_time": t["plain_nn_transformer_encoder"][
                "median_process_cpu_ms"
            ]
            / t["fast"]["median_process_cpu_ms"],
            "max_abs_diff_fast_vs_plain": (got - want).abs().max().item(),
            "max_abs_diff_project_model_vs_plain": (own - want).abs().max().item(),
            "max_abs_diff_bf16_vs_plain": (got_bf16 - want).abs().max().item(),
            "fp32_equal_within_1e-5": bool((got - want).abs().max().item() <= 1e-5),
            "split_underflow_fallbacks": fast.fallbacks,
        }
    out["goal"] = "one_request speedup >= 3x on 2 CPU cores"
    return out


def _paper_ranker() -> tuple[Any, Any]:
    from transact.models import Pinnability, PinnabilityConfig, example_feature_spec

    spec = example_feature_spec("paper")
    torch.manual_seed(0)
    return spec, Pinnability(spec, PinnabilityConfig.preset("paper")).eval()


def _one_request(inputs: Any) -> RequestTensors:
    r = slice(1, 2)  # row 0 of example inputs is an empty history
    return RequestTensors(
        inputs.categorical,
        inputs.numerical,
        inputs.candidate_embedding,
        inputs.candidate_item_id,
        inputs.user_embedding[r],
        inputs.action_types[r],
        inputs.action_embeddings[r],
        inputs.action_times_ms[r],
        inputs.request_time_ms[r],
    )


def flops_per_example(model: Any, inputs: Any) -> float:
    """Matmul + attention FLOPs of one eager forward divided by the batch size."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(inputs)
    return counter.get_total_flops() / inputs.categorical.shape[0]


def bench_ranker(batch: int = 256, repeats: int = 10) -> dict[str, Any]:
    """Section 2: the paper-preset ranker on CPU, plain vs optimized, GFLOP/s vs GEMM peak."""
    from transact.models import example_ranker_inputs

    spec, model = _paper_ranker()
    x = example_ranker_inputs(spec, batch, seed=1)
    req = _one_request(x)
    b = batch
    full_one = x._replace(
        **{
            k: getattr(req, k).expand(b, *getattr(req, k).shape[1:]).contiguous()
            for k in (
                "user_embedding",
                "action_types",
                "action_embeddings",
                "action_times_ms",
                "request_time_ms",
            )
        }
    )
    params = sum(p.numel() for p in model.parameters())
    flops = flops_per_example(model, x)
    fast = ServingRanker(model, InferenceOptions(validate_inputs=False))
    fast_bf16 = ServingRanker(model, InferenceOptions(validate_inputs=False, precision="bf16"))
    plain = ServingRanker(model, InferenceOptions.plain())
    with torch.no_grad():
        want = torch.sigmoid(model(full_one))
    got = fast.score(req)
    got_bf16 = fast_bf16.score(req)

    def eager(inputs: Any) -> Callable[[], Any]:
        def run() -> None:
            with torch.inference_mode():
                model(inputs)

        return run

    t = interleaved(
        {
            "model_eager_256_distinct_rows": eager(x),
            "model_eager_one_request": eager(full_one),
            "serving_plain_one_request": lambda: plain.score(req),
            "serving_optimized_one_request": lambda: fast.score(req),
            "serving_optimized_bf16_one_request": lambda: fast_bf16.score(req),
        },
        repeats,
    )
    peak = matmul_peak_gflops()
    peak_cpu = matmul_peak_gflops(cpu_time=True)
    per_batch = flops * batch / 1e9
    rates = {k: per_batch / (v["median_ms"] / 1000) for k, v in t.items()}
    threads = torch.get_num_threads()
    rates_cpu = {k: per_batch / (v["median_process_cpu_ms"] / threads / 1000) for k, v in t.items()}
    return {
        "preset": "paper",
        "batch": batch,
        "parameters": params,
        "flops_per_example": flops,
        "timings": t,
        "gflops_per_s_effective": rates,
        "fp32_matmul_peak_gflops": peak,
        "fraction_of_peak": {k: r / peak for k, r in rates.items()},
        "fp32_matmul_peak_gflops_cpu_time": peak_cpu,
        "gflops_per_s_cpu_time": rates_cpu,
        "fraction_of_peak_cpu_time": {k: r / peak_cpu for k, r in rates_cpu.items()},
        "speedup_optimized_vs_plain_serving": t["serving_plain_one_request"]["median_ms"]
        / t["serving_optimized_one_request"]["median_ms"],
        "max_abs_prob_diff_optimized_vs_model": (got - want).abs().max().item(),
        "max_abs_prob_diff_bf16_vs_model": (got_bf16 - want).abs().max().item(),
        "goal": "achieved GFLOP/s >= 0.5 * fp32 matmul peak",
        "note": "effective GFLOP/s = the model's nominal FLOPs / latency (the optimized path does fewer)",
    }


def _cuda_variants(device: str) -> dict[str, InferenceOptions]:
    """The GPU serving variants, each against ``plain_fp32`` (one chunk: on a GPU every
    chunk costs launches and a host sync)."""
    fast = InferenceOptions(device=device, validate_inputs=False, chunk_size=0)
    variants = {
        "plain_fp32": InferenceOptions.plain(device=device),
        "optimized_fp32": fast,
        "optimized_fp16": replace(fast, precision="fp16"),
        "optimized_bf16": replace(fast, precision="bf16"),
        # the same through torch.compile(mode="reduce-overhead"); run last, alone
        "dedup_fp16_compile_reduce_overhead": replace(
            fast, precision="fp16", compile=True, split_first_layer=False, compact_visible=False
        ),
    }
    if device.startswith("cuda"):  # the paper's CUDA graphs: one capture per bucket
        variants["optimized_fp32_cuda_graphs"] = replace(fast, cuda_graphs=True)
        variants["optimized_fp16_cuda_graphs"] = replace(fast, precision="fp16", cuda_graphs=True)
        # ablation: the DCN width left at the paper preset's 1539 (no tensor-core alignment)
        variants["optimized_fp16_cuda_graphs_unaligned"] = replace(
            fast, precision="fp16", cuda_graphs=True, align_width=1
        )
    return variants


def _request_of(spec: Any, batch: int, seed: int = 1) -> RequestTensors:
    from transact.models import example_ranker_inputs

    return _one_request(example_ranker_inputs(spec, batch, seed=seed))


def _profile_table(fn: Callable[[], Any], device: str, rows: int = 12) -> str:
    """The ``rows`` most expensive ops of three calls of ``fn`` (device time on CUDA)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(3):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    try:
        return str(prof.key_averages().table(sort_by=key, row_limit=rows))
    except Exception:  # older/newer torch name the device column differently
        return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def _transact_module_on(device: str, batch: int, repeats: int) -> dict[str, Any]:
    """TransAct alone on ``device``: plain ``nn.TransformerEncoder`` vs one-chunk FastTransAct."""
    from transact.models import TransAct, TransActConfig

    torch.manual_seed(0)
    model = TransAct(TransActConfig()).eval()
    ref = ReferenceTransAct.from_transact(model).to(device)
    fast = FastTransAct.from_transact(model, FastTransActOptions(chunk_size=0)).to(device)
    args = [t.to(device) for t in _sequence_batch(batch, 100, 32, distinct=False)]
    users = [*(t[:1] for t in args[:4]), args[4]]  # the request's user once
    with torch.no_grad():
        want = ref(*args)
    got = fast.forward_users(*users)

    def run_ref() -> None:
        with torch.no_grad():
            ref(*args)

    t = interleaved({"plain_nn_transformer_encoder": run_ref, "fast": lambda: fast.forward_users(*users)},
                    repeats, warmup=5, sync=device == "cuda")  # fmt: skip
    return {
        "timings": t,
        "speedup_fast_vs_plain": t["plain_nn_transformer_encoder"]["median_ms"]
        / t["fast"]["median_ms"],
        "max_abs_diff_fast_vs_plain": (got - want).abs().max().item(),
    }


def _profile_into(
    out: dict[str, Any],
    eager: list[str],
    rankers: Mapping[str, ServingRanker],
    req: RequestTensors,
    device: str,
) -> None:
    """Profile a variant launched op by op (no graph) into ``out["profile"]``: fp16, the
    precision the graphs serve in, else the fastest."""
    t = out["timings"]
    if "optimized_fp16" in t:
        best = "optimized_fp16"
    else:
        best = min((k for k in eager if k in t and k != "plain_fp32" and "graphs" not in k),
                   key=lambda k: t[k]["median_ms"], default="plain_fp32")  # fmt: skip
    out["profiled_variant"] = best
    try:
        out["profile"] = _profile_table(lambda: rankers[best].score(req), device)
    except Exception as exc:
        out["error_profile"] = repr(exc)[:500]


def _graph_replay_times(
    out: dict[str, Any], rankers: Mapping[str, ServingRanker], req: RequestTensors, repeats: int
) -> None:
    """How much of a graphed request is the GPU's: the replay alone, synchronised."""
    for name, ranker in rankers.items():
        if ranker.graphed is None:
            continue
        g = ranker.graphed.graph_for(list(req))

        def replay(g: Any = g) -> None:
            g.graph.replay()
            torch.cuda.synchronize()

        out[f"graph_replay_only_{name}"] = interleaved({"r": replay}, repeats, sync=True)["r"]


def bench_ranker_cuda(
    batch: int = 256,
    repeats: int = 50,
    device: str = "cuda",
    sweep: tuple[int, ...] = (1024, 4096),
    variants: tuple[str, ...] | None = None,
    profile: bool = True,
) -> dict[str, Any]:
    """Section 3: the paper-preset ranker on CUDA; p50 forward per batch and candidates/s.

    Every variant of :func:`_cuda_variants` (or those named in ``variants``) on one request
    of ``batch`` candidates, interleaved, each with its largest probability difference from
    the plain fp32 path; then candidates/s of the optimized variants at the larger requests
    of ``sweep`` ("use the larger batches in the original requests directly"); the TransAct
    module alone; and a profile of one variant launched op by op (:func:`_profile_into`).
    ``device="cpu"`` runs the same code without a GPU."""
    if device == "cuda" and not torch.cuda.is_available():
        return {"measured": False, "reason": "no CUDA device on this machine"}
    sync = device == "cuda"
    spec, model = _paper_ranker()
    req = _request_of(spec, batch)
    out: dict[str, Any] = {
        "measured": True,
        "device": torch.cuda.get_device_name(0) if sync else device,
        "batch": batch,
    }
    chosen = {k: v for k, v in _cuda_variants(device).items() if variants is None or k in variants}
    chosen.setdefault("plain_fp32", InferenceOptions.plain(device=device))
    try:
        out["transact_module_one_request"] = _transact_module_on(device, batch, repeats)
    except Exception as exc:
        out["error_transact_module"] = repr(exc)[:500]
    ref = ServingRanker(model, chosen["plain_fp32"]).score(req)
    out["timings"], out["sweep"] = {}, {}
    # eager variants interleaved first; compiled ones after, each alone: a compiled graph
    # left in the process has broken later eager copies in some torch releases
    eager = [k for k, o in chosen.items() if not o.compile]
    groups = [eager] + [[k] for k, o in chosen.items() if o.compile]
    rankers: dict[str, ServingRanker] = {}
    bigs = {b: _request_of(spec, b) for b in sweep}  # built before anything is compiled
    for group in groups:
        fns: dict[str, Callable[[], Any]] = {}
        for name in group:
            try:
                ranker = ServingRanker(model, chosen[name])
                t0 = time.perf_counter()
                got = ranker.score(req)  # first call: compiles / records graphs
                out[f"first_call_s_{name}"] = time.perf_counter() - t0
                out[f"max_abs_prob_diff_{name}"] = (got - ref).abs().max().item()
                rankers[name] = ranker
                fns[name] = partial(ranker.score, req)
            except Exception as exc:  # report, do not lose the other figures
                out[f"error_{name}"] = repr(exc)[:500]
        try:
            out["timings"].update(interleaved(fns, repeats, warmup=5, sync=sync))
            if group is eager:  # before anything is compiled (see above)
                if sync:
                    _graph_replay_times(out, rankers, req, repeats)
                if profile and out["timings"]:
                    _profile_into(out, eager, rankers, req, device)
        except Exception as exc:
            out[f"error_timing_{'_'.join(group)}"] = repr(exc)[:500]
        for b in sweep:
            big = bigs[b]
            try:
                big_fns = {}
                for name in fns:
                    rankers[name].score(big)
                    big_fns[name] = lambda r=rankers[name], big=big: r.score(big)
                ts = interleaved(big_fns, max(5, repeats // 4), warmup=3, sync=sync)
            except Exception as exc:
                out[f"error_sweep_{b}_{'_'.join(group)}"] = repr(exc)[:500]
                continue
            out["sweep"].setdefault(str(b), {}).update(
                {
                    k: {
                        "median_ms": v["median_ms"],
                        "candidates_per_s": b / (v["median_ms"] / 1000),
                    }
                    for k, v in ts.items()
                }
            )
    t = out["timings"]
    out["candidates_per_s"] = {k: batch / (v["median_ms"] / 1000) for k, v in t.items()}
    out["goal"] = "p50 forward per batch of 256 <= 1 ms (paper: 8 ms)"
    return out


def run_all(
    json_path: str | Path | None,
    sections: tuple[str, ...] = ("transact", "ranker", "cuda"),
    repeats: int = 20,
) -> dict[str, Any]:
    """Run the chosen sections, print a summary, write JSON to ``json_path``."""
    from tqdm import tqdm

    result: dict[str, Any] = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    steps = {
        "transact": lambda: bench_transact(repeats=repeats),
        "ranker": lambda: bench_ranker(repeats=max(3, repeats // 2)),
        "cuda": lambda: bench_ranker_cuda(repeats=max(10, repeats * 2)),
    }
    for name in tqdm(sections, desc="bench inference", unit="section"):
        result[name] = steps[name]()
        if json_path:  # write as we go: a long run keeps what it measured
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(result, indent=2))
    try:  # a torch.compile bug can leave torch unusable (docs/performance.md)
        result["machine_after"] = machine()
    except RuntimeError as exc:
        result["machine_after"] = repr(exc)[:300]
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
    print(summary(result))
    return result


def summary(result: dict[str, Any]) -> str:
    lines = [f"machine: {result['machine']}"]
    tr = result.get("transact")
    if tr:
        for case in ("one_request", "distinct_users"):
            c = tr[case]
            t = c["timings"]
            lines.append(
                f"TransAct {case}: plain {t['plain_nn_transformer_encoder']['median_ms']:.1f} ms, "
                f"fast {t['fast']['median_ms']:.1f} ms ({c['speedup_fast_vs_plain']:.2f}x, "
                f"max diff {c['max_abs_diff_fast_vs_plain']:.1e}), fast bf16 "
                f"{t['fast_bf16']['median_ms']:.1f} ms ({c['speedup_fast_bf16_vs_plain']:.2f}x, "
                f"diff {c['max_abs_diff_bf16_vs_plain']:.1e})"
            )
    rk = result.get("ranker")
    if rk:
        lines.append(
            f"ranker paper preset: {rk['flops_per_example'] / 1e6:.1f} MFLOPs/example, "
            f"{rk['parameters'] / 1e6:.1f}M params, GEMM peak {rk['fp32_matmul_peak_gflops']:.0f} GFLOP/s"
        )
        for k, v in rk["timings"].items():
            lines.append(
                f"  {k}: {v['median_ms']:.1f} ms/batch, {rk['gflops_per_s_effective'][k]:.1f} GFLOP/s "
                f"({rk['fraction_of_peak'][k]:.2f} of peak)"
            )
    cu = result.get("cuda")
    if cu:
        if not cu.get("measured"):
            lines.append(f"cuda: not measured ({cu.get('reason')})")
        else:
            lines.append(f"cuda ({cu['device']}), one request of {cu['batch']} candidates:")
            for k, v in cu["timings"].items():
                lines.append(
                    f"  {k}: p50 {v['median_ms']:.3f} ms/batch, "
                    f"{cu['candidates_per_s'][k]:.0f} candidates/s, "
                    f"max prob diff {cu.get(f'max_abs_prob_diff_{k}', float('nan')):.1e}"
                )
            for b, row in cu.get("sweep", {}).items():
                lines.append(
                    f"  {b} candidates: "
                    + ", ".join(f"{k} {v['candidates_per_s']:.3g}/s" for k, v in row.items())
                )
            for k, v in cu.items():
                if k.startswith("graph_replay_only_"):
                    lines.append(f"  {k}: p50 {v['median_ms']:.3f} ms")
            tm = cu.get("transact_module_one_request")
            if tm:
                lines.append(
                    f"  TransAct module: plain "
                    f"{tm['timings']['plain_nn_transformer_encoder']['median_ms']:.3f} ms, fast "
                    f"{tm['timings']['fast']['median_ms']:.3f} ms "
                    f"({tm['speedup_fast_vs_plain']:.2f}x, diff {tm['max_abs_diff_fast_vs_plain']:.1e})"
                )
            lines += [f"  ERROR {k}: {v}" for k, v in cu.items() if k.startswith("error")]
    return "\n".join(lines)


__all__ = [
    "bench_ranker",
    "bench_ranker_cuda",
    "bench_transact",
    "interleaved",
    "machine",
    "matmul_peak_gflops",
    "run_all",
]
