import pyarrow as pa
import pytest

from transact.data.adapters import LogColumns, RequestConfig, import_log
from transact.data.examples import build_split
from transact.data.io import DataError, load_manifest, read_impressions


def _write_log(path, rows, header=("uid", "pin", "what", "ts")):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")


def _log_rows(n_users=6, per_user=12):
    rows = []
    for u in range(n_users):
        for k in range(per_user):
            action = ["impression", "click", "impression", "repin", "hide", "impression"][k % 6]
            rows.append((u, f"p{(u * 7 + k) % 20}", action, 1_700_000_000 + u * 86_400 + k * 60))
    return rows


def test_generic_log_adapter(tmp_path):
    f = tmp_path / "log.csv"
    _write_log(f, _log_rows())
    cols = LogColumns(user="uid", item="pin", action="what", timestamp="ts", time_unit="s")
    out = import_log(
        f,
        tmp_path / "w",
        cols,
        embeddings="genre",
        requests=RequestConfig(min_items=4, max_items=6),
    )
    m = load_manifest(out)
    imp = pa.Table.from_batches(list(read_impressions(out)))
    assert imp.num_rows == 72 and m.n_items == 20 and m.n_users == 6
    assert imp.column("label_click").to_numpy().sum() == 12
    assert imp.column("request_time_ms").to_numpy().min() > 1_700_000_000_000 - 10
    assert len(build_split(out, "train", seq_len=8)) > 0


def test_generic_log_bad_inputs(tmp_path):
    cols = LogColumns(user="uid", item="pin", action="what", timestamp="ts", time_unit="s")
    rows = _log_rows()
    rows[5] = (rows[5][0], rows[5][1], "like", rows[5][3])
    _write_log(tmp_path / "a.csv", rows)
    with pytest.raises(DataError, match=r"a.csv, column 'what', row 5: unknown action 'like'"):
        import_log(tmp_path / "a.csv", tmp_path / "wa", cols, embeddings="genre")
    _write_log(tmp_path / "b.csv", _log_rows())
    ms_cols = LogColumns(user="uid", item="pin", action="what", timestamp="ts", time_unit="ms")
    with pytest.raises(
        DataError, match=r"b.csv, column 'ts', row 0: timestamp 1700000000 is not in milliseconds"
    ):
        import_log(tmp_path / "b.csv", tmp_path / "wb", ms_cols, embeddings="genre")
    _write_log(tmp_path / "c.csv", _log_rows(), header=("user", "pin", "what", "ts"))
    with pytest.raises(DataError, match=r"c.csv, column 'uid': missing column"):
        import_log(tmp_path / "c.csv", tmp_path / "wc", cols, embeddings="genre")
    items = tmp_path / "items.csv"
    items.write_text(
        "item_id,title\n" + "\n".join(f"p{i},t{i}" for i in range(19)) + "\n"
    )  # p19 missing
    with pytest.raises(
        DataError, match=r"d.csv, column 'pin', row \d+: item 'p19' is not in the item table"
    ):
        _write_log(tmp_path / "d.csv", _log_rows())
        import_log(
            tmp_path / "d.csv",
            tmp_path / "wd",
            cols,
            items_path=items,
            text_columns=("title",),
            embeddings="genre",
        )
