"""Send messages to customers: exactly once as far as the platform allows, failures explained.

The life of an outbound message:

    message_send()      checks what can be checked before any platform call (channel, window,
                        template approval and placeholders), stores the row `queued` (once per
                        idempotency key) and enqueues delivery after commit; a reply behind an
                        unsettled one of its conversation is started when that one settles.
    messages_drain()    after commit, a drain of the channel (one per burst, `enqueue_once`)
                        claims due replies in batches (queued -> sending, FOR UPDATE SKIP
                        LOCKED, so two drains send each once), each the first unsettled reply
                        of its conversation (a reply waits while an earlier one is unsettled,
                        bounded), as many as the channel's rate limit allows, calls the
                        platform for them side by side and records each outcome:
                          accepted              -> sent, platform id stored, waiting receipts applied
                          connection/429/5xx    -> back to queued, retried with backoff and jitter
                          401/403               -> failed, account marked unhealthy
                          other 4xx / envelope  -> failed with the platform's reason and code
                          no answer (timeout)   -> outcome unknown: settled only by evidence
    message_deliver()   the same for one message by id: retries, the reaper, an eager queue.
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
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from config.queue import (
    enqueue,
    enqueue_once,
    enqueue_once_hold,
    enqueue_once_later,
    enqueue_once_release,
    queue_length,
)
from inbox import live
from inbox.models import Message, MessageStatusChange, Session, TimelineEntry
from inbox.services.history import sends_correlate, session_history_fetch
from inbox.services.messages import (
    message_adopt_from_receipts,
    messages_adopt,
    receipts_apply_orphans,
)
from inbox.services.timeline import timeline_add
from inbox.window import session_window
from integrations import ratelimit
from integrations.base import (
    AmbiguousError,
    AuthenticationError,
    Button,
    Capability,
    Location,
    Media,
    MessageType,
    OutboundRequest,
    ProviderError,
    SendResult,
    TransientError,
    UnsupportedError,
    with_fresh_credentials,
)
from integrations.leases import database_released, lease_held
from integrations.models import Channel, ProviderAccount, Template, TemplateApproval
from integrations.registry import get_provider
from integrations.services.accounts import account_health_record, account_kind

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
    if not get_provider(account_kind(session.account_id)).can(Capability.SESSIONS):
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
    # earlier one starts it when it settles (`_next_in_conversation`), the reaper if that is
    # lost. A burst of replies to one customer thus costs no polling. (An eager queue runs
    # each delivery at commit, in order, and `_next_in_conversation` starts nothing then.)
    eager = settings.CELERY_TASK_ALWAYS_EAGER
    if eager or not Message.objects.filter(_in_line(now), pk=message.pk).exists():
        channel_id = session.channel_id
        transaction.on_commit(lambda: _start_delivery(message.pk, channel_id))
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
    """Deliver one queued message to its platform (a batch of one); return what happened.

    The path of a retry, of the reaper's and of an eager queue; a drain (`messages_drain`)
    sends the rest. Raises `DeliveryDeferred` when the task should run again later (rate
    limit, transient error).
    """
    now = timezone.now()
    queued = Message.objects.filter(
        pk=message_id, direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED
    )
    # One statement claims it unless an earlier reply of its conversation is unsettled.
    claimed = queued.exclude(_in_line(now)).update(**_claim_columns(now))
    if not claimed:
        if not queued.filter(_in_line(now)).exists():
            return "not claimable"
        # Started before the earlier reply settled (it starts this one when it does); look
        # again shortly in case that start was missed.
        wait = settings.SEND_ORDER_RECHECK_SECONDS
        queued.update(next_attempt_at=now + timedelta(seconds=wait))
        raise DeliveryDeferred(wait, "an earlier reply in this conversation is not settled yet")
    message = _with_accounts([_for_delivery().get(pk=message_id)])[0]
    if not _within_attempt_limit([message]):
        return "failed"
    # The claim is a lease, renewed while this runs: if the worker dies, the reaper recovers
    # the message within seconds (SEND_STALE_SECONDS), and never while it is still being sent.
    with lease_held(
        Message, [message.pk], message.claimed_at, still=Q(status=Message.Status.SENDING)
    ):
        wait = ratelimit.acquire(_rate_key(message.session.channel_id), _per_second(message))
        if wait > 0:
            _requeue(message, at=now + timedelta(seconds=wait), undo_attempt=True)
            raise DeliveryDeferred(wait, "channel rate limit")
        outcome = _deliver_batch([message])[message.pk]
    if isinstance(outcome, DeliveryDeferred):
        raise outcome
    return outcome


DRAIN_TASK = "inbox.tasks.messages_drain"


def _drain_key(channel_id: int) -> str:
    # Set while a drain of the channel is queued or running (config.queue.enqueue_once and
    # enqueue_once_hold): sends meanwhile ride along on it.
    return f"switchboard:outbound:drain-queued:{channel_id}"


def _drain_kick(channel_id: int) -> bool:
    """Make sure a drain of the channel is on its way; False if that cannot be ensured."""
    return enqueue_once(
        DRAIN_TASK,
        channel_id,
        key=_drain_key(channel_id),
        ttl_seconds=settings.SEND_DRAIN_KICK_TTL_SECONDS,
        what=f"a drain of channel {channel_id}'s replies",
    )


def _drain_successor(channel_id: int) -> None:
    """Start another drain of the channel while this one waits on a slow platform call."""
    enqueue(DRAIN_TASK, channel_id, what=f"a drain of channel {channel_id} beside a slow call")


def _drain_done(channel_id: int) -> None:
    """Let the next send start a drain; start one now if a reply came in between."""
    enqueue_once_release(_drain_key(channel_id))
    # A reply committed after this drain's last claim rode along on its key: it must not wait
    # for the reaper.
    if _due(channel_id, timezone.now()).exists():
        _drain_kick(channel_id)


def _start_delivery(message_id: int, channel_id: int) -> None:
    """After commit: the channel's drain sends it (a task of its own if no drain can be queued)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or not _drain_kick(channel_id):
        _enqueue_delivery(message_id)


def messages_drain(
    channel_id: int, *, batch: int | None = None, budget_seconds: float | None = None
) -> int:
    """Send a channel's due replies in claimed batches until none are left; return how many.

    Each batch is as many due replies as the channel's rate limit allows this second (at most
    SEND_DRAIN_BATCH), each the head of its conversation, claimed in one statement (FOR UPDATE
    SKIP LOCKED, so drains running at once take different replies). Their platform calls run
    side by side (`_deliver_batch`); accepted sends are recorded together. When the budget of
    this second is spent, a drain is queued for the next one; after SEND_DRAIN_BUDGET_SECONDS
    this one hands over to a successor. While it runs, sends ride along on it (one drain per
    channel and burst, not one more each time a drain starts); it lets go when none is left.
    """
    key = _drain_key(channel_id)
    ttl = settings.SEND_DRAIN_KICK_TTL_SECONDS
    enqueue_once_hold(key, ttl)  # sends meanwhile ride along on this drain
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        enqueue_once_release(key)
        return 0
    per_second = _per_second_of(channel)
    size = batch or settings.SEND_DRAIN_BATCH
    budget = settings.SEND_DRAIN_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    done = 0
    try:
        while True:
            grant = ratelimit.take(_rate_key(channel_id), per_second, size)
            now = timezone.now()
            if not grant.slots:
                if not _due(channel_id, now).exists():
                    _drain_done(channel_id)
                    return done
                enqueue_once_later(
                    DRAIN_TASK,
                    channel_id,
                    key=key,
                    countdown=grant.wait,
                    ttl_seconds=ttl,
                    what=f"a drain of channel {channel_id} after its rate limit",
                )
                return done
            messages = _claim_due(channel_id, grant.slots, now)
            ratelimit.give_back(_rate_key(channel_id), grant, grant.slots - len(messages))
            if not messages:
                _drain_done(channel_id)
                return done
            done += _deliver_drained(messages, now, channel_id)
            if time.monotonic() >= deadline:
                enqueue(DRAIN_TASK, channel_id, what=f"a successor drain of channel {channel_id}")
                return done
            enqueue_once_hold(key, ttl)
    except BaseException:
        enqueue_once_release(key)  # the next send starts a drain; the reaper finds the rest
        raise


def _due(channel_id: int, now: datetime) -> QuerySet[Message]:
    """The channel's queued replies that may be sent now: due, and first in their conversation."""
    return (
        Message.objects.filter(
            session__channel_id=channel_id,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.QUEUED,
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .exclude(_in_line(now))
    )


def _claim_due(channel_id: int, limit: int, now: datetime) -> list[Message]:
    with transaction.atomic():
        ids = list(
            _due(channel_id, now)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Message.objects.filter(pk__in=ids).update(**_claim_columns(now))
    if not ids:
        return []
    lean = _for_delivery().only(*_DRAIN_COLUMNS)
    return _with_accounts(list(lean.filter(pk__in=ids).order_by("pk")))


# What a drained send and its recording in bulk read: a claimed row otherwise carried 120-odd
# columns across six tables (the platform's raw payloads among them), and decoding them was a
# fifth of the platform worker's time. A path that reads more (a refusal, the attempt limit)
# takes the whole row first (`_whole`).
_DRAIN_COLUMNS = (
    "account",
    "session__channel__external_id",
    "session__channel__send_rate_limit",
    "session__identity__external_id",
    "session__identity__address",
    "session__contact__name",
    "session__contact__phone",
    "direction",
    "type",
    "body",
    "caption",
    "media_url",
    "media_mime_type",
    "media_filename",
    "attachments",
    "latitude",
    "longitude",
    "location_name",
    "location_address",
    "buttons",
    "template__code",
    "template__external_id",
    "template__lang",
    "template_data",
    "status",
    "attempts",
    "external_id",
    "external_id_ext",
    "claimed_at",
    "created_at",
)


def _whole(message: Message) -> Message:
    """`message` with every column, for a path that reads more than a drain loads."""
    if not message.get_deferred_fields():
        return message
    whole = _for_delivery().get(pk=message.pk)
    whole.account = message.account
    return whole


def _deliver_drained(messages: list[Message], now: datetime, channel_id: int) -> int:
    messages = _within_attempt_limit(messages)
    if messages:
        with lease_held(
            Message, [m.pk for m in messages], now, still=Q(status=Message.Status.SENDING)
        ):
            outcomes = _deliver_batch(messages, drain_of=channel_id)
        for message_id, outcome in outcomes.items():
            if isinstance(outcome, DeliveryDeferred):
                _enqueue_delivery(message_id, outcome.countdown)
    return len(messages)


def _claim_columns(now: datetime) -> dict[str, Any]:
    return {
        "status": Message.Status.SENDING,
        "claimed_at": now,
        "attempts": F("attempts") + 1,
        "next_attempt_at": None,
    }


def _for_delivery() -> QuerySet[Message]:
    # The account is read once per batch (`_with_accounts`), not once per row: each copy
    # would decrypt its credentials again.
    return Message.objects.select_related(
        "session__channel", "session__identity", "session__contact", "template"
    )


def _with_accounts(messages: list[Message]) -> list[Message]:
    """Give the messages their platform accounts, each read (and decrypted) once."""
    accounts = ProviderAccount.objects.in_bulk({m.account_id for m in messages})
    for message in messages:
        message.account = accounts[message.account_id]
    return messages


def _within_attempt_limit(messages: list[Message]) -> list[Message]:
    """Fail claimed messages beyond the attempt limit; return the others."""
    within = []
    for message in messages:
        if message.attempts <= settings.SEND_MAX_ATTEMPTS:
            within.append(message)
            continue
        message = _whole(message)
        # Whoever queued it, no path goes beyond the limit; Retry starts a new set of attempts.
        Message.objects.filter(pk=message.pk).update(attempts=F("attempts") - 1)
        message.attempts -= 1
        message_fail(
            message,
            code="attempts",
            title=f"Not sent: all {settings.SEND_MAX_ATTEMPTS} attempts were used. Retry to "
            "start again.",
        )
    return within


def _rate_key(channel_id: int) -> str:
    return f"channel:{channel_id}"


def _per_second(message: Message) -> int:
    return _per_second_of(message.session.channel)


def _per_second_of(channel: Channel) -> int:
    if channel.send_rate_limit is not None:
        return int(channel.send_rate_limit)
    return int(settings.SEND_RATE_LIMIT_PER_SECOND)


Outcome = str | DeliveryDeferred


def _deliver_batch(messages: list[Message], *, drain_of: int | None = None) -> dict[int, Outcome]:
    """Send claimed messages to their platforms and record each outcome; return them by id.

    The calls run side by side on a thread pool; what the platform accepted is recorded in
    one transaction per round of answers (`_accepted`), anything else one by one
    (`_refused`). A call still unanswered after SEND_COLLECT_SECONDS does not hold the rest:
    they are recorded, and for a drain (`drain_of`) another drain takes over the channel's
    queue meanwhile.
    """
    configs = {m.account_id: m.account.config() for m in messages}
    calls = [
        (
            message,
            partial(
                _send_one, message.account.kind, configs[message.account_id], _request_for(message)
            ),
        )
        for message in messages
    ]
    database_released()  # a slow platform holds this thread, not a database connection too
    outcomes: dict[int, Outcome] = {}

    def slow_call() -> None:
        if drain_of is not None:
            _drain_successor(drain_of)

    for answers in _answers(calls, on_wait=slow_call):
        accepted = [(m, a.external_id) for m, a in answers if not isinstance(a, ProviderError)]
        if accepted:
            _accepted(accepted, start_next=drain_of is None)
            outcomes.update((m.pk, "sent") for m, _ in accepted)
        for message, answer in answers:
            if isinstance(answer, ProviderError):
                outcomes[message.pk] = _refused(_whole(message), answer)
    return outcomes


def _send_one(kind: str, config: Any, request: OutboundRequest) -> SendResult | ProviderError:
    provider = get_provider(kind)
    try:
        return with_fresh_credentials(
            provider, config, lambda fresh: provider.send_message(fresh, request)
        )
    except ProviderError as exc:
        return exc
    except Exception as exc:
        # A fault of ours after the request may have left: the platform may have the message,
        # so it is settled by evidence like a timeout, never sent again blindly.
        logger.exception("sending failed unexpectedly")
        return AmbiguousError(f"The send failed unexpectedly: {exc!r}")


_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _call_pool() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():  # (a forked child has no threads)
            _pool = ThreadPoolExecutor(
                max_workers=settings.SEND_CALL_THREADS, thread_name_prefix="platform-call"
            )
            _pool_pid = os.getpid()
        return _pool


def _answers(
    calls: Sequence[tuple[Message, Callable[[], SendResult | ProviderError]]],
    on_wait: Callable[[], object],
) -> Iterator[list[tuple[Message, SendResult | ProviderError]]]:
    """Yield the platform's answers in rounds: all of them together unless one call has been
    waiting on its platform for SEND_COLLECT_SECONDS; then those that came, and each straggler
    as it comes (`on_wait` is called once, when there is one).

    A call is slow from when it started, not from when it was queued: time spent behind this
    worker's other calls says the pool is busy, not that a platform hangs, and another drain
    would only queue more calls behind them (under `make bench`, drains multiplied that way
    until each waited on all the others).
    """
    if len(calls) == 1:
        message, call = calls[0]
        yield [(message, call())]
        return
    began: dict[int, float] = {}

    def timed(index: int, call: Callable[[], SendResult | ProviderError]) -> Any:
        def run() -> SendResult | ProviderError:
            began[index] = time.monotonic()
            return call()

        return run

    pool = _call_pool()
    pending = {pool.submit(timed(i, call)): (i, message) for i, (message, call) in enumerate(calls)}
    collect = settings.SEND_COLLECT_SECONDS
    answered: list[tuple[Message, SendResult | ProviderError]] = []
    while pending:
        running = [began[i] for i, _ in pending.values() if i in began]
        waited = time.monotonic() - min(running) if running else 0.0
        if running and waited >= collect:
            break
        done, _ = futures.wait(pending, timeout=collect - waited if running else max(collect, 0.01))
        answered += [(pending.pop(f)[1], f.result()) for f in done]
    if answered:
        yield answered
    if not pending:
        return
    on_wait()
    while pending:
        done, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
        yield [(pending.pop(f)[1], f.result()) for f in done]


@transaction.atomic
def _accepted(accepted: list[tuple[Message, str]], *, start_next: bool) -> None:
    """Record the platform's acceptance: `sent` and the platform id in one transaction.

    Apart, a worker killed between the two left a message `sent` with no platform id, which
    no reaper looks at and whose receipts can never land. The history import may have named
    a message first (and even made a row of it): `messages_adopt` merges it.
    """
    now = timezone.now()
    messages_adopt(accepted, at=now, also={"accepted_at": now})
    for account in {m.account_id: m.account for m, _ in accepted}.values():
        _healthy(account)
    if start_next:
        for message, _ in accepted:
            _next_in_conversation(message)


def _refused(message: Message, exc: ProviderError) -> Outcome:
    """Record a send the platform did not take (or may have taken); return what happened."""
    if isinstance(exc, AmbiguousError):
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
    if isinstance(exc, TransientError):
        return _transient(message, exc)
    if isinstance(exc, AuthenticationError):
        account_health_record(message.account, error=f"The platform refused our credentials: {exc}")
        message_fail(
            message,
            code=str(exc.status or "auth"),
            title="The platform refused the account's credentials (HTTP "
            f"{exc.status}). An admin must fix the API key; then retry.{DETAIL}{exc}",
        )
        return "failed"
    if isinstance(exc, UnsupportedError):  # the message cannot be expressed for this platform
        message_fail(message, code="unsupported", title=str(exc))
        return "failed"
    code, title = _rejection(exc)  # RejectedError, or any other refusal
    message_fail(message, code=code, title=title)
    return "failed"


def _in_line(now: datetime) -> Q:
    """Match replies that must wait for an earlier reply of their conversation.

    The customer must read replies in the order agents sent them, so a reply waits while an
    earlier one in the same conversation is queued or sending, for at most
    SEND_ORDER_WAIT_SECONDS after it was written: an earlier one that never settles (a platform
    that neither answers nor lists it) must not hold the conversation forever. An earlier one
    that is queued and due goes first however long both waited (a backlog after an outage
    still goes out in order).
    """
    earlier = Message.objects.filter(
        session_id=OuterRef("session_id"),
        direction=Message.Direction.OUTBOUND,
        pk__lt=OuterRef("pk"),
    )
    unsettled = earlier.filter(status__in=[Message.Status.QUEUED, Message.Status.SENDING])
    going_first = earlier.filter(status=Message.Status.QUEUED).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    waited = now - timedelta(seconds=settings.SEND_ORDER_WAIT_SECONDS)
    return Q(Exists(going_first)) | Q(Exists(unsettled), created_at__gt=waited)


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
        channel_id = message.session.channel_id
        transaction.on_commit(lambda: _start_delivery(waiting, channel_id))


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


def _transient(message: Message, exc: ProviderError) -> Outcome:
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
    return DeliveryDeferred(countdown, str(exc))


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
        _next_in_conversation(message)
        return "found (receipt)"
    session = message.session
    if session.external_id and get_provider(message.account.kind).can(Capability.HISTORY):
        try:
            history = session_history_fetch(session)
        except ProviderError as exc:
            logger.info("history for message %s unavailable: %s", message.pk, exc)
        else:
            sends_correlate(session, history)
            if Message.objects.filter(pk=message.pk).exclude(external_id="").exists():
                _next_in_conversation(message)
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
    - `queued` and due for SEND_REQUEUE_AFTER_SECONDS with nothing claiming it: its drain or
      task was lost (a killed worker's prefetched tasks, broker restart, enqueue refused);
      a drain of its channel is enqueued (one that finds it taken does nothing).
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
    heads = list(lost.exclude(_in_line(now)).values_list("pk", "session__channel_id")[:1000])
    Message.objects.filter(pk__in=[pk for pk, _ in heads], status=Message.Status.QUEUED).update(
        next_attempt_at=now
    )
    # A drain of each such channel sends them (a drain that finds them taken does nothing).
    for channel_id in {channel_id for _, channel_id in heads}:
        if not enqueue(DRAIN_TASK, channel_id, what=f"a drain of channel {channel_id}"):
            break  # the broker is away: the next round tries again
    result.requeued = len(heads)
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
