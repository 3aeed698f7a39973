import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import transact.embeddings.generate as gen
from transact.data.io import ItemTable, day_end_ms
from transact.data.schema import events_schema, padded_embedding_table
from transact.embeddings.histories import last_actions, load_histories
from transact.embeddings.store import complete_dates, read_date
from transact.embeddings.train import load_pinnerformer

DATE = "2026-01-07"


def test_length_bucketed_fast_path_matches_reference(toy_world, tiny_model):
    root, _ = toy_world
    model = load_pinnerformer(tiny_model)
    content = padded_embedding_table(ItemTable.load(root).embeddings_np)
    h = load_histories(root)
    # varied lengths: per-user cutoffs spread over the days
    cutoffs = day_end_ms("2026-01-01") + (np.arange(h.n_users) % 9) * 86_400_000
    types, items, times, lengths = last_actions(h, cutoffs, model.config.model.max_seq_len)
    keep = lengths > 0
    assert len(np.unique(lengths[keep])) > 5
    fast = gen.encode_users(
        model.encoder, content, types[keep], items[keep], times[keep], lengths[keep], batch_size=7
    )
    ref = gen.encode_users_reference(model.encoder, content, types[keep], items[keep], times[keep])
    np.testing.assert_allclose(fast, ref, atol=2e-5)
    with pytest.raises(ValueError, match="user row 0 has an empty history"):
        gen.encode_users(model.encoder, content, types[:1], items[:1], times[:1], np.array([0]))


def test_generation_is_deterministic_and_covers_every_user_with_history(
    toy_world, tiny_model, tmp_path
):
    root, _ = toy_world
    a = gen.generate_embeddings(root, tiny_model, DATE, tmp_path / "a", n_shards=3, progress=False)
    b = gen.generate_embeddings(
        root,
        tiny_model,
        DATE,
        tmp_path / "b",
        n_shards=3,
        progress=False,
        histories=load_histories(root),  # in-memory path, events after the cutoff ignored
    )
    assert complete_dates(tmp_path / "a") == [DATE]
    users_a, emb_a, versions = read_date(tmp_path / "a", DATE)
    users_b, emb_b, _ = read_date(tmp_path / "b", DATE)
    np.testing.assert_array_equal(users_a, users_b)
    np.testing.assert_array_equal(emb_a, emb_b)
    assert versions == [load_pinnerformer(tiny_model).model_version]
    h = load_histories(root, end_time_ms=day_end_ms(DATE))
    np.testing.assert_array_equal(users_a, h.user_ids)
    assert a.name == b.name == f"date={DATE}"


def test_generation_for_a_date_reads_nothing_after_that_day(toy_world, tiny_model, tmp_path):
    root, _ = toy_world
    world = tmp_path / "world"
    shutil.copytree(root, world)
    gen.generate_embeddings(
        world, tiny_model, DATE, tmp_path / "before", n_shards=2, progress=False
    )
    # a burst of new engagements by user 3 right after the end of DATE, and one inside DATE
    day = world / "events" / "day=2026-01-08"
    rows = {
        "event_id": ["x1", "x2"],
        "user_id": [3, 3],
        "item_id": [1, 2],
        "action_type": ["repin", "click"],
        "timestamp_ms": [day_end_ms(DATE), day_end_ms(DATE) + 5],
        "surface": ["homefeed", "homefeed"],
    }
    pq.write_table(pa.table(rows, schema=events_schema()), day / "part-00099.parquet")
    gen.generate_embeddings(world, tiny_model, DATE, tmp_path / "after", n_shards=2, progress=False)
    np.testing.assert_array_equal(
        read_date(tmp_path / "before", DATE)[1], read_date(tmp_path / "after", DATE)[1]
    )
    rows["timestamp_ms"] = [day_end_ms(DATE) - 10, day_end_ms(DATE) - 5]
    inside = world / "events" / f"day={DATE}"
    pq.write_table(pa.table(rows, schema=events_schema()), inside / "part-00099.parquet")
    gen.generate_embeddings(
        world, tiny_model, DATE, tmp_path / "inside", n_shards=2, progress=False
    )
    users, before, _ = read_date(tmp_path / "before", DATE)
    _, inside_emb, _ = read_date(tmp_path / "inside", DATE)
    changed = np.flatnonzero(np.abs(before - inside_emb).max(axis=1) > 1e-6)
    assert users[changed].tolist() == [3]


def test_killed_generation_resumes_to_the_same_table(toy_world, tiny_model, tmp_path, monkeypatch):
    root, _ = toy_world
    gen.generate_embeddings(root, tiny_model, DATE, tmp_path / "full", n_shards=5, progress=False)
    real_write = gen.write_part
    written = []

    def dying_write(*args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt("killed")
        written.append(args[2])
        return real_write(*args, **kwargs)

    monkeypatch.setattr(gen, "write_part", dying_write)
    with pytest.raises(KeyboardInterrupt):
        gen.generate_embeddings(
            root, tiny_model, DATE, tmp_path / "resumed", n_shards=5, progress=False
        )
    assert complete_dates(tmp_path / "resumed") == []  # no _SUCCESS for a partial table
    monkeypatch.setattr(
        gen, "write_part", lambda *a, **k: (written.append(a[2]), real_write(*a, **k))[1]
    )
    gen.generate_embeddings(
        root, tiny_model, DATE, tmp_path / "resumed", n_shards=5, progress=False
    )
    assert written == [0, 1, 2, 3, 4]  # the resumed run wrote only the missing parts
    assert complete_dates(tmp_path / "resumed") == [DATE]
    full, resumed = read_date(tmp_path / "full", DATE), read_date(tmp_path / "resumed", DATE)
    np.testing.assert_array_equal(full[0], resumed[0])
    np.testing.assert_array_equal(full[1], resumed[1])


def test_resume_refuses_parts_of_another_model(toy_world, tiny_model, tmp_path):
    root, _ = toy_world
    gen.generate_embeddings(root, tiny_model, DATE, tmp_path, n_shards=2, progress=False)
    model = load_pinnerformer(tiny_model)
    model.model_version = "pf-other"
    with pytest.raises(ValueError, match="written by model 'pf-"):
        gen.generate_embeddings(root, model, DATE, tmp_path, n_shards=2, progress=False)


@pytest.mark.slow
def test_torchrun_two_workers_equal_single_process(toy_world, tiny_model, tmp_path):
    root, _ = toy_world
    gen.generate_embeddings(root, tiny_model, DATE, tmp_path / "single", n_shards=4, progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    src = Path(__file__).resolve().parents[2] / "src"
    env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(29500 + os.getpid() % 1000),
        "-m",
        "transact.embeddings.generate",
        "--data",
        str(root),
        "--model",
        str(tiny_model),
        "--date",
        DATE,
        "--out",
        str(tmp_path / "dist"),
        "--shards",
        "4",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = sorted(p.name for p in (tmp_path / "dist" / f"date={DATE}").glob("part-*.parquet"))
    assert parts == [f"part-{i:05d}.parquet" for i in range(4)]
    assert complete_dates(tmp_path / "dist") == [DATE]
    single, dist = read_date(tmp_path / "single", DATE), read_date(tmp_path / "dist", DATE)
    np.testing.assert_array_equal(single[0], dist[0])
    np.testing.assert_array_equal(single[1], dist[1])


def test_a_readers_only_table_holds_exactly_those_users_with_the_full_tables_rows(
    toy_world, tiny_model, tmp_path
):
    root, _ = toy_world
    gen.generate_embeddings(root, tiny_model, DATE, tmp_path / "all", n_shards=3, progress=False)
    users_all, emb_all, _ = read_date(tmp_path / "all", DATE)
    readers = np.concatenate([users_all[::3], [10**9]])  # one reader without any history
    gen.generate_embeddings(
        root, tiny_model, DATE, tmp_path / "some", n_shards=3, progress=False, users=readers
    )
    users_some, emb_some, _ = read_date(tmp_path / "some", DATE)
    np.testing.assert_array_equal(users_some, users_all[::3])
    rows = np.searchsorted(users_all, users_some)
    np.testing.assert_allclose(emb_some, emb_all[rows], rtol=0, atol=1e-6)
    assert complete_dates(tmp_path / "some") == [DATE]
