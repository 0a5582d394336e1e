"""Polling ingest: for a platform that does not call us, we ask it (`Provider.poll`).

Each page is stored raw as a `WebhookEvent` (path "poll") in the transaction that moves the
account's `PollCursor` past it, so polled pages are applied, swept and replayed exactly like
callbacks, and a page is stored once or fetched again from the old cursor, never lost. Polls
of one account run one at a time (a claim on its cursor row, taken over when a dead worker's
claim has not been renewed within CLAIM_LEASE_SECONDS).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from config.queue import enqueue, enqueue_once, enqueue_once_started
from integrations.base import ProviderError, with_fresh_credentials
from integrations.leases import lease_held
from integrations.models import PollCursor, ProviderAccount
from integrations.registry import get_provider
from integrations.services.accounts import account_health_record
from integrations.services.webhooks import webhook_event_receive

logger = logging.getLogger(__name__)

POLL_TASK = "integrations.tasks.account_poll"
POLL_PATH = "poll"


def accounts_polling() -> list[ProviderAccount]:
    """The active accounts whose platform is polled."""
    return [
        account
        for account in ProviderAccount.objects.filter(is_active=True)
        if get_provider(account.kind).ingest == "poll"
    ]


def _queued_key(account_id: object) -> str:
    return f"switchboard:poll-queued:{account_id}"


def accounts_poll_due() -> int:
    """Queue a poll of every polling account (one waiting per account); return how many.

    A poll says it started (`enqueue_once_started`), so the next beat queues the next one: an
    account is polled every POLL_INTERVAL_SECONDS, not once per key expiry. Without Redis each
    beat queues a poll of its own (the claim on the cursor keeps them one at a time).
    """
    queued = 0
    for account in accounts_polling():
        what = f"a poll of {account}"
        once = enqueue_once(
            POLL_TASK,
            str(account.pk),
            key=_queued_key(account.pk),
            ttl_seconds=settings.POLL_INTERVAL_SECONDS * 4,
            what=what,
        )
        queued += once or enqueue(POLL_TASK, str(account.pk), what=what)
    return queued


def _claim(account: ProviderAccount) -> PollCursor | None:
    PollCursor.objects.get_or_create(account=account)
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CLAIM_LEASE_SECONDS)
    free = Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale)
    if not PollCursor.objects.filter(free, account=account).update(claimed_at=now):
        return None  # another worker is polling this account
    return PollCursor.objects.get(account=account)


def account_poll(account_id: str) -> int:
    """Poll one account's platform until it has nothing more (at most POLL_MAX_PAGES pages);
    store each page and move the cursor; return how many pages were stored.

    A refusal or an outage is recorded on the cursor and on the account's health (admin shows
    both) and the next beat tries again from the same cursor.
    """
    enqueue_once_started(_queued_key(account_id))
    account = ProviderAccount.objects.filter(pk=account_id, is_active=True).first()
    if account is None:
        return 0
    provider = get_provider(account.kind)
    claimed = _claim(account)
    if claimed is None:
        return 0
    stored = 0
    try:
        with lease_held(PollCursor, [claimed.pk], claimed.claimed_at):
            cursor = claimed.cursor
            for _ in range(settings.POLL_MAX_PAGES):
                page = with_fresh_credentials(
                    provider, account.config(), partial(provider.poll, cursor=cursor)
                )
                with transaction.atomic():
                    if page.items:
                        webhook_event_receive(
                            account, body=json.dumps(page.body), headers={}, path=POLL_PATH
                        )
                        stored += 1
                    PollCursor.objects.filter(pk=claimed.pk).update(
                        cursor=page.cursor,
                        polled_at=timezone.now(),
                        pages=F("pages") + int(bool(page.items)),
                        failed_at=None,
                        error="",
                    )
                cursor = page.cursor
                if not page.more:
                    break
        account_health_record(account)
    except ProviderError as exc:
        logger.warning("polling %s failed: %s", account, exc)
        PollCursor.objects.filter(pk=claimed.pk).update(
            failed_at=timezone.now(), error=f"{exc.detail}"[:2000]
        )
        account_health_record(account, error=f"Polling the platform failed: {exc.detail}")
    finally:
        PollCursor.objects.filter(pk=claimed.pk).update(claimed_at=None)
    return stored
