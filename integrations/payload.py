"""Read platform bodies, and fit what they carry to what the inbox can store.

Pure functions, no Django. A callback is data from a customer, so it is kept, whatever its
values: the one place that makes any value storable is here, at the boundary, and the inbox
never sees a value the database would refuse.

- `json_loads` reads a body as standard JSON: `NaN`, `Infinity` and `-Infinity` (which Python
  accepts by default) are refused, and so is nesting deeper than a limit (checked without
  recursion, so no depth gives a RecursionError). Numbers Python cannot hold as they are
  (over 4,300 digits, or beyond a float's range such as `1e999`) are kept as their digits.
- `json_clean` replaces what no PostgreSQL text or jsonb value can hold (NUL, and UTF-16
  surrogates a `\\ud800` escape leaves alone) with U+FFFD.
- `callback_fit` fits a parsed `Callback` to the inbox's columns: ids that identify something
  are kept whole up to `KEY_MAX_CHARS` (longer ones become a prefix and a hash, so they stay
  unique and de-duplicate, with the whole value in the raw JSON beside them); values only shown
  (names, addresses) are shortened; coordinates that are not finite or out of range are
  dropped. Each change is a warning on the callback, so it shows on the stored event.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from integrations.base import (
    Action,
    Callback,
    ContactProfile,
    InboundMessage,
    Location,
    Media,
    Receipt,
    SessionEvent,
    SessionRef,
    SessionSnapshot,
)

# Ids the inbox keeps whole (its text columns, under a unique btree index: the index entry must
# stay well under PostgreSQL's 2,704-byte limit, so a key is also bounded in UTF-8 bytes).
KEY_MAX_CHARS = 1000
KEY_MAX_BYTES = 2000
# Python refuses to turn longer digit strings into an int (CVE-2020-10735).
_INT_MAX_DIGITS = 4300
_REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A JSON string, with its escapes (the unrolled form: linear, no backtracking).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class BodyError(ValueError):
    """A body that is not standard JSON, or nests deeper than allowed; the message says why."""


def json_depth(text: str) -> int:
    """Return how deep arrays and objects nest in a JSON text (brackets in strings ignored)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise BodyError(f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def _int_or_digits(text: str) -> int | str:
    return int(text) if len(text.lstrip("-")) <= _INT_MAX_DIGITS else text


def _float_or_digits(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else text


def json_loads(text: str, *, max_depth: int) -> Any:
    """Read standard JSON; raise `BodyError` with the reason for anything else."""
    deepest = json_depth(text)
    if deepest > max_depth:
        raise BodyError(f"The body nests {deepest} levels deep, deeper than {max_depth} allowed.")
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_int_or_digits,
            parse_float=_float_or_digits,
        )
    except BodyError:
        raise
    except RecursionError as exc:  # (the depth check makes this unreachable; belt and braces)
        raise BodyError("The body nests too deep to read.") from exc
    except ValueError as exc:
        raise BodyError(f"The body is not valid JSON: {exc}.") from exc


def text_clean(value: str) -> str:
    """Replace NUL and lone UTF-16 surrogates, which no PostgreSQL text can hold, with U+FFFD."""
    return _UNSTORABLE.sub(_REPLACEMENT, value)


def json_clean(value: Any) -> Any:
    """Return a JSON value with `text_clean` applied to every string, keys included."""
    if isinstance(value, str):
        return text_clean(value)
    if isinstance(value, list):
        return [json_clean(item) for item in value]
    if isinstance(value, dict):
        return {text_clean(str(key)): json_clean(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # (jsonb has no Infinity; not reachable from `json_loads`)
    return value


def _fits(value: str, limit: int) -> bool:
    return len(value) <= limit and len(value.encode("utf-8", "replace")) <= KEY_MAX_BYTES


def key_fit(value: str, limit: int = KEY_MAX_CHARS) -> str:
    """Return an id as it is if it fits, else its prefix and a hash of the whole (unique)."""
    if _fits(value, limit):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    suffix = f"…sha256:{digest}"
    prefix = value[: max(limit - len(suffix), 0)]
    prefix = prefix.encode("utf-8", "replace")[: KEY_MAX_BYTES // 2].decode("utf-8", "ignore")
    return prefix + suffix


def _key(value: str, limit: int, where: str, warnings: list[str]) -> str:
    fitted = key_fit(value, limit)
    if fitted != value:
        warnings.append(
            f"{where} is {len(value)} characters; kept as its first characters and a hash "
            "(the whole value is in the raw body)"
        )
    return fitted


def _text(value: str, limit: int, where: str, warnings: list[str]) -> str:
    if len(value) <= limit:
        return value
    warnings.append(f"{where} is {len(value)} characters; shortened to {limit} for display")
    return value[: limit - 1] + "…"


# Each field's kind and how much of it the inbox stores: ("key", n) ids kept whole up to n,
# ("text", n) shown only, shortened to n. Fields not named here are unbounded text (message
# bodies, captions), enums, or nested dataclasses fitted on their own.
_LIMITS: dict[type[Any], dict[str, tuple[str, int]]] = {
    ContactProfile: {
        "external_id": ("key", KEY_MAX_CHARS),
        "channel_external_id": ("key", 255),
        "lane": ("key", 255),
        "name": ("text", 255),
        "email": ("text", 255),
        "phone": ("text", 255),
        "business_profile_id": ("key", 255),
        "business_name": ("text", 255),
        "business_email": ("text", 255),
        "business_phone": ("text", 255),
    },
    Media: {
        "link": ("text", 2000),
        "mime_type": ("text", 255),
        "filename": ("text", 255),
        "sha256": ("text", 128),
        "media_id": ("key", 255),
    },
    Location: {"name": ("text", 255), "address": ("text", 500), "url": ("text", 2000)},
    SessionRef: {
        "external_id": ("key", KEY_MAX_CHARS),
        "routing_id": ("key", 255),
        "assigned_agent": ("key", 255),
        "assigned_dept": ("text", 255),
    },
    InboundMessage: {
        "external_id": ("key", KEY_MAX_CHARS),
        "contact_external_id": ("key", KEY_MAX_CHARS),
        "external_id_ext": ("key", KEY_MAX_CHARS),
        "sender": ("text", 255),
        "raw_type": ("text", 40),
    },
    Receipt: {
        "external_id": ("key", KEY_MAX_CHARS),
        "external_id_ext": ("key", KEY_MAX_CHARS),
        "contact_external_id": ("key", KEY_MAX_CHARS),
        "error_code": ("text", 64),
    },
    SessionSnapshot: {
        "agent": ("key", 255),
        "bot": ("text", 255),
        "dept": ("text", 255),
        "queue": ("text", 255),
        "mode": ("text", 64),
        "routing_id": ("key", 255),
        "ticket_hash": ("key", 255),
    },
    SessionEvent: {
        "session_external_id": ("key", KEY_MAX_CHARS),
        "dedupe_key": ("key", 200),
        "code": ("text", 200),
        "source_queue": ("text", 255),
        "target_queue": ("text", 255),
        "old_agent": ("key", 255),
        "new_agent": ("key", 255),
        "old_dept": ("text", 255),
        "new_dept": ("text", 255),
        "old_bot": ("text", 255),
        "new_bot": ("text", 255),
        "routing_id": ("key", 255),
    },
    Action: {"code": ("text", 200), "dedupe_key": ("key", 200)},
}
# A media size the inbox's bigint column holds.
_SIZE_MAX = 2**63 - 1
# Platform times outside these are a sender's clock or a unit gone wrong (and some would not
# survive the round trip through the database); the inbox uses the time it received them.
_TIME_MIN = datetime(1970, 1, 2, tzinfo=UTC)
_TIME_MAX = datetime(9000, 1, 1, tzinfo=UTC)


def _coordinate(value: float | None, bound: float, where: str, warnings: list[str]) -> float | None:
    if value is None or (math.isfinite(value) and -bound <= value <= bound):
        return value
    warnings.append(f"{where} {value!r} is not a coordinate (-{bound:g} to {bound:g}); left empty")
    return None


def _fit(item: Any, where: str, warnings: list[str]) -> Any:
    """Return a boundary dataclass with each field fitted (nested ones too), or it as it is."""
    if item is None or not dataclasses.is_dataclass(item) or isinstance(item, type):
        return item
    limits = _LIMITS.get(type(item), {})
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(item):
        value = getattr(item, field.name)
        here = f"{where}.{field.name}"
        if isinstance(value, enum.Enum):
            continue
        if isinstance(value, str):
            value = text_clean(value)
            kind, limit = limits.get(field.name, ("", 0))
            if kind == "key":
                value = _key(value, limit, here, warnings)
            elif kind == "text":
                value = _text(value, limit, here, warnings)
        elif isinstance(value, datetime) and not (
            value.tzinfo is not None and _TIME_MIN <= value <= _TIME_MAX
        ):
            warnings.append(f"{here} {value.isoformat()} is not a plausible time; left empty")
            value = None
        elif dataclasses.is_dataclass(value):
            value = _fit(value, here, warnings)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            value = tuple(_fit(v, f"{here}[{i}]", warnings) for i, v in enumerate(value))
        if value is not getattr(item, field.name):
            changes[field.name] = value
    if isinstance(item, Location):
        changes["latitude"] = _coordinate(item.latitude, 90, f"{where}.latitude", warnings)
        changes["longitude"] = _coordinate(item.longitude, 180, f"{where}.longitude", warnings)
    if isinstance(item, Media) and item.size is not None and not 0 <= item.size <= _SIZE_MAX:
        warnings.append(f"{where}.size {item.size} is not a file size; left empty")
        changes["size"] = None
    return dataclasses.replace(item, **changes) if changes else item


def callback_fit(callback: Callback) -> Callback:
    """Fit every value of a parsed callback to what the inbox stores, with a warning for each.

    Its `raw` dicts are left as they are: they come from a body `json_clean` already cleaned
    (`Provider.read_callback`).
    """
    warnings = [text_clean(w)[:1000] for w in callback.warnings]
    fitted = Callback(
        contacts=[_fit(c, f"contacts[{i}]", warnings) for i, c in enumerate(callback.contacts)],
        messages=[_fit(m, f"messages[{i}]", warnings) for i, m in enumerate(callback.messages)],
        receipts=[_fit(r, f"statuses[{i}]", warnings) for i, r in enumerate(callback.receipts)],
        events=[_fit(e, f"events[{i}]", warnings) for i, e in enumerate(callback.events)],
        actions=[_fit(a, f"actions[{i}]", warnings) for i, a in enumerate(callback.actions)],
        warnings=warnings,
        wants_contact_reply=callback.wants_contact_reply,
        tenant={k: text_clean(v)[:255] for k, v in callback.tenant.items()},
    )
    return fitted
