"""Arms score a round through the serving code: batched equals per request, policies by rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transact.data.io import ItemTable, UserTable
from transact.data.world import ProductionRanker
from transact.features.reader import SequenceReader
from transact.online.config import ArmSpec, OnlineConfig
from transact.online.replay import replay_offline
from transact.online.scoring import PolicyScorer, candidate_rows, load_served, model_scorer
from transact.online.stream import backfill
from transact.serving.features import UserTableAttributes
from transact.serving.ranker import InferenceOptions
from transact.serving.registry import publish_model


def test_candidate_rows_index_the_round() -> None:
    class Round:
        offsets = np.array([0, 3, 5, 9])

    offsets, index = candidate_rows(Round(), np.array([2, 0]))  # type: ignore[arg-type]
    assert offsets.tolist() == [0, 4, 7]
    assert index.tolist() == [5, 6, 7, 8, 0, 1, 2]


@pytest.mark.slow
def test_batched_scoring_equals_the_per_request_service_path(
    online_world: Path, online_models: dict[str, Path], tmp_path: Path
) -> None:
    end = replay_offline(online_world, pre_days=1, progress=False)
    served = load_served(online_models["transact"], InferenceOptions())
    from transact.features.store import RocksDBSequenceStore

    backfill(online_world, tmp_path / "seq", served.spec.seq_len)
    store = RocksDBSequenceStore(str(tmp_path / "seq"))
    items, attrs = ItemTable.load(online_world), UserTableAttributes(UserTable.load(online_world))
    scorers = [
        model_scorer(
            served,
            items,
            SequenceReader(store, served.spec.seq_len),
            attrs,
            None,
            {"click": 1.0, "repin": 2.0, "hide": -5.0},
            {"surface": 1},
            500,
            per_request,
        )  # fmt: skip
        for per_request in (False, True)
    ]
    env = end.env.fork()
    env.start_day(end.n_days)
    requests = env.next_requests()
    assert requests is not None
    rows = np.arange(0, requests.n_requests, 2)  # every other request: a subset of the round
    batched, single = (s.score(env, requests, rows) for s in scorers)
    assert batched.shape == (candidate_rows(requests, rows)[1].size,)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)
    assert scorers[0].stats.forwards >= 2  # split at 500 candidates
    assert scorers[1].stats.forwards == rows.size
    store.close()

    # a policy scores the rows as it would score them in the whole round
    policy = PolicyScorer("production")
    full = ProductionRanker().score(env, requests)
    assert np.array_equal(
        policy.score(env, requests, rows), full[candidate_rows(requests, rows)[1]]
    )


@pytest.mark.slow
def test_models_load_as_deployed(online_models: dict[str, Path], tmp_path: Path) -> None:
    run = online_models["baseline"]
    publish_model(run / "model.pt", tmp_path / "models", "v1")
    publish_model(run / "model.pt", tmp_path / "models", "v2")
    options = InferenceOptions()
    for path in (run, run / "model.pt", tmp_path / "models" / "v1", tmp_path / "models"):
        served = load_served(path, options)
        assert served.metadata["run_config"]["name"] == "baseline"
    assert load_served(tmp_path / "models", options).source.endswith("v2")  # the newest
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_served(tmp_path / "nothing", options)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a run"):
        load_served(tmp_path / "empty", options)


def test_a_model_reading_a_batch_user_embedding_is_refused_with_the_reason(
    online_world: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from transact.data.io import load_manifest
    from transact.online.simulator import simulate
    from transact.serving.synthetic import write_model_file

    spec = replace(load_manifest(online_world).feature_spec, d_user=8, seq_len=20)
    model = write_model_file(tmp_path / "pf" / "model.pt", spec)
    cfg = OnlineConfig(str(online_world), (ArmSpec("a", str(model)),), days=1, pre_days=1,
                       progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"arm a .*d_user=8.*no-user-embeddings"):
        simulate(cfg, tmp_path / "out")
