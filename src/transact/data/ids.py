"""The one rule for user and item ids arriving from outside (stream events, ranking requests).

A valid id is a JSON **integer** in ``0 .. 2^63 - 1`` (it must fit the int64 columns
of the event schema and the store's keys). Everything else is refused, never coerced:

* booleans (``true`` is not user 1), although Python counts ``bool`` as ``int``;
* numeric strings (``"7"``): a producer that sends strings has a bug worth seeing;
* floats, even integral ones (``7.0``): ids are not measurements;
* negative numbers and numbers past int64.

The stream processor (:mod:`transact.features.events`) and the ranking API's request
model (:mod:`transact.serving.app`) both call :func:`id_problem`, so an id the API
ranks is an id the stream stores, and the reverse (tested on arbitrary JSON values).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

MAX_ID = 2**63 - 1
"""The largest valid id (int64)."""


class IdProblem(NamedTuple):
    """Why a value is not an id: ``kind`` is ``"type"`` (not a JSON integer) or
    ``"range"`` (an integer outside ``0..MAX_ID``); ``message`` says it for a person."""

    kind: Literal["type", "range"]
    message: str


def describe_int(value: int) -> str:
    """``value`` as text, or its size when printing it would be long (huge numbers from
    hostile input: Python refuses to print ints over 4,300 digits)."""
    if value.bit_length() <= 64:
        return str(value)
    return f"a {value.bit_length()}-bit {'negative ' if value < 0 else ''}integer"


def id_problem(value: object) -> IdProblem | None:
    """``None`` when ``value`` is a valid id, else what is wrong with it.

    Example::

        id_problem(7)      # None
        id_problem(True)   # IdProblem("type", "must be an integer, got bool")
        id_problem(-1)     # IdProblem("range", "must be in 0..2^63-1, got -1")
    """
    if type(value) is not int:  # exact type: bool is a subclass of int
        return IdProblem("type", f"must be an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_ID:
        return IdProblem("range", f"must be in 0..2^63-1, got {describe_int(value)}")
    return None
