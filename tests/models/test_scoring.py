"""Scoring with each request's user once equals the plain model's row-by-row scores."""

import pytest
import torch

from tests.models.model_testing import make_inputs, make_spec
from transact.data.schema import RankerInputs
from transact.models import Pinnability, PinnabilityConfig
from transact.models.fast_transact import FastTransAct
from transact.models.fast_transact.per_user import PerUserFastTransAct
from transact.models.scoring import USER_FIELDS, group_by_request, scoring_model

SPEC = make_spec(seq_len=20)


def requests(n_users: int = 6, n_rows: int = 40, seed: int = 0):
    """``n_rows`` candidate rows of ``n_users`` requests, rows of a request interleaved,
    every row carrying its request's user fields (as an evaluation batch does)."""
    users = make_inputs(SPEC, batch_size=n_users, seed=seed)  # user 0 has no history
    cands = make_inputs(SPEC, batch_size=n_rows, seed=seed + 1)
    g = torch.Generator().manual_seed(seed)
    user_index = torch.randint(0, n_users, (n_rows,), generator=g)
    user_index[:n_users] = torch.arange(n_users)  # every request has a row
    fields = cands._asdict()
    for name in USER_FIELDS:
        fields[name] = getattr(users, name)[user_index]
    return RankerInputs(**fields), user_index + 100  # request ids


@pytest.mark.parametrize(
    "encoder", ["transact", "lstm", "cnn", "avg_pool", "wdl_seq", "vanilla_transformer", "bst"]
)
@pytest.mark.parametrize("threads", [1, 2])
def test_scores_equal_the_plain_model_within_fp32_rounding(encoder, threads):
    torch.manual_seed(0)
    model = Pinnability(SPEC, PinnabilityConfig.preset("small", encoder=encoder)).eval()
    inputs, request_ids = requests()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # 2: the requests are spread over two chunk workers
    try:
        with torch.no_grad():
            plain = torch.sigmoid(model(inputs))
            scorer, reason = scoring_model(model)
            fast = torch.sigmoid(scorer(*group_by_request(inputs, request_ids)))
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    assert (reason is None) == (encoder != "bst")  # BST reads the candidate, no fast path


def test_the_scoring_copy_takes_the_fast_encoder_and_leaves_the_model_alone():
    model = Pinnability(SPEC, PinnabilityConfig.preset("small"))
    scorer, reason = scoring_model(model)
    assert reason is None and isinstance(scorer.sequence_encoder, PerUserFastTransAct)
    assert model.training and not scorer.training
    assert all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in scorer.parameters())
    off_path = Pinnability(
        SPEC, PinnabilityConfig.preset("small", encoder_overrides={"fusion": "append"})
    )
    _, why = scoring_model(off_path)
    assert why == "TransActConfig.fusion='append': need 'concat'"


def test_gpu_scoring_takes_all_users_at_once():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model = Pinnability(SPEC, PinnabilityConfig.preset("small")).eval()
    scorer, _ = scoring_model(model, "cuda")
    assert isinstance(scorer.sequence_encoder, FastTransAct)
    inputs, request_ids = requests()
    with torch.no_grad():
        plain = torch.sigmoid(model(inputs))
        grouped, user_index = group_by_request(inputs.to("cuda"), request_ids.cuda())
        fast = torch.sigmoid(scorer(grouped, user_index)).cpu()
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def test_group_by_request_sends_each_user_once_and_checks_the_rows_agree():
    inputs, request_ids = requests(n_users=4, n_rows=11)
    grouped, user_index = group_by_request(inputs, request_ids)
    assert grouped.action_types.shape[0] == 4 and user_index.shape == (11,)
    for name in USER_FIELDS:
        torch.testing.assert_close(getattr(grouped, name)[user_index], getattr(inputs, name))
    assert grouped.categorical.shape[0] == 11  # candidate fields keep every row
    bad = inputs._replace(action_times_ms=inputs.action_times_ms.clone())
    shared = torch.bincount(request_ids).argmax()  # a request with several rows
    first, row = (int(i) for i in (request_ids == shared).nonzero()[:2, 0])
    bad.action_times_ms[row, 0] += 1
    with pytest.raises(ValueError, match=f"action_times_ms of row {row} differs from row {first}"):
        group_by_request(bad, request_ids)
