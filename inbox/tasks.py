"""Celery tasks of the inbox: thin wrappers that call a service."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from inbox.services import deliver, history, media, receipts_fetch, reconcile, session_actions
from integrations.base import ProviderError


@shared_task(autoretry_for=(OperationalError,), retry_backoff=2, retry_jitter=True, max_retries=5)
def message_deliver(message_id: int) -> str:
    """Deliver one queued outbound message (see `deliver.message_deliver`)."""
    try:
        return deliver.message_deliver(message_id)
    except deliver.DeliveryDeferred as deferred:
        message_deliver.apply_async(args=(message_id,), countdown=deferred.countdown)
        return f"deferred {deferred.countdown}s: {deferred.reason}"


@shared_task(autoretry_for=(OperationalError,), retry_backoff=2, retry_jitter=True, max_retries=5)
def messages_drain(channel_id: int) -> int:
    """Send a channel's due replies in batches (see `deliver.messages_drain`)."""
    return deliver.messages_drain(channel_id)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=2, max_retries=5)
def message_reconcile(message_id: int) -> str:
    """Settle a send the platform never confirmed (see `reconcile.message_reconcile`)."""
    return reconcile.message_reconcile(message_id)


@shared_task
def messages_reap() -> dict[str, int]:
    """Recover outbound messages no worker will finish."""
    return reconcile.messages_reap().__dict__


@shared_task(autoretry_for=(OperationalError,), retry_backoff=2, max_retries=5)
def session_action_perform(action_id: int) -> str:
    """Carry out a route/resolve/close/language action at the platform."""
    return session_actions.session_action_perform(action_id)


@shared_task
def session_actions_reap() -> int:
    """Enqueue session actions whose task was lost."""
    return session_actions.session_actions_reap()


@shared_task(
    autoretry_for=(ProviderError, OperationalError),
    retry_backoff=5,
    retry_jitter=True,
    max_retries=4,
)
def session_history_import(session_id: int) -> int:
    """Import a session's earlier messages from the platform."""
    return history.session_history_import(session_id)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=2, retry_jitter=True, max_retries=5)
def media_fetch(media_id: int) -> str:
    """Fetch one inbound media file into our storage (see `media.media_fetch`)."""
    return media.media_fetch(media_id)


@shared_task(autoretry_for=(OperationalError,), retry_backoff=2, max_retries=5)
def media_fetches_start(media_ids: list[int]) -> int:
    """Queue the fetches of a batch of new media files (see `media.media_fetches_start`)."""
    return media.media_fetches_start(media_ids)


@shared_task
def media_sweep() -> int:
    """Enqueue media fetches whose task was lost."""
    return media.media_sweep()


@shared_task
def media_retention_apply() -> int:
    """Delete media files older than their channel keeps them."""
    return media.media_retention_apply()


@shared_task
def receipts_fetch_due() -> int:
    """Queue receipts looks for the platforms that push none (see `receipts_fetch`)."""
    return receipts_fetch.receipts_fetch_due()


@shared_task(autoretry_for=(OperationalError,), retry_backoff=2, max_retries=5)
def account_receipts_fetch(account_id: str) -> int:
    """Look up where one account's sends are (see `receipts_fetch.account_receipts_fetch`)."""
    return receipts_fetch.account_receipts_fetch(account_id)
