"""Deliver queued messages to their platforms: exactly once as far as the platform allows.

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
                                                   (`inbox.services.reconcile`)
    message_deliver()   the same for one message by id: retries, the reaper, an eager queue.

Receipts (inbox.services.messages) take sent messages on to delivered, read or failed.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.queue import (
    enqueue,
    enqueue_once,
    enqueue_once_hold,
    enqueue_once_later,
    enqueue_once_release,
)
from inbox import live
from inbox.models import Message, MessageStatusChange
from inbox.send_failures import DETAIL
from inbox.services.messages import (
    messages_adopt,
)
from inbox.services.stored_files import upload_link_for_platform, upload_path_of, upload_read
from integrations import ratelimit
from integrations.base import (
    AmbiguousError,
    AuthenticationError,
    Button,
    Capability,
    Location,
    Media,
    MediaUpload,
    MessageType,
    OutboundRequest,
    Provider,
    ProviderError,
    RejectedError,
    SendResult,
    TransientError,
    UnsupportedError,
    with_fresh_credentials,
)
from integrations.leases import database_released, lease_held
from integrations.models import Channel, ProviderAccount
from integrations.registry import get_provider
from integrations.services.accounts import account_health_record

logger = logging.getLogger(__name__)


class DeliveryDeferred(Exception):
    """Try the delivery again in `countdown` seconds."""

    def __init__(self, countdown: float, reason: str) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.reason = reason


def delivery_enqueue(message_id: int, countdown: float = 0) -> None:
    """Queue the delivery task of one message (if the broker refuses, the reaper enqueues it
    once it is back: the row is stored)."""
    enqueue(
        "inbox.tasks.message_deliver",
        message_id,
        countdown=countdown,
        what=f"delivery of message {message_id}",
    )


def reconcile_enqueue(message_id: int, countdown: float) -> None:
    """Queue the search for evidence of a send the platform never confirmed."""
    enqueue(
        "inbox.tasks.message_reconcile",
        message_id,
        countdown=countdown,
        what=f"reconciliation of message {message_id}",
    )


def _request_for(message: Message) -> OutboundRequest:
    session = message.session
    identity = session.identity
    contact = session.contact
    kind = MessageType(message.type)
    media = None
    if message.media_url:
        media = Media(
            link=upload_link_for_platform(message.media_url),
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
        medium=session.channel.medium,
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
    claimed = queued.exclude(waiting_in_line(now)).update(**_claim_columns(now))
    if not claimed:
        if not queued.filter(waiting_in_line(now)).exists():
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
            message_requeue(message, at=now + timedelta(seconds=wait), undo_attempt=True)
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


def delivery_start(message_id: int, channel_id: int) -> None:
    """After commit: the channel's drain sends it (a task of its own if no drain can be queued)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or not _drain_kick(channel_id):
        delivery_enqueue(message_id)


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
        .exclude(waiting_in_line(now))
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
                delivery_enqueue(message_id, outcome.countdown)
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
                _send_one,
                message.account.kind,
                configs[message.account_id],
                _request_for(message),
                _upload_path(message),
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


def _upload_path(message: Message) -> str:
    """The stored file to hand over before the send, for a platform that takes only uploads."""
    if not message.media_url:
        return ""
    if not get_provider(message.account.kind).can(Capability.MEDIA_UPLOAD):
        return ""
    return upload_path_of(message.media_url) or ""


def _send_one(
    kind: str, config: Any, request: OutboundRequest, upload_path: str = ""
) -> SendResult | ProviderError:
    provider = get_provider(kind)
    try:
        if upload_path:
            request = _with_upload(provider, config, request, upload_path)
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


def _with_upload(
    provider: Provider, config: Any, request: OutboundRequest, path: str
) -> OutboundRequest:
    """Hand the platform the stored file first; return the request naming it by its id.

    Nothing has reached the customer yet: a lost answer is a plain transient error (the file
    is uploaded again with the next attempt), and a file gone from our storage a refusal.
    """
    media = request.media
    assert media is not None  # (a message with a media link)
    try:
        content = upload_read(path)
    except OSError as exc:
        raise RejectedError(
            f"the attached file cannot be read: {exc}",
            detail="The attached file is no longer stored; attach it again.",
        ) from exc
    upload = MediaUpload(filename=media.filename, mime_type=media.mime_type, content=content)
    try:
        taken = with_fresh_credentials(
            provider, config, lambda fresh: provider.media_upload(fresh, upload)
        )
    except AmbiguousError as exc:
        raise TransientError(f"the upload went unanswered: {exc}", detail=exc.detail) from exc
    return replace(
        request,
        media=replace(
            media,
            media_id=taken.media_id,
            link=taken.link,
            size=taken.size or media.size,
            thumbnail_link=taken.thumbnail_link,
            preview_link=taken.preview_link,
        ),
    )


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
            conversation_next_start(message)


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
        reconcile_enqueue(message.pk, after)
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


def waiting_in_line(now: datetime) -> Q:
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


def conversation_next_start(message: Message) -> None:
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
        transaction.on_commit(lambda: delivery_start(waiting, channel_id))


def _healthy(account: Any) -> None:
    # One UPDATE a minute at most, not one per message.
    stale = timezone.now() - timedelta(seconds=60)
    if account.last_success_at is None or account.last_success_at < stale:
        account_health_record(account)


def message_requeue(
    message: Message, *, at: datetime, undo_attempt: bool = False, note: str = ""
) -> None:
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
        message_update_publish(message)


def message_update_publish(message: Message) -> None:
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
    message_requeue(
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
    message_update_publish(message)
    conversation_next_start(message)
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
