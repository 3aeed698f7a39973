import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from transact.data.adapters import (
    ContextColumns,
    ImpressionColumns,
    ItemRepresentation,
    RequestConfig,
    import_impressions,
)
from transact.data.examples import build_split
from transact.data.io import DataError, ItemTable, load_manifest, read_events, read_impressions

T0 = 1_767_571_200  # seconds, 2026-01-05 UTC
LABELS = (("is_click", "click"), ("long_view", "long_view"), ("is_like", "like"),
          ("is_hate", "hate"))  # fmt: skip
COLS = ImpressionColumns(labels=LABELS, item="video_id", time="ts", time_unit="s")


def _rows(n_users=8, per_user=40, seed=0):
    """An impression table: every user sees 40 videos, 20 s apart, in 4 sessions."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for k in range(per_user):
            t = T0 + u * 600 + (k // 10) * 86_400 + (k % 10) * 20
            click = int(rng.random() < 0.5)
            rows.append(
                {
                    "user_id": u,
                    "video_id": int(rng.integers(0, 30)),
                    "ts": t,
                    "is_click": click,
                    "long_view": click * int(rng.random() < 0.5),
                    "is_like": int(rng.random() < 0.2),
                    "is_hate": int(rng.random() < 0.05),
                    "req": f"r{u}-{k // 10}",
                    "pos": k % 10,
                    "rand": int(k // 10 != 1),
                    "tab": ["hot", "follow"][k % 2],
                }  # fmt: skip
            )
    return rows


def _csv(path, rows):
    keys = list(rows[0])
    path.write_text(
        ",".join(keys) + "\n" + "\n".join(",".join(str(r[k]) for k in keys) for r in rows) + "\n"
    )
    return path


def _import(src, out, columns=COLS, **kw):
    kw.setdefault("item_repr", ItemRepresentation("genre"))
    kw.setdefault("requests", RequestConfig(min_items=3))
    return import_impressions(
        src, out, columns, negative=("hate",), main_positive="like", d_item=8, **kw
    )


def _impressions(out):
    return pa.Table.from_batches(list(read_impressions(out))).to_pydict()


def test_a_multi_label_log_imports_with_its_own_actions(tmp_path):
    rows = _rows()
    out = _import(_csv(tmp_path / "log.csv", rows), tmp_path / "w")
    m = load_manifest(out)
    assert m.heads == ("click", "long_view", "like", "hate")
    assert m.actions.names == ("impression", "click", "long_view", "like", "hate")
    assert m.actions.negative == ("hate",) and m.actions.main_positive == "like"
    assert m.actions.main_negative == "hate" and m.actions.positive == (
        "click",
        "long_view",
        "like",
    )
    imp = _impressions(out)
    assert len(imp["request_id"]) == len(rows)  # one impression per row
    for col, action in LABELS:  # label rates equal the log's
        assert sum(imp[f"label_{action}"]) == sum(r[col] for r in rows)
    ev = pa.Table.from_batches(list(read_events(out))).to_pydict()
    assert ev["action_type"].count("like") == sum(r["is_like"] for r in rows)
    # 4 sessions per user (a day apart): 4 requests of 10, each 1 ms before its first row
    assert m.extra["counts"]["requests"] == 32
    first = min(r["ts"] for r in rows if r["user_id"] == 0) * 1000
    assert (
        min(t for u, t in zip(imp["user_id"], imp["request_time_ms"], strict=True) if u == 0)
        == first - 1
    )
    # the example sets carry the four heads
    train = build_split(out, "train", seq_len=8)
    assert train.feature_spec.heads == m.heads and train.labels.shape[1] == 4


def test_request_position_randomized_and_surface_columns(tmp_path):
    rows = _rows()
    cols = ImpressionColumns(
        labels=LABELS, item="video_id", time="ts", time_unit="s",
        context=ContextColumns(request="req", position="pos", randomized="rand", surface="tab"),
    )  # fmt: skip
    out = _import(_csv(tmp_path / "log.csv", rows), tmp_path / "w", cols)
    m = load_manifest(out)
    assert m.vocabularies["surface"] == ["follow", "hot"]
    assert m.extra["requests"]["from"] == "request ids"
    imp = _impressions(out)
    # every logged request is one request (8 users x 4), positions are the log's
    assert len(set(imp["request_id"])) == 32
    by_time = {(r["user_id"], r["ts"] * 1000): r for r in rows}
    times = {}
    for rid, u, t in zip(imp["request_id"], imp["user_id"], imp["request_time_ms"], strict=True):
        times.setdefault(rid, (u, t))
    # the second session of every user was not randomized in the log
    randomized = dict(zip(imp["request_id"], imp["randomized"], strict=True))
    for rid, (u, t) in times.items():
        first = by_time[(u, t + 1)]
        assert randomized[rid] == bool(first["rand"])
    assert imp["surface"][0] in ("hot", "follow")
    assert build_split(out, "eval", seq_len=4).randomized.all()


def test_a_folder_of_parquet_parts_is_one_log(tmp_path):
    rows = _rows()
    table = pa.Table.from_pylist(rows)
    (tmp_path / "parts").mkdir()
    pq.write_table(table.slice(0, 100), tmp_path / "parts" / "a.parquet")
    pq.write_table(table.slice(100), tmp_path / "parts" / "b.parquet")
    one = _import(_csv(tmp_path / "log.csv", rows), tmp_path / "one")
    parts = _import(tmp_path / "parts", tmp_path / "two")

    def rows_of(out):
        imp = _impressions(out)
        return sorted(zip(*(v for k, v in imp.items() if not k.startswith("gt_prob")), strict=True))

    assert rows_of(one) == rows_of(parts)


def test_a_learned_representation_sees_only_training_engagements(tmp_path):
    seen = {}

    def embedder(user_ids, item_ids, times_ms, n_items, d_item, method, seed):
        seen.update(users=user_ids, items=item_ids, times=times_ms, n=n_items, d=d_item,
                    method=method, seed=seed)  # fmt: skip
        return np.ones((n_items, d_item), np.float32)

    out = _import(
        _csv(tmp_path / "log.csv", _rows()), tmp_path / "w",
        item_repr=ItemRepresentation.parse("learned:mf"), item_embedder=embedder, seed=5,
    )  # fmt: skip
    m = load_manifest(out)
    assert m.extra["item_representation"] == {
        "kind": "learned",
        "method": "mf",
        "source": "learned:mf",
    }
    assert (seen["n"], seen["d"], seen["method"], seen["seed"]) == (m.n_items, 8, "mf", 5)
    events = read_events(out, columns=["user_id", "item_id", "action_type", "timestamp_ms"])
    ev = pa.Table.from_batches(list(events))
    train = ev.filter(pc.less(ev.column("timestamp_ms"), m.train_end_ms))
    engaged = train.filter(pc.not_equal(train.column("action_type"), "impression"))
    assert 0 < engaged.num_rows < train.num_rows  # only engagements, only before the cut
    got = sorted(zip(seen["users"].tolist(), seen["items"].tolist(), seen["times"].tolist(),
                     strict=True))  # fmt: skip
    want = sorted(zip(*(engaged.column(c).to_pylist() for c in ("user_id", "item_id",
                                                               "timestamp_ms")), strict=True))  # fmt: skip
    assert got == want
    assert np.allclose(ItemTable.load(out).embeddings_np, 1.0)
    with pytest.raises(DataError, match=r"shape \(30, 2\)"):
        _import(
            _csv(tmp_path / "log2.csv", _rows()), tmp_path / "w2", item_repr=ItemRepresentation("learned"),
            item_embedder=lambda u, i, t, n, d, meth, s: np.zeros((n, 2)),
        )  # fmt: skip


def test_an_item_file_gives_texts_and_the_item_order(tmp_path):
    items = tmp_path / "videos.csv"
    items.write_text(
        "vid,title,genres\n" + "\n".join(f"{i},clip {i},music|dance" for i in range(31)) + "\n"
    )
    out = _import(
        _csv(tmp_path / "log.csv", _rows()), tmp_path / "w", items_path=items,
        item_id_column="vid", text_columns=("title",),
    )  # fmt: skip
    table = ItemTable.load(out)
    assert len(table) == 31 and table.external_id[:3] == ["0", "1", "2"]
    assert table.taxonomy_path[0] == "music/dance"
    with pytest.raises(ValueError, match="text columns need an item file"):
        _import(_csv(tmp_path / "log2.csv", _rows()), tmp_path / "w2", text_columns=("title",))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r.__setitem__("is_like", 2),
            r"log.csv, column 'is_like', row 7: label 2 is not 0 or 1",
        ),
        (lambda r: r.__setitem__("ts", "soon"), r"log.csv, column 'ts'.*expected numbers"),
        (lambda r: r.__setitem__("user_id", ""), r"log.csv, column 'user_id'"),
    ],
    ids=["label-not-binary", "time-not-a-number", "empty-user"],
)
def test_bad_values_are_named_by_file_column_and_row(tmp_path, change, message):
    rows = _rows()
    change(rows[7])
    with pytest.raises(DataError, match=message):
        _import(_csv(tmp_path / "log.csv", rows), tmp_path / "w")


def test_bad_logs_are_refused_before_anything_is_written(tmp_path):
    rows = _rows()
    src = _csv(tmp_path / "log.csv", rows)
    with pytest.raises(DataError, match=r"column 'is_follow': missing column"):
        follow = (*LABELS, ("is_follow", "follow"))
        _import(
            src,
            tmp_path / "a",
            ImpressionColumns(follow, item="video_id", time="ts", time_unit="s"),
        )
    with pytest.raises(DataError, match=r"column 'ts', row 0: time 1767571200 ms is before 1973"):
        _import(src, tmp_path / "b", ImpressionColumns(labels=LABELS, item="video_id", time="ts"))
    items = tmp_path / "videos.csv"
    items.write_text("video_id\n" + "\n".join(str(i) for i in range(10)) + "\n")
    with pytest.raises(
        DataError, match=r"column 'video_id', row \d+: item \d+ is not in the item file"
    ):
        _import(src, tmp_path / "c", items_path=items, item_id_column="video_id")
    with pytest.raises(ValueError, match="negative actions \\['dislike'\\] are not label actions"):
        import_impressions(src, tmp_path / "d", COLS, negative=("dislike",))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        _import(tmp_path / "empty.csv", tmp_path / "e")
