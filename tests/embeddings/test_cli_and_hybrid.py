import json

import numpy as np

from transact.cli import main
from transact.data.io import date_to_day
from transact.data.schema import MS_PER_DAY, UserEmbeddingSource
from transact.embeddings import ensure_user_embeddings
from transact.embeddings.store import RocksDictUserEmbeddings, complete_dates, read_date


def test_embed_commands_end_to_end(toy_world, tmp_path, capsys):
    root, _ = toy_world
    out = tmp_path / "pf"
    assert (
        main(
            [
                "embed",
                "train",
                "--data",
                str(root),
                "--out",
                str(out),
                "--preset",
                "tiny",
                "--steps",
                "5",
            ]
        )
        == 0
    )
    model = out / "pinnerformer.pt"
    assert model.exists()
    assert (
        main(
            [
                "embed",
                "generate",
                "--data",
                str(root),
                "--model",
                str(model),
                "--date",
                "2026-01-05",
                "--shards",
                "3",
            ]
        )
        == 0
    )
    assert complete_dates(out / "user_embeddings") == ["2026-01-05"]
    report = tmp_path / "recall.json"
    assert (
        main(
            [
                "embed",
                "evaluate",
                "--data",
                str(root),
                "--model",
                str(model),
                "--k",
                "5",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    result = json.loads(report.read_text())
    assert result["date"] == "2026-01-07"  # the model's last training day (manifest: 3 held out)
    assert "recall@5=" in capsys.readouterr().out
    assert (
        main(
            [
                "embed",
                "export",
                "--root",
                str(out / "user_embeddings"),
                "--db",
                str(tmp_path / "kv"),
            ]
        )
        == 0
    )
    kv = RocksDictUserEmbeddings(tmp_path / "kv")
    users, emb, _ = read_date(out / "user_embeddings", "2026-01-05")
    t = np.full(len(users), (date_to_day("2026-01-06") * MS_PER_DAY) + 100)
    np.testing.assert_array_equal(kv.lookup(users, t), emb)
    kv.close()
    assert main(["embed"]) == 2


def test_ensure_user_embeddings_trains_once_and_serves_every_day(toy_world, tmp_path):
    root, _ = toy_world
    source = ensure_user_embeddings(root, tmp_path, preset="tiny", seed=0, progress=False)
    assert isinstance(source, UserEmbeddingSource) and source.d_user == 64
    assert source.dates == [f"2026-01-{d:02d}" for d in range(1, 10)]  # all days but the last
    ckpt = next(tmp_path.glob("model-tiny-s0-*/pinnerformer.pt"))
    mtime = ckpt.stat().st_mtime_ns
    again = ensure_user_embeddings(root, tmp_path, preset="tiny", seed=0, progress=False)
    assert ckpt.stat().st_mtime_ns == mtime  # cached, not retrained
    # a request on day d reads the table of d - 1
    day = date_to_day("2026-01-05")
    got = again.lookup(np.array([4]), np.array([day * MS_PER_DAY + 3_600_000]))
    users, emb, _ = read_date(ckpt.parent / "user_embeddings", "2026-01-04")
    np.testing.assert_array_equal(got[0], emb[np.searchsorted(users, 4)])
    assert np.abs(np.linalg.norm(got[0]) - 1) < 1e-5
