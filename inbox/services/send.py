"""Send messages to customers: what is checked before any platform call, and the agent's
second tries.

    message_send()      checks what can be checked before any platform call (channel, window,
                        template approval and placeholders, what the platform can send),
                        stores the row `queued` (once per idempotency key) and starts its
                        delivery after commit (`inbox.services.deliver`); a reply behind an
                        unsettled one of its conversation is started when that one settles.
    message_retry()     a failed or unconfirmed message again, a new set of attempts.
    message_resend_as_template()
                        a template in place of a message the window refused.

There is no idempotency key on `message/send` (XMS spec §5.0, §7): a blind retry can deliver
twice, so what leaves again leaves only because an agent (or the account's option) said so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from inbox import live
from inbox.models import Message, MessageStatusChange, Session, TimelineEntry
from inbox.selectors.contacts import identity_opt_out, opt_out_reason
from inbox.services.deliver import (
    delivery_enqueue,
    delivery_start,
    message_update_publish,
    waiting_in_line,
)
from inbox.services.refusals import SendRefused
from inbox.services.sessions_local import sessions_kept_here
from inbox.services.stored_files import upload_path_of
from inbox.services.timeline import timeline_add
from inbox.window import session_window
from integrations.base import (
    MEDIUM_LABELS,
    Capability,
    MessageType,
)
from integrations.models import Template, TemplateApproval
from integrations.registry import get_provider
from integrations.services.accounts import account_kind

logger = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
SENDABLE_TYPES = frozenset(
    {
        MessageType.TEXT,
        MessageType.IMAGE,
        MessageType.VIDEO,
        MessageType.AUDIO,
        MessageType.VOICE,
        MessageType.DOCUMENT,
        MessageType.LOCATION,
        MessageType.CONTACT,
        MessageType.TEMPLATE,
    }
)


@dataclass
class Draft:
    """What an agent or integrator wants to send."""

    type: str = MessageType.TEXT.value
    body: str = ""
    media_url: str = ""
    media_filename: str = ""
    media_mime_type: str = ""
    caption: str = ""
    latitude: float | None = None
    longitude: float | None = None
    location_name: str = ""
    location_address: str = ""
    contact_cards: list[dict[str, Any]] = field(default_factory=list)
    buttons: list[dict[str, str]] = field(default_factory=list)
    template: Template | None = None
    template_data: Mapping[str, Any] = field(default_factory=dict)


def template_render(template: Template, data: Mapping[str, Any]) -> str:
    """Return the template text with its placeholders filled (what the customer will see)."""
    text = template.text or "\n\n".join(
        p for p in (template.header, template.body, template.footer) if p
    )
    return _PLACEHOLDER.sub(lambda m: str(data.get(m.group(1), "")), text)


def template_missing(template: Template, data: Mapping[str, Any]) -> list[str]:
    """Return the placeholders a send leaves empty."""
    names = [p.get("name", "") for p in template.placeholders or []]
    return [n for n in names if n and str(data.get(n, "")).strip() == ""]


def _check(session: Session, draft: Draft) -> None:
    channel = session.channel
    if not channel.is_active:
        raise SendRefused("channel_inactive", f"The channel {channel} is not active.")
    if session.account.is_active is False:
        raise SendRefused(
            "account_inactive", f"The platform account {session.account} is disabled."
        )
    try:
        kind = MessageType(draft.type)
    except ValueError:
        raise SendRefused("invalid_type", f"Unknown message type {draft.type!r}.") from None
    if kind not in SENDABLE_TYPES:
        raise SendRefused("invalid_type", f"A {kind} message cannot be sent.")
    provider = get_provider(account_kind(session.account_id))
    if not provider.can_send(channel.medium, kind):
        raise SendRefused(
            "unsupported_type",
            f"{provider.label} cannot send {_a(kind)} on {MEDIUM_LABELS.get(channel.medium, channel.medium)} "
            f"({channel}).",
        )
    opted_out_at = identity_opt_out(session.identity)
    if opted_out_at is not None:
        raise SendRefused("opted_out", opt_out_reason(opted_out_at))
    if kind is MessageType.TEXT and not draft.body.strip():
        raise SendRefused("empty", "The message is empty.")
    if kind is MessageType.TEXT and len(draft.body) > 4096:
        raise SendRefused("too_long", "A text message can be at most 4096 characters.")
    if kind in (
        MessageType.IMAGE,
        MessageType.VIDEO,
        MessageType.AUDIO,
        MessageType.VOICE,
        MessageType.DOCUMENT,
    ) and not re.match(r"^https?://", draft.media_url):
        raise SendRefused("media_url", "A media message needs the public http(s) URL of its file.")
    if kind in (MessageType.AUDIO, MessageType.VOICE) and draft.caption.strip():
        # An audio message has no caption (spec §5.5; WhatsApp drops it): refuse, not lose it.
        raise SendRefused(
            "caption_not_allowed",
            "An audio message cannot carry a caption; send the text as a message of its own.",
        )
    if kind is MessageType.LOCATION and (draft.latitude is None or draft.longitude is None):
        raise SendRefused("location", "A location needs a latitude and a longitude.")
    if kind is MessageType.CONTACT and not draft.contact_cards:
        raise SendRefused("contacts", "A contact message needs at least one contact card.")
    if len(draft.buttons) > 3:
        raise SendRefused("buttons", "At most 3 buttons can be attached.")
    _refuse_media_link_if_uploads_only(session, draft)
    if kind is MessageType.TEMPLATE:
        provider = get_provider(session.account.kind)
        if not provider.can(Capability.TEMPLATES):
            raise SendRefused("unsupported", provider.unsupported(Capability.TEMPLATES).detail)
        template = draft.template
        if template is None:
            raise SendRefused("template_required", "Choose a template.")
        if template.account_id != session.account_id or not template.is_active:
            raise SendRefused(
                "template_unavailable", f"The template {template} is no longer available."
            )
        approval = TemplateApproval.objects.filter(template=template, channel=channel).first()
        if approval is None or not approval.is_approved:
            state = approval.status.lower() if approval else "not submitted"
            raise SendRefused(
                "template_not_approved", f"The template {template} is {state} on {channel}."
            )
        missing = template_missing(template, draft.template_data)
        if missing:
            raise SendRefused(
                "template_data", f"Fill in the template's placeholders: {', '.join(missing)}."
            )
        return
    _refuse_reply_if_closed(session)
    window = session_window(session)
    if not window.is_open:
        raise SendRefused("window_closed", window.reason)


def _a(kind: MessageType) -> str:
    word = {MessageType.TEXT: "text message", MessageType.CONTACT: "contact card"}.get(
        kind, kind.value
    )
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _refuse_media_link_if_uploads_only(session: Session, draft: Draft) -> None:
    """Refuse a media link on a platform that takes files only as uploads, unless it is one of
    our stored uploads (the delivery hands that file over)."""
    if not draft.media_url or upload_path_of(draft.media_url) is not None:
        return
    provider = get_provider(account_kind(session.account_id))
    if provider.can(Capability.MEDIA_UPLOAD):
        raise SendRefused(
            "media_link",
            f"{provider.label} takes files only as uploads, not links: attach the file instead.",
        )


SESSION_CLOSED_REASON = (
    "This session is closed: a reply cannot be sent into it. Send a template to start a new "
    "conversation with the customer."
)


def _refuse_reply_if_closed(session: Session) -> None:
    """Refuse a free-form message in a closed session (a template may start a new one).

    The platform ends a closed session for good: the customer's next message opens a new one
    (spec §6.4, §6.6), and only a template may open a conversation.
    """
    if session.status != Session.Status.CLOSED:
        return
    if sessions_kept_here(session):
        raise SendRefused("session_closed", "This conversation is closed; reopen it to reply.")
    raise SendRefused("session_closed", SESSION_CLOSED_REASON)


def message_send(
    session: Session,
    draft: Draft,
    *,
    author: Any = None,
    idempotency_key: str = "",
    replaces: Message | None = None,
) -> tuple[Message, bool]:
    """Queue a message for the customer of `session`; return it and whether it is new.

    The same idempotency key returns the message it first created, however often it is sent.
    Raises `SendRefused`, before any platform call, when the message cannot go out as asked.
    """
    key = idempotency_key.strip()[:100]
    if key:
        existing = Message.objects.filter(
            account_id=session.account_id, idempotency_key=key
        ).first()
        if existing is not None:
            _same_request_or_refuse(existing, session)
            return existing, False
    _check(session, draft)
    now = timezone.now()
    kind = MessageType(draft.type)
    body = draft.body
    if kind is MessageType.TEMPLATE and draft.template is not None:
        body = template_render(draft.template, draft.template_data)
    try:
        with transaction.atomic():
            message = Message.objects.create(
                account_id=session.account_id,
                session=session,
                direction=Message.Direction.OUTBOUND,
                type=kind.value,
                body=body,
                **_draft_columns(draft),
                status=Message.Status.QUEUED,
                sent_at=now,
                author=author if getattr(author, "pk", None) else None,
                idempotency_key=key,
                replaces=replaces,
            )
            MessageStatusChange.objects.create(
                message=message, status=Message.Status.QUEUED, occurred_at=now
            )
    except IntegrityError:
        if not key:
            raise
        # Another request with the same key won the race: answer with its message.
        existing = Message.objects.get(account_id=session.account_id, idempotency_key=key)
        _same_request_or_refuse(existing, session)
        return existing, False
    Session.objects.filter(pk=session.pk).update(
        last_activity_at=Greatest(F("last_activity_at"), now), last_message=message, unread_count=0
    )
    live.publish(
        live.MESSAGE_CREATED,
        session_id=session.pk,
        channel_id=session.channel_id,
        message_id=message.pk,
    )
    # A reply behind an unsettled one of the same conversation gets no task of its own: the
    # earlier one starts it when it settles (`conversation_next_start`), the reaper if that is
    # lost. A burst of replies to one customer thus costs no polling. (An eager queue runs
    # each delivery at commit, in order, and `conversation_next_start` starts nothing then.)
    eager = settings.CELERY_TASK_ALWAYS_EAGER
    if eager or not Message.objects.filter(waiting_in_line(now), pk=message.pk).exists():
        channel_id = session.channel_id
        transaction.on_commit(lambda: delivery_start(message.pk, channel_id))
    return message, True


def _draft_columns(draft: Draft) -> dict[str, Any]:
    """The Message columns a draft fills as written (type and body are decided by the send)."""
    return {
        "caption": draft.caption,
        "media_url": draft.media_url,
        "media_filename": draft.media_filename,
        "media_mime_type": draft.media_mime_type,
        "latitude": draft.latitude,
        "longitude": draft.longitude,
        "location_name": draft.location_name,
        "location_address": draft.location_address,
        "attachments": list(draft.contact_cards),
        "buttons": list(draft.buttons),
        "template": draft.template,
        "template_data": {k: str(v) for k, v in draft.template_data.items()},
    }


def _same_request_or_refuse(existing: Message, session: Session) -> None:
    if existing.session_id != session.pk:
        raise SendRefused(
            "idempotency_conflict",
            "This idempotency key was already used for a message in another session.",
        )


RETRYABLE = (Message.Status.FAILED, Message.Status.UNCONFIRMED)


def message_retry(message: Message, *, by: Any = None) -> Message:
    """Send a failed or unconfirmed message again (a new set of attempts).

    An unconfirmed message may have reached the customer: sending it again may duplicate it,
    which the agent is told before choosing to. A copy of the first send that shows up later is
    kept on the message ("delivered twice").
    """
    if message.direction != Message.Direction.OUTBOUND or message.status not in RETRYABLE:
        raise SendRefused(
            "not_failed", "Only a failed or unconfirmed outbound message can be sent again."
        )
    opted_out_at = identity_opt_out(message.session.identity)
    if opted_out_at is not None:
        raise SendRefused("opted_out", opt_out_reason(opted_out_at))
    if message.type != MessageType.TEMPLATE:
        _refuse_reply_if_closed(message.session)
    refused_for_window = message.error_code in get_provider(message.account.kind).window_error_codes
    if message.type != MessageType.TEMPLATE and (
        refused_for_window or not session_window(message.session).is_open
    ):
        raise SendRefused(
            "window_closed",
            "The customer's 24-hour window is closed; send this as a template instead.",
        )
    was = message.status
    updated = Message.objects.filter(pk=message.pk, status=was).update(
        status=Message.Status.QUEUED,
        attempts=0,
        error_code="",
        error_title="",
        failed_at=None,
        claimed_at=None,
        next_attempt_at=None,
        first_attempt_at=None,
        outcome_unknown=False,
    )
    if updated:
        message_update_publish(message)
        timeline_add(
            message.account,
            session=message.session,
            kind=TimelineEntry.Kind.EVENT,
            summary=(
                f"Message #{message.pk} "
                + (
                    "sent again though unconfirmed"
                    if was == Message.Status.UNCONFIRMED
                    else "retried"
                )
                + (f" by {by}" if by else "")
            ),
            occurred_at=timezone.now(),
        )
        transaction.on_commit(lambda: delivery_enqueue(message.pk))
    message.refresh_from_db()
    return message


def message_resend_as_template(
    message: Message,
    template: Template,
    data: Mapping[str, Any],
    *,
    by: Any = None,
    idempotency_key: str = "",
) -> Message:
    """Send a template in place of a message the 24-hour window refused."""
    if message.direction != Message.Direction.OUTBOUND or message.status != Message.Status.FAILED:
        raise SendRefused("not_failed", "Only a failed outbound message can be re-sent.")
    replacement, _ = message_send(
        message.session,
        Draft(type=MessageType.TEMPLATE.value, template=template, template_data=data),
        author=by,
        idempotency_key=idempotency_key,
        replaces=message,
    )
    return replacement
