"""The trainer's fast path (``TrainConfig.training_path = "fast"``) trains the same model:
one optimizer step against the plain path, and an exact resume with dropout on."""

import math
from dataclasses import replace

import pytest
import torch

from tests.fakes import FakeExampleSet
from transact.data.schema import MS_PER_HOUR
from transact.models import Pinnability, PinnabilityConfig
from transact.pipeline.run import build_loss
from transact.training.config import TrainConfig
from transact.training.prefetch import batch_to
from transact.training.trainer import optimizer_step, train


def _ranker(spec, seed=0, **encoder_overrides):
    torch.manual_seed(seed)
    config = PinnabilityConfig.preset("small", encoder_overrides=encoder_overrides)
    return Pinnability(spec, config)


def _step(model, batch, path, seed):
    config = TrainConfig.preset("tiny", training_path=path, device="cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.peak_lr)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss_fn = build_loss(model.spec, {"label_weights": "standard"})
    from transact.models.fast_training import FastTrainingOptions, set_fast_training

    set_fast_training(model, FastTrainingOptions() if path == "fast" else None)
    model.train()
    torch.manual_seed(seed)
    loss, norm = optimizer_step(model, loss_fn, batch, optimizer, scaler, config, params)
    # the gradients the step used (clipped; optimizer_step leaves them in .grad)
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters()}, float(norm)


def test_one_fast_step_equals_one_plain_step_in_fp32():
    data = FakeExampleSet(n=256, seq_len=12)
    # ages 2 days apart: a window of up to 5 days hides some actions of some rows
    batch = data.batch(torch.arange(96))
    spec = data.feature_spec
    plain_model = _ranker(spec, dropout=0.0, time_window_max_ms=120 * MS_PER_HOUR)
    fast_model = _ranker(spec, dropout=0.0, time_window_max_ms=120 * MS_PER_HOUR)
    loss_p, grads_p, norm_p = _step(plain_model, batch, "plain", seed=3)
    loss_f, grads_f, norm_f = _step(fast_model, batch, "fast", seed=3)
    assert loss_f == pytest.approx(loss_p, rel=1e-6, abs=1e-6)
    assert norm_f == pytest.approx(norm_p, rel=1e-5)
    scale = max(float(g.abs().max()) for g in grads_p.values())
    for name, grad in grads_p.items():  # every parameter's gradient, from the same weights
        torch.testing.assert_close(grads_f[name], grad, rtol=1e-4, atol=1e-6 * scale, msg=name)


def test_the_fast_path_resumes_bit_identically_with_dropout(tmp_path):
    config = TrainConfig.preset(
        "tiny", batch_size=32, epochs=1.0, checkpoint_every_steps=3, device="cpu"
    )
    assert config.training_path == "fast"
    straight = _ranker(FakeExampleSet().feature_spec)
    loss_fn = build_loss(straight.spec, {"label_weights": "standard"})
    train(straight, loss_fn, FakeExampleSet(n=256), config, tmp_path / "a")
    crashing = _ranker(FakeExampleSet().feature_spec)
    with pytest.raises(KeyboardInterrupt):
        train(crashing, loss_fn, FakeExampleSet(n=256, fail_after_batches=5), config,
              tmp_path / "b")  # fmt: skip
    resumed = _ranker(FakeExampleSet().feature_spec, seed=9)
    res = train(resumed, loss_fn, FakeExampleSet(n=256), config, tmp_path / "b", resume=True)
    assert res.resumed_from_step == 3 and res.steps == 8
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert straight.sequence_encoder.fast_training is None  # the trainer put it back


def test_resume_refuses_a_changed_training_path(tmp_path):
    config = TrainConfig.preset("tiny", batch_size=64, epochs=1.0, device="cpu")
    model = _ranker(FakeExampleSet().feature_spec)
    loss_fn = build_loss(model.spec, {"label_weights": "standard"})
    train(model, loss_fn, FakeExampleSet(n=128), config, tmp_path / "r")
    with pytest.raises(ValueError, match="training_path 'fast' -> 'plain'"):
        train(model, loss_fn, FakeExampleSet(n=128), replace(config, training_path="plain"),
              tmp_path / "r", resume=True)  # fmt: skip
    with pytest.raises(ValueError, match="training_path"):
        TrainConfig(training_path="quick")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_matches_the_cpu_step_and_runs_end_to_end(tmp_path):
    data = FakeExampleSet(n=256, seq_len=12)
    batch = data.batch(torch.arange(96))
    spec = data.feature_spec
    # the 24 h window hides none of these actions (2 days apart): the CUDA generator's
    # different draw changes nothing, and without dropout both steps compute the same
    cpu_model = _ranker(spec, dropout=0.0)
    gpu_model = _ranker(spec, dropout=0.0).cuda()
    loss_c, grads_c, _ = _step(cpu_model, batch, "fast", seed=3)
    loss_g, grads_g, _ = _step(gpu_model, batch_to(batch, torch.device("cuda")), "fast", seed=3)
    assert loss_g == pytest.approx(loss_c, rel=1e-4, abs=1e-5)
    scale = max(float(g.abs().max()) for g in grads_c.values())
    for name, grad in grads_c.items():
        torch.testing.assert_close(
            grads_g[name].cpu(), grad, rtol=1e-3, atol=1e-5 * scale, msg=name
        )
    config = TrainConfig.preset("tiny", batch_size=32, epochs=1.0, device="cuda")
    model = _ranker(spec)
    loss_fn = build_loss(spec, {"label_weights": "standard"})
    res = train(model, loss_fn, FakeExampleSet(n=256, seq_len=12), config, tmp_path / "gpu")
    assert res.steps == 8 and math.isfinite(res.final_loss)
    assert next(model.parameters()).device.type == "cuda"
