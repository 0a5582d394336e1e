"""Celery tasks: thin wrappers that call a service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import OperationalError

from integrations.services import polling, webhooks

# Callbacks wait out a database outage: retried with backoff (2 s doubling to 120 s), 8 times.
RETRY_WHILE_THE_DATABASE_IS_DOWN: dict[str, Any] = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(**RETRY_WHILE_THE_DATABASE_IS_DOWN)
def webhook_event_process(event_id: int) -> str | None:
    """Apply one stored callback (see `webhooks.webhook_event_process`)."""
    return webhooks.webhook_event_process(event_id)


@shared_task(**RETRY_WHILE_THE_DATABASE_IS_DOWN)
def webhook_events_drain() -> int:
    """Apply fresh stored callbacks in batches (see `webhooks.webhook_events_drain`)."""
    return webhooks.webhook_events_drain()


@shared_task
def webhook_events_sweep() -> int:
    """Enqueue stored callbacks that no task is going to process."""
    return webhooks.webhook_events_sweep()


@shared_task
def templates_sync_all(trigger: str = "beat") -> int:
    """Enqueue a template sync for every active account; return how many."""
    from integrations.models import ProviderAccount

    ids = list(ProviderAccount.objects.filter(is_active=True).values_list("pk", flat=True))
    for account_id in ids:
        templates_sync_account.delay(str(account_id), trigger)
    return len(ids)


@shared_task
def templates_sync_account(account_id: str, trigger: str = "beat") -> str:
    """Sync one account's templates; return the run's summary."""
    from integrations.models import ProviderAccount
    from integrations.services.templates import templates_sync

    account = ProviderAccount.objects.get(pk=account_id)
    return templates_sync(account, trigger=trigger).summary()


@shared_task
def channels_sync_all() -> dict[str, str]:
    """Sync the channels of every active account; return each outcome."""
    from integrations.base import ProviderError
    from integrations.models import ProviderAccount
    from integrations.services.channels import channels_sync

    outcomes = {}
    for account in ProviderAccount.objects.filter(is_active=True):
        try:
            outcomes[str(account.pk)] = str(channels_sync(account))
        except ProviderError as exc:  # UnsupportedError too: a platform without the capability
            outcomes[str(account.pk)] = f"failed: {exc}"
    return outcomes


@shared_task
def accounts_poll_due() -> int:
    """Queue a poll of every polling account (see `polling.accounts_poll_due`)."""
    return polling.accounts_poll_due()


@shared_task
def account_poll(account_id: str) -> int:
    """Poll one account's platform and store what it has (see `polling.account_poll`)."""
    return polling.account_poll(account_id)
