"""Replay failed (and optionally ignored) webhook events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from integrations.models import WebhookEvent
from integrations.services.webhooks import webhook_events_replay, webhook_events_sweep


class Command(BaseCommand):
    help = "Put failed webhook events back to pending and enqueue them for processing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="Event ids (default: all failed).")
        parser.add_argument("--account", help="Only events of this account id.")
        parser.add_argument(
            "--since-hours", type=float, help="Only events received in the last N hours."
        )
        parser.add_argument(
            "--include-ignored", action="store_true", help="Replay ignored events too."
        )
        parser.add_argument(
            "--sweep",
            action="store_true",
            help="Also enqueue pending events no task is processing (what beat does).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        states = [WebhookEvent.State.FAILED]
        if options["include_ignored"] or options["ids"]:
            states.append(WebhookEvent.State.IGNORED)
        events = WebhookEvent.objects.filter(state__in=states)
        if options["ids"]:
            events = events.filter(pk__in=options["ids"])
        if options["account"]:
            events = events.filter(account_id=options["account"])
        if options["since_hours"]:
            since = timezone.now() - timedelta(hours=options["since_hours"])
            events = events.filter(received_at__gte=since)
        with transaction.atomic():
            count = webhook_events_replay(events)
        self.stdout.write(f"Replaying {count} event(s).")
        if options["sweep"]:
            self.stdout.write(f"Sweep enqueued {webhook_events_sweep()} pending event(s).")
