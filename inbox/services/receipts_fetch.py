"""Receipts of platforms that push none (`Capability.RECEIPTS_FETCH`): sends looked up.

Our sends on their way (`sent`, or `delivered` while READ may still come) are looked up at the
platform with backoff: RECEIPTS_FETCH_BACKOFF_SECONDS after the send, then after each look
that found nothing final, until they are final or older than RECEIPTS_FETCH_MAX_AGE_HOURS
(delivered ones: a day). What the platform answers is stored raw and applied like any
callback, so its receipts move messages forward only and a repeated look changes nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from config.queue import enqueue, enqueue_once, enqueue_once_started
from inbox.models import Message
from integrations.base import Capability, ProviderError, SentMessage, with_fresh_credentials
from integrations.models import ProviderAccount
from integrations.registry import get_provider
from integrations.services.accounts import account_health_record
from integrations.services.webhooks import webhook_event_receive

logger = logging.getLogger(__name__)

TASK = "inbox.tasks.account_receipts_fetch"
PATH = "receipts"


def _key(account_id: object) -> str:
    return f"switchboard:receipts-queued:{account_id}"


def receipts_fetch_due() -> int:
    """Queue a receipts look for every account whose platform needs one; return how many."""
    queued = 0
    for account in ProviderAccount.objects.filter(is_active=True):
        if not get_provider(account.kind).can(Capability.RECEIPTS_FETCH):
            continue
        what = f"receipts of {account}"
        once = enqueue_once(TASK, str(account.pk), key=_key(account.pk), ttl_seconds=60, what=what)
        queued += once or enqueue(TASK, str(account.pk), what=what)
    return queued


def _waiting(account: ProviderAccount) -> Q:
    """The account's sends whose next look is due now."""
    now = timezone.now()
    first = timedelta(seconds=settings.RECEIPTS_FETCH_BACKOFF_SECONDS[0])
    oldest = now - timedelta(hours=settings.RECEIPTS_FETCH_MAX_AGE_HOURS)
    due = Q(receipt_check_at__lte=now) | Q(
        receipt_check_at__isnull=True, accepted_at__lte=now - first
    )
    young = Q(status=Message.Status.SENT, accepted_at__gte=oldest) | Q(
        status=Message.Status.DELIVERED, delivered_at__gte=now - timedelta(hours=24)
    )
    return Q(account=account, direction=Message.Direction.OUTBOUND) & due & young


def account_receipts_fetch(account_id: str) -> int:
    """Look up where the account's due sends are; store the answer; return how many looked.

    Every send looked at gets its next look (the backoff's next step) whatever the answer, so a
    platform that lost one is asked less and less often; a failed look keeps them due.
    """
    enqueue_once_started(_key(account_id))
    account = ProviderAccount.objects.filter(pk=account_id, is_active=True).first()
    if account is None:
        return 0
    provider = get_provider(account.kind)
    rows = list(
        Message.objects.filter(_waiting(account))
        .exclude(external_id="")
        .select_related("session__channel", "session__identity")
        # New sends first (their first look is the one agents watch), then the longest due.
        .order_by(F("receipt_check_at").asc(nulls_first=True), "accepted_at")[
            : settings.RECEIPTS_FETCH_BATCH
        ]
    )
    sends = [
        SentMessage(
            external_id=row.external_id,
            contact_external_id=row.session.identity.external_id,
            channel_external_id=row.session.channel.external_id,
            sent_at=row.accepted_at or row.sent_at,
        )
        for row in rows
        if row.session.identity is not None
    ]
    body = None
    if sends:
        try:
            page = with_fresh_credentials(
                provider, account.config(), lambda config: provider.receipts_fetch(config, sends)
            )
        except ProviderError as exc:
            logger.warning("looking up receipts of %s failed: %s", account, exc)
            account_health_record(
                account, error=f"Looking up delivery statuses failed: {exc.detail}"
            )
            return 0
        body = json.dumps(page.body) if page.items else None
    with transaction.atomic():
        if body is not None:
            webhook_event_receive(account, body=body, headers={}, path=PATH)
        _next_looks(rows)
    if sends:
        account_health_record(account)
    return len(sends)


def _next_looks(rows: list[Message]) -> None:
    """Give each looked-at send its next look, one backoff step further on."""
    steps = settings.RECEIPTS_FETCH_BACKOFF_SECONDS
    now = timezone.now()
    by_checks: dict[int, list[int]] = {}
    for row in rows:
        by_checks.setdefault(row.receipt_checks, []).append(row.pk)
    for checks, ids in by_checks.items():
        wait = steps[min(checks + 1, len(steps) - 1)]
        Message.objects.filter(pk__in=ids).update(
            receipt_check_at=now + timedelta(seconds=wait), receipt_checks=checks + 1
        )
