"""The provider contract's own types as JSON, so a test can post a `Callback` to the fake
platform's webhook and have it go the way every platform's callbacks go (stored raw, claimed,
drained, applied by the inbox).

`callback_json` writes a `Callback` as JSON; `callback_read` reads it back, field by field from
the dataclasses' type hints (nested dataclasses, optional values, lists and tuples, enums and
datetimes), and refuses what does not fit with a `PayloadError`, as a platform's parser does.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime
from functools import cache
from typing import Any

from integrations import base
from integrations.base import JSON, Callback, PayloadError


def callback_json(callback: Callback) -> JSON:
    """Return a `Callback` as JSON (`callback_read` reads it back)."""
    value = _written(callback)
    assert isinstance(value, dict)
    return value


def callback_read(body: JSON) -> Callback:
    """Read a `Callback` written by `callback_json`; PayloadError when it does not fit."""
    try:
        return typing.cast(Callback, _read(Callback, body))
    except (TypeError, ValueError, KeyError) as exc:
        raise PayloadError(f"not a callback: {exc}") from exc


def _written(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _written(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_written(item) for item in value]
    if isinstance(value, dict | types.MappingProxyType):
        return {str(key): _written(item) for key, item in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(base))


def _read(hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _read(inner, value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise TypeError(f"{hint.__name__} must be an object")
        hints = _hints(hint)
        fields = {f.name for f in dataclasses.fields(hint)}
        unknown = set(value) - fields
        if unknown:
            raise KeyError(f"{hint.__name__} has no {sorted(unknown)}")
        return hint(**{name: _read(hints[name], item) for name, item in value.items()})
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, list):
            raise TypeError(f"expected a list, not {type(value).__name__}")
        items = [_read(args[0], item) for item in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    return value  # str, int, float, bool and JSON as written
