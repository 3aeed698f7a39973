import numpy as np
import pytest


def test_calibration_slice_is_the_randomized_end_of_the_training_window(tmp_path):
    """On the tiny world: the slice ends where training ends, keeps every impression of
    its days' randomized requests (no down-sampling), is cut to whole requests, and the
    keep rate of a down-sampled training set is kept / all negatives."""
    from transact.data.examples import build_example_set
    from transact.data.io import load_manifest
    from transact.data.world import PRESETS, generate_world
    from transact.experiments.calibration import calibration_slice, keep_rate_of
    from transact.experiments.datasets import PreparedDataset

    data_dir = tmp_path / "w"
    generate_world(data_dir, PRESETS["tiny"], seed=0, preset="tiny", progress=False)
    m = load_manifest(data_dir)
    data = PreparedDataset("tiny", data_dir, m)
    examples, rows, info = calibration_slice(
        data, seq_len=4, user_embeddings=None, max_examples=1500
    )
    assert info["window_ms"][1] == m.train_end_ms
    assert info["window_ms"][0] >= m.train_start_ms
    assert examples.meta["negative_ratio"] is None  # every impression of those days
    assert examples.randomized.all() and info["requests"] == "randomized"  # no position effect
    assert examples.meta["negatives_kept"] == examples.meta["negatives"]
    assert rows is not None and 0 < len(rows) <= 1500
    kept_requests = np.unique(examples.example_request[rows])
    assert np.array_equal(rows, np.flatnonzero(np.isin(examples.example_request, kept_requests)))
    assert info["examples"] == len(rows)

    train = build_example_set(
        data_dir, m.train_start_ms, m.train_end_ms, seq_len=4, negative_ratio=1.0, seed=0
    )
    q = keep_rate_of(train)
    assert q == pytest.approx(train.meta["negatives_kept"] / train.meta["negatives"])
    assert 0 < q < 0.5
    assert keep_rate_of(examples) == 1.0
