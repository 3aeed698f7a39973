"""Property tests (hypothesis) of the event decoder on hostile input (issue 18).

Invariant: :func:`columns_from_json` never raises, whatever the bytes; every message
comes out exactly once, as a valid event or as a dead letter with a known reason that
can be written to the dead-letter file; accepted events obey the shared id rule.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tests import hostile_json
from tests.features.event_logs import T0
from transact.data.ids import id_problem
from transact.features import events as ev
from transact.features.events import ValidationConfig, columns_from_json

NOW = T0 + 10_000_000

EVENT_FIELDS = {
    "event_id": st.one_of(hostile_json.text, st.just("e1")),
    "user_id": st.one_of(st.integers(-3, 2**64), st.booleans(), st.just("7")),
    "item_id": st.one_of(st.integers(-3, 200), st.floats()),
    "action_type": st.one_of(
        st.sampled_from(["click", "repin", "hide", "like"]), hostile_json.text
    ),
    "timestamp_ms": st.one_of(st.integers(T0 - 10, NOW + 10**6), st.integers(-(2**70), 2**70)),
    "embedding": st.lists(st.floats(), max_size=4),
    "surface": hostile_json.text,
}


@settings(max_examples=300, deadline=None)
@given(st.lists(hostile_json.hostile_payloads(EVENT_FIELDS), min_size=1, max_size=8))
def test_decoder_never_raises_and_accounts_for_every_message(messages: list[bytes]) -> None:
    cfg = ValidationConfig(n_items=100, d_item=4)
    n = len(messages)
    cols, letters = columns_from_json(messages, cfg, ["k"] * n, list(range(n)), [NOW] * n)
    seen = sorted(cols.offsets.tolist() + [d.offset for d in letters])
    assert seen == list(range(n))  # each message exactly once
    for d in letters:
        assert d.reason in ev.REASONS
        assert json.loads(d.to_json().encode("utf-8"))["offset"] == d.offset
    for i in range(len(cols)):
        assert id_problem(int(cols.user_ids[i])) is None
        cols.event_ids[i].encode("utf-8")  # stored keys hash valid UTF-8 only
        raw = json.loads(messages[int(cols.offsets[i])])
        assert id_problem(raw["user_id"]) is None and id_problem(raw["item_id"]) is None


@settings(max_examples=200, deadline=None)
@given(hostile_json.json_values)
def test_any_json_value_as_a_field_is_accepted_or_dead_lettered(value: object) -> None:
    for name in EVENT_FIELDS:
        event = {
            "event_id": "e1",
            "user_id": 1,
            "item_id": 2,
            "action_type": "click",
            "timestamp_ms": T0,
            name: value,
        }
        raw = json.dumps(event, allow_nan=True).encode()
        cols, letters = columns_from_json([raw], ValidationConfig(n_items=100), ["k"], [0], [NOW])
        assert len(cols) + len(letters) == 1
