"""Delete media files older than their channel keeps them (the periodic task does the same)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, Q, Sum
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from inbox.services.media import media_retention_apply, media_retention_due
from integrations.models import Channel


class Command(BaseCommand):
    help = (
        "Delete stored media files older than their channel's retention period (Channel: "
        "'media retention days'); the messages stay and say the file was deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only say what would be deleted."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        channels = Channel.objects.annotate(
            stored_bytes=Sum("media_files__size", filter=Q(media_files__state="stored")),
            stored_files=Count("media_files", filter=Q(media_files__state="stored")),
        ).order_by("pk")
        for channel in channels:
            days = channel.media_retention_days
            due = media_retention_due(channel, now=now).count() if days is not None else 0
            kept = "forever" if days is None else f"{days} days"
            used = filesizeformat(channel.stored_bytes or 0)
            self.stdout.write(
                f"{channel}: keeps media {kept}; {channel.stored_files} file(s), {used}; "
                f"{due} past their time"
            )
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing deleted.")
            return
        deleted = 0
        while batch := media_retention_apply(now=now):
            deleted += batch
            self.stdout.write(f"Deleted {deleted} file(s) so far…")
        self.stdout.write(self.style.SUCCESS(f"Deleted {deleted} media file(s)."))
