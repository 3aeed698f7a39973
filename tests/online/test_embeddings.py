"""Hybrid models online: PinnerFormer's daily tables regenerated from each environment's logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.online.worlds import train_tiny
from transact.embeddings.generate import generate_many
from transact.embeddings.store import DatedUserEmbeddings, read_date
from transact.embeddings.train import preset, train_pinnerformer
from transact.online import ArmSpec, OnlineConfig, RetrainSchedule, simulate

pytestmark = pytest.mark.slow


def test_hybrid_models_read_tables_made_from_the_logs(online_world: Path, tmp_path: Path) -> None:
    ckpt = train_pinnerformer(
        online_world, tmp_path / "pf", preset("tiny", steps=4), progress=False
    )
    offline = tmp_path / "offline-tables"
    dates = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]
    generate_many(online_world, ckpt, dates, offline, n_shards=1, progress=False)
    model = train_tiny(
        online_world, tmp_path / "hybrid", "baseline_small",
        user_embeddings=DatedUserEmbeddings(offline, d_user=64),
    )  # fmt: skip
    arms = (
        ArmSpec("control", "policy:production"),
        ArmSpec("hybrid", str(model), retrain=RetrainSchedule.parse("days:1")),
    )
    without = OnlineConfig(str(online_world), arms, days=2, pre_days=2, progress=False)
    with pytest.raises(ValueError, match="--user-embedding-model"):
        simulate(without, tmp_path / "refused")
    cfg = OnlineConfig(
        str(online_world), arms, days=2, pre_days=2, progress=False, retrain_steps=2,
        window_days=2, user_embedding_model=str(ckpt),
    )  # fmt: skip
    result = simulate(cfg, tmp_path / "run")
    env = result.environments["buckets"]
    # the first online day reads the last offline day's; each day makes the next one's; the
    # retrain at day 1 needs the tables its window's requests read
    assert env["user_embedding_tables"] == ["2026-01-08", "2026-01-09", "2026-01-07", "2026-01-10"]
    tables = tmp_path / "run" / "buckets" / "user_embeddings"
    users_a, emb_a, _ = read_date(tables, "2026-01-08")
    users_b, emb_b, _ = read_date(offline, "2026-01-08")
    assert np.array_equal(users_a, users_b)  # the same events as the offline world's
    np.testing.assert_allclose(emb_a, emb_b, atol=1e-6)
    users_c, emb_c, _ = read_date(tables, "2026-01-09")  # the online day's actions moved them
    common = np.intersect1d(users_a, users_c)
    moved = np.abs(
        emb_c[np.searchsorted(users_c, common)] - emb_a[np.searchsorted(users_a, common)]
    )
    assert (moved.max(axis=1) > 1e-4).sum() > 10
    assert result.arm("hybrid").scoring["degraded"] == {}
    assert [r.day for r in result.retrains] == [1]
