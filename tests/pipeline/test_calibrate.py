"""The pipeline's calibration: fitted after training on the end of the training window."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.mark.slow
def test_calibrate_model_brings_predicted_rates_to_the_observed_ones(tmp_path):
    """An untrained ranker predicts about 0.5 for every head; fitted on the randomized
    requests at the end of its training window, its calibration brings each head's mean
    predicted probability on that slice to the observed rate (the Platt intercept), and
    records the training set's keep rate and where it was fitted."""
    from transact.data.examples import build_example_set
    from transact.data.io import load_manifest
    from transact.data.world import PRESETS, generate_world
    from transact.evaluation.predictions import predict
    from transact.models import Pinnability, PinnabilityConfig
    from transact.pipeline.calibrate import calibrate_model, calibration_slice, keep_rate_of

    data_dir = tmp_path / "w"
    generate_world(data_dir, PRESETS["tiny"], seed=0, preset="tiny", progress=False)
    m = load_manifest(data_dir)
    train = build_example_set(
        data_dir, m.train_start_ms, m.train_end_ms, seq_len=4, negative_ratio=1.0, seed=0
    )
    torch.manual_seed(0)
    model = Pinnability(train.feature_spec, PinnabilityConfig.preset("small")).eval()
    cal = calibrate_model(
        model,
        data_dir,
        m.train_start_ms,
        m.train_end_ms,
        train_set=train,
        seq_len=4,
        max_examples=3000,
    )
    assert cal.keep_rate == pytest.approx(keep_rate_of(train)) and cal.keep_rate < 0.5
    assert cal.has_platt and cal.fitted_on["window_ms"][1] == m.train_end_ms
    examples, rows, _ = calibration_slice(
        data_dir, m.train_start_ms, m.train_end_ms, seq_len=4, user_embeddings=None,
        max_examples=3000,
    )  # fmt: skip
    rows = np.arange(len(examples)) if rows is None else rows
    preds = predict(model, [examples.batch(rows)], tuple(train.feature_spec.heads))
    observed = preds.labels.mean(axis=0)
    raw = preds.scores.mean(axis=0)
    calibrated = cal.apply(preds.scores).mean(axis=0)
    for h, name in enumerate(preds.heads):
        assert observed[h] > 0, name
        assert abs(raw[h] / observed[h] - 1) > 1.0, name  # the untrained model is far off
        assert calibrated[h] / observed[h] == pytest.approx(1.0, abs=0.1), name
