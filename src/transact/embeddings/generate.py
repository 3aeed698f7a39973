"""Daily batch generation of user embeddings: chunked, resumable, shardable across workers.

``generate_embeddings(date=D)`` encodes, for every user with at least one engagement up
to the end of day ``D``, the last ``max_seq_len`` of them, and writes the dated table
``OUT/date=D/part-XXXXX.parquet`` (one part per user shard ``user_id % n_shards``), then
the ``_SUCCESS`` marker. Memory is bounded by one shard's events: each shard is read from
the event files with a filter (or sliced from histories already in memory). A part is
written atomically, so a killed run resumes by skipping the parts that exist.

Distributed: under ``torchrun`` each rank takes shards ``rank, rank + world, ...`` and
writes its own parts; rank 0 writes ``_SUCCESS`` after a barrier (gloo on CPU, NCCL not
needed: ranks exchange nothing but the barrier). Run it with::

    torchrun --nproc_per_node 2 -m transact.embeddings.generate \\
        --data DIR --model runs/pf/pinnerformer.pt --date 2026-01-14 --out runs/pf/user_embeddings

Inference batches users of similar history length together, trims each batch to its
longest history and runs fused causal attention (:func:`encode_users`);
:func:`encode_users_reference` is the plain path that pads everything to ``max_seq_len``
and uses the explicit attention mask, and a test checks the two agree.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from transact.data.io import ItemTable, day_end_ms
from transact.data.schema import padded_embedding_table
from transact.embeddings.histories import UserHistories, last_actions, load_histories
from transact.embeddings.store import (
    complete_dates,
    mark_complete,
    part_exists,
    partition_dir,
    write_part,
)
from transact.embeddings.train import LoadedPinnerFormer, load_pinnerformer
from transact.models.pinnerformer import PinnerFormerEncoder

DEFAULT_SHARDS = 16


@torch.no_grad()
def encode_users(
    encoder: PinnerFormerEncoder,
    content: torch.Tensor,
    types: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    lengths: np.ndarray,
    batch_size: int = 512,
) -> np.ndarray:
    """Fast path: ``[U, L]`` padded histories -> ``[U, d_user]`` float32 user embeddings.

    Sorts users by history length, runs batches of ``batch_size`` trimmed to their
    longest history, and restores the input order. ``content`` is the
    ``[n_items + 1, d_item]`` padded item table. Rows with length 0 are not allowed
    (callers drop users without history: they have no embedding).
    """
    if (lengths <= 0).any():
        raise ValueError(f"user row {int(np.argmax(lengths <= 0))} has an empty history")
    encoder.eval()
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(lengths), encoder.config.d_user), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(lengths[rows].max())
        emb = encoder.user_embedding(
            torch.as_tensor(types[rows, :width]),
            content[torch.as_tensor(items[rows, :width])],
            torch.as_tensor(times[rows, :width]),
        )
        out[rows] = emb.numpy()
    return out


@torch.no_grad()
def encode_users_reference(
    encoder: PinnerFormerEncoder,
    content: torch.Tensor,
    types: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
) -> np.ndarray:
    """Reference path: every user padded to the full ``L``, one batch, input order, explicit
    ``[B, H, L, L]`` attention mask (the encoder's reference attention)."""
    encoder.eval()
    return (
        encoder.user_embedding(
            torch.as_tensor(types),
            content[torch.as_tensor(items)],
            torch.as_tensor(times),
            reference=True,
        )
        .numpy()
        .astype(np.float32)
    )


def shards_of_rank(n_shards: int, rank: int, world_size: int) -> list[int]:
    """Shards ``rank, rank + world_size, ...`` below ``n_shards``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    return list(range(rank, n_shards, world_size))


def _check_part_version(root: Path, date: str, shard: int, version: str) -> None:
    path = partition_dir(root, date) / f"part-{shard:05d}.parquet"
    found = pq.read_table(path, columns=["model_version"]).column("model_version")
    if len(found) and found[0].as_py() != version:
        raise ValueError(
            f"{path} was written by model {found[0].as_py()!r}, not {version!r}: "
            "remove the partition or write to another --out"
        )


def generate_embeddings(
    data_dir: str | Path,
    model: LoadedPinnerFormer | str | Path,
    date: str,
    out_root: str | Path,
    n_shards: int = DEFAULT_SHARDS,
    shards: Sequence[int] | None = None,
    histories: UserHistories | None = None,
    item_content: np.ndarray | None = None,
    batch_size: int = 512,
    resume: bool = True,
    finalize: bool = True,
    progress: bool = True,
    users: np.ndarray | None = None,
) -> Path:
    """Write the user-embedding table of ``date`` under ``out_root``; returns its directory.

    Args:
        data_dir: world directory (events and items).
        model: a loaded model or a checkpoint path.
        date: ``YYYY-MM-DD``; actions up to the end of this day (UTC) are encoded.
        out_root: root of the dated tables (``out_root/date=D/``).
        n_shards: user shards (``user_id % n_shards``); also the number of part files.
        shards: the shards this process writes (default all; a torchrun rank passes its own).
        histories: when given, all users' histories already in memory (sliced per shard,
            events at or after the cutoff ignored) instead of one event scan per shard.
        item_content: ``[n_items, d_item]`` content embeddings (default: read items.parquet).
        batch_size: users per forward pass.
        resume: skip parts already written (by this model version; another version raises).
        finalize: write ``_SUCCESS`` when every shard's part exists.
        progress: show a tqdm bar over shards.
        users: only these user ids (default: every user with history). Offline jobs that
            know who reads the table (the users with a request on the next day) pass them;
            the table then holds exactly its readers, and its ``_SUCCESS`` info says so.
    """
    from tqdm import tqdm

    loaded = model if isinstance(model, LoadedPinnerFormer) else load_pinnerformer(model)
    out_root = Path(out_root)
    wanted = None if users is None else np.unique(np.asarray(users, dtype=np.int64))
    if item_content is None:
        item_content = ItemTable.load(data_dir).embeddings_np
    content = padded_embedding_table(item_content)
    cutoff = day_end_ms(date)
    max_len = loaded.config.model.max_seq_len
    todo = list(range(n_shards)) if shards is None else list(shards)
    for shard in tqdm(todo, desc=f"embed {date}", disable=not progress, unit="shard"):
        if resume and part_exists(out_root, date, shard):
            _check_part_version(out_root, date, shard, loaded.model_version)
            continue
        source = histories
        if source is None:
            source = load_histories(
                data_dir, end_time_ms=cutoff, shard=(shard, n_shards), n_items=len(item_content)
            )
            keep = np.ones(len(source.user_ids), dtype=bool)
        else:
            keep = source.user_ids % n_shards == shard
        if wanted is not None:
            keep &= np.isin(source.user_ids, wanted)
        shard_hist = source if keep.all() else source.select_users(np.flatnonzero(keep))
        types, items, times, lengths = last_actions(shard_hist, cutoff, max_len)
        has = lengths > 0
        user_ids = shard_hist.user_ids[has]
        emb = (
            encode_users(
                loaded.encoder,
                content,
                types[has],
                items[has],
                times[has],
                lengths[has],
                batch_size,
            )
            if has.any()
            else np.zeros((0, loaded.config.model.d_user), np.float32)
        )
        write_part(out_root, date, shard, user_ids, emb, loaded.model_version)
    if finalize and all(part_exists(out_root, date, s) for s in range(n_shards)):
        info: dict = {"model_version": loaded.model_version, "n_shards": n_shards}
        if wanted is not None:
            info["users"] = int(len(wanted))  # a readers-only table, not every user
        mark_complete(out_root, date, info)
    return partition_dir(out_root, date)


def generate_many(
    data_dir: str | Path,
    model: LoadedPinnerFormer | str | Path,
    dates: Sequence[str],
    out_root: str | Path,
    n_shards: int = 4,
    progress: bool = True,
    users_by_date: Mapping[str, np.ndarray] | None = None,
) -> list[str]:
    """Generate every date in ``dates`` not yet complete, reading the events once.

    Keeps all users' engagements in memory (fine for the demo and MovieLens worlds; use
    :func:`generate_embeddings` per date for worlds that do not fit). ``users_by_date``
    restricts a date's table to the given users (its readers); dates it does not name
    get every user.
    """
    from tqdm import tqdm

    loaded = model if isinstance(model, LoadedPinnerFormer) else load_pinnerformer(model)
    done = set(complete_dates(out_root))
    todo = [d for d in dates if d not in done]
    if not todo:
        return []
    item_content = ItemTable.load(data_dir).embeddings_np
    histories = load_histories(
        data_dir, end_time_ms=max(day_end_ms(d) for d in todo), n_items=len(item_content)
    )
    for date in tqdm(todo, desc="embed dates", disable=not progress):
        generate_embeddings(
            data_dir,
            loaded,
            date,
            out_root,
            n_shards=n_shards,
            histories=histories,
            item_content=item_content,
            progress=False,
            users=None if users_by_date is None else users_by_date.get(date),
        )
    return todo


def distributed_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of one torchrun rank (``python -m transact.embeddings.generate``)."""
    parser = argparse.ArgumentParser(
        description="One rank of sharded user-embedding generation (run under torchrun)."
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--date", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    if world_size > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo")
    generate_embeddings(
        args.data,
        args.model,
        args.date,
        args.out,
        n_shards=args.shards,
        shards=shards_of_rank(args.shards, rank, world_size),
        batch_size=args.batch_size,
        finalize=False,
        progress=rank == 0,
    )
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
        if rank == 0:
            _finalize(args)
        dist.barrier()
        dist.destroy_process_group()
    else:
        _finalize(args)
    return 0


def _finalize(args: argparse.Namespace) -> None:
    loaded = load_pinnerformer(args.model)
    missing = [s for s in range(args.shards) if not part_exists(args.out, args.date, s)]
    if missing:
        raise RuntimeError(f"date={args.date}: parts {missing} missing after every rank finished")
    mark_complete(
        args.out, args.date, {"model_version": loaded.model_version, "n_shards": args.shards}
    )


if __name__ == "__main__":
    sys.exit(distributed_main())
