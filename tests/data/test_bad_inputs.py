import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transact.data.examples import build_split
from transact.data.io import (
    DataError,
    DayPartitionWriter,
    ItemTable,
    load_event_arrays,
    load_manifest,
    partition_files,
)
from transact.data.schema import events_schema


@pytest.fixture()
def world_copy(tiny_world, tmp_path):
    dst = tmp_path / "w"
    shutil.copytree(tiny_world, dst)
    return dst


def _rewrite_items(world, fn):
    t = pq.read_table(world / "items.parquet")
    pq.write_table(fn(t), world / "items.parquet")


def test_nan_embedding_names_file_column_row(world_copy):
    def poison(t):
        emb = np.array(t.column("embedding").combine_chunks().flatten()).reshape(t.num_rows, -1)
        emb[17, 3] = np.nan
        arr = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), emb.shape[1])
        return t.set_column(t.schema.get_field_index("embedding"), t.schema.field("embedding"), arr)

    _rewrite_items(world_copy, poison)
    with pytest.raises(DataError, match=r"items.parquet, column 'embedding', row 17: NaN"):
        ItemTable.load(world_copy)


def test_wrong_size_embedding_and_missing_column(world_copy, tiny_world):
    def shrink(t):
        emb = np.array(t.column("embedding").combine_chunks().flatten()).reshape(t.num_rows, -1)[
            :, :16
        ]
        arr = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 16)
        t = t.set_column(t.schema.get_field_index("embedding"), "embedding", arr)
        return t.replace_schema_metadata({"d_item": "32"})

    _rewrite_items(world_copy, shrink)
    with pytest.raises(
        DataError, match=r"column 'embedding': type fixed_size_list.*16.*expected.*32"
    ):
        ItemTable.load(world_copy)
    shutil.copy(tiny_world / "items.parquet", world_copy / "items.parquet")
    _rewrite_items(world_copy, lambda t: t.drop_columns(["quality"]))
    with pytest.raises(DataError, match=r"column 'quality': missing column"):
        ItemTable.load(world_copy)


def test_non_dense_item_ids(world_copy):
    def shuffle(t):
        ids = np.arange(t.num_rows)
        ids[[5, 6]] = ids[[6, 5]]
        return t.set_column(0, t.schema.field("item_id"), pa.array(ids))

    _rewrite_items(world_copy, shuffle)
    with pytest.raises(DataError, match=r"column 'item_id', row 5"):
        ItemTable.load(world_copy)


def _append_events(world, rows):
    day = partition_files(world, "events")[0][0]
    t0 = int(np.datetime64(day, "ms").astype(np.int64)) + 1000
    table = pa.table(
        {
            "event_id": [f"x{i}" for i in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "action_type": [r[2] for r in rows],
            "timestamp_ms": [t0 if r[3] is None else r[3] for r in rows],
            "surface": ["homefeed"] * len(rows),
        },
        schema=events_schema(),
    )
    w = DayPartitionWriter(world, "events", events_schema(), "timestamp_ms")
    w._parts[day] = 99  # a new part file in the first day
    w.write(table)
    w.close()


def test_unknown_action_and_unknown_item_in_events(world_copy, tiny_world):
    _append_events(world_copy, [(1, 2, "like", None)])
    with pytest.raises(DataError, match=r"column 'action_type'.*unknown action 'like'"):
        load_event_arrays(world_copy)
    shutil.rmtree(world_copy)
    shutil.copytree(tiny_world, world_copy)
    _append_events(world_copy, [(1, 10**9, "click", None)])
    with pytest.raises(DataError, match=r"column 'item_id'.*not in the item table"):
        load_event_arrays(world_copy)


def test_timestamps_in_seconds_are_refused(world_copy):
    day = partition_files(world_copy, "events")[0][0]
    secs = int(np.datetime64(day, "s").astype(np.int64)) + 5
    # a seconds timestamp lands in a 1970 partition; read it back explicitly
    _append_events(world_copy, [(1, 2, "click", secs)])
    with pytest.raises(DataError, match=r"column 'timestamp_ms', row 0.*not in milliseconds"):
        load_event_arrays(world_copy)


def test_unknown_users_and_manifest_errors(world_copy):
    users = pq.read_table(world_copy / "users.parquet")
    pq.write_table(users.slice(0, 10), world_copy / "users.parquet")
    with pytest.raises(
        DataError, match=r"column 'user_id'.*user \d+ \(row \d+\) is not in the user table"
    ):
        build_split(world_copy, "eval", seq_len=4)
    raw = json.loads((world_copy / "manifest.json").read_text())
    raw["schema_version"] = 99
    (world_copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match="schema_version 99"):
        load_manifest(world_copy)
    (world_copy / "manifest.json").unlink()
    with pytest.raises(DataError, match="no manifest"):
        load_manifest(world_copy)


def test_unreadable_parquet_names_the_file(world_copy):
    _, f = partition_files(world_copy, "impressions")[-1]
    f.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=f"{f.name}: not a readable Parquet file"):
        build_split(world_copy, "eval", seq_len=4)
