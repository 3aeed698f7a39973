"""Benchmark: offline realtime-sequence builder vs the plain per-query Python reference.

``benchmarks/bench_sequence_builder.py`` and ``python -m transact.data.bench`` run
:func:`main`.

Builds ``seq_len``-long sequences for ``--queries`` random (user, time) queries over a
synthetic event log and reports queries/s of the vectorized builder (sort once + gather)
and of :func:`build_sequences_reference` on a subsample, plus their ratio, and checks the
two agree on that subsample. The issue's bar: >= 200k queries/s at seq_len 100, 2 cores.

Example::

    OMP_NUM_THREADS=1 python benchmarks/bench_sequence_builder.py --json runs/bench/seq.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np
import torch

from transact.arguments import ArgumentParser, output_file, positive_int, run_command
from transact.data.sequences import SequenceBuilder, build_sequences_reference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's flags (sizes of the synthetic log and of the query sets)."""
    parser.add_argument("--events", type=positive_int, default=2_000_000)
    parser.add_argument("--users", type=positive_int, default=20_000)
    parser.add_argument("--queries", type=positive_int, default=400_000)
    parser.add_argument("--reference-queries", type=positive_int, default=2_000)
    parser.add_argument("--seq-len", type=positive_int, default=100)
    parser.add_argument("--d-item", type=positive_int, default=32)
    parser.add_argument("--json", type=output_file, default=None, help="write the results here")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags of :func:`add_arguments` and :func:`run` the benchmark."""
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return run_command(parser, argv)


def run(args: argparse.Namespace) -> int:
    """Measure, print and (with ``--json``) write the figures; 1 if fast and reference differ."""
    rng = np.random.default_rng(0)
    span = 21 * 86_400_000
    users = rng.integers(0, args.users, args.events)
    items = rng.integers(0, 100_000, args.events)
    actions = rng.integers(1, 6, args.events)
    times = 1_700_000_000_000 + rng.integers(0, span, args.events)
    q_users = rng.integers(0, args.users, args.queries)
    q_times = 1_700_000_000_000 + rng.integers(0, span, args.queries)
    table = torch.randn(100_001, args.d_item)

    t0 = time.perf_counter()
    builder = SequenceBuilder(users, items, actions, times, seq_len=args.seq_len)
    t_sort = time.perf_counter() - t0
    t0 = time.perf_counter()
    seqs = builder.fetch(q_users, q_times)
    t_fetch = time.perf_counter() - t0
    # the example-set path: chunks written into compact preallocated columns
    # (int8 types, int32 items, int64 times), as build_example_set stores them
    chunk = 65_536
    compact = (
        np.empty((args.queries, args.seq_len), np.int8),
        np.empty((args.queries, args.seq_len), np.int32),
        np.empty((args.queries, args.seq_len), np.int64),
    )
    t0 = time.perf_counter()
    for a in range(0, args.queries, chunk):
        b = min(a + chunk, args.queries)
        builder.fetch_numpy(
            q_users[a:b], q_times[a:b], out=(compact[0][a:b], compact[1][a:b], compact[2][a:b])
        )
    t_compact = time.perf_counter() - t0
    # steady state: the same queries in batches of 65,536 into reused int64 buffers
    bufs = tuple(np.empty((chunk, args.seq_len), dtype=np.int64) for _ in range(3))
    t0 = time.perf_counter()
    for a in range(0, args.queries, chunk):
        b = min(a + chunk, args.queries)
        builder.fetch_numpy(
            q_users[a:b], q_times[a:b], out=(bufs[0][: b - a], bufs[1][: b - a], bufs[2][: b - a])
        )
    t_batched = time.perf_counter() - t0
    # include the per-batch embedding gather the trainer does, for a d_item-sized figure
    t0 = time.perf_counter()
    for a in range(0, args.queries, 4096):
        table[seqs.action_item_ids[a : a + 4096]]
    t_gather = time.perf_counter() - t0

    n_ref = min(args.reference_queries, args.queries)
    t0 = time.perf_counter()
    ref = build_sequences_reference(
        users, items, actions, times, q_users[:n_ref], q_times[:n_ref], args.seq_len
    )
    t_ref = time.perf_counter() - t0
    agree = all(torch.equal(f[:n_ref], r) for f, r in zip(seqs, ref, strict=True))

    fast_qps = args.queries / (t_sort + t_fetch)
    ref_qps = n_ref / t_ref
    result = {
        "events": args.events,
        "users": args.users,
        "queries": args.queries,
        "seq_len": args.seq_len,
        "d_item": args.d_item,
        "sort_s": round(t_sort, 3),
        "fetch_s": round(t_fetch, 3),
        "fast_queries_per_s_one_int64_fetch_incl_sort": round(fast_qps),
        "fast_queries_per_s_one_int64_fetch_only": round(args.queries / t_fetch),
        "example_set_path_s": round(t_compact, 3),
        "fast_queries_per_s_example_set_path_incl_sort": round(args.queries / (t_sort + t_compact)),
        "fast_queries_per_s_batched_reused_buffers": round(args.queries / t_batched),
        "gather_embeddings_queries_per_s": round(args.queries / t_gather),
        "reference_queries_per_s": round(ref_qps, 1),
        "speedup_vs_reference": round(fast_qps / ref_qps, 1),
        "reference_agrees": agree,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
