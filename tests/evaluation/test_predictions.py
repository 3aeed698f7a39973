"""``predict``: the optimized scoring of whole requests equals the plain row-by-row one."""

import numpy as np
import torch

from tests.fakes import FakeExampleSet, make_model
from transact.evaluation.predictions import predict
from transact.models import Pinnability, PinnabilityConfig


def test_fast_scoring_equals_plain_scoring_and_keeps_the_rows():
    data = FakeExampleSet(n=300, seq_len=12, items_per_request=10)
    torch.manual_seed(0)
    model = Pinnability(data.feature_spec, PinnabilityConfig.preset("small"))
    heads = tuple(data.feature_spec.heads)
    # batches of 64 cut requests in two: a request split between batches is scored right
    plain = predict(model, data.batches(64), heads, fast=False)
    fast = predict(model, data.batches(64), heads)
    np.testing.assert_allclose(fast.scores, plain.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fast.request_ids, plain.request_ids)
    np.testing.assert_array_equal(fast.labels, plain.labels)
    assert model.training  # put back in its mode


def test_any_other_model_is_scored_row_by_row():
    data = FakeExampleSet(n=64)
    model = make_model()
    preds = predict(model, data.batches(32), ("click", "repin", "hide"))
    with torch.no_grad():
        want = torch.sigmoid(model.eval()(data.batch(np.arange(64)).inputs)).numpy()
    np.testing.assert_allclose(preds.scores, want, rtol=1e-6)
