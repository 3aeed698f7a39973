"""Build frozen dataclass configs from plain dicts (TOML/JSON) with a clear error per bad field."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a simple type annotation and convert lists to tuples."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(f"{where}: {value!r} matches none of {annotation}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise TypeError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(
            _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(args, value, strict=True))
        )
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise TypeError(f"{where}: expected a table/dict, got {type(value).__name__}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def dataclass_from_dict(cls: type[T], d: Mapping[str, Any], name: str | None = None) -> T:
    """Build dataclass ``cls`` from ``d``: unknown keys and wrongly typed values raise.

    Error messages name the field (``TransActConfig.num_layers: expected an integer, got
    '2'``) so a bad TOML config is fixed in one look. Missing keys take the defaults, and
    the dataclass's own ``__post_init__`` checks value ranges.
    """
    return cls(**coerce_fields(cls, d, name))


def coerce_fields(cls: type, d: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """Type-check and convert a partial dict of ``cls`` fields (lists become tuples).

    Unknown keys raise with the known field names; used for config overrides.
    """
    label = name or cls.__name__
    if not isinstance(d, Mapping):
        raise TypeError(f"{label}: expected a table/dict, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{label}: unknown field(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    return {k: _coerce(v, hints[k], f"{label}.{k}") for k, v in d.items()}
