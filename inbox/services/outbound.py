"""Send messages to customers: exactly once as far as the platform allows, failures explained.

The life of an outbound message:

    message_send()      checks what can be checked before any platform call (channel, window,
                        template approval and placeholders), stores the row `queued` (once per
                        idempotency key) and enqueues delivery after commit; a reply behind an
                        unsettled one of its conversation is started when that one settles.
    message_deliver()   claims the row (queued -> sending, a conditional UPDATE, so a task
                        delivered twice sends once), waits while an earlier reply in the same
                        conversation is unsettled (bounded), respects the channel's rate limit,
                        calls the platform and records the outcome:
                          accepted              -> sent, platform id stored, waiting receipts applied
                          connection/429/5xx    -> back to queued, retried with backoff and jitter
                          401/403               -> failed, account marked unhealthy
                          other 4xx / envelope  -> failed with the platform's reason and code
                          no answer (timeout)   -> outcome unknown: settled only by evidence
    message_reconcile() seeks that evidence (a receipt, the session history) over a window
                        measured from the first attempt (SEND_CONFIRM_WINDOW_SECONDS); without
                        any by its end the message is `unconfirmed` ("may not have been
                        delivered", with Send again). Sending again by itself is an account
                        option (`resend_unconfirmed`), off by default, within the attempt limit.
    messages_reap()     recovers rows a killed worker left `sending`, checks whose task was
                        lost, and queued rows whose task was lost.

There is no idempotency key on `message/send` (spec §5.0, §7): a blind retry can deliver twice.
Receipts (inbox.services.messages) take sent messages on to delivered, read or failed.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from config.queue import enqueue, queue_length
from inbox import live
from inbox.models import Message, MessageStatusChange, Session, TimelineEntry
from inbox.services.history import sends_correlate, session_history_fetch
from inbox.services.messages import (
    message_adopt,
    message_adopt_from_receipts,
    receipts_apply_orphans,
)
from inbox.services.timeline import timeline_add
from inbox.window import session_window
from integrations import ratelimit
from integrations.base import (
    AmbiguousError,
    AuthenticationError,
    Button,
    Location,
    Media,
    MessageType,
    OutboundRequest,
    ProviderError,
    RejectedError,
    TransientError,
    UnsupportedError,
    with_fresh_credentials,
)
from integrations.leases import database_released, lease_held
from integrations.models import Template, TemplateApproval
from integrations.registry import get_provider
from integrations.services.accounts import account_health_record

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


class SendRefused(Exception):
    """A message cannot be sent as asked; `code` is for programs, the text for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class DeliveryDeferred(Exception):
    """Try the delivery again in `countdown` seconds."""

    def __init__(self, countdown: float, reason: str) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.reason = reason


# --- Creating a message ---------------------------------------------------------------------------


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
    if kind is MessageType.TEMPLATE:
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


SESSION_CLOSED_REASON = (
    "This session is closed: a reply cannot be sent into it. Send a template to start a new "
    "conversation with the customer."
)


def _refuse_reply_if_closed(session: Session) -> None:
    """Refuse a free-form message in a closed session (a template may start a new one).

    The platform ends a closed session for good: the customer's next message opens a new one
    (spec §6.4, §6.6), and only a template may open a conversation.
    """
    if session.status == Session.Status.CLOSED:
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
                caption=draft.caption,
                media_url=draft.media_url,
                media_filename=draft.media_filename,
                media_mime_type=draft.media_mime_type,
                latitude=draft.latitude,
                longitude=draft.longitude,
                location_name=draft.location_name,
                location_address=draft.location_address,
                attachments=list(draft.contact_cards),
                buttons=list(draft.buttons),
                template=draft.template,
                template_data={k: str(v) for k, v in draft.template_data.items()},
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
    # earlier one starts it when it settles (`_next_in_conversation`), the reaper if that is
    # lost. A burst of replies to one customer thus costs no polling. (An eager queue runs
    # each delivery at commit, in order, and `_next_in_conversation` starts nothing then.)
    eager = settings.CELERY_TASK_ALWAYS_EAGER
    if eager or not Message.objects.filter(_in_line(now), pk=message.pk).exists():
        transaction.on_commit(lambda: _enqueue_delivery(message.pk))
    return message, True


def _same_request_or_refuse(existing: Message, session: Session) -> None:
    if existing.session_id != session.pk:
        raise SendRefused(
            "idempotency_conflict",
            "This idempotency key was already used for a message in another session.",
        )


def _enqueue_delivery(message_id: int, countdown: float = 0) -> None:
    # The row is stored; if the broker refuses, the reaper enqueues it once it is back.
    enqueue(
        "inbox.tasks.message_deliver",
        message_id,
        countdown=countdown,
        what=f"delivery of message {message_id}",
    )


# --- Delivering it -------------------------------------------------------------------------------


def _request_for(message: Message) -> OutboundRequest:
    session = message.session
    identity = session.identity
    contact = session.contact
    kind = MessageType(message.type)
    media = None
    if message.media_url:
        media = Media(
            link=message.media_url,
            mime_type=message.media_mime_type,
            filename=message.media_filename,
            caption=message.caption,
        )
    location = None
    if kind is MessageType.LOCATION:
        location = Location(
            latitude=message.latitude,
            longitude=message.longitude,
            name=message.location_name,
            address=message.location_address,
        )
    template = message.template
    return OutboundRequest(
        channel_external_id=session.channel.external_id,
        type=kind,
        to_contact_id=identity.external_id if identity else "",
        to_phone=(identity.address if identity and identity.address.isdigit() else "")
        or (contact.phone if contact.phone.isdigit() else ""),
        to_name=contact.name,
        body=message.body,
        media=media,
        location=location,
        contact_cards=tuple(message.attachments or ()) if kind is MessageType.CONTACT else (),
        buttons=tuple(
            Button(
                kind=b.get("type", "QUICK_REPLY"),
                label=b.get("label", ""),
                code=b.get("code", ""),
                url=b.get("url", ""),
                phone=b.get("phone", ""),
            )
            for b in message.buttons or []
        ),
        template_code=template.code if template else "",
        template_id=template.external_id if template else "",
        template_lang=template.lang if template else "",
        template_data=dict(message.template_data or {}),
    )


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: base, 2 base, 4 base... (capped), times 0.5 to 1."""
    base = min(
        settings.SEND_BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0),
        settings.SEND_BACKOFF_MAX_SECONDS,
    )
    return round(base * random.uniform(0.5, 1.0), 2)  # noqa: S311 - jitter, not crypto


def message_deliver(message_id: int) -> str:
    """Deliver one queued message to its platform; return what happened.

    Raises `DeliveryDeferred` when the task should run again later (rate limit, transient error).
    """
    now = timezone.now()
    queued = Message.objects.filter(
        pk=message_id, direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED
    )
    # One statement claims it unless an earlier reply of its conversation is unsettled.
    claimed = queued.exclude(_in_line(now)).update(
        status=Message.Status.SENDING,
        claimed_at=now,
        attempts=F("attempts") + 1,
        next_attempt_at=None,
    )
    if not claimed:
        if not queued.filter(_in_line(now)).exists():
            return "not claimable"
        # Started before the earlier reply settled (it starts this one when it does); look
        # again shortly in case that start was missed.
        wait = settings.SEND_ORDER_RECHECK_SECONDS
        queued.update(next_attempt_at=now + timedelta(seconds=wait))
        raise DeliveryDeferred(wait, "an earlier reply in this conversation is not settled yet")
    message = Message.objects.select_related(
        "account", "session__channel", "session__identity", "session__contact", "template"
    ).get(pk=message_id)
    if message.attempts > settings.SEND_MAX_ATTEMPTS:
        # Whoever queued it, no path goes beyond the limit; Retry starts a new set of attempts.
        Message.objects.filter(pk=message.pk).update(attempts=F("attempts") - 1)
        message.attempts -= 1
        message_fail(
            message,
            code="attempts",
            title=f"Not sent: all {settings.SEND_MAX_ATTEMPTS} attempts were used. Retry to "
            "start again.",
        )
        return "failed"
    # The claim is a lease, renewed while this runs: if the worker dies, the reaper recovers
    # the message within seconds (SEND_STALE_SECONDS), and never while it is still being sent.
    with lease_held(
        Message, [message.pk], message.claimed_at, still=Q(status=Message.Status.SENDING)
    ):
        return _deliver_claimed(message, now)


def _deliver_claimed(message: Message, now: datetime) -> str:
    channel = message.session.channel
    per_second = (
        channel.send_rate_limit
        if channel.send_rate_limit is not None
        else settings.SEND_RATE_LIMIT_PER_SECOND
    )
    wait = ratelimit.acquire(f"channel:{channel.pk}", per_second)
    if wait > 0:
        _requeue(message, at=now + timedelta(seconds=wait), undo_attempt=True)
        raise DeliveryDeferred(wait, "channel rate limit")
    provider = get_provider(message.account.kind)
    request = _request_for(message)
    database_released()  # a slow platform holds this thread, not a database connection too
    try:
        result = with_fresh_credentials(
            provider,
            message.account.config(),
            lambda config: provider.send_message(config, request),
        )
    except AmbiguousError as exc:
        # The platform may have the message (spec §5.0): only evidence settles it.
        after = settings.SEND_RECONCILE_AFTER_SECONDS
        Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            outcome_unknown=True,
            first_attempt_at=Coalesce("first_attempt_at", "claimed_at"),
            next_attempt_at=timezone.now() + timedelta(seconds=after),
            error_title=f"No answer from the platform.{DETAIL}{exc}",
        )
        _enqueue_reconcile(message.pk, after)
        return "outcome unknown"
    except TransientError as exc:
        return _transient(message, exc)
    except AuthenticationError as exc:
        account_health_record(message.account, error=f"The platform refused our credentials: {exc}")
        message_fail(
            message,
            code=str(exc.status or "auth"),
            title="The platform refused the account's credentials (HTTP "
            f"{exc.status}). An admin must fix the API key; then retry.{DETAIL}{exc}",
        )
        return "failed"
    except RejectedError as exc:
        code, title = _rejection(exc)
        message_fail(message, code=code, title=title)
        return "failed"
    except UnsupportedError as exc:  # the message cannot be expressed for this platform
        message_fail(message, code="unsupported", title=str(exc))
        return "failed"
    _accepted(message, result.external_id)
    return "sent"


@transaction.atomic
def _accepted(message: Message, external_id: str) -> None:
    """Record the platform's acceptance: `sent` and the platform id in one transaction.

    Apart, a worker killed between the two left a message `sent` with no platform id, which
    no reaper looks at and whose receipts can never land.
    """
    now = timezone.now()
    # The history import may have named it first (and even made a row of it): adopt, merge.
    message_adopt(message, external_id=external_id, at=now, also={"accepted_at": now})
    _healthy(message.account)
    _next_in_conversation(message)


def _in_line(now: datetime) -> Q:
    """Match replies that must wait for an earlier reply of their conversation.

    The customer must read replies in the order agents sent them, so a reply waits while an
    earlier one in the same conversation is queued or sending, for at most
    SEND_ORDER_WAIT_SECONDS after it was written: an earlier one that never settles (a platform
    that neither answers nor lists it) must not hold the conversation forever.
    """
    earlier = Message.objects.filter(
        session_id=OuterRef("session_id"),
        direction=Message.Direction.OUTBOUND,
        status__in=[Message.Status.QUEUED, Message.Status.SENDING],
        pk__lt=OuterRef("pk"),
    )
    waited = now - timedelta(seconds=settings.SEND_ORDER_WAIT_SECONDS)
    return Q(Exists(earlier), created_at__gt=waited)


def _next_in_conversation(message: Message) -> None:
    """Start the next reply of the conversation now that this one is settled."""
    waiting = (
        Message.objects.filter(
            session_id=message.session_id,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.QUEUED,
            pk__gt=message.pk,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if waiting is not None and not settings.CELERY_TASK_ALWAYS_EAGER:
        transaction.on_commit(lambda: _enqueue_delivery(waiting))


def _healthy(account: Any) -> None:
    # One UPDATE a minute at most, not one per message.
    stale = timezone.now() - timedelta(seconds=60)
    if account.last_success_at is None or account.last_success_at < stale:
        account_health_record(account)


def _requeue(message: Message, *, at: datetime, undo_attempt: bool = False, note: str = "") -> None:
    updates: dict[str, Any] = {
        "status": Message.Status.QUEUED,
        "claimed_at": None,
        "next_attempt_at": at,
    }
    if undo_attempt:
        updates["attempts"] = F("attempts") - 1
    if note:
        updates["error_title"] = note
    if Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(**updates):
        _publish_message_update(message)


def _publish_message_update(message: Message) -> None:
    live.publish(
        live.MESSAGE_UPDATED,
        session_id=message.session_id,
        channel_id=message.session.channel_id,
        message_id=message.pk,
    )


def _transient(message: Message, exc: ProviderError) -> str:
    if message.attempts >= settings.SEND_MAX_ATTEMPTS:
        message_fail(
            message,
            code=str(exc.status or "unavailable"),
            title=f"The platform was unavailable for {message.attempts} attempts. Retry later."
            f"{DETAIL}{exc}",
        )
        return "failed"
    countdown = backoff_seconds(message.attempts)
    _requeue(
        message,
        at=timezone.now() + timedelta(seconds=countdown),
        note=f"Attempt {message.attempts} failed; retrying.{DETAIL}{exc}",
    )
    raise DeliveryDeferred(countdown, str(exc))


def _rejection(exc: ProviderError) -> tuple[str, str]:
    code = exc.code or str(exc.status or "rejected")
    if exc.detail and exc.detail != str(exc):  # the platform's own words (spec §1.5)
        return code[:64], f"The platform refused the message: {exc.detail}{DETAIL}{exc}"
    status = f" (HTTP {exc.status})" if exc.status else ""
    return code[:64], f"The platform refused the message{status}.{DETAIL}{exc}"


@transaction.atomic
def message_fail(message: Message, *, code: str, title: str) -> None:
    """Mark an outbound message failed with a reason people can act on.

    Never over a message the platform has meanwhile confirmed (a receipt that landed while
    this send was being settled wins).
    """
    now = timezone.now()
    Message.objects.filter(
        pk=message.pk, status__in=[Message.Status.QUEUED, Message.Status.SENDING]
    ).update(
        status=Message.Status.FAILED,
        failed_at=now,
        error_code=code[:64],
        error_title=title,
        outcome_unknown=False,
        claimed_at=None,
    )
    _publish_message_update(message)
    _next_in_conversation(message)
    try:
        with transaction.atomic():
            MessageStatusChange.objects.create(
                message=message,
                status=Message.Status.FAILED,
                occurred_at=now,
                error_code=code[:64],
                error_title=title,
            )
    except IntegrityError:
        MessageStatusChange.objects.filter(message=message, status=Message.Status.FAILED).update(
            occurred_at=now, error_code=code[:64], error_title=title
        )


# --- The ambiguous case: the platform may have accepted a send it never confirmed ---------------


def _enqueue_reconcile(message_id: int, countdown: float) -> None:
    enqueue(
        "inbox.tasks.message_reconcile",
        message_id,
        countdown=countdown,
        what=f"reconciliation of message {message_id}",
    )


def message_reconcile(message_id: int) -> str:
    """Settle a send the platform never confirmed, from evidence only; return what happened.

    Evidence is a receipt for an id we did not know (the contact's one unsettled send) or the
    session history listing it; it is sought from the first attempt for
    SEND_CONFIRM_WINDOW_SECONDS, however often the row was reclaimed. Found: the platform's id
    is adopted (receipts that waited for it apply). Not yet: look again later. None by the end
    of the window: `unconfirmed` for the agent to decide, or, when the account allows it,
    queued again within the attempt limit.
    """
    message = (
        Message.objects.select_related("account", "session__account", "session__identity")
        .filter(pk=message_id, status=Message.Status.SENDING, outcome_unknown=True)
        .first()
    )
    if message is None:
        return "nothing to reconcile"
    if message_adopt_from_receipts(message):
        return "found (receipt)"
    session = message.session
    if session.external_id:
        try:
            history = session_history_fetch(session)
        except (ProviderError, NotImplementedError) as exc:
            logger.info("history for message %s unavailable: %s", message.pk, exc)
        else:
            sends_correlate(session, history)
            if Message.objects.filter(pk=message.pk).exclude(external_id="").exists():
                return "found (history)"
    now = timezone.now()
    started = message.first_attempt_at or message.claimed_at or message.created_at
    left = (started + timedelta(seconds=settings.SEND_CONFIRM_WINDOW_SECONDS) - now).total_seconds()
    if left > 0:
        wait = min(max(float(settings.SEND_RECONCILE_AFTER_SECONDS), 1.0), left)
        Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            next_attempt_at=now + timedelta(seconds=wait)
        )
        # An eager queue cannot wait: the reaper looks again when the check is due.
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            _enqueue_reconcile(message.pk, wait)
        return "no evidence yet"
    resend = bool((message.account.options or {}).get("resend_unconfirmed", False))
    if resend and message.attempts < settings.SEND_MAX_ATTEMPTS:
        _requeue(message, at=now, note="No evidence the platform has it; sending again.")
        Message.objects.filter(pk=message.pk, status=Message.Status.QUEUED).update(
            outcome_unknown=False
        )
        transaction.on_commit(lambda: _enqueue_delivery(message.pk))
        return "no evidence; queued again"
    message_unconfirmed(message)
    return "unconfirmed"


UNCONFIRMED_CODE = "unconfirmed"
_UNCONFIRMED_TITLE = (
    "This message may not have been delivered: the platform did not confirm it, and neither "
    "a receipt nor the conversation's history shows it. Send it again only if the customer "
    "should get it, since they may then get it twice."
)
# Stored by earlier versions for what is now `unconfirmed`.
_UNKNOWN_TITLE = _UNCONFIRMED_TITLE


def message_unconfirmed(message: Message) -> bool:
    """Mark an ambiguous send unconfirmed: no evidence either way; the agent decides."""
    now = timezone.now()
    with transaction.atomic():
        moved = Message.objects.filter(
            pk=message.pk, status=Message.Status.SENDING, outcome_unknown=True
        ).update(
            status=Message.Status.UNCONFIRMED,
            claimed_at=None,
            next_attempt_at=None,
            error_code=UNCONFIRMED_CODE,
            error_title=_UNCONFIRMED_TITLE,
        )
        if moved:
            MessageStatusChange.objects.get_or_create(
                message=message, status=Message.Status.UNCONFIRMED, defaults={"occurred_at": now}
            )
    if moved:
        _publish_message_update(message)
        _next_in_conversation(message)
    return bool(moved)


# --- Recovery ------------------------------------------------------------------------------------


@dataclass
class ReapResult:
    stale_claims: int = 0
    requeued: int = 0
    orphan_receipts: int = 0


def messages_reap() -> ReapResult:
    """Recover outbound messages no worker will finish.

    - `sending` with its lease run out for SEND_STALE_SECONDS (the delivering worker renews it
      while it runs, `integrations.leases`): the worker died mid-send, which may or may not
      have reached the platform, so it is reconciled like a timeout, its evidence sought from
      the first attempt (`first_attempt_at`, kept before the claim is taken over). The takeover
      is a conditional UPDATE on the same stale lease, so a claim renewed meanwhile stays its
      worker's.
    - ambiguous sends whose next check is overdue by SEND_REQUEUE_AFTER_SECONDS: that check's
      task was lost.
    - `queued` and due for SEND_REQUEUE_AFTER_SECONDS with nothing claiming it: its task was
      lost (a killed worker's prefetched tasks, broker restart, enqueue refused); enqueue it
      again (a second task for it finds nothing to claim).
    - receipts that arrived while their send's answer was still being stored.
    """
    now = timezone.now()
    result = ReapResult()
    stale = now - timedelta(seconds=settings.SEND_STALE_SECONDS)
    sending = Message.objects.filter(
        direction=Message.Direction.OUTBOUND, status=Message.Status.SENDING
    )
    dead = Q(outcome_unknown=False, claimed_at__lt=stale)
    for message_id in sending.filter(dead).values_list("pk", flat=True)[:1000]:
        taken = sending.filter(dead, pk=message_id).update(
            outcome_unknown=True,
            first_attempt_at=Coalesce("first_attempt_at", "claimed_at"),
            next_attempt_at=now,
            claimed_at=now,
        )
        if taken:
            _enqueue_reconcile(message_id, 0)
            result.stale_claims += 1
    due = now - timedelta(seconds=settings.SEND_REQUEUE_AFTER_SECONDS)
    overdue = sending.filter(outcome_unknown=True).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=now)
    )
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        overdue = overdue.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=due))
    for message_id in overdue.values_list("pk", flat=True)[:1000]:
        _enqueue_reconcile(message_id, 0)
    lost = Message.objects.filter(
        direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED, created_at__lt=due
    ).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=due))
    # Behind a backlog in the platform lane, a queued message's task is most likely still
    # waiting its turn: enqueueing it again would only lengthen the backlog (a burst of 2,000
    # replies drew 500 needless tasks). It is taken for lost once the backlog is gone, or when
    # it has waited SEND_REQUEUE_BEHIND_BACKLOG_SECONDS behind one.
    if queue_length(settings.PLATFORM_QUEUE):
        behind = now - timedelta(seconds=settings.SEND_REQUEUE_BEHIND_BACKLOG_SECONDS)
        lost = lost.filter(created_at__lt=behind).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=behind)
        )
    # A reply in line behind an earlier one has no task by design; it is lost only once it
    # heads its conversation (or has waited SEND_ORDER_WAIT_SECONDS).
    for message_id in lost.exclude(_in_line(now)).values_list("pk", flat=True)[:1000]:
        Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
            next_attempt_at=now
        )
        _enqueue_delivery(message_id)
        result.requeued += 1
    result.orphan_receipts = receipts_apply_orphans()
    return result


# --- What agents read about a failure -------------------------------------------------------------

# A stored reason is what agents read, then (after this mark) the detail for admins: the
# request, the URL, the exception. Admin shows the whole text; agents never see the detail.
DETAIL = "\n\nDetail: "
_REQUEST_METHODS = r"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)"
_INTERNAL = re.compile(
    r"(?i:[a-z][a-z0-9+.\-]*)://\S*"  # any URL
    rf"|\b{_REQUEST_METHODS}\s+\S+"  # a request line: "POST message/send"
    r"|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?"  # an IP address
    r"|\blocalhost(?::\d+)?\b"
    r"|\b[\w-]+(?:\.[\w-]+)+:\d{2,5}\b"  # host:port
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:internal|local|lan|corp|intranet)\b"  # private host names
    # An exception's name, dotted or not: requests.exceptions.ReadTimeout, ConnectionError.
    r"|\b(?:[a-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Timeout)\b"
)
_GROUP = re.compile(r"\s*\([^()]*\)")
_GENERIC_FAILURE = "The platform did not deliver this message."


def send_failure_text(code: str, title: str) -> str:
    """Return the reason a send failed, as agents read it (pages and API alike).

    The reason's own words, without what only helps an admin: the detail after `DETAIL`, and
    any URL, request line, address, host name or exception name wherever it appears (a
    platform's words or an older stored reason may hold them). When nothing readable is left,
    a plain sentence; the code is shown beside it.
    """
    if code in ("unknown_outcome", UNCONFIRMED_CODE):
        return _UNCONFIRMED_TITLE
    text = title.split(DETAIL, 1)[0].replace("\x01", "").replace("\x02", "")
    # Innermost brackets first: a group holding internals goes whole, with its brackets; one
    # without stays, its brackets masked so that the group around it is reached next.
    while True:
        shorter = _GROUP.sub(_group_kept, text)
        if shorter == text:
            break
        text = shorter
    text = _INTERNAL.sub("", text.replace("\x01", "(").replace("\x02", ")"))
    text = re.sub(r"\s*([:;,])(?:\s*[:;,])+", r"\1", text)  # what a removal left doubled
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([.,;:)])", r"\1", text).strip(" :;,-")
    if not re.search(r"[^\W\d_]{2,}", text):
        return _GENERIC_FAILURE
    return text[:500]


def _group_kept(match: re.Match[str]) -> str:
    group = match.group(0)
    if _INTERNAL.search(group):
        return ""
    return group.replace("(", "\x01").replace(")", "\x02")


# --- Agent actions on failed messages -----------------------------------------------------------


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
        _publish_message_update(message)
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
        transaction.on_commit(lambda: _enqueue_delivery(message.pk))
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
