"""Check an OutBoundMsg against the shapes of spec §3.3 and §5; say which field is wrong."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from integrations.sandbox.envelopes import JSON, field_error

SEND_TYPES = (
    "audio",
    "document",
    "image",
    "location",
    "system",
    "text",
    "video",
    "voice",
    "contacts",
    "template",
    "optin",
    "optout",
)
TYPE_OBJECTS = ("text", "image", "video", "audio", "document", "location", "contacts", "template")
MEDIA = ("image", "video", "audio", "document")
BUTTON_TYPES = ("QUICK_REPLY", "URL", "PHONE_NUMBER")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


Err = Callable[..., None]


def validate_outbound(body: Any) -> list[JSON]:
    """Return the ApiFieldErrors of a send body ([] when its shape is right)."""
    if not isinstance(body, dict):
        return [field_error("", "The body must be a JSON object (OutBoundMsg).", "TYPE_MISMATCH")]
    errors: list[JSON] = []

    def err(field: str, description: str, code: str = "INVALID") -> None:
        errors.append(field_error(field, description, code))

    _check_envelope(body, err)
    _check_type_object(body, body.get("type"), err)
    _check_options(body.get("options"), err)
    return errors


def _check_envelope(body: dict[str, Any], err: Err) -> None:
    """The fields every send has: channel, type, mask, recipient, one object of the type."""
    if not _is_str(body.get("channelId")):
        err("channelId", "channelId is required.", "REQUIRED")
    kind = body.get("type")
    if kind not in SEND_TYPES:
        err("type", f"type must be one of {', '.join(SEND_TYPES)}.", "INVALID_ENUM")
    if not isinstance(body.get("mask"), bool):
        err("mask", "mask is required and must be a boolean.", "REQUIRED")

    to = body.get("to")
    if not isinstance(to, dict):
        err("to", "to is required (OutBoundContact).", "REQUIRED")
    elif not any(_is_str(to.get(k)) for k in ("contactId", "phone", "email")):
        err("to", "to needs contactId, phone or email.", "REQUIRED")
    elif to.get("phone") not in (None, "") and not re.fullmatch(r"\d{6,15}", str(to["phone"])):
        err("to.phone", "to.phone must be digits with the country code, no '+' or spaces.")

    for name in TYPE_OBJECTS:
        if name != kind and body.get(name) not in (None, [], {}):
            err(
                name,
                f"{name} is not allowed with type {kind!r}: send only the object of the type.",
                "NOT_ALLOWED",
            )


def _check_type_object(body: dict[str, Any], kind: Any, err: Err) -> None:
    """The object of the send's type (text, media, location, contacts, template)."""
    if kind == "voice":
        err(
            "type",
            "There is no voice object in OutBoundMsg: send voice notes as audio.",
            "NOT_SUPPORTED",
        )
    elif kind == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not _is_str(text.get("body")):
            err("text.body", "text.body is required.", "REQUIRED")
        elif len(text["body"]) > 4096:
            err("text.body", "text.body is longer than 4096 characters.", "TOO_LONG")
    elif kind in MEDIA:
        media = body.get(kind)
        if not isinstance(media, dict) or not _is_str(media.get("link")):
            err(f"{kind}.link", f"{kind}.link (public URL of the file) is required.", "REQUIRED")
        elif not _URL.match(media["link"]):
            err(f"{kind}.link", f"{kind}.link must be an http(s) URL.", "INVALID_URL")
    elif kind == "location":
        location = body.get("location")
        if not isinstance(location, dict):
            err("location", "location is required.", "REQUIRED")
        else:
            lat, lng = _number(location.get("latitude")), _number(location.get("longitude"))
            if lat is None or not -90 <= lat <= 90:
                err("location.latitude", "location.latitude must be a number from -90 to 90.")
            if lng is None or not -180 <= lng <= 180:
                err("location.longitude", "location.longitude must be a number from -180 to 180.")
    elif kind == "contacts":
        cards = body.get("contacts")
        if not isinstance(cards, list) or not cards:
            err("contacts", "contacts must be a non-empty array of contact cards.", "REQUIRED")
        else:
            for i, card in enumerate(cards):
                card_name = card.get("name") if isinstance(card, dict) else None
                if not isinstance(card_name, dict) or not (
                    _is_str(card_name.get("formatted_name")) or _is_str(card_name.get("first_name"))
                ):
                    err(
                        f"contacts[{i}].name",
                        "A contact card needs name.formatted_name.",
                        "REQUIRED",
                    )
    elif kind == "template":
        template = body.get("template")
        if not isinstance(template, dict) or not (
            _is_str(template.get("code")) or _is_str(template.get("id"))
        ):
            err("template", "template.code or template.id is required.", "REQUIRED")
        elif template.get("data") is not None and not isinstance(template["data"], dict):
            err("template.data", "template.data must be an object of placeholder values.")


def _check_options(options: Any, err: Err) -> None:
    """The buttons of `options` (TmplElement)."""
    if options is not None:
        buttons = options.get("buttons") if isinstance(options, dict) else None
        if not isinstance(buttons, list):
            err("options.buttons", "options.buttons must be an array.")
        else:
            if len(buttons) > 3:
                err("options.buttons", "At most 3 buttons are allowed.", "TOO_MANY")
            for i, button in enumerate(buttons):
                where = f"options.buttons[{i}]"
                if not isinstance(button, dict):
                    err(where, "A button must be an object (TmplElement).")
                    continue
                if button.get("type", "QUICK_REPLY") not in BUTTON_TYPES:
                    err(
                        f"{where}.type",
                        f"type must be one of {', '.join(BUTTON_TYPES)}.",
                        "INVALID_ENUM",
                    )
                if button.get("type") == "URL" and not _is_str(button.get("url")):
                    err(f"{where}.url", "A URL button needs url.", "REQUIRED")
                if button.get("type") == "PHONE_NUMBER" and not _is_str(button.get("phone")):
                    err(f"{where}.phone", "A PHONE_NUMBER button needs phone.", "REQUIRED")
                if not _is_str(button.get("label")) and not _is_str(button.get("name")):
                    err(f"{where}.label", "A button needs a label.", "REQUIRED")
