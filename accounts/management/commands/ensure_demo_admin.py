"""Create the demo admin for `make run` once, and print how to sign in."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import AgentProfile, User


class Command(BaseCommand):
    help = "Create a demo superuser for local runs (DEBUG only) and print the login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("ensure_demo_admin only runs with DJANGO_DEBUG=1 (local demo).")
        username = options["username"]
        path = settings.VAR_DIR / "demo-admin-password"
        user = User.objects.filter(username=username).first()
        if user is None or not path.exists():
            password = secrets.token_urlsafe(9)
            path.write_text(password)
            path.chmod(0o600)
            if user is None:
                user = User.objects.create_superuser(
                    username=username, email="", password=password, display_name="Demo Admin"
                )
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
        password = path.read_text().strip()
        AgentProfile.objects.get_or_create(
            user=user, defaults={"role": AgentProfile.Role.SUPERVISOR}
        )
        base = settings.PUBLIC_BASE_URL
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Open the inbox at {base}/ and sign in as  {username} / {password}\n"
                f"  (Django admin: {base}/admin/; the password is kept in {path})\n"
            )
        )
