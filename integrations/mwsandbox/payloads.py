"""What a send may carry: the payload types, their fields (§3.3) and which medium takes which
(§3.2), as one table.

The docs give no `payload.type` value but "TEXT" (§0 item 6, G4). The sandbox accepts exactly
the readings in PAYLOAD_TYPES, the same assumed readings the provider uses; a type outside the
table, a field outside a type's fields, a missing required field or a type the medium cannot
carry is a 400 naming the field, the way a validating API (the error shape is Boom's, §1.4)
refuses them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MEDIA_CATEGORIES = ("VIDEO", "AUDIO", "VOICE", "APPLICATION", "UNSPECIFIED")
CAROUSEL_WIDTHS = ("CARD_WIDTH_UNSPECIFIED", "SMALL", "MEDIUM")
CARD_ORIENTATIONS = ("CARD_ORIENTATION_UNSPECIFIED", "VERTICAL", "HORIZONTAL")
CARD_ALIGNMENTS = ("THUMBNAIL_IMAGE_ALIGNMENT_UNSPECIFIED", "LEFT", "RIGHT")
CARD_HEIGHTS = ("SHORT", "MEDIUM", "TALL")
_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")


class PayloadError(ValueError):
    """A payload the platform refuses: `field` is its dotted path."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f'"{field_path}" {problem}')
        self.field = field_path


@dataclass
class Checked:
    """What validation found: the type, and every media URI the payload references."""

    type: str
    # (dotted field path, uri, rendition expected: "" for a full file, else thumbnail/preview)
    uris: list[tuple[str, str, str]] = field(default_factory=list)


Check = Callable[[Any, str, Checked], None]


def _string(value: Any, path: str, checked: Checked) -> None:
    if not isinstance(value, str):
        raise PayloadError(path, "must be a string")
    if not value.strip():
        raise PayloadError(path, "is not allowed to be empty")


def _number(low: float, high: float) -> Check:
    def check(value: Any, path: str, checked: Checked) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PayloadError(path, "must be a number")
        if not math.isfinite(value) or not low <= value <= high:
            raise PayloadError(path, f"must be between {low:g} and {high:g}")

    return check


def _one_of(values: tuple[str, ...]) -> Check:
    def check(value: Any, path: str, checked: Checked) -> None:
        if value not in values:
            raise PayloadError(path, f"must be one of [{', '.join(values)}]")

    return check


def _strings(value: Any, path: str, checked: Checked) -> None:
    if not isinstance(value, list):
        raise PayloadError(path, "must be an array")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PayloadError(f"{path}[{i}]", "must be a string")


def _file(rendition: str = "") -> Check:
    """A `{mime, size, uri}` file object; its uri must be media this platform issued."""

    def check(value: Any, path: str, checked: Checked) -> None:
        _object(
            value,
            path,
            checked,
            required={"mime": _string, "size": _number(0, math.inf), "uri": _string},
        )
        checked.uris.append((f"{path}.uri", value["uri"], rendition))

    return check


def _object(
    value: Any,
    path: str,
    checked: Checked,
    *,
    required: dict[str, Check],
    optional: dict[str, Check] | None = None,
    ignore: tuple[str, ...] = (),
) -> None:
    optional = optional or {}
    if not isinstance(value, dict):
        raise PayloadError(path, "must be an object")
    for key in value:
        if key not in required and key not in optional and key not in ignore:
            raise PayloadError(f"{path}.{key}", "is not allowed")
    for key, check in required.items():
        if key not in value or value[key] is None:
            raise PayloadError(f"{path}.{key}", "is required")
        check(value[key], f"{path}.{key}", checked)
    for key, check in optional.items():
        if key in value and value[key] is not None:
            check(value[key], f"{path}.{key}", checked)


def _array_of(check: Check, *, min_items: int = 0) -> Check:
    def check_all(value: Any, path: str, checked: Checked) -> None:
        if not isinstance(value, list):
            raise PayloadError(path, "must be an array")
        if len(value) < min_items:
            raise PayloadError(path, f"must contain at least {min_items} items")
        for i, item in enumerate(value):
            check(item, f"{path}[{i}]", checked)

    return check_all


def _card_media(value: Any, path: str, checked: Checked) -> None:
    _object(
        value,
        path,
        checked,
        required={"tag": _string, "src": _file()},
        optional={"height": _one_of(CARD_HEIGHTS), "thumbnail": _file()},
    )


def _suggestion(value: Any, path: str, checked: Checked) -> None:
    def reply(inner: Any, inner_path: str, inner_checked: Checked) -> None:
        _object(inner, inner_path, inner_checked, required={"text": _string})

    _object(value, path, checked, required={"reply": reply})


def _card(value: Any, path: str, checked: Checked) -> None:
    _object(
        value,
        path,
        checked,
        # A card's own `type` is as undocumented as the payload's: any non-empty string.
        required={
            "type": _string,
            "title": _string,
            "description": _string,
            "suggestions": _array_of(_suggestion),
        },
        optional={
            "orientation": _one_of(CARD_ORIENTATIONS),
            "align": _one_of(CARD_ALIGNMENTS),
            "text": _string,
            "namespace": _string,
            "language_code": _string,
            "media": _card_media,
        },
    )


@dataclass(frozen=True)
class Variant:
    """One payload type: the spec's name for it (§3.3) and its fields besides `type`."""

    doc_name: str
    required: dict[str, Check]
    optional: dict[str, Check] = field(default_factory=dict)


_CATEGORY = _one_of(MEDIA_CATEGORIES)

# The assumed `payload.type` readings (G4), one row per documented variant (§3.3). The generic
# "Template message payload" (`{template_id}` with no type, RCS/Telegram) is not in the table.
PAYLOAD_TYPES: dict[str, Variant] = {
    "TEXT": Variant("Text message payload", required={"text": _string}),
    "IMAGE": Variant(
        "Image file message payload",
        # G15: no IMAGE category exists; the media enum is what is checked.
        required={
            "category": _CATEGORY,
            "src": _file(),
            "thumbnail": _file("thumbnail"),
            "preview": _file("preview"),
        },
        optional={"name": _string},
    ),
    "MEDIA": Variant(
        "Media file message payload",
        required={"category": _CATEGORY, "src": _file()},
        optional={"name": _string, "thumbnail": _file("thumbnail"), "preview": _file("preview")},
    ),
    "LOCATION": Variant(
        "Location message payload",
        required={"latitude": _number(-90, 90), "longitude": _number(-180, 180)},
    ),
    "CONTACT": Variant(
        "Contact message payload",
        required={"firstname": _string, "lastname": _string, "phone": _string},
        optional=dict.fromkeys(
            ("email", "country", "country_code", "city", "street", "birthday"), _string
        ),
    ),
    "CARD": Variant(
        "Card message payload (WhatsApp template)",
        required={"template_id": _string},
        optional={"body_variables": _strings, "header_variables": _strings},
    ),
    "CAROUSEL": Variant(
        "Carousel message payload",
        required={
            "width": _one_of(CAROUSEL_WIDTHS),
            "content": _array_of(_card, min_items=1),
        },
    ),
}

# §3.2, by channel type; WeChat's payload is undocumented and takes TEXT only (G17).
CAPABILITIES: dict[str, frozenset[str]] = {
    "RCS": frozenset({"TEXT", "MEDIA", "IMAGE", "CAROUSEL"}),
    "SMS": frozenset({"TEXT"}),
    "TG": frozenset({"TEXT", "MEDIA", "IMAGE", "LOCATION", "CONTACT"}),
    "VI": frozenset({"TEXT", "IMAGE"}),
    "WA": frozenset({"TEXT", "IMAGE", "MEDIA", "LOCATION", "CONTACT", "CARD"}),
    "WECHAT": frozenset({"TEXT"}),
}


def validate(channel_type: str, payload: Any) -> Checked:
    """Check a send's payload for a channel type; raise PayloadError naming the field."""
    if not isinstance(payload, dict):
        raise PayloadError("payload", "must be an object")
    kind = payload.get("type")
    if kind is None:
        raise PayloadError("payload.type", "is required")
    variant = PAYLOAD_TYPES.get(kind) if isinstance(kind, str) else None
    if variant is None:
        raise PayloadError("payload.type", f"must be one of [{', '.join(PAYLOAD_TYPES)}]")
    if kind not in CAPABILITIES.get(channel_type, frozenset()):
        raise PayloadError("payload.type", f"{kind} cannot be sent on a {channel_type} channel")
    checked = Checked(type=kind)
    _object(
        payload,
        "payload",
        checked,
        required=variant.required,
        optional=variant.optional,
        ignore=("type",),
    )
    return checked


def placeholders(text: str) -> int:
    """Return how many distinct `{{n}}` placeholders a template text has."""
    return len(set(_PLACEHOLDER.findall(text)))
