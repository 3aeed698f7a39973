import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fakes import FakeExampleSet, bce_loss, make_model
from transact.training.checkpoint import atomic_torch_save, latest_checkpoint, list_checkpoints
from transact.training.config import TrainConfig
from transact.training.trainer import train

ROOT = Path(__file__).resolve().parents[2]  # the repository: `tests` imports from here


def _cfg(**kw):
    base = dict(
        batch_size=32,
        epochs=2.0,
        peak_lr=0.01,
        warmup_steps=4,
        checkpoint_every_steps=5,
        keep_checkpoints=2,
        progress=False,
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_lowers_the_loss_and_logs_every_step(tmp_path):
    data = FakeExampleSet(n=512)
    everything = data.batch(np.arange(512))
    model = make_model()

    def full_loss() -> float:
        with torch.no_grad():
            return float(bce_loss(model.eval()(everything.inputs), everything))

    before = full_loss()
    res = train(model, bce_loss, data, _cfg(epochs=4.0), tmp_path / "run", metadata={"k": 1})
    after = full_loss()
    assert res.steps == 4 * 16 and res.examples == 4 * 512
    assert float(after) < float(before) - 0.05
    rows = _csv_rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 65))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[3] == pytest.approx(0.01) and lrs[-1] < 0.001  # warm-up peak, cosine tail
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    assert saved["metadata"] == {"k": 1} and saved["step"] == 64
    assert len(list_checkpoints(tmp_path / "run" / "checkpoints")) == 2  # pruned to keep=2


def test_resume_after_a_crash_gives_the_same_parameters(tmp_path):
    cfg = _cfg()
    straight = make_model()
    train(straight, bce_loss, FakeExampleSet(), cfg, tmp_path / "a")

    crashing = make_model()
    with pytest.raises(KeyboardInterrupt):
        # crash in epoch 2 (16 batches per epoch) between checkpoints 20 and 25
        train(crashing, bce_loss, FakeExampleSet(fail_after_batches=23), cfg, tmp_path / "b")
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step_000000020.pt"
    resumed = make_model(seed=123)  # weights come from the checkpoint, not from init
    data = FakeExampleSet()
    res = train(resumed, bce_loss, data, cfg, tmp_path / "b", resume=True)
    assert res.resumed_from_step == 20 and res.steps == 32
    assert data.served[0] == (
        1,
        4,
    )  # seed 0 * 1_000_003 + epoch 1, batch 4: the data position resumed
    a, b = _params(straight), _params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = _csv_rows(tmp_path / "b" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 33))  # no duplicated steps


def test_resume_refuses_a_changed_run(tmp_path):
    train(make_model(), bce_loss, FakeExampleSet(), _cfg(epochs=1.0), tmp_path / "r")
    with pytest.raises(ValueError, match="batch_size 32 -> 64"):
        train(
            make_model(),
            bce_loss,
            FakeExampleSet(),
            _cfg(epochs=1.0, batch_size=64),
            tmp_path / "r",
            resume=True,
        )


def test_bf16_autocast_on_cpu_trains(tmp_path):
    model = make_model()
    res = train(
        model,
        bce_loss,
        FakeExampleSet(n=128),
        _cfg(precision="bf16", epochs=1.0),
        tmp_path / "bf16",
    )
    assert res.steps == 4 and torch.isfinite(torch.tensor(res.final_loss))
    with pytest.raises(ValueError, match="fp16' needs CUDA"):
        train(
            make_model(), bce_loss, FakeExampleSet(n=128), _cfg(precision="fp16"), tmp_path / "fp16"
        )


def test_atomic_save_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "ck" / "step_000000001.pt"
    atomic_torch_save({"x": torch.ones(3)}, target)
    (tmp_path / "ck" / ".step_000000002.pt.tmp-999").write_bytes(b"torn")  # a killed writer
    assert latest_checkpoint(tmp_path / "ck") == target
    assert torch.equal(torch.load(target)["x"], torch.ones(3))


_SCRIPT = """
from tests.fakes import FakeExampleSet, bce_loss, make_model
from transact.training.config import TrainConfig
from transact.training.trainer import train
cfg = TrainConfig(batch_size=16, epochs=3.0, peak_lr=0.01, warmup_steps=4,
                  checkpoint_every_steps=1, keep_checkpoints=2, progress=False, device="cpu")
train(make_model(), bce_loss, FakeExampleSet(n=256), cfg, {run!r}, resume=True)
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_straight_run(tmp_path):
    cfg = TrainConfig(
        batch_size=16,
        epochs=3.0,
        peak_lr=0.01,
        warmup_steps=4,
        checkpoint_every_steps=1,
        keep_checkpoints=2,
        progress=False,
        device="cpu",
    )
    straight = make_model()
    train(straight, bce_loss, FakeExampleSet(n=256), cfg, tmp_path / "straight")

    run = tmp_path / "killed"
    script = _SCRIPT.format(run=str(run))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills = 0
    for delay_steps in (3, 17):  # kill while it writes checkpoints, at two different steps
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            found = list_checkpoints(run / "checkpoints")
            if found and found[-1][0] >= delay_steps:
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    resumed = make_model(seed=99)
    res = train(resumed, bce_loss, FakeExampleSet(n=256), cfg, run, resume=True)
    assert res.steps == 48 and res.resumed_from_step > 0
    a, b = _params(straight), _params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
