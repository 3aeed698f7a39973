"""Tiny stand-ins for the example set and the ranker, so trainer tests run in seconds."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from transact.data.schema import LabeledBatch, RankerInputs

N_NUM, D_ITEM, SEQ, HEADS = 4, 4, 3, 3


class FakeExampleSet:
    """``n`` examples whose labels follow a fixed logistic model of the inputs."""

    def __init__(self, n: int = 512, seed: int = 0, fail_after_batches: int | None = None):
        rng = np.random.default_rng(seed)
        self.numerical = rng.normal(size=(n, N_NUM)).astype(np.float32)
        self.candidate = rng.normal(size=(n, D_ITEM)).astype(np.float32)
        w = rng.normal(size=(N_NUM + D_ITEM, HEADS))
        logits = np.concatenate([self.numerical, self.candidate], 1) @ w - 1.0
        self.labels = (rng.random((n, HEADS)) < 1 / (1 + np.exp(-logits))).astype(np.float32)
        self.user_ids = np.arange(n) // 8
        self.fail_after_batches = fail_after_batches
        self.served: list[tuple[int, int]] = []  # (seed, batch index) of every yielded batch

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0, start: int = 0
    ) -> Iterator[LabeledBatch]:
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        for a in range(start, n, batch_size):  # ``start`` is an example offset, as ExampleSet
            if self.fail_after_batches is not None and len(self.served) >= self.fail_after_batches:
                raise KeyboardInterrupt("simulated crash")
            self.served.append((seed, a // batch_size))
            yield self.make_batch(order[a : a + batch_size])

    def make_batch(self, idx: np.ndarray) -> LabeledBatch:
        b = len(idx)
        inputs = RankerInputs(
            categorical=torch.zeros(b, 1, dtype=torch.long),
            numerical=torch.from_numpy(self.numerical[idx]),
            candidate_embedding=torch.from_numpy(self.candidate[idx]),
            user_embedding=torch.zeros(b, 2),
            action_types=torch.ones(b, SEQ, dtype=torch.long),
            action_embeddings=torch.zeros(b, SEQ, D_ITEM),
            action_times_ms=torch.zeros(b, SEQ, dtype=torch.long),
            request_time_ms=torch.zeros(b, dtype=torch.long),
        )
        return LabeledBatch(
            inputs=inputs,
            labels=torch.from_numpy(self.labels[idx]),
            user_ids=torch.from_numpy(self.user_ids[idx]),
            request_ids=torch.from_numpy(idx.astype(np.int64) // 4),
            item_ids=torch.from_numpy(idx.astype(np.int64)),
            is_core=torch.from_numpy(idx % 2 == 0),
            top_interest=torch.from_numpy(idx.astype(np.int64) % 5),
            gt_probs=torch.full((b, HEADS), float("nan")),
        )


class FakeRanker(torch.nn.Module):
    """MLP over numerical + candidate embedding, with dropout so RNG state matters."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(N_NUM + D_ITEM, 16),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(16, HEADS),
        )

    def forward(self, inputs: RankerInputs) -> torch.Tensor:
        return self.net(torch.cat([inputs.numerical, inputs.candidate_embedding], dim=1))


def bce_loss(logits: torch.Tensor, batch: LabeledBatch) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)


def make_model(seed: int = 0) -> FakeRanker:
    torch.manual_seed(seed)
    return FakeRanker()


def ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank of the 2-process CPU DDP test: train, then save params and served batches."""
    import os

    import torch.distributed as dist

    from transact.training.config import TrainConfig
    from transact.training.distributed import init_distributed
    from transact.training.trainer import train

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    data = FakeExampleSet(n=256)
    model = make_model(seed=rank)  # different init on purpose: DDP must broadcast rank 0's
    cfg = TrainConfig(
        batch_size=16,
        epochs=2.0,
        peak_lr=0.01,
        warmup_steps=2,
        checkpoint_every_steps=0,
        progress=False,
        device="cpu",
    )
    train(model, bce_loss, data, cfg, f"{out_dir}/run", dist_ctx=ctx)
    torch.save({"params": model.state_dict(), "served": data.served}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()
