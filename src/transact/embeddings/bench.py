"""Benchmark: daily user-embedding generation throughput (users/s) and memory.

Synthesizes long-tailed user histories (no world needed), then runs the production path
(:func:`transact.embeddings.generate.generate_embeddings`: per-shard slice, length-bucketed
encoding, atomic Parquet parts) over ``--users`` users, and the plain reference path
(every user padded to ``max_seq_len``, :func:`encode_users_reference`) over a subset, in
the same run. Reports users/s of both, their ratio, peak RSS, and the extrapolated time for
10^6 users (generation is linear in users at bounded memory: one shard at a time), both
from wall time and from CPU time (users per CPU-second, less sensitive to a busy machine).

    python benchmarks/bench_embed_generate.py --users 20000 --json runs/bench/embed_generate.json

``benchmarks/bench_embed_generate.py`` and ``python -m transact.embeddings.bench`` run
:func:`main`.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Sequence

import numpy as np
import torch

from transact.arguments import (
    ArgumentParser,
    output_file,
    positive_float,
    positive_int,
    run_command,
)
from transact.data.io import day_end_ms
from transact.data.schema import padded_embedding_table
from transact.embeddings.generate import encode_users, encode_users_reference, generate_embeddings
from transact.embeddings.histories import build_histories, last_actions
from transact.embeddings.store import read_date
from transact.embeddings.train import LoadedPinnerFormer, preset
from transact.models.pinnerformer import ItemTower, PinnerFormerEncoder

DATE = "2026-01-20"


def synth_histories(n_users: int, n_items: int, median_len: float, seed: int):
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(median_len), 1.0, n_users).astype(np.int64), 1, 600)
    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    n = len(users)
    end = day_end_ms(DATE)
    times = end - 1 - rng.integers(0, 28 * 86_400_000, n)
    return build_histories(users, rng.integers(0, n_items, n), rng.integers(2, 6, n), times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's flags (synthetic users and items, sharding, threads)."""
    parser.add_argument("--users", type=positive_int, default=20_000)
    parser.add_argument("--reference-users", type=positive_int, default=2_000)
    parser.add_argument("--items", type=positive_int, default=30_000)
    parser.add_argument("--median-len", type=positive_float, default=60.0)
    parser.add_argument("--shards", type=positive_int, default=16)
    parser.add_argument("--batch-size", type=positive_int, default=512)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--json", type=output_file, default=None, help="write the results here")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags of :func:`add_arguments` and :func:`run` the benchmark."""
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return run_command(parser, argv)


def run(args: argparse.Namespace) -> int:
    """Measure, print and (with ``--json``) write the figures."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = preset("demo")
    model = LoadedPinnerFormer(
        PinnerFormerEncoder(config.model).eval(),
        ItemTower(config.model).eval(),
        config,
        "bench",
        DATE,
    )
    item_content = (
        np.random.default_rng(1).normal(size=(args.items, config.model.d_item)).astype(np.float32)
    )
    t0 = time.perf_counter()
    hist = synth_histories(args.users, args.items, args.median_len, seed=0)
    synth_s = time.perf_counter() - t0
    rss_before = peak_rss_mb()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        c0 = time.process_time()
        generate_embeddings(
            "",
            model,
            DATE,
            tmp,
            n_shards=args.shards,
            histories=hist,
            item_content=item_content,
            batch_size=args.batch_size,
            progress=True,
        )
        fast_s = time.perf_counter() - t0
        fast_cpu_s = time.process_time() - c0
        rss_generate = peak_rss_mb()
        written_users = len(read_date(tmp, DATE)[0])

    content = padded_embedding_table(item_content)
    sub = hist.select_users(np.arange(min(args.reference_users, hist.n_users)))
    types, items, times, lengths = last_actions(sub, day_end_ms(DATE), config.model.max_seq_len)
    t0 = time.perf_counter()
    fast_sub = encode_users(model.encoder, content, types, items, times, lengths, args.batch_size)
    fast_sub_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = np.concatenate(
        [
            encode_users_reference(
                model.encoder,
                content,
                types[i : i + args.batch_size],
                items[i : i + args.batch_size],
                times[i : i + args.batch_size],
            )
            for i in range(0, len(types), args.batch_size)
        ]
    )
    ref_s = time.perf_counter() - t0
    max_abs_diff = float(np.abs(ref - fast_sub).max())

    capped = np.minimum(np.diff(hist.offsets), config.model.max_seq_len)
    result = {
        "users": args.users,
        "users_written": written_users,
        "events": hist.n_events,
        "mean_history_len_capped": float(capped.mean()),
        "max_seq_len": config.model.max_seq_len,
        "model": config.model.to_dict(),
        "threads": args.threads,
        "synth_seconds": synth_s,
        "generate_seconds": fast_s,
        "generate_users_per_s": args.users / fast_s,
        "generate_cpu_seconds": fast_cpu_s,
        "generate_users_per_cpu_s": args.users / fast_cpu_s,
        "peak_rss_mb_after_generate": rss_generate,
        "encode_fast_users_per_s_subset": len(types) / fast_sub_s,
        "encode_reference_users_per_s_subset": len(types) / ref_s,
        "speedup_fast_vs_reference": ref_s / fast_sub_s,
        "max_abs_diff_fast_vs_reference": max_abs_diff,
        "peak_rss_mb_after_synth": rss_before,
        "peak_rss_mb_incl_reference": peak_rss_mb(),
        "extrapolated_seconds_1e6_users": 1e6 / (args.users / fast_s),
        "extrapolated_cpu_seconds_1e6_users": 1e6 / (args.users / fast_cpu_s),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
