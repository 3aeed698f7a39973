"""Hypothesis strategies for hostile JSON: what a client or producer may send on purpose.

Shared by the property tests of the stream's event decoder (``tests/features``) and the
ranking API (``tests/serving``): arbitrary JSON values, text with lone UTF-16 surrogates,
invalid UTF-8, nesting thousands of levels deep, integers past int64 and number literals
thousands of digits long, and plain random bytes. Each payload is ``bytes`` as it would
arrive on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from hypothesis import strategies as st

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
"""Lone UTF-16 surrogates: valid in a JSON ``\\uXXXX`` escape, not valid Unicode text."""

text = st.text(st.one_of(st.characters(), SURROGATES), max_size=8)
"""Short text where surrogates are common (plain ``st.text`` almost never draws them)."""

numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
)

leaves = st.one_of(st.none(), st.booleans(), numbers, text)

json_values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
"""Arbitrary JSON values (NaN and infinities included, as Python's json writes them)."""


def dumps(value: object, ascii_only: bool = True) -> bytes:
    """``value`` as JSON bytes. ``ascii_only=False`` writes surrogates as raw (CESU-8)
    bytes, which is invalid UTF-8, the way a broken producer would."""
    if ascii_only:
        return json.dumps(value, allow_nan=True).encode()
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    """A value nested 50..3,000 levels deep (arrays, objects or both), as raw JSON."""
    depth = draw(st.integers(50, 3000))
    kind = draw(st.sampled_from(["array", "object", "mixed"]))
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b'[{"a":' * (depth // 2) + b"1" + b"}]" * (depth // 2)


huge_number_literals = st.integers(20, 6000).map(lambda k: b"9" * k)
"""Integer literals of 20 to 6,000 digits (past int64; past Python's 4,300-digit str limit)."""


@st.composite
def hostile_objects(draw: st.DrawFn, fields: Mapping[str, st.SearchStrategy]) -> bytes:
    """A JSON object with some of ``fields`` (each drawn from its strategy or replaced by
    anything hostile), serialized in one of the hostile ways."""
    obj: dict[str, object] = {}
    for name, strategy in fields.items():
        choice = draw(st.integers(0, 5))
        if choice == 0:
            continue  # missing
        obj[name] = draw(strategy) if choice <= 3 else draw(json_values)
    if draw(st.booleans()):
        obj.update(draw(st.dictionaries(text, json_values, max_size=2)))
    raw = dumps(obj, ascii_only=draw(st.booleans()))
    how = draw(st.sampled_from(["plain", "deep", "huge", "truncate"]))
    if how == "plain" or not obj:
        return raw
    name = draw(st.sampled_from(sorted(obj)))
    key = json.dumps(name).encode("utf-8", "surrogatepass")
    if how == "deep":
        return b"{" + key + b":" + draw(deep_nesting()) + b"}"
    if how == "huge":
        return b"{" + key + b":" + draw(huge_number_literals) + b"}"
    return raw[: draw(st.integers(0, len(raw)))]


def hostile_payloads(fields: Mapping[str, st.SearchStrategy]) -> st.SearchStrategy[bytes]:
    """Payload bytes: hostile objects with ``fields``, any JSON value, deep nesting,
    huge numbers, random bytes."""
    return st.one_of(
        hostile_objects(fields),
        json_values.map(dumps),
        deep_nesting(),
        huge_number_literals,
        st.binary(max_size=64),
    )
