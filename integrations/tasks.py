"""Celery tasks: thin wrappers that call a service."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from integrations.services import webhooks


@shared_task(
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def webhook_event_process(event_id: int) -> str | None:
    """Apply one stored callback (see `webhooks.webhook_event_process`)."""
    return webhooks.webhook_event_process(event_id)


@shared_task
def webhook_events_sweep() -> int:
    """Enqueue stored callbacks that no task is going to process."""
    return webhooks.webhook_events_sweep()
