import json

import numpy as np
import pytest
import torch

from transact.data.io import DataError, day_end_ms
from transact.data.schema import MS_PER_DAY, ActionVocabulary
from transact.embeddings.histories import load_histories
from transact.embeddings.train import (
    DenseAllActionSampler,
    EmbedTrainConfig,
    default_train_end_date,
    item_log_q,
    load_pinnerformer,
    preset,
    train_pinnerformer,
)


def test_sampler_pairs_anchors_with_future_positives_in_window(toy_world):
    root, _ = toy_world
    config = preset("tiny", future_window_days=2)
    end_ms = day_end_ms("2026-01-07")
    h = load_histories(root, end_time_ms=end_ms)
    vocab = ActionVocabulary()
    sampler = DenseAllActionSampler(h, vocab.positive_ids(), config, end_ms)
    rng = np.random.default_rng(0)
    types, items, times, a_rows, a_pos, targets = sampler.sample(rng)
    assert len(a_rows) > 0
    assert np.all(types[a_rows, a_pos] != 0)  # anchors are real actions
    # reconstruct each row's user from its window's first item/time
    for r, p, target in zip(a_rows, a_pos, targets, strict=True):
        t_anchor = times[r, p]
        u = np.flatnonzero(
            [
                np.any(h.times_ms[h.offsets[i] : h.offsets[i + 1]] == times[r, 0])
                for i in range(h.n_users)
            ]
        )[0]
        sl = slice(h.offsets[u], h.offsets[u + 1])
        ok = (
            (h.item_ids[sl] == target)
            & np.isin(h.action_types[sl], vocab.positive_ids())
            & (h.times_ms[sl] > t_anchor)
            & (h.times_ms[sl] <= t_anchor + 2 * MS_PER_DAY)
            & (h.times_ms[sl] < end_ms)
        )
        assert ok.any(), f"target {target} is not a future positive of anchor at {t_anchor}"
    assert np.bincount(a_rows).max() <= config.anchors_per_user


def test_item_log_q_is_smoothed_log_popularity():
    log_q = item_log_q(np.array([0, 0, 0, 2]), n_items=3)
    counts = np.array([3.5, 0.5, 1.5])
    np.testing.assert_allclose(log_q, np.log(counts / counts.sum()))


def test_training_is_deterministic_and_learns(toy_world, tiny_model, tmp_path):
    root, _ = toy_world
    again = train_pinnerformer(root, tmp_path / "a", preset("tiny"), progress=False)
    first, second = load_pinnerformer(tiny_model), load_pinnerformer(again)
    assert first.model_version == second.model_version
    for a, b in zip(
        first.encoder.state_dict().values(), second.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    other = train_pinnerformer(
        root, tmp_path / "b", preset("tiny", seed=1, steps=5), progress=False
    )
    assert load_pinnerformer(other).model_version != first.model_version
    log = json.loads((tiny_model.parent / "train_log.json").read_text())
    assert log["train_end_date"] == "2026-01-07"  # 10 days, the manifest holds 3 out
    assert log["loss_last20"] < log["loss_first20"] - 0.2


def test_config_validation_and_presets(toy_world):
    root, _ = toy_world
    with pytest.raises(ValueError, match="steps"):
        EmbedTrainConfig(steps=0)
    with pytest.raises(KeyError, match="unknown embedding preset 'huge'"):
        preset("huge")
    cfg = preset("demo", seed=3)
    assert EmbedTrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.future_window_days == 14 and cfg.model.d_user == 64
    assert default_train_end_date(root) == "2026-01-07"  # the day before the eval range
    with pytest.raises(DataError, match="no manifest"):
        default_train_end_date(root / "events")
    with pytest.raises(ValueError, match=r"unknown fields \['eval_days'\]"):
        EmbedTrainConfig.from_dict({**cfg.to_dict(), "eval_days": 7})


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_learns_and_saves_a_cpu_checkpoint(toy_world, tmp_path):
    root, _ = toy_world
    path = train_pinnerformer(root, tmp_path, preset("tiny"), progress=False, device="cuda")
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["loss_last20"] < log["loss_first20"] - 0.2
    model = load_pinnerformer(path)
    assert next(model.encoder.parameters()).device.type == "cpu"
