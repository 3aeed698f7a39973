import csv
import hashlib
import io
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
from transact.models.artifact import read_model, read_torch_file, write_torch_file
from transact.training.checkpoint import latest_checkpoint, list_checkpoints
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
    saved = read_model(tmp_path / "run" / "model.pt").metadata
    assert saved["k"] == 1 and saved["trained"]["step"] == 64
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
    write_torch_file({"x": torch.ones(3)}, target)
    (tmp_path / "ck" / ".step_000000002.pt.tmp-999").write_bytes(b"torn")  # a killed writer
    assert latest_checkpoint(tmp_path / "ck") == target
    assert torch.equal(read_torch_file(target)[0]["x"], torch.ones(3))


# ---------------------------------------------------------------------------------------
# Damaged checkpoints: verified on resume, fall back to the newest intact one (issue 18)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Parameters of an uninterrupted run (32 steps)."""
    model = make_model()
    train(model, bce_loss, FakeExampleSet(), _cfg(), tmp_path_factory.mktemp("straight"))
    return _params(model)


def _crashed_run(run_dir):
    """A run killed after 23 batches: intact checkpoints at steps 10, 15 and 20."""
    crashing = FakeExampleSet(fail_after_batches=23)
    with pytest.raises(KeyboardInterrupt):
        train(make_model(), bce_loss, crashing, _cfg(keep_checkpoints=3), run_dir)
    found = list_checkpoints(run_dir / "checkpoints")
    assert [step for step, _ in found] == [10, 15, 20]
    return found[-1][1]


def _rewrite(path, data: bytes) -> None:
    """Put ``data`` in place of a checkpoint, and fix its checksum file when there is one
    (someone who can write the run directory can do both)."""
    path.write_bytes(data)
    for sidecar in path.parent.glob(path.name + ".sha256"):
        sidecar.write_text(hashlib.sha256(data).hexdigest() + "\n")


def _truncate(path) -> None:
    data = path.read_bytes()
    with open(path, "wb") as f:  # the checksum file is left as it was: torn by a disk fault
        f.write(data[: len(data) // 2])


def _empty(path) -> None:
    path.write_bytes(b"")


def _junk(path) -> None:
    path.write_bytes(os.urandom(4096))


@pytest.mark.parametrize("damage", [_truncate, _empty, _junk], ids=lambda f: f.__name__[1:])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, straight, damage, capsys):
    """Issue 18: a truncated, empty or junk newest checkpoint made --resume crash."""
    newest = _crashed_run(tmp_path / "run")
    damage(newest)
    resumed = make_model(seed=123)
    res = train(resumed, bce_loss, FakeExampleSet(), _cfg(), tmp_path / "run", resume=True)
    assert res.resumed_from_step == 15 and res.steps == 32
    out = capsys.readouterr().out
    assert "step_000000020.pt" in out and "falling back to" in out
    assert "step_000000015.pt" in out
    b = _params(resumed)
    assert all(torch.equal(straight[k], b[k]) for k in straight)  # same end as no crash


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_not_loaded(tmp_path, straight, capsys):
    newest = _crashed_run(tmp_path / "run")
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"format": 1, "step": 20, "model": _RunsCode(marker)}, buf)
    _rewrite(newest, buf.getvalue())
    resumed = make_model(seed=5)
    res = train(resumed, bce_loss, FakeExampleSet(), _cfg(), tmp_path / "run", resume=True)
    assert not marker.exists(), "resume ran code from a checkpoint file"
    assert res.resumed_from_step == 15
    assert "falling back to" in capsys.readouterr().out


def test_resume_with_every_checkpoint_damaged_says_so(tmp_path):
    _crashed_run(tmp_path / "run")
    for _, path in list_checkpoints(tmp_path / "run" / "checkpoints"):
        _junk(path)
    with pytest.raises(ValueError, match="cannot resume") as err:
        train(make_model(), bce_loss, FakeExampleSet(), _cfg(), tmp_path / "run", resume=True)
    msg = str(err.value)
    assert all(f"step_0000000{s}.pt" in msg for s in (10, 15, 20))


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
