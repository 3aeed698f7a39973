import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.fakes import FakeExampleSet, FakeRanker, bce_loss, make_model
from transact.training.config import TrainConfig
from transact.training.distributed import init_distributed
from transact.training.trainer import steps_per_epoch, train


def ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank of the 2-process CPU DDP test: train, then save params and served batches."""
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_steps_per_epoch_shards_batches_like_distributed_sampler():
    assert steps_per_epoch(256, 16, 1) == 16
    assert steps_per_epoch(256, 16, 2) == 8
    assert steps_per_epoch(250, 16, 3) == 5  # 16 batches over 3 ranks: 1 waits


@pytest.mark.slow
def test_two_cpu_processes_stay_in_sync_on_disjoint_shards(tmp_path):
    mp.spawn(ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for name, p0 in r0["params"].items():
        assert torch.equal(p0, r1["params"][name]), name
    torch.manual_seed(0)
    init = FakeRanker().state_dict()
    assert not torch.equal(init["net.0.weight"], r0["params"]["net.0.weight"])  # it trained
    s0, s1 = set(r0["served"]), set(r1["served"])
    # each rank builds the shared order but only its own batches are consumed: 8 per epoch
    mine0 = {b for b in s0 if b[1] % 2 == 0}
    mine1 = {b for b in s1 if b[1] % 2 == 1}
    assert len(mine0) == len(mine1) == 16
    assert mine0.isdisjoint(mine1)
    assert {b for _, b in mine0 | mine1} == set(range(16))
    summary = (tmp_path / "run" / "train_summary.json").read_text()
    assert '"world_size": 2' in summary and '"steps": 16' in summary
