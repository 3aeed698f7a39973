import numpy as np
import pyarrow as pa
import pytest

from transact.data.adapters import (
    EventColumns,
    ItemRepresentation,
    RequestConfig,
    import_events,
)
from transact.data.adapters.event_log import action_values
from transact.data.examples import build_split
from transact.data.io import DataError, load_manifest, read_events, read_impressions

T0 = 1_767_571_200  # seconds
COLS = EventColumns(user="uid", item="pin", action="what", time="ts", time_unit="s")


def _write(path, rows):
    path.write_text("uid,pin,what,ts\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def _shop_rows(n_users=6, per_user=12):
    """Each user sees 12 items (one a minute, sessions of 6 an hour apart); every third is
    clicked 10 s later and every fourth clicked and liked (two actions, one impression)."""
    rows = []
    for u in range(n_users):
        for k in range(per_user):
            t = T0 + u * 86_400 + (k // 6) * 3_600 + k * 60
            item = f"p{(u * 7 + k) % 20}"
            rows.append((u, item, "view", t))
            if k % 3 == 0:
                rows.append((u, item, "clk", t + 10))
            if k % 4 == 0:
                rows.append((u, item, "clk", t + 12))
                rows.append((u, item, "fav", t + 15))
    return rows


def _import(src, out, **kw):
    kw.setdefault("actions", (("clk", "click"), ("fav", "like")))
    kw.setdefault("requests", RequestConfig(min_items=3))
    return import_events(
        src, out, COLS, impression_value="view", item_repr=ItemRepresentation("genre"), d_item=4,
        **kw,
    )  # fmt: skip


def test_actions_on_a_shown_item_are_one_impression_with_every_label(tmp_path):
    rows = _shop_rows()
    out = _import(_write(tmp_path / "log.csv", rows), tmp_path / "w")
    m = load_manifest(out)
    assert m.heads == ("click", "like") and m.actions.impression == "impression"
    imp = pa.Table.from_batches(list(read_impressions(out))).to_pydict()
    assert len(imp["request_id"]) == 72  # one per view, however many actions followed
    click, like = np.array(imp["label_click"]), np.array(imp["label_like"])
    clicked = {k for k in range(12) if k % 3 == 0 or k % 4 == 0}
    assert click.sum() == 6 * len(clicked)
    assert like.sum() == 6 * 3 and (like <= click).all()  # every like came with a click
    ev = pa.Table.from_batches(list(read_events(out))).to_pydict()
    assert ev["action_type"].count("click") == sum(r[2] == "clk" for r in rows)  # all kept
    assert ev["action_type"].count("impression") == 72
    assert m.extra["counts"]["requests"] == 12  # 2 sessions x 6 users
    assert len(build_split(out, "train", seq_len=4)) > 0


def test_without_impression_rows_each_burst_of_actions_opens_one(tmp_path):
    rows = [r for r in _shop_rows() if r[2] != "view"]
    out = _import(
        _write(tmp_path / "log.csv", rows), tmp_path / "w", requests=RequestConfig(min_items=2)
    )
    imp = pa.Table.from_batches(list(read_impressions(out))).to_pydict()
    acted = {(u, k) for u in range(6) for k in range(12) if k % 3 == 0 or k % 4 == 0}
    n = load_manifest(out).extra["counts"]
    assert n["impressions"] + n["skipped_rows_in_small_chunks"] == len(acted)
    assert all(imp["label_click"])  # every orphan burst here has a click


def test_action_values_become_the_vocabulary_when_not_mapped(tmp_path):
    src = _write(tmp_path / "log.csv", _shop_rows())
    assert action_values(src, "what") == ["clk", "fav", "view"]
    out = import_events(
        src, tmp_path / "w", COLS, impression_value="view", negative=(),
        item_repr=ItemRepresentation("genre"), d_item=4,
    )  # fmt: skip
    assert load_manifest(out).heads == ("clk", "fav")


def test_unknown_action_values_are_named_by_row(tmp_path):
    rows = _shop_rows()
    rows[4] = (*rows[4][:2], "share", rows[4][3])
    with pytest.raises(DataError, match=r"log.csv, column 'what', row 4: unknown action 'share'"):
        _import(_write(tmp_path / "log.csv", rows), tmp_path / "w")
    with pytest.raises(ValueError, match="'view' is the impression value"):
        _import(_write(tmp_path / "log2.csv", rows), tmp_path / "w2", actions=(("view", "view"),))
