from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.fakes import FakeExampleSet, fake_backend
from transact.experiments.backend import TruncatedSource, truncate_batch
from transact.experiments.budget import BUDGETS
from transact.experiments.runner import VariantUnavailable
from transact.experiments.spec import Variant


def test_truncated_batch_is_the_most_recent_prefix():
    full = FakeExampleSet(50, seq_len=20, seed=0)
    batch = next(full.batches(50))
    short = truncate_batch(batch, 5)
    assert short.inputs.action_types.shape == (50, 5)
    assert torch.equal(short.inputs.action_types, batch.inputs.action_types[:, :5])
    assert torch.equal(short.inputs.action_embeddings, batch.inputs.action_embeddings[:, :5])
    assert torch.equal(short.labels, batch.labels)
    with pytest.raises(ValueError, match="sequence length 30"):
        truncate_batch(batch, 30)
    src = TruncatedSource(full, 7)
    assert len(src) == 50
    assert all(
        b.inputs.action_times_ms.shape[1] == 7 for b in src.batches(16, shuffle=True, seed=3)
    )


def test_backend_trains_scores_and_sequence_model_beats_baseline(tmp_path):
    budget = replace(
        BUDGETS["smoke"], train_steps=60, batch_size=128, seq_len=8, fig4_seq_lens=(4, 8)
    )
    backend = fake_backend(budget, tmp_path)
    base = backend.train_and_score(Variant(key="b", label="b", encoder="none"), seed=0).predictions
    scored = backend.train_and_score(Variant(key="t", label="t", encoder="transact"), seed=0)
    ta = scored.predictions
    assert len(base) == len(ta) == 2000
    assert np.array_equal(base.user_ids, ta.user_ids)
    assert np.isfinite(ta.scores).all() and ((ta.scores > 0) & (ta.scores < 1)).all()
    # labels follow candidate . most recent action: only the sequence model can see it
    from transact.evaluation.metrics import roc_auc

    j = ta.heads.index("repin")
    assert (
        roc_auc(ta.labels[:, j], ta.scores[:, j])
        > roc_auc(base.labels[:, j], base.scores[:, j]) + 0.05
    )
    # calibrated on the slice (the fake's training set is not down-sampled: keep rate 1);
    # the returned predictions are the calibrated ones, scored against week 3's labels
    cal = scored.calibration
    assert cal["parameters"]["keep_rate"] == 1.0 and len(cal["parameters"]["platt"]["slope"]) == 3
    for h in ta.heads:
        report = cal["eval"][h]
        assert report["calibrated"]["log_loss"] <= report["raw"]["log_loss"] + 0.005, h
        assert abs(report["calibrated"]["ratio"] - 1) < 0.1, h
        mean = float(ta.scores[:, ta.heads.index(h)].mean())
        assert report["calibrated"]["mean_predicted"] == pytest.approx(mean)
    # a shorter |S| trains on the prefix; a longer one than built is refused
    short = backend.train_and_score(Variant(key="s", label="s", seq_len=4), seed=0)
    assert len(short.predictions) == 2000
    with pytest.raises(VariantUnavailable, match="exceeds"):
        backend.train_and_score(Variant(key="l", label="l", seq_len=50), seed=0)
    # without a batch embedding, the "without PF" row cannot differ from the full model
    with pytest.raises(VariantUnavailable, match="batch user embedding"):
        backend.train_and_score(Variant(key="p", label="p", user_embedding=False), seed=0)
    assert backend.forward_latency_ms(Variant(key="t", label="t"), 64) > 0


def test_finished_runs_are_reused_by_key(tmp_path, monkeypatch):
    budget = replace(BUDGETS["smoke"], train_steps=3, batch_size=256, seq_len=4, fig4_seq_lens=(4,))
    backend = fake_backend(budget, tmp_path)
    first = backend.train_and_score(Variant(key="b", label="b", encoder="none"), seed=0)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    import transact.training.trainer as trainer

    monkeypatch.setattr(trainer, "train", no_training)
    again = fake_backend(budget, tmp_path).train_and_score(
        Variant(key="other_name", label="x", encoder="none"), seed=0
    )
    assert np.array_equal(first.predictions.scores, again.predictions.scores)
    assert again.calibration == first.calibration  # the calibration is cached with the run
    # another seed is another run
    with pytest.raises(AssertionError, match="trained again"):
        backend.train_and_score(Variant(key="b", label="b", encoder="none"), seed=1)


def test_user_subset_keeps_whole_users_and_every_row_once():
    from transact.data.examples import RowSubset
    from transact.experiments.backend import user_subset_rows

    class Columns:
        feature_spec = None
        request_user_ids = np.array([10, 11, 12, 13, 10])  # 5 requests of 4 users
        example_request = np.repeat(np.arange(5), 3)  # 3 examples per request

        def batch(self, rows):
            return rows

    src = Columns()
    assert user_subset_rows(src, 0) is None and user_subset_rows(src, 4) is None
    rows = user_subset_rows(src, 2, seed=1)
    users = src.request_user_ids[src.example_request]
    kept = set(users[rows])
    assert len(kept) == 2
    assert np.array_equal(rows, np.flatnonzero(np.isin(users, list(kept))))  # whole users
    sub = RowSubset(src, rows)
    assert np.array_equal(np.concatenate(list(sub.batches(4))), rows)
    with pytest.raises(ValueError, match="shuffle"):
        next(sub.batches(4, shuffle=True))


def test_every_variant_of_every_experiment_builds_a_ranker(tmp_path):
    """The option names of all tables/figures are the model stage's (no training)."""
    from transact.experiments.suite import TRAINED, experiment_module
    from transact.models import example_feature_spec

    budget = BUDGETS["default"]
    backend = fake_backend(budget, tmp_path)
    seen = 0
    for name in TRAINED:
        spec_ = experiment_module(name).build(budget)
        for variant in (spec_.baseline, *spec_.variants):
            v = variant.resolved(budget.seq_len)
            spec = replace(example_feature_spec("small"), seq_len=v.seq_len)
            model = backend._model(v, spec)
            assert (model.sequence_encoder is None) == (v.encoder == "none")
            seen += 1
    assert seen > 40


def test_embedding_readers_are_the_users_with_a_request_on_the_next_day(tmp_path):
    """Each table a request reads (the day before its own), with exactly its readers."""
    from transact.data.io import date_to_day, read_impressions
    from transact.data.schema import MS_PER_DAY
    from transact.data.world import PRESETS, generate_world
    from transact.experiments.backend import embedding_readers

    data_dir = tmp_path / "w"
    generate_world(data_dir, PRESETS["tiny"], seed=0, preset="tiny", progress=False)
    readers = embedding_readers(data_dir)
    expected: dict[int, set[int]] = {}
    for batch in read_impressions(data_dir, columns=["user_id", "request_time_ms"]):
        for u, t in zip(
            batch.column("user_id").to_pylist(),
            batch.column("request_time_ms").to_pylist(),
            strict=True,
        ):
            expected.setdefault(t // MS_PER_DAY - 1, set()).add(u)
    got = {date_to_day(d): set(users.tolist()) for d, users in readers.items()}
    assert got  # the tiny world has requests after its first logged day
    for day, users in got.items():
        assert users == expected[day]
    first_logged = min(got)
    assert set(expected) - set(got) <= {d for d in expected if d < first_logged}
