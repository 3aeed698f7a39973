"""Table 9 (Appendix C): parameters, FLOPs per example and forward latency per batch of 256.

Both rankers are built at the ``paper`` preset on the model stage's paper-scale feature
spec: the baseline (Pinnability without sequence features) and Pinnability with
TransAct. Parameters are counted, FLOPs per example are measured with
``torch.utils.flop_counter`` (the model stage's :func:`measure_flops`), and the eval-mode
forward latency per batch of 256 is the median of timed passes after a warm-up, on CPU
and, where CUDA is present, on the GPU. No training is involved. Serving cost, the
table's last row, depends on a fleet and is not reproduced.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from transact.experiments.budget import ExperimentBudget

NAME = "table9"
BATCH_SIZE = 256

# The paper's Table 9, column by column (latencies are per batch of 256).
PAPER = {
    "baseline_cpu": {
        "parameters": 60e6,
        "flops_per_example": 1e6,
        "latency_ms": 22.0,
        "serving_cost": "1x",
    },
    "transact_cpu": {
        "parameters": 92e6,
        "flops_per_example": 77e6,
        "latency_ms": 712.0,
        "serving_cost": "32x",
    },
    "transact_gpu": {
        "parameters": 92e6,
        "flops_per_example": 77e6,
        "latency_ms": 8.0,
        "serving_cost": "1x",
    },
}


def forward_latency_ms(
    model: Any, inputs: Any, *, device: str, repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median and min eval-mode forward time of ``model`` on ``inputs`` in ms.

    ``inputs`` (a ``RankerInputs``) and the model are moved to ``device`` first, so the
    figure excludes the host-to-device copy (as the paper's model forward latency does).
    """
    import torch

    model = model.to(device).eval()
    inputs = inputs.to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(inputs)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "repeats": repeats}


def measure(encoder: str, *, devices: list[str], repeats: int) -> dict[str, Any]:
    """Parameters, FLOPs/example and per-device latency of the paper-preset ranker."""
    import torch

    from transact.models import (
        Pinnability,
        PinnabilityConfig,
        example_feature_spec,
        example_ranker_inputs,
    )
    from transact.models.summary import count_parameters, measure_flops

    spec = example_feature_spec("paper")
    torch.manual_seed(0)
    model = Pinnability(
        spec, PinnabilityConfig.preset("paper", encoder=encoder, validate_inputs=False)
    )
    flops, seq_flops = measure_flops(model)
    inputs = example_ranker_inputs(spec, BATCH_SIZE, seed=1)
    latency = {d: forward_latency_ms(model, inputs, device=d, repeats=repeats) for d in devices}
    return {
        "encoder": encoder,
        "parameters": count_parameters(model),
        "flops_per_example": flops,
        "sequence_flops_per_example": seq_flops,
        "latency": latency,
    }


def run(
    budget: ExperimentBudget, out_dir: Path, *, device: str = "cpu", progress: bool = True
) -> dict[str, Any]:
    """Measure both rankers and write ``results.json`` and ``results.md`` to ``out_dir``."""
    import torch

    start = time.perf_counter()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = {
        enc: measure(enc, devices=devices, repeats=budget.latency_batches)
        for enc in ("none", "transact")
    }
    base, ta = rows["none"], rows["transact"]
    results: dict[str, Any] = {
        "experiment": NAME,
        "title": "Model efficiency (Table 9)",
        "batch_size": BATCH_SIZE,
        "budget": budget.to_dict(),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__,
        },
        "paper": PAPER,
        "ours": {"baseline": base, "transact": ta},
        "ratios": {
            "flops_transact_over_baseline": ta["flops_per_example"] / base["flops_per_example"],
            "cpu_latency_transact_over_baseline": ta["latency"]["cpu"]["median_ms"]
            / base["latency"]["cpu"]["median_ms"],
            "paper_flops_ratio": 77.0,
            "paper_cpu_latency_ratio": 712.0 / 22.0,
        },
        "wall_s": time.perf_counter() - start,
    }
    if "cuda" in devices:
        results["ratios"]["cpu_over_gpu_latency_transact"] = (
            ta["latency"]["cpu"]["median_ms"] / ta["latency"]["cuda"]["median_ms"]
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(markdown(results))
    return results


def markdown(results: dict[str, Any]) -> str:
    """The paper's Table 9 beside ours."""
    base, ta = results["ours"]["baseline"], results["ours"]["transact"]
    gpu = ta["latency"].get("cuda")

    def m(x: float) -> str:
        return f"{x / 1e6:.1f}M"

    lines = [
        "# table9: Model efficiency (Table 9)",
        "",
        f"Paper preset rankers, batch {results['batch_size']}; CPU: {results['machine']['cpu']} with "
        f"{results['machine']['torch_threads']} torch threads (shared machine: timings are indicative); "
        f"GPU: {results['machine']['cuda'] or 'none present'}.",
        "",
        "| | paper Baseline (CPU) | ours Baseline (CPU) | paper TransAct (CPU) | ours TransAct (CPU) "
        "| paper TransAct (GPU) | ours TransAct (GPU) |",
        "|---|---|---|---|---|---|---|",
        f"| Parameters | 60M | {m(base['parameters'])} | 92M | {m(ta['parameters'])} | 92M | {m(ta['parameters'])} |",
        f"| FLOPs / example | 1M | {m(base['flops_per_example'])} | 77M | {m(ta['flops_per_example'])} "
        f"| 77M | {m(ta['flops_per_example'])} |",
        f"| Latency / batch 256 | 22 ms | {base['latency']['cpu']['median_ms']:.1f} ms | 712 ms "
        f"| {ta['latency']['cpu']['median_ms']:.1f} ms | 8 ms | "
        + (f"{gpu['median_ms']:.1f} ms |" if gpu else "not measured (no CUDA) |"),
        "| Serving cost | 1x | not reproduced | 32x | not reproduced | 1x | not reproduced |",
        "",
        f"TransAct / baseline FLOPs: ours {results['ratios']['flops_transact_over_baseline']:.0f}x "
        "(paper 77x; the paper's text also says 65x); CPU latency: ours "
        f"{results['ratios']['cpu_latency_transact_over_baseline']:.1f}x (paper 32x).",
        "",
    ]
    return "\n".join(lines)
