"""The composer's helpers: template choice and prefill, canned replies filled for a session."""

from __future__ import annotations

import re
from typing import Any

from inbox.models import CannedReply, Session
from inbox.views.common import WindowView
from integrations.base import MEDIUM_LABELS, Capability, MessageType
from integrations.models import Template
from integrations.registry import get_provider

_CANNED_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_.]+)\s*\}\}")


COMPOSE_MODES = ("reply", "note", "template")


def reply_blocked(session: Session, window: WindowView) -> bool:
    """Say whether a free-form reply cannot go out: the session is closed or the window is."""
    return session.status == Session.Status.CLOSED or window.is_closed


def compose_mode(asked: str, session: Session, window: WindowView) -> str:
    """Return the mode the composer opens in: the one asked for when it can send, else the
    one that can (a template when replies are blocked, a reply otherwise).

    Every way the composer is drawn (the page, a refusal, the answer to a send, a live
    refresh) goes through here, so it never comes back in a mode whose send is refused.
    """
    blocked = reply_blocked(session, window)
    if asked in ("note", "template") or (asked == "reply" and not blocked):
        return asked
    return "template" if blocked else "reply"


def composer_state(session: Session, window: WindowView, *, opted_out: bool = False) -> str:
    """Name what decides the composer's modes; a live refresh redraws it when this changes."""
    if opted_out:
        return "opted-out"
    return "session-closed" if session.status == Session.Status.CLOSED else window.state


# What the file picker offers for each type a channel can carry.
_ACCEPT = {
    MessageType.IMAGE: "image/*",
    MessageType.VIDEO: "video/*",
    MessageType.AUDIO: "audio/*",
    MessageType.VOICE: "audio/*",
    MessageType.DOCUMENT: ".pdf,.doc,.docx,.xls,.xlsx,.ppt,.pptx,.odt,.ods,.odp,.rtf,.txt,.csv",
}


def channel_offers(session: Session) -> dict[str, Any]:
    """What the composer offers on this session's channel: files (and which), templates.

    From the platform's capability matrix (`Provider.sendable_types`): an SMS channel that
    carries only text shows no Attach, a Viber one takes pictures only.
    """
    provider = get_provider(session.account.kind)
    medium = session.channel.medium
    accept = []
    for kind, pattern in _ACCEPT.items():
        if provider.can_send(medium, kind) and pattern not in accept:
            accept.append(pattern)
    return {
        "attach_accept": ",".join(accept),
        "can_template": provider.can(Capability.TEMPLATES)
        and provider.can_send(medium, MessageType.TEMPLATE),
        "medium_label": MEDIUM_LABELS.get(medium, medium),
    }


def template_choice(templates: list[Template], value: str | None) -> Template | None:
    """Return the template with id `value` among those offered, or None."""
    try:
        template_id = int(value or "")
    except ValueError:
        return None
    return next((t for t in templates if t.pk == template_id), None)


def _contact_values(session: Session) -> dict[str, str]:
    contact = session.contact
    name = contact.name or (session.identity.profile_name if session.identity else "")
    first = name.split()[0] if name.split() else ""
    return {
        "name": name,
        "first_name": first,
        "phone": contact.phone,
        "email": contact.email,
        "language": contact.language,
    }


# Placeholder names that mean a contact field even when the template names no `source`.
_NAME_ALIASES = {
    "name": "name",
    "customer_name": "name",
    "contact_name": "name",
    "full_name": "name",
    "first_name": "first_name",
    "firstname": "first_name",
    "phone": "phone",
    "phone_number": "phone",
    "mobile": "phone",
    "email": "email",
    "language": "language",
}


def template_prefill(template: Template | None, session: Session) -> dict[str, str]:
    """Return placeholder values taken from the contact where a placeholder names one.

    A placeholder's `source` ("contact.name") wins; otherwise its name is matched against
    common contact fields ("name", "first_name", "phone", "email"). Others stay empty.
    """
    if template is None:
        return {}
    values = _contact_values(session)
    prefill: dict[str, str] = {}
    for placeholder in template.placeholders or []:
        name = str(placeholder.get("name") or "")
        if not name:
            continue
        source = str(placeholder.get("source") or "").lower()
        field = source.removeprefix("contact.") if source.startswith("contact.") else ""
        field = field or _NAME_ALIASES.get(name.lower(), "")
        prefill[name] = values.get(field, "")
    return prefill


def template_form_fields(template: Template | None, values: dict[str, str]) -> list[dict[str, Any]]:
    """Return the template form's fields: one per placeholder, in order of use."""
    if template is None:
        return []
    return [
        {
            "name": p["name"],
            "label": p.get("label") or p["name"],
            "sample": p.get("sample", ""),
            "value": values.get(p["name"], ""),
        }
        for p in template.placeholders or []
        if p.get("name")
    ]


def canned_reply_render(reply: CannedReply, session: Session, user: Any) -> str:
    """Return a canned reply's text with `{{contact.name}}`, `{{contact.first_name}}` and
    `{{agent.name}}` filled in (unknown placeholders are left as they are)."""
    values = {f"contact.{k}": v for k, v in _contact_values(session).items()}
    values["agent.name"] = str(user)
    return _CANNED_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), reply.body)
