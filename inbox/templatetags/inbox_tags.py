"""Template filters of the agent pages: safe links in message text, safe media URLs, labels.

Everything customers and platforms send is text. `linkify` escapes it first and only then wraps
the http(s) URLs it finds in links, so no markup in a message can ever reach the page.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from django import template
from django.utils import timezone
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from inbox.selectors.messages import (
    MEDIA_TYPE_VALUES,
    clock_duration,
    media_kind_label,
    message_media,
)
from inbox.selectors.thread import message_shown_state
from inbox.send_failures import send_failure_text

register = template.Library()

# A URL in *escaped* text: it cannot contain a raw quote or angle bracket (escaping removed
# them), and it stops before the entities escaping made of them.
_ESCAPED_URL = re.compile(
    r"\bhttps?://(?:(?!&(?:lt|gt|quot|#x27|#39);)[^\s<>\"'])+",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?*_~"


def _trim(url: str) -> tuple[str, str]:
    """Split trailing punctuation off a URL, keeping balanced parentheses (Wikipedia links)."""
    tail = ""
    while url:
        last = url[-1]
        unbalanced = last == ")" and url.count("(") < url.count(")")
        if last in _TRAILING or unbalanced:
            url, tail = url[:-1], last + tail
        elif url.endswith("&amp;"):
            url, tail = url[:-5], "&amp;" + tail
        else:
            break
    return url, tail


@register.filter(is_safe=True)
def linkify(value: Any) -> SafeString:
    """Return text escaped, with its http(s) URLs made into links that open a new tab."""
    escaped = str(conditional_escape("" if value is None else value))
    out: list[str] = []
    pos = 0
    for match in _ESCAPED_URL.finditer(escaped):
        url, tail = _trim(match.group(0))
        if len(url) <= len("https://"):
            continue
        out.append(escaped[pos : match.start()])
        # `url` is a piece of escaped text: it holds no quote, so it cannot leave the attribute.
        out.append(
            f'<a href="{url}" rel="noopener noreferrer nofollow" target="_blank">{url}</a>{tail}'
        )
        pos = match.end()
    out.append(escaped[pos:])
    return mark_safe("".join(out))  # noqa: S308 - built from escaped text only


@register.filter
def safe_url(value: Any) -> str:
    """Return the value if it is an http(s) URL, else "" (no javascript:, data: or relative)."""
    text = str(value or "").strip()
    return text if re.match(r"^https?://[^\s]+$", text, re.IGNORECASE) else ""


def _coordinates(message: Any) -> tuple[float | None, float | None]:
    """Return a message's latitude and longitude, each None unless a finite number."""
    values = (getattr(message, "latitude", None), getattr(message, "longitude", None))
    lat, lon = (v if isinstance(v, float | int) and math.isfinite(v) else None for v in values)
    return lat, lon


@register.filter
def map_url(message: Any) -> str:
    """Return an OpenStreetMap link for a location message."""
    lat, lon = _coordinates(message)
    if lat is None or lon is None:
        return ""
    return (
        f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=16/{lat:.6f}/{lon:.6f}"
    )


@register.filter
def coordinates(message: Any) -> str:
    """Return a location's coordinates as "48.858400, 2.294500"."""
    lat, lon = _coordinates(message)
    if lat is None or lon is None:
        return ""
    return f"{lat:.6f}, {lon:.6f}"


@register.filter
def initials(value: Any) -> str:
    """Return up to two initials for an avatar ("Anna Müller" -> "AM")."""
    words = [w for w in re.split(r"\s+", str(value or "").strip()) if w]
    letters = "".join(w[0] for w in words[:2] if w[0].isalnum())
    return (letters or "?").upper()


@register.filter
def iso(value: datetime | None) -> str:
    """Return a datetime as an ISO 8601 UTC string for `<time datetime>` and scripts."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@register.filter
def epoch_ms(value: datetime | None) -> int:
    """Return a datetime as milliseconds since the epoch (thread ordering in scripts)."""
    return int(value.timestamp() * 1000) if value is not None else 0


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


@register.filter
def ago(value: datetime | None) -> str:
    """Return "2 min ago" style text (the browser keeps it current)."""
    if value is None:
        return ""
    return _ago(max(timezone.now() - value, timedelta(0)))


@register.filter
def clock(value: datetime | None) -> str:
    """Return a UTC time for pages without scripts ("14:05 UTC" or "17 Nov 14:05 UTC")."""
    if value is None:
        return ""
    value = value.astimezone(UTC)
    if value.date() == timezone.now().astimezone(UTC).date():
        return f"{value:%H:%M} UTC"
    return f"{value:%d %b %H:%M} UTC"


@register.filter
def card_name(card: Any) -> str:
    """Return the display name of a WhatsApp-style contact card."""
    if not isinstance(card, dict):
        return ""
    name = card.get("name")
    if isinstance(name, dict):
        full = name.get("formatted_name") or " ".join(
            str(name.get(k) or "") for k in ("first_name", "last_name")
        )
        return str(full).strip()
    return str(name or "").strip()


@register.filter
def card_values(card: Any, key: str) -> list[str]:
    """Return the phones, emails or urls of a contact card as plain strings."""
    if not isinstance(card, dict):
        return []
    field = {"phones": "phone", "emails": "email", "urls": "url"}.get(key, key)
    values = []
    for item in card.get(key) or []:
        if isinstance(item, dict) and item.get(field):
            values.append(str(item[field]))
        elif isinstance(item, str):
            values.append(item)
    return values


@register.filter
def card_org(card: Any) -> str:
    """Return "Title, Company" from a contact card's organisation."""
    org = card.get("org") if isinstance(card, dict) else None
    if not isinstance(org, dict):
        return ""
    return ", ".join(str(org[k]) for k in ("title", "company") if org.get(k))


@register.filter
def tel_href(value: Any) -> str:
    """Return a tel: link for a phone number (digits and a leading + only)."""
    digits = re.sub(r"[^\d+]", "", str(value or ""))
    return f"tel:{quote(digits)}" if digits else ""


@register.filter
def template_source(template: Any) -> str:
    """Return a template's text with its placeholders, as `template_render` fills it."""
    if template is None:
        return ""
    parts = (template.header, template.body, template.footer)
    return str(template.text or "\n\n".join(p for p in parts if p))


# --- An outbound message's delivery, as agents read it ------------------------------------------


@register.filter
def failure_text(message: Any) -> str:
    """Return why a message failed, in words without internals (`send_failure_text`)."""
    return send_failure_text(message.error_code, message.error_title)


@register.filter
def shown_state(message: Any) -> str:
    """Return what the thread shows of a message's delivery: its status, and the attempt of a
    send being retried ("queued-2"), so a live refresh redraws each new attempt."""
    return message_shown_state(message)


@register.simple_tag
def send_attempts_max() -> int:
    """Return how many attempts a send gets before it fails (SEND_MAX_ATTEMPTS)."""
    from django.conf import settings

    return int(settings.SEND_MAX_ATTEMPTS)


@register.simple_tag
def media_attempts_max() -> int:
    """Return how many attempts a media download gets before it fails (MEDIA_FETCH_ATTEMPTS)."""
    from django.conf import settings

    return int(settings.MEDIA_FETCH_ATTEMPTS)


@register.filter
def is_media(message: Any) -> bool:
    """Say whether a message's type carries a file (image, video, audio, voice, document)."""
    return str(message.type) in MEDIA_TYPE_VALUES


@register.filter
def media_file(message: Any) -> Any:
    """Return a message's stored-file row, or None (the thread's query selected it)."""
    return message_media(message)


@register.filter
def media_label(message: Any) -> str:
    """Return what a media message is called in words ("Photo", "Voice note")."""
    return media_kind_label(str(message.type))


@register.filter
def duration_clock(seconds: Any) -> str:
    """Return a length in seconds as m:ss (or h:mm:ss)."""
    return clock_duration(seconds)


def _thumb_edge(media: Any) -> tuple[int, int]:
    from django.conf import settings

    edge = int(settings.MEDIA_THUMBNAIL_EDGE)
    width, height = int(media.width or 0), int(media.height or 0)
    if not width or not height:
        return 0, 0
    scale = min(1.0, edge / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


@register.filter
def thumb_width(media: Any) -> int:
    """Return the width a picture's thumbnail is shown at (its size kept, so nothing jumps)."""
    return _thumb_edge(media)[0]


@register.filter
def thumb_height(media: Any) -> int:
    """Return the height a picture's thumbnail is shown at."""
    return _thumb_edge(media)[1]
