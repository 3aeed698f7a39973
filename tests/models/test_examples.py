import torch

from transact.models import example_feature_spec, example_ranker_inputs


def test_example_inputs_follow_the_schema_conventions():
    spec = example_feature_spec("small")
    x = example_ranker_inputs(spec, 50, seed=2)
    real = x.action_types != 0
    assert not real[0].any()  # row 0: a brand-new user
    assert real.any(dim=1).sum() > 40
    # padding only at the end, with zero embedding and time 0
    assert (real[:, :-1] >= real[:, 1:]).all()
    assert (x.action_embeddings[~real] == 0).all() and (x.action_times_ms[~real] == 0).all()
    # newest first, strictly before the request
    times = torch.where(real, x.action_times_ms, torch.full_like(x.action_times_ms, -1))
    assert (x.action_times_ms[real] < x.request_time_ms[:, None].expand_as(real)[real]).all()
    both = real[:, :-1] & real[:, 1:]
    assert (times[:, :-1][both] > times[:, 1:][both]).all()
    cards = torch.tensor([c.cardinality for c in spec.categorical])
    assert ((x.categorical >= 0) & (x.categorical < cards)).all()
    assert x.action_types.max() < spec.actions.size
    again = example_ranker_inputs(spec, 50, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(x, again, strict=True))
