"""The worked example of docs/data.md, end to end: a short-video log with its own actions.

A generated impression log in the shape of public short-video logs (integer video ids, no
item content, binary label columns ``is_click, long_view, is_like, is_hate``) goes through
``transact data import impressions``, ``transact train`` (baseline and TransAct, heads
click / long_view / like / hate), ``transact evaluate``, ``transact compare`` and the
ranking service, each with the log's own action names.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from transact.cli import main
from transact.data.io import ItemTable, load_event_arrays, load_manifest, read_events
from transact.data.sequences import SequenceBuilder
from transact.data.shortvideo import ShortVideoConfig, write_shortvideo_log
from transact.models.artifact import load_model

ROOT = Path(__file__).resolve().parents[1]
HEADS = ["click", "long_view", "like", "hate"]
TRAIN = ["--set", "train.preset=tiny", "--set", "train.max_steps=40", "--set", "data.seq_len=20"]


def cooccurrence_embeddings(user_ids, item_ids, times_ms, n_items, d_item, method, seed):
    """A stand-in for ``transact.data.item_repr.learn_item_embeddings`` (issue 17's learned
    representations, by another branch), with its signature: SVD of the item x user
    engagement matrix of the training window."""
    users = np.unique(user_ids, return_inverse=True)[1]
    counts = np.zeros((n_items, users.max() + 1 if users.size else 1))
    np.add.at(counts, (item_ids, users), 1.0)
    u, s, _ = np.linalg.svd(np.log1p(counts), full_matrices=False)
    emb = np.zeros((n_items, d_item), np.float32)
    k = min(d_item, s.size)
    emb[:, :k] = u[:, :k] * s[:k]
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-6)


def _cli(*argv: str) -> None:
    assert main([str(a) for a in argv]) == 0


@pytest.mark.slow
def test_a_short_video_log_imports_trains_evaluates_compares_and_serves(tmp_path, monkeypatch):
    log = tmp_path / "log.parquet"
    write_shortvideo_log(log, ShortVideoConfig(n_users=120, n_videos=600, days=8), seed=1)
    # --item-repr learned calls transact.data.item_repr.learn_item_embeddings
    fake = types.ModuleType("transact.data.item_repr")
    fake.learn_item_embeddings = cooccurrence_embeddings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "transact.data.item_repr", fake)
    world = tmp_path / "world"
    _cli(
        "data", "import", "impressions", "--path", log, "--out", world,
        "--user-col", "user_id", "--item-col", "video_id", "--time-col", "time_ms",
        "--labels", "is_click=click,long_view=long_view,is_like=like,is_hate=hate",
        "--negative", "hate", "--main-positive", "like", "--history-days", "2",
        "--item-repr", "learned:item2vec",
    )  # fmt: skip
    m = load_manifest(world)
    assert list(m.heads) == HEADS and m.actions.negative == ("hate",)
    assert m.extra["item_representation"]["kind"] == "learned"
    assert m.train_start_ms == m.start_ms + 2 * 86_400_000  # two days of history
    assert not np.allclose(ItemTable.load(world).embeddings_np, 0)

    runs = {}
    for name in ("baseline", "transact"):
        runs[name] = tmp_path / "runs" / name
        config = ROOT / "configs" / "examples" / f"shortvideo_{name}.toml"
        _cli("train", "--config", config, "--data", world, "--out", runs[name], *TRAIN)
        _cli("evaluate", "--model", runs[name], "--data", world)
        metrics = json.loads((runs[name] / "eval" / "metrics.json").read_text())
        assert list(metrics["heads"]) == HEADS
        assert metrics["utility"] == {"click": 1.0, "long_view": 1.5, "like": 10.0, "hate": -50.0}
        for head in HEADS:
            assert metrics["heads"][head]["all"]["hit_at_3"] is not None
            assert metrics["heads"][head]["all"]["expected_hit_at_3"] is None  # no ground truth
    _, spec, md = load_model(runs["transact"])  # the run config as resolved on the log
    assert list(spec.heads) == HEADS and md["run_config"]["heads"]["names"] == HEADS
    assert md["run_config"]["heads"]["label_weights"]["like"] == {"like": 5.0, "hate": 10.0}
    cmp = tmp_path / "cmp"
    _cli("compare", f"baseline={runs['baseline']}", f"transact={runs['transact']}", "--out", cmp)
    report = json.loads((cmp / "metrics.json").read_text())
    assert report["utility"]["like"] == 10.0  # the models' own utility, from their evaluation
    assert report["heads"] == HEADS and set(report["models"]["transact"]) == set(HEADS)

    # serving: the published TransAct answers /v1/rank with the log's heads, ranked by S
    from transact.serving.app import create_app
    from transact.serving.features import ItemFeatures
    from transact.serving.registry import publish_model
    from transact.serving.service import build_engine

    publish_model(runs["transact"], tmp_path / "models", "v1")
    items = ItemTable.load(world)
    events = load_event_arrays(world, actions=m.actions.engagements)
    parts = build_engine(
        tmp_path / "models",
        lambda spec: ItemFeatures.from_item_table(items, spec),
        sequences=lambda spec: SequenceBuilder(
            events.user_ids, events.item_ids, events.action_types, events.times_ms,
            seq_len=spec.seq_len,
        ),
    )  # fmt: skip
    client = TestClient(create_app(parts.engine))
    user = int(next(read_events(world, columns=["user_id"])).column("user_id")[0].as_py())
    body = {"user_id": user, "candidates": list(range(10)), "request_time_ms": m.end_ms}
    reply = client.post("/v1/rank", json=body)
    assert reply.status_code == 200, reply.text
    got = reply.json()
    assert got["heads"] == HEADS
    assert got["utility"] == {"click": 1.0, "long_view": 1.5, "like": 10.0, "hate": -50.0}
    scores = [item["score"] for item in got["items"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 10
    first = got["items"][0]
    assert set(first["probabilities"]) == set(HEADS)
    s = sum(got["utility"][h] * p for h, p in first["probabilities"].items())
    assert s == pytest.approx(first["score"], rel=1e-4)
