from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from transact.data.adapters import RatingMapping, import_movielens
from transact.data.examples import build_split
from transact.data.io import ItemTable, load_manifest, read_events, read_impressions

ML100K = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "movielens-100k"
needs_ml = pytest.mark.skipif(
    not ML100K.exists(), reason="../shared/datasets/movielens-100k missing"
)


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    return import_movielens(ML100K, tmp_path_factory.mktemp("ml") / "ml100k", embeddings="genre")


def test_rating_mapping_rules():
    m = RatingMapping()
    assert m.apply(np.array([5.0, 4.5, 4.0, 3.5, 3.0, 2.5, 2.0, 0.5])).tolist() == [
        "repin", "repin", "click", "click", "", "", "hide", "hide",
    ]  # fmt: skip
    custom = RatingMapping.parse("repin>=4, hide<3")
    assert custom.apply(np.array([4.0, 3.0, 2.0])).tolist() == ["repin", "", "hide"]
    # any action names: a rating map declares the log's actions (the world's roles where
    # they are the world's names)
    love = RatingMapping.parse("love>=4,meh<=2")
    vocab = love.vocabulary(with_tags=True)
    assert vocab.names == ("impression", "love", "meh", "tag")
    assert vocab.negative == () and vocab.positive == ("love", "meh", "tag")
    world = RatingMapping().vocabulary(with_tags=False)
    assert world.negative == ("hide",) and world.main_positive == "repin"
    assert RatingMapping().actions == ("click", "repin", "hide")
    with pytest.raises(ValueError, match="'impression' is not an action name"):
        RatingMapping.parse("impression>=4")
    with pytest.raises(ValueError, match="expected e.g."):
        RatingMapping.parse("repin=>4")


@needs_ml
def test_movielens_labels_follow_the_ratings(ml100k):
    raw = pacsv.read_csv(ML100K / "ml-100k.inter", parse_options=pacsv.ParseOptions(delimiter="\t"))
    rating = {
        (u, i): r
        for u, i, r in zip(
            raw.column(0).to_pylist(),
            raw.column(1).to_pylist(),
            raw.column(2).to_pylist(),
            strict=True,
        )
    }
    imp = pa.Table.from_batches(list(read_impressions(ml100k)))
    ext = ItemTable.load(ml100k).external_id
    users = imp.column("user_id").to_pylist()
    items = imp.column("item_id").to_pylist()
    repin = imp.column("label_repin").to_numpy()
    click = imp.column("label_click").to_numpy()
    hide = imp.column("label_hide").to_numpy()
    r = np.array([rating[(u, int(ext[i]))] for u, i in zip(users, items, strict=True)])
    assert (repin == (r >= 4.5)).all()
    assert (click == ((r >= 3.5) & (r < 4.5))).all()
    assert (hide == (r <= 2)).all()
    assert np.isnan(imp.column("gt_prob_click").to_numpy()).all()
    assert imp.column("randomized").to_numpy().all()
    m = load_manifest(ml100k)
    assert (
        m.extra["counts"]["impressions"] + m.extra["counts"]["skipped_rows_in_small_chunks"]
        == raw.num_rows
    )
    sizes = np.bincount(imp.column("request_id").to_numpy())
    assert sizes.min() >= 4 and sizes.max() <= 30


@needs_ml
def test_movielens_requests_precede_their_ratings_and_split(ml100k):
    m = load_manifest(ml100k)
    ev = pa.Table.from_batches(list(read_events(ml100k)))
    t = ev.column("timestamp_ms").to_numpy()
    assert t.min() > 800_000_000_000  # 1995+, in milliseconds
    ex = build_split(ml100k, "eval", seq_len=16)
    assert (ex.request_times_ms >= m.eval_start_ms).all()
    real = ex.seq_types != 0
    assert (
        ex.seq_times_ms[real] < np.broadcast_to(ex.request_times_ms[:, None], real.shape)[real]
    ).all()
    assert 0.1 < len(ex) / (len(ex) + m.extra["counts"]["impressions"]) < 0.4
    # a request's own ratings are labels, never in its sequence: the rated items of a
    # request do not appear in its sequence with a time at/after the request
    assert real.mean() > 0.2


def _classic_ratings(n_users=3, per_user=12):
    rows = []
    for u in range(1, n_users + 1):
        for k in range(per_user):
            rows.append((u, 1 + (u + k) % 8, 1 + (u * k) % 5, 978_300_000 + u * 10_000 + k * 30))
    return rows


def test_movielens_1m_dat_layout(tmp_path):
    src = tmp_path / "ml-1m"
    src.mkdir()
    rows = _classic_ratings()
    (src / "ratings.dat").write_text("\n".join("::".join(map(str, r)) for r in rows) + "\n")
    titles = [f"{i}::Movie: Part {i} (1999)::Drama|Comedy" for i in range(1, 9)]
    (src / "movies.dat").write_text("\n".join(titles) + "\n", encoding="latin-1")
    (src / "users.dat").write_text("1::F::25::3::55455\n2::M::35::1::11111\n")
    out = import_movielens(src, tmp_path / "w", embeddings="genre")
    imp = pa.Table.from_batches(list(read_impressions(out)))
    assert imp.num_rows == len(rows)
    n5 = sum(r[2] == 5 for r in rows)
    assert imp.column("label_repin").to_numpy().sum() == n5
    assert ItemTable.load(out).taxonomy_path[0] == "Drama/Comedy"
    assert set(load_manifest(out).vocabularies["gender"]) == {"female", "male", "unspecified"}


def test_movielens_100k_original_layout(tmp_path):
    src = tmp_path / "ml-100k"
    src.mkdir()
    rows = _classic_ratings()
    (src / "u.data").write_text("\n".join("\t".join(map(str, r)) for r in rows) + "\n")
    (src / "u.genre").write_text("unknown|0\nAction|1\nDrama|2\n")
    items = [f"{i}|Film {i} (1995)|01-Jan-1995||http://x|0|{i % 2}|1" for i in range(1, 9)]
    (src / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    out = import_movielens(src, tmp_path / "w", embeddings="genre")
    imp = pa.Table.from_batches(list(read_impressions(out)))
    assert imp.column("label_hide").to_numpy().sum() == sum(r[2] <= 2 for r in rows)
    assert ItemTable.load(out).taxonomy_path[:2] == ["Action/Drama", "Drama"]
