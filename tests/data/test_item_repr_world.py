"""Rewriting a world dir's item embeddings with learned vectors (and the CLI for it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from transact.cli import main
from transact.data.examples import build_split
from transact.data.io import DataError, ItemTable, load_event_arrays, load_manifest
from transact.data.item_repr import ItemReprConfig, learned_mask
from transact.data.item_repr_world import rewrite_item_embeddings

FAST = ItemReprConfig(pair_updates=300_000)


def test_copy_gets_learned_vectors_and_a_manifest_note(tiny_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "learned"
    note = rewrite_item_embeddings(tiny_world, out, method="mf", config=FAST)
    m, old, new = load_manifest(out), ItemTable.load(tiny_world), ItemTable.load(out)
    learned = learned_mask(new.embeddings_np)
    assert note["learned_items"] == int(learned.sum()) > 500
    assert note["cold_items"] == m.n_items - note["learned_items"]
    assert np.allclose(np.linalg.norm(new.embeddings_np[learned], axis=1), 1, atol=1e-5)
    # every other item column is unchanged, and so are the logs
    for column in ("top_interest", "category", "quality", "popularity", "external_id"):
        assert np.array_equal(np.asarray(getattr(old, column)), np.asarray(getattr(new, column)))
    assert (out / "users.parquet").read_bytes() == (tiny_world / "users.parquet").read_bytes()
    for part in ("events", "impressions"):
        files = sorted(p.relative_to(tiny_world) for p in (tiny_world / part).rglob("*"))
        assert files == sorted(p.relative_to(out) for p in (out / part).rglob("*"))
        assert pq.read_table(out / part).equals(pq.read_table(tiny_world / part))
    # the manifest says what was used; the original world is untouched
    assert m.extra["embeddings"] == "learned:mf"
    rep = m.extra["item_representation"]
    assert rep["kind"] == "learned" and rep["method"] == "mf" and rep["cold_start"] == "zero vector"
    assert rep["events"]["actions"] == list(m.actions.positive)
    assert rep["replaced"] == load_manifest(tiny_world).extra.get("embeddings")
    assert "item_representation" not in load_manifest(tiny_world).extra
    # learned vectors put items of one interest together (the world's taxonomy)
    emb, top = new.embeddings_np, new.top_interest
    rows = np.flatnonzero(learned)
    sim = emb[rows] @ emb[rows].T
    np.fill_diagonal(sim, -np.inf)
    same = np.mean(top[rows[sim.argmax(axis=1)]] == top[rows])
    chance = np.mean(np.equal.outer(top[rows], top[rows]))
    assert same > 4 * chance, (same, chance)  # measured 0.79 vs 0.10
    # the dataset still builds examples, which now carry the new vectors
    ex = build_split(out, "eval", seq_len=8)
    assert np.array_equal(ex.item_embeddings[:-1], new.embeddings_np)


def test_only_the_training_window_shapes_the_vectors(tiny_world: Path, tmp_path: Path) -> None:
    """No leakage: the note counts exactly the positive events before the training end, and
    an item first engaged in the evaluation window has no learned vector."""
    m = load_manifest(tiny_world)
    note = rewrite_item_embeddings(tiny_world, tmp_path / "w", method="item2vec", config=FAST)
    train = load_event_arrays(tiny_world, None, m.train_end_ms, actions=m.actions.positive)
    later = load_event_arrays(tiny_world, m.train_end_ms, None, actions=m.actions.positive)
    assert note["events"]["count"] == len(train) and note["events"]["before_ms"] == m.train_end_ms
    eval_only = np.setdiff1d(np.unique(later.item_ids), np.unique(train.item_ids))
    assert eval_only.size > 50
    learned = learned_mask(ItemTable.load(tmp_path / "w").embeddings_np)
    assert not learned[eval_only].any()


def test_in_place_and_other_sizes(tiny_world: Path, tmp_path: Path) -> None:
    world = tmp_path / "w"
    shutil.copytree(tiny_world, world)
    (world / "examples" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="examples holds example sets built with the old"):
        rewrite_item_embeddings(world, method="mf")
    shutil.rmtree(world / "examples")
    rewrite_item_embeddings(world, method="mf", d_item=8, actions=("click", "repin"))
    m = load_manifest(world)
    assert m.d_item == 8 and m.feature_spec.d_item == 8
    assert ItemTable.load(world).embeddings_np.shape == (m.n_items, 8)
    assert m.extra["item_representation"]["events"]["actions"] == ["click", "repin"]
    assert not list(world.glob("*.tmp"))
    with pytest.raises(DataError, match="action 'like' is not in the dataset's vocabulary"):
        rewrite_item_embeddings(world, method="mf", actions=("like",))
    with pytest.raises(FileExistsError, match="manifest.json exists"):
        rewrite_item_embeddings(tiny_world, world, method="mf")


def test_cli_rewrites_and_reports(tiny_world: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["data", "item-embeddings", str(tiny_world), "--method", "mf",
                 "--out", str(out), "--window", "3"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    note = json.loads((out / "manifest.json").read_text())["extra"]["item_representation"]
    assert f"{note['learned_items']:,} items" in printed and "zero vector" in printed
    assert note["config"]["window"] == 3
    assert main(["data", "item-embeddings", str(tiny_world), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["data", "item-embeddings", str(tiny_world), "--out", str(tmp_path / "x"),
                 "--window", "0"]) == 2  # fmt: skip
    assert "--window" in capsys.readouterr().err
    # neither --out nor --in-place
    assert main(["data", "item-embeddings", str(tiny_world)]) == 2
    assert "--out" in capsys.readouterr().err
