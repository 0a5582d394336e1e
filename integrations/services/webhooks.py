"""Receive, store, process, sweep and replay platform callbacks.

The contract: a callback that passed authentication is a `WebhookEvent` row before anything
else happens. Its processing task is enqueued after commit; if the broker refuses, the row stays
pending with no `enqueued_at` and the periodic sweep enqueues it once the broker is back.
Processing claims the row with a conditional UPDATE, so a task delivered twice (or enqueued by
both the request and the sweep) processes it once; and applying a callback is idempotent by
unique constraints, so even a replay changes nothing that already happened.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from integrations.base import JSON, ApplyDeferred, Callback, PayloadError
from integrations.models import ProviderAccount, WebhookEvent
from integrations.registry import get_provider
from integrations.xms.schemas import without_nul

logger = logging.getLogger(__name__)

# Never stored: these authenticate the caller or carry credentials.
SECRET_HEADERS = frozenset(
    {"x-verify-token", "authorization", "cookie", "x-api-key", "x-api-id", "proxy-authorization"}
)


def headers_without_secrets(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the request headers worth keeping, lower-cased, with secrets removed."""
    return {
        key.lower(): value[:500]
        for key, value in headers.items()
        if key.lower() not in SECRET_HEADERS
    }


def webhook_event_receive(
    account: ProviderAccount,
    *,
    body: str,
    headers: Mapping[str, str],
    path: str = "",
    enqueue: bool = True,
) -> WebhookEvent:
    """Store a callback as received and, after commit, enqueue its processing."""
    now = timezone.now()
    event = WebhookEvent.objects.create(
        account=account,
        received_at=now,
        path=path[:200],
        headers=headers_without_secrets(headers),
        body=body,
        enqueued_at=now if enqueue else None,
    )
    if enqueue:
        event_id = event.pk
        transaction.on_commit(lambda: _dispatch(event_id))
    return event


def _dispatch(event_id: int) -> None:
    webhook_events_enqueue([event_id])
    process_in_web_soon(event_id)


_inline_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook-inline")
_inline_lock = threading.Lock()
_inline_backlog = 0


def process_in_web_soon(event_id: int) -> bool:
    """Process a stored event in this web process if no worker has, a moment after answering.

    The fallback keeps the inbox live when the Celery worker is down or far behind: after
    WEBHOOK_INLINE_DELAY_SECONDS one of this process's threads tries to claim the event, and
    finds nothing to claim when a worker already did (the usual case: one cheap UPDATE). It
    used to claim at once, and then the web process spent its CPU processing instead of
    answering (`make bench`: ingest at one connection ran at a quarter of the raw-insert rate).
    Bounded: past WEBHOOK_INLINE_BACKLOG waiting events, the workers alone handle the rest.
    """
    global _inline_backlog
    if not settings.WEBHOOK_PROCESS_IN_WEB:
        return False
    with _inline_lock:
        if _inline_backlog >= settings.WEBHOOK_INLINE_BACKLOG:
            return False
        _inline_backlog += 1
    due = time.monotonic() + settings.WEBHOOK_INLINE_DELAY_SECONDS
    try:
        _inline_pool.submit(_process_inline, event_id, due)
    except RuntimeError:  # the pool is shutting down with the process: the worker does it
        with _inline_lock:
            _inline_backlog -= 1
        return False
    return True


def _process_inline(event_id: int, due: float) -> None:
    global _inline_backlog
    try:
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        webhook_event_process(event_id)
    except Exception:
        # (webhook_event_process has put a database failure's event back to pending.) Hand it
        # to the workers now rather than waiting for the sweep.
        logger.exception("in-process handling of webhook event %s failed; enqueued again", event_id)
        try:
            webhook_events_enqueue([event_id])
        except Exception:
            logger.exception("and enqueueing it failed; the sweep will pick it up")
    finally:
        with _inline_lock:
            _inline_backlog -= 1
        connections.close_all()


def webhook_events_enqueue(event_ids: Iterable[int]) -> int:
    """Hand processing tasks to the broker; on failure leave the events for the sweep."""
    from integrations.tasks import webhook_event_process as task

    ids = list(event_ids)
    sent = 0
    for position, event_id in enumerate(ids):
        try:
            task.apply_async(args=(event_id,), retry=False)
        except Exception as exc:
            # The broker is down or unreachable. The rows are stored; mark them unenqueued so
            # the sweep picks them up as soon as tasks can flow again.
            remaining = ids[position:]
            WebhookEvent.objects.filter(pk__in=remaining, state=WebhookEvent.State.PENDING).update(
                enqueued_at=None
            )
            logger.warning(
                "broker refused webhook events %s (%s); the sweep will enqueue them",
                remaining[:10],
                exc,
            )
            break
        sent += 1
    return sent


def _claim(event_id: int, now: datetime) -> bool:
    stale = now - timedelta(seconds=settings.WEBHOOK_STALE_CLAIM_SECONDS)
    claimed = (
        WebhookEvent.objects.filter(pk=event_id)
        .filter(
            Q(state=WebhookEvent.State.PENDING)
            | Q(
                state=WebhookEvent.State.PROCESSING,
                claimed_at__lt=stale,
                attempts__lt=settings.WEBHOOK_MAX_ATTEMPTS,
            )
        )
        .update(state=WebhookEvent.State.PROCESSING, claimed_at=now, attempts=F("attempts") + 1)
    )
    if claimed:
        return True
    # Not claimable. If that is because a body killed its worker every time, give it up
    # instead of looping forever (only checked here, off the common path).
    WebhookEvent.objects.filter(
        pk=event_id,
        state=WebhookEvent.State.PROCESSING,
        claimed_at__lt=stale,
        attempts__gte=settings.WEBHOOK_MAX_ATTEMPTS,
    ).update(
        state=WebhookEvent.State.FAILED,
        error="Processing never finished (the worker died each time); gave up. Replay to retry.",
        processed_at=now,
    )
    return False


def webhook_event_process(event_id: int) -> str | None:
    """Apply one stored callback to the inbox, exactly once; return the resulting state.

    Returns None when the event was not claimable (already processed, or being processed).
    A database outage puts the event back to pending and re-raises so the task retries; a
    callback that overtook what it refers to is deferred (pending, retried by the sweep);
    any other error marks it failed with the reason, keeping the raw body for a replay. After
    WEBHOOK_MAX_ATTEMPTS claims an event is given up, so one poisonous body cannot loop.
    """
    from inbox.services.inbound import callback_apply

    now = timezone.now()
    if not _claim(event_id, now):
        return None
    try:
        event = (
            WebhookEvent.objects.select_related("account")
            .defer("account__api_key", "account__api_id", "account__verify_token")
            .get(pk=event_id)
        )
        provider = get_provider(event.account.kind)
        with transaction.atomic():
            try:
                body = without_nul(json.loads(event.body))
            except ValueError as exc:
                raise PayloadError(f"stored body is not valid JSON: {exc}") from exc
            callback = provider.parse_callback(body)
            result = callback_apply(event.account, callback, received_at=event.received_at)
            warnings = [
                *callback.warnings,
                *_tenant_warnings(event.account, callback),
                *result.warnings,
            ]
            state = WebhookEvent.State.PROCESSED if result.applied else WebhookEvent.State.IGNORED
            WebhookEvent.objects.filter(pk=event_id).update(
                state=state,
                kind=callback.kind,
                warnings=warnings[:50],
                error="" if result.applied else "; ".join(warnings[:5]) or "nothing to apply",
                processed_at=timezone.now(),
            )
    except OperationalError:
        WebhookEvent.objects.filter(pk=event_id).update(state=WebhookEvent.State.PENDING)
        raise
    except ApplyDeferred as exc:
        return _defer(event_id, str(exc))
    except Exception as exc:
        logger.exception("webhook event %s failed", event_id)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        WebhookEvent.objects.filter(pk=event_id).update(
            state=WebhookEvent.State.FAILED,
            error=detail[:4000],
            processed_at=timezone.now(),
        )
        return WebhookEvent.State.FAILED
    return state


def _tenant_warnings(account: ProviderAccount, callback: Callback) -> list[str]:
    """Warn when a callback says it is for another app or domain (XMS `meta`, spec §1.3)."""
    options = account.options or {}
    warnings = []
    for key, option in (("appId", "app_id"), ("domain", "domain")):
        expected, given = str(options.get(option) or ""), callback.tenant.get(key, "")
        if expected and given and expected != given:
            warnings.append(f"meta.{key} is {given!r}, but this account expects {expected!r}")
    return warnings


def _defer(event_id: int, reason: str) -> str:
    event = WebhookEvent.objects.only("attempts").get(pk=event_id)
    if event.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        WebhookEvent.objects.filter(pk=event_id).update(
            state=WebhookEvent.State.IGNORED,
            error=f"{reason}; gave up after {event.attempts} attempts (replay it once it can apply)",
            processed_at=timezone.now(),
        )
        return WebhookEvent.State.IGNORED
    # Pending again; the sweep picks it up after WEBHOOK_DEFER_SECONDS.
    retry_at = timezone.now() - timedelta(
        seconds=settings.WEBHOOK_REENQUEUE_AFTER_SECONDS - settings.WEBHOOK_DEFER_SECONDS
    )
    WebhookEvent.objects.filter(pk=event_id).update(
        state=WebhookEvent.State.PENDING, enqueued_at=retry_at, error=f"Deferred: {reason}"
    )
    return WebhookEvent.State.PENDING


def webhook_events_sweep(*, limit: int = 5000) -> int:
    """Enqueue stored events that no task is going to process; return how many.

    That is: pending events the broker refused (`enqueued_at` null), pending events whose task
    has not run for a while (lost with a broker restart), and claims whose worker died.
    """
    now = timezone.now()
    requeue_before = now - timedelta(seconds=settings.WEBHOOK_REENQUEUE_AFTER_SECONDS)
    stale = now - timedelta(seconds=settings.WEBHOOK_STALE_CLAIM_SECONDS)
    ids = list(
        WebhookEvent.objects.filter(
            Q(state=WebhookEvent.State.PENDING, enqueued_at__isnull=True)
            | Q(state=WebhookEvent.State.PENDING, enqueued_at__lt=requeue_before)
            | Q(state=WebhookEvent.State.PROCESSING, claimed_at__lt=stale)
        )
        .order_by("received_at", "id")
        .values_list("id", flat=True)[:limit]
    )
    if not ids:
        return 0
    WebhookEvent.objects.filter(pk__in=ids).update(enqueued_at=now)
    sent = webhook_events_enqueue(ids)
    logger.info("sweep enqueued %s of %s stored webhook events", sent, len(ids))
    return sent


def webhook_events_replay(events: QuerySet[WebhookEvent]) -> int:
    """Put failed or ignored events back to pending and enqueue them; return how many."""
    replayable = [WebhookEvent.State.FAILED, WebhookEvent.State.IGNORED]
    ids = list(events.filter(state__in=replayable).values_list("id", flat=True))
    if not ids:
        return 0
    now = timezone.now()
    WebhookEvent.objects.filter(pk__in=ids, state__in=replayable).update(
        state=WebhookEvent.State.PENDING, error="", enqueued_at=now, claimed_at=None
    )
    transaction.on_commit(lambda: webhook_events_enqueue(ids))
    return len(ids)


def webhook_event_answer(account: ProviderAccount, event: WebhookEvent) -> JSON:
    """Process a callback that expects a synchronous answer (XMS contact/info) and build it.

    On any error the platform gets `{}` and the event is left for the worker to retry, so an
    answer is never slower or less available than the inbox's own database.
    """
    from inbox.selectors import contact_view_for_identity

    provider = get_provider(account.kind)
    try:
        state = webhook_event_process(event.pk)
    except Exception:
        logger.exception("synchronous processing of webhook event %s failed", event.pk)
        state = None
    if state != WebhookEvent.State.PROCESSED:
        if state is None:
            webhook_events_enqueue([event.pk])
        return {}
    try:
        body = json.loads(event.body)
        callback = provider.parse_callback(body)
        if not callback.contacts:
            return {}
        view = contact_view_for_identity(account, callback.contacts[0].external_id)
        return provider.contact_reply(view)
    except Exception:
        logger.exception("building the contact reply for webhook event %s failed", event.pk)
        return {}
