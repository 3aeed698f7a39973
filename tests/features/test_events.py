import json

import numpy as np
import pyarrow as pa

from tests.features.event_logs import T0, make_events
from transact.features import events as ev
from transact.features.events import ValidationConfig, columns_from_arrow, columns_from_json

NOW = T0 + 10_000_000


def good(i: int, **over: object) -> dict:
    e = {
        "event_id": f"x{i}",
        "user_id": 3,
        "item_id": 7,
        "action_type": "click",
        "timestamp_ms": T0 + i,
        "surface": "homefeed",
    }
    e.update(over)
    return e


def run_json(msgs: list, cfg: ValidationConfig | None = None):
    raw = [m if isinstance(m, bytes) else json.dumps(m).encode() for m in msgs]
    n = len(raw)
    return columns_from_json(
        raw, cfg or ValidationConfig(n_items=100), ["k"] * n, list(range(n)), [NOW] * n
    )


def test_every_bad_json_message_is_dead_lettered_with_its_reason():
    cfg = ValidationConfig(n_items=100, max_payload_bytes=512, d_item=4)
    msgs = [
        good(0),
        b'{"event_id": "x1", "user_id": 3,',  # malformed
        b"[1, 2, 3]",  # not an object
        json.dumps(good(3, user_id="3")).encode(),  # wrong type
        json.dumps(good(4, action_type="like")).encode(),  # unknown action
        json.dumps({k: v for k, v in good(5).items() if k != "item_id"}).encode(),  # missing
        json.dumps(good(6, note="z" * 2000)).encode(),  # huge payload
        json.dumps(good(7, item_id=100)).encode(),  # outside the item table
        json.dumps(good(8, timestamp_ms=NOW + 400_000)).encode(),  # future
        json.dumps(good(9, timestamp_ms=1234)).encode(),  # seconds / zero
        json.dumps(good(10, embedding=[0.0] * 3)).encode(),  # wrong embedding size
        json.dumps(good(11, user_id=True)).encode(),  # bool is not an int
        json.dumps(good(12, event_id="")).encode(),  # empty id
        b"\xff\xfe not utf8",  # bytes that are not text
        json.dumps(good(14, embedding=[0.5] * 4)).encode(),  # right size: accepted
    ]
    cols, letters = run_json(msgs, cfg)
    assert cols.event_ids == ["x0", "x14"]
    by_offset = {d.offset: d for d in letters}
    expected = {
        1: ev.MALFORMED_JSON,
        2: ev.NOT_AN_OBJECT,
        3: ev.WRONG_TYPE,
        4: ev.UNKNOWN_ACTION,
        5: ev.MISSING_FIELD,
        6: ev.PAYLOAD_TOO_LARGE,
        7: ev.INVALID_ID,
        8: ev.TIMESTAMP_IN_FUTURE,
        9: ev.TIMESTAMP_TOO_OLD,
        10: ev.WRONG_EMBEDDING_SIZE,
        11: ev.WRONG_TYPE,
        12: ev.INVALID_ID,
        13: ev.MALFORMED_JSON,
    }
    assert {o: d.reason for o, d in by_offset.items()} == expected
    assert "user_id" in by_offset[3].detail and "item_id" in by_offset[5].detail
    assert len(by_offset[6].event) < 4200  # huge payloads are truncated in the record
    for d in letters:
        assert json.loads(d.to_json())["reason"] == d.reason


def test_arrow_path_flags_nulls_and_bad_rows_and_keeps_offsets():
    t = make_events(10, seed=1)
    d = t.to_pydict()
    d["action_type"][2] = "like"
    d["user_id"][4] = -5
    d["item_id"][6] = None
    schema = pa.schema([f.with_nullable(True) for f in t.schema])
    t2 = pa.table(d, schema=schema)
    cols, letters = columns_from_arrow(t2, ValidationConfig(), "replay", 100, NOW)
    assert {(x.offset, x.reason) for x in letters} == {
        (102, ev.UNKNOWN_ACTION),
        (104, ev.INVALID_ID),
        (106, ev.MISSING_FIELD),
    }
    assert cols.offsets.tolist() == [100, 101, 103, 105, 107, 108, 109]
    np.testing.assert_array_equal(cols.user_ids, np.array(d["user_id"])[[0, 1, 3, 5, 7, 8, 9]])
    assert set(cols.action_ids.tolist()) <= set(range(1, 6))


# --- issue 18 item 1: poison events are dead letters, never exceptions ------------------


def test_poison_messages_are_dead_lettered_with_their_reason_not_raised():
    cfg = ValidationConfig(n_items=100, max_payload_bytes=8192)  # room for 5,000 digits
    prefix = json.dumps(good(0))[:-1].encode()  # a valid event, still open
    deep = prefix + b', "x": ' + b"[" * 1980 + b"]" * 1980 + b"}"
    assert len(deep) <= 4096  # under the default size limit: the parser sees it
    msgs = [
        deep,
        json.dumps(good(1, event_id="\ud800")).encode(),  # escaped lone surrogate
        json.dumps(good(2, event_id="a\udfff"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        ),  # raw CESU-8 bytes: not UTF-8
        json.dumps(good(3, action_type="click\ud83d")).encode(),
        json.dumps(good(4, surface="\udc00")).encode(),  # an unused field: harmless, kept
        prefix + b', "n": ' + b"9" * 5000 + b"}",  # past Python's int-parsing limit
        json.dumps(good(6, user_id=2**63)).encode(),  # past int64: the id rule's range
        json.dumps(good(7, item_id=-(2**70))).encode(),
        prefix + b', "x": ' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}",
        json.dumps(good(9, user_id="9")).encode(),  # numeric string: not an id
        json.dumps(good(10, user_id=9.0)).encode(),  # float: not an id
        json.dumps(good(11)).encode(),
    ]
    cols, letters = run_json(msgs, cfg)
    reasons = {d.offset: d.reason for d in letters}
    assert reasons == {
        0: ev.TOO_DEEPLY_NESTED,
        1: ev.INVALID_ID,
        2: ev.MALFORMED_JSON,
        3: ev.UNKNOWN_ACTION,
        5: ev.MALFORMED_JSON,
        6: ev.INVALID_ID,
        7: ev.INVALID_ID,
        8: ev.TOO_DEEPLY_NESTED,
        9: ev.WRONG_TYPE,
        10: ev.WRONG_TYPE,
    }
    assert cols.event_ids == ["x4", "x11"]
    by = {d.offset: d for d in letters}
    assert "event_id" in by[1].detail and "surrogate" in by[1].detail
    assert "user_id" in by[6].detail and "item_id" in by[7].detail
    for d in letters:  # every record can be written to the dead-letter file
        line = d.to_json()
        line.encode("utf-8")
        assert json.loads(line)["reason"] == d.reason


def test_nesting_limit_ignores_brackets_inside_strings():
    cfg = ValidationConfig(n_items=100, max_json_depth=4)
    ok = good(0, note="[" * 50 + "{" * 50, tags=[[1], [2]])
    cols, letters = run_json([ok, good(1, x=[[[[[1]]]]])], cfg)
    assert cols.event_ids == ["x0"]
    assert [d.reason for d in letters] == [ev.TOO_DEEPLY_NESTED]
