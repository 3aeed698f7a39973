"""Model cost benchmark: FLOPs/parameters per preset, and fast paths against their references.

``benchmarks/bench_model_flops.py`` and ``python -m transact.models.bench`` run :func:`main`.

Measures, in one run on the same machine:

* parameters and FLOPs per example of ``small`` and ``paper`` with and without TransAct
  (``torch.utils.flop_counter``; Table 9 reports 92M parameters / 77M FLOPs);
* TransAct forward latency with the SDPA attention path vs the plain reference path
  (ratio = reference / sdpa, > 1 means the fast path is faster), eval and train step;
* the consolidated categorical lookup (one gather) vs per-feature lookups.

Timings are noisy on a shared machine: rerun on a quiet one before quoting them.

    python benchmarks/bench_model_flops.py --json runs/bench/bench_model_flops.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from transact.arguments import ArgumentParser, device, output_file, positive_int, run_command
from transact.models import (
    PinnabilityConfig,
    TransAct,
    TransActConfig,
    example_feature_spec,
    example_ranker_inputs,
)
from transact.models.layers import ConsolidatedEmbedding
from transact.models.summary import summarize


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def bench_attention(batch_size: int, repeats: int, device: str) -> dict[str, float]:
    spec = example_feature_spec("small")
    x = example_ranker_inputs(spec, batch_size, seed=1).to(device)
    args = (x.action_types, x.action_embeddings, x.action_times_ms, x.request_time_ms,
            x.candidate_embedding)  # fmt: skip
    fast = TransAct(TransActConfig.from_spec(spec)).to(device)
    ref = TransAct(dataclasses.replace(fast.config, attention="reference")).to(device)
    ref.load_state_dict(fast.state_dict())
    out: dict[str, float] = {}
    for name, model in (("sdpa", fast), ("reference", ref)):

        def forward(m: TransAct = model) -> torch.Tensor:
            return m(*args)

        def train_step(m: TransAct = model) -> None:
            m(*args).sum().backward()

        model.eval()
        with torch.no_grad():
            out[f"{name}_eval_ms"] = timed(forward, repeats)
        model.train()
        out[f"{name}_train_step_ms"] = timed(train_step, repeats)
    out["eval_ratio_reference_over_sdpa"] = out["reference_eval_ms"] / out["sdpa_eval_ms"]
    out["train_ratio_reference_over_sdpa"] = (
        out["reference_train_step_ms"] / out["sdpa_train_step_ms"]
    )
    return out


def bench_lookup(batch_size: int, repeats: int, device: str) -> dict[str, float]:
    cards = [1000] * 100  # "hundreds of features" (3.4.2), scaled down
    emb = ConsolidatedEmbedding(cards, 16).to(device)
    idx = torch.randint(0, 1000, (batch_size, len(cards)), device=device)
    with torch.no_grad():
        fused = timed(lambda: emb(idx), repeats)
        per_feature = timed(lambda: emb.reference(idx), repeats)
    return {
        "consolidated_ms": fused,
        "per_feature_ms": per_feature,
        "ratio_per_feature_over_consolidated": per_feature / fused,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's flags."""
    parser.add_argument("--json", type=output_file, default=None, help="write the results here")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="Table 9 uses 256")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument(
        "--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags of :func:`add_arguments` and :func:`run` the benchmark."""
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return run_command(parser, argv)


def run(args: argparse.Namespace) -> int:
    """Measure, print and (with ``--json``) write the figures."""
    torch.manual_seed(0)
    results: dict[str, object] = {"device": args.device, "batch_size": args.batch_size}
    summaries: list[dict[str, Any]] = []
    for preset in ("small", "paper"):
        for encoder in ("none", "transact"):
            config = PinnabilityConfig.preset(preset, encoder=encoder)
            summaries.append(summarize(example_feature_spec(preset), config, preset).to_dict())
            s = summaries[-1]
            print(f"{preset:6s} {encoder:9s} params {s['parameters'] / 1e6:6.1f}M  "
                  f"FLOPs/example {s['flops_per_example'] / 1e6:6.1f}M")  # fmt: skip
    results["summaries"] = summaries
    results["attention"] = bench_attention(args.batch_size, args.repeats, args.device)
    results["lookup"] = bench_lookup(args.batch_size, max(args.repeats, 100), args.device)
    print(json.dumps({k: results[k] for k in ("attention", "lookup")}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
