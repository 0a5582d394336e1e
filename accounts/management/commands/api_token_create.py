"""Make an API token for a user and print its key, once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import User
from accounts.services import api_token_create


class Command(BaseCommand):
    help = (
        "Create an API token for a user and print its key (shown only this once; Switchboard "
        "keeps its hash). Revoke tokens in admin (API tokens)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What or who will use the token.")
        parser.add_argument(
            "--expires-days", type=float, help="Days until the token expires (default: never)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        if not user.is_active:
            raise CommandError(f"User {user.username!r} is inactive; its tokens would not work.")
        days = options["expires_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-days must be more than 0.")
        expires_at = timezone.now() + timedelta(days=days) if days is not None else None
        _, key = api_token_create(user, name=options["name"], expires_at=expires_at)
        self.stdout.write(key)
