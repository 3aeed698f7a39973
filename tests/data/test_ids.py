"""The shared id rule (issue 18 item 5): the ranking API and the stream agree on every value."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests import hostile_json
from transact.data.ids import MAX_ID, id_problem
from transact.features import events as ev
from transact.features.events import ValidationConfig, columns_from_json
from transact.serving.app import RankRequest

T0 = 1_700_000_000_000


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (0, None),
        (MAX_ID, None),
        (7, None),
        (-1, "range"),
        (MAX_ID + 1, "range"),
        (-(2**200), "range"),
        (True, "type"),
        (False, "type"),
        ("7", "type"),
        (7.0, "type"),
        (None, "type"),
        ([7], "type"),
    ],
)
def test_id_rule(value: object, kind: str | None) -> None:
    problem = id_problem(value)
    assert (problem.kind if problem else None) == kind


def test_huge_ids_are_described_by_size_not_printed() -> None:
    problem = id_problem(10**5000)  # str() of it would raise (4,300-digit limit)
    assert problem is not None and "bit integer" in problem.message


def _api_accepts_user(value: object) -> bool:
    raw = json.dumps({"user_id": value, "candidates": [1]}, allow_nan=True).encode()
    try:
        RankRequest.model_validate_json(raw)
    except ValidationError as exc:  # refused if the id is, or the body cannot be parsed
        return all(
            e["loc"][:1] != ("user_id",) and e["type"] != "json_invalid" for e in exc.errors()
        )
    return True


def _stream_accepts(field: str, value: object) -> bool:
    event = {"event_id": "e", "user_id": 1, "item_id": 2, "action_type": "click"}
    event.update({"timestamp_ms": T0, field: value})
    raw = json.dumps(event, allow_nan=True).encode()
    _, letters = columns_from_json([raw], ValidationConfig(), ["k"], [0], [T0])
    assert all(d.reason != ev.MISSING_FIELD or value is None for d in letters)
    return not any(field in d.detail for d in letters)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        hostile_json.json_values,
        st.integers(-(2**64), 2**64),
        st.sampled_from([0, MAX_ID, MAX_ID + 1, -1, True, "7", 7.0]),
    )
)
def test_api_and_stream_accept_the_same_user_ids(value: object) -> None:
    assert (
        _api_accepts_user(value) == _stream_accepts("user_id", value) == (id_problem(value) is None)
    ), value
