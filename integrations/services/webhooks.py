"""Receive, store, process, sweep and replay platform callbacks.

The contract: a callback that passed authentication is a `WebhookEvent` row before anything
else happens. Its processing task is enqueued after commit; if the broker refuses, the row stays
pending with no `enqueued_at` and the periodic sweep enqueues it once the broker is back.
Processing claims the row with a conditional UPDATE, so a task delivered twice (or enqueued by
both the request and the sweep) processes it once; and applying a callback is idempotent by
unique constraints, so even a replay changes nothing that already happened.

What a callback means for the inbox is not decided here: a claimed event is read by its
provider and handed to the applier `settings.INBOUND_CALLBACK_APPLIER` names
(`integrations.applier`), in the transaction that settles the event. This module never imports
`inbox`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from config.queue import enqueue, enqueue_once, enqueue_once_started
from config.redis import redis_client
from integrations.applier import (
    Outcome,
    StoredCallback,
    callback_applier,
    database_outage,
    error_text,
    outage_blamed,
)
from integrations.base import JSON, Callback, PayloadError
from integrations.leases import lease_held
from integrations.models import ProviderAccount, WebhookEvent
from integrations.payload import BodyError, json_loads, text_clean
from integrations.registry import get_provider

logger = logging.getLogger(__name__)

# Never stored: these authenticate the caller or carry credentials (and so do the headers
# each provider names in `request_secret_headers`).
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def headers_without_secrets(
    headers: Mapping[str, str], secret: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Return the request headers worth keeping, lower-cased, without secrets (and `secret`)."""
    return {
        text_clean(key.lower()): text_clean(value[:500])
        for key, value in headers.items()
        if key.lower() not in SECRET_HEADERS and key.lower() not in secret
    }


def _body(event: WebhookEvent) -> JSON:
    """Read a stored body as the webhook did (bodies stored before a limit changed included)."""
    try:
        body = json_loads(event.body, max_depth=settings.WEBHOOK_MAX_JSON_DEPTH)
    except BodyError as exc:
        raise PayloadError(f"stored body: {exc}") from exc
    if not isinstance(body, dict):
        raise PayloadError("stored body is not a JSON object")
    return body


def _read(event: WebhookEvent) -> Callback:
    account = event.account
    return get_provider(account.kind).read_callback(_body(event), options=account.options or {})


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
        headers=headers_without_secrets(headers, get_provider(account.kind).request_secret_headers),
        body=body,
        enqueued_at=now if enqueue else None,
    )
    if enqueue:
        event_id = event.pk
        transaction.on_commit(lambda: _dispatch(event_id))
    return event


def _dispatch(event_id: int) -> None:
    if not (settings.WEBHOOK_DRAIN and webhook_events_kick()):
        webhook_events_enqueue([event_id])
    process_in_web_soon(event_id)


# The tasks that process stored events (named, not imported: integrations.tasks imports this).
PROCESS_TASK = "integrations.tasks.webhook_event_process"
DRAIN_TASK = "integrations.tasks.webhook_events_drain"

# Set while a drain task is queued and has not started: callbacks arriving meanwhile need no
# task of their own, because that drain will find them.
KICK_KEY = "switchboard:webhooks:drain-queued"


# Set while drains are applying callbacks (renewed by each batch, gone INBOUND_BUSY_SECONDS
# after the last): work that can wait, such as media downloads, yields to them.
INBOUND_BUSY_KEY = "switchboard:webhooks:applying"
INBOUND_BUSY_SECONDS = 2.0


def inbound_busy() -> bool:
    """Say whether callbacks are being applied or waiting for a drain (False without Redis)."""
    client = redis_client(socket_timeout=1.0)
    if client is None:
        return False
    try:
        return bool(client.exists(KICK_KEY, INBOUND_BUSY_KEY))
    except redis.RedisError:
        return False


def _inbound_busy_mark() -> None:
    client = redis_client(socket_timeout=1.0)
    if client is not None:
        with contextlib.suppress(redis.RedisError):
            client.set(INBOUND_BUSY_KEY, b"1", px=int(INBOUND_BUSY_SECONDS * 1000))


def webhook_events_kick() -> bool:
    """Make sure a drain task is on its way; return False if that cannot be ensured.

    The first callback after a drain started enqueues the next drain, the rest ride along
    (`config.queue.enqueue_once`); the drain says it started when it starts, so every
    committed event is followed by a drain that starts after it.
    """
    return enqueue_once(
        DRAIN_TASK,
        key=KICK_KEY,
        ttl_seconds=settings.WEBHOOK_DRAIN_KICK_TTL_SECONDS,
        what="a drain task (each event gets a task instead)",
    )


def webhook_events_drain(*, batch: int | None = None, budget_seconds: float | None = None) -> int:
    """Process fresh callbacks in claimed batches until none are left; return how many.

    Each batch is claimed in one statement (FOR UPDATE SKIP LOCKED, so two drains take
    different events), then applied by `_apply_claimed` as one run per account, the way
    `webhook_event_process` applies a run of one (the applier applies the everyday messages of
    returning and new customers in bulk, the rest one at a time). Only fresh events (never claimed) are drained; deferred and replayed ones keep
    their own schedule. After WEBHOOK_DRAIN_BUDGET_SECONDS the drain hands over to a new one,
    so sends queued behind it get a worker.
    """
    enqueue_once_started(KICK_KEY)
    size = batch or settings.WEBHOOK_DRAIN_BATCH
    deadline = time.monotonic() + (
        budget_seconds if budget_seconds is not None else settings.WEBHOOK_DRAIN_BUDGET_SECONDS
    )
    done = 0
    while True:
        events = _claim_fresh(size)
        if not events:
            return done
        _inbound_busy_mark()
        with _leased(events):
            _apply_claimed(events, fresh=True)
        done += len(events)
        if time.monotonic() >= deadline:
            # Its own successor, not a kick: two drains past their budget at once must leave
            # two drains behind, or the workers' parallelism would halve each time.
            enqueue(DRAIN_TASK, what="a drain's successor (the next kick queues one)")
            return done


def _apply_claimed(events: list[WebhookEvent], *, fresh: bool) -> dict[int, str]:
    """Apply claimed events, one run per account; return each event's new state.

    Each account's run goes to the applier (`_apply_run`), which settles each event in the
    transaction that applied it; a callback that fails or must wait is settled alone, with its
    reason. A database outage hands back every event not yet settled, untried, and raises for
    the task's retry: `fresh` ones (a drain's) as fresh again, for the next drain. Nothing
    claimed here is left `processing`.
    """
    states: dict[int, str] = {}
    for account_id in dict.fromkeys(event.account_id for event in events):
        mine = [event for event in events if event.account_id == account_id]
        try:
            _apply_run(mine, states)
        except Exception as exc:
            if not database_outage(exc):
                # (The applier settles each callback's own errors: this is the pipeline's.)
                logger.exception("applying %s webhook events failed", len(mine))
                states.update(_fail([e.pk for e in mine if e.pk not in states], exc))
                continue
            _hand_back(events, states, blamed=outage_blamed(exc), fresh=fresh)
            raise
    return states


def _hand_back(
    events: list[WebhookEvent], states: dict[int, str], *, blamed: int | None, fresh: bool
) -> None:
    """Put the events not settled before a database outage back to pending.

    The one applied alone when it struck (`blamed`) keeps its attempt and gets a task of its
    own, which retries it with backoff and gives it up after WEBHOOK_MAX_ATTEMPTS; the rest
    go back untried (`fresh` ones as fresh again, for the next drain).
    """
    untried = [e.pk for e in events if e.pk not in states and e.pk != blamed]
    with contextlib.suppress(Exception):
        pending = WebhookEvent.objects.filter(state=WebhookEvent.State.PROCESSING)
        if blamed is not None:
            pending.filter(pk=blamed).update(state=WebhookEvent.State.PENDING)
            if fresh:  # (a run of one retries through its own task already)
                webhook_events_enqueue([blamed])
        pending.filter(pk__in=untried).update(
            state=WebhookEvent.State.PENDING,
            **({"attempts": F("attempts") - 1} if fresh else {}),
        )


def _apply_run(events: list[WebhookEvent], states: dict[int, str]) -> None:
    """Apply one account's claimed events; put each event's new state in `states` as it
    commits."""
    run: list[StoredCallback] = []
    for event in events:
        try:
            callback = _read(event)
        except Exception as exc:  # its body: it fails alone, before the run
            logger.warning("webhook event %s cannot be read: %s", event.pk, exc)
            states.update(_fail([event.pk], exc))
            continue
        run.append(StoredCallback(key=event.pk, callback=callback, received_at=event.received_at))
    if not run:
        return
    by_key = {item.key: item for item in run}
    by_id = {event.pk: event for event in events}

    def settle(outcomes: Mapping[int, Outcome]) -> None:
        states.update(_settle(outcomes, by_key, by_id))

    callback_applier().callbacks_apply(events[0].account, run, settle)


def _settle(
    outcomes: Mapping[int, Outcome],
    run: Mapping[int, StoredCallback],
    events: Mapping[int, WebhookEvent],
) -> dict[int, str]:
    """Write each event's state from its outcome (the everyday ones in one statement)."""
    now = timezone.now()
    states: dict[int, str] = {}
    plain: dict[str, list[int]] = {}  # kind -> events applied without a warning
    for event_id, outcome in outcomes.items():
        item = run[event_id]
        if outcome.deferred:
            states[event_id] = _defer(events[event_id], outcome.deferred)
        elif outcome.failed:
            states.update(_fail([event_id], outcome.failed))
        elif outcome.applied and not outcome.warnings:
            plain.setdefault(item.callback.kind, []).append(event_id)
            states[event_id] = WebhookEvent.State.PROCESSED
        else:
            warnings = outcome.warnings
            state = WebhookEvent.State.PROCESSED if outcome.applied else WebhookEvent.State.IGNORED
            WebhookEvent.objects.filter(pk=event_id).update(
                state=state,
                kind=item.callback.kind,
                warnings=[text_clean(w)[:1000] for w in warnings[:50]],
                error="" if outcome.applied else "; ".join(warnings[:5]) or "nothing to apply",
                processed_at=now,
            )
            states[event_id] = state
    for kind, ids in plain.items():
        WebhookEvent.objects.filter(pk__in=ids).update(
            state=WebhookEvent.State.PROCESSED, kind=kind, warnings=[], error="", processed_at=now
        )
    return states


def _fail(event_ids: list[int], error: BaseException | str) -> dict[int, str]:
    """Mark events failed with the error, keeping their bodies for a replay."""
    if isinstance(error, BaseException):
        error = error_text(error)
    WebhookEvent.objects.filter(pk__in=event_ids).update(
        state=WebhookEvent.State.FAILED,
        error=text_clean(error[:4000]) or "failed",
        processed_at=timezone.now(),
    )
    return dict.fromkeys(event_ids, WebhookEvent.State.FAILED)


def _claim_fresh(limit: int) -> list[WebhookEvent]:
    now = timezone.now()
    # Fresh: never claimed, and enqueued (a callback answered synchronously is stored without
    # `enqueued_at` and processed by its request; so is one the broker refused, for the sweep).
    pending = WebhookEvent.objects.filter(
        state=WebhookEvent.State.PENDING, attempts=0, enqueued_at__isnull=False
    )
    with transaction.atomic():
        ids = list(
            pending.select_for_update(skip_locked=True)
            .order_by("received_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        WebhookEvent.objects.filter(pk__in=ids).update(
            state=WebhookEvent.State.PROCESSING, claimed_at=now, attempts=F("attempts") + 1
        )
    return list(
        _with_account(WebhookEvent.objects.filter(pk__in=ids)).order_by("received_at", "id")
    )


def _with_account(events: QuerySet[WebhookEvent]) -> QuerySet[WebhookEvent]:
    return events.select_related("account").defer(
        "account__api_key", "account__api_id", "account__verify_token"
    )


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
    ids = list(event_ids)
    sent = 0
    for position, event_id in enumerate(ids):
        if not enqueue(PROCESS_TASK, event_id, what=f"webhook event {event_id}"):
            # The broker is down or unreachable. The rows are stored; mark them unenqueued so
            # the sweep picks them up as soon as tasks can flow again.
            remaining = ids[position:]
            WebhookEvent.objects.filter(pk__in=remaining, state=WebhookEvent.State.PENDING).update(
                enqueued_at=None
            )
            logger.warning("the sweep will enqueue webhook events %s", remaining[:10])
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

    A run of one through `_apply_claimed`, as a drain applies many. Returns None when the event was not claimable (already processed, or being processed).
    A database outage puts the event back to pending and re-raises so the task retries; a
    callback that overtook what it refers to is deferred (pending, retried by the sweep);
    any other error marks it failed with the reason, keeping the raw body for a replay. After
    WEBHOOK_MAX_ATTEMPTS claims an event is given up, so one poisonous body cannot loop.
    """
    if not _claim(event_id, timezone.now()):
        return None
    try:
        event = _with_account(WebhookEvent.objects.filter(pk=event_id)).get()
    except OperationalError:
        WebhookEvent.objects.filter(pk=event_id).update(state=WebhookEvent.State.PENDING)
        raise
    with _leased([event]):
        return _apply_claimed([event], fresh=False)[event_id]


def _leased(events: list[WebhookEvent]) -> AbstractContextManager[object]:
    """Renew the claim on `events` while they are applied (`integrations.leases`).

    A claim not renewed for WEBHOOK_STALE_CLAIM_SECONDS is a dead worker's, and the sweep (or
    the next delivery of its task) takes it over; the renewal is conditional on the claim time
    this worker wrote, so it never extends a claim another worker has taken since.
    """
    return lease_held(
        WebhookEvent,
        [event.pk for event in events],
        events[0].claimed_at,
        still=Q(state=WebhookEvent.State.PROCESSING),
    )


def _defer(event: WebhookEvent, reason: str) -> str:
    """Put an event that cannot apply yet back to pending for the sweep, or give it up."""
    event_id = event.pk
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
    _drain_lost(now)
    if not ids:
        return 0
    WebhookEvent.objects.filter(pk__in=ids).update(enqueued_at=now)
    sent = webhook_events_enqueue(ids)
    logger.info("sweep enqueued %s of %s stored webhook events", sent, len(ids))
    return sent


def _drain_lost(now: datetime) -> None:
    """Enqueue a drain when fresh events have waited WEBHOOK_DRAIN_LOST_SECONDS unclaimed.

    Their drain was lost (a worker killed with it prefetched, the broker restarted), or it is
    still on its way behind a backlog; one more drain costs little either way, and the events
    are taken in seconds instead of waiting out WEBHOOK_REENQUEUE_AFTER_SECONDS.
    """
    if not settings.WEBHOOK_DRAIN:
        return
    waited = now - timedelta(seconds=settings.WEBHOOK_DRAIN_LOST_SECONDS)
    if WebhookEvent.objects.filter(
        state=WebhookEvent.State.PENDING, attempts=0, enqueued_at__lt=waited
    ).exists():
        enqueue(DRAIN_TASK, what="a drain for callbacks whose drain was lost")


def webhook_events_replay(events: QuerySet[WebhookEvent]) -> int:
    """Put failed or ignored events back to pending and enqueue them; return how many."""
    replayable = [WebhookEvent.State.FAILED, WebhookEvent.State.IGNORED]
    ids = list(events.filter(state__in=replayable).values_list("id", flat=True))
    if not ids:
        return 0
    now = timezone.now()
    # What the UPDATE changed is the count: an event another worker moved on since the SELECT
    # is not replayed, and is not counted.
    replayed = WebhookEvent.objects.filter(pk__in=ids, state__in=replayable).update(
        state=WebhookEvent.State.PENDING, error="", enqueued_at=now, claimed_at=None
    )
    transaction.on_commit(lambda: webhook_events_enqueue(ids))
    return replayed


def webhook_event_answer(account: ProviderAccount, event: WebhookEvent) -> JSON:
    """Process a callback that expects a synchronous answer (XMS contact/info) and build it.

    On any error the platform gets `{}` and the event is left for the worker to retry, so an
    answer is never slower or less available than the inbox's own database.
    """
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
        callback = _read(event)
        if not callback.contacts:
            return {}
        view = callback_applier().contact_view(account, callback.contacts[0].external_id)
        return provider.contact_reply(view)
    except Exception:
        logger.exception("building the contact reply for webhook event %s failed", event.pk)
        return {}
