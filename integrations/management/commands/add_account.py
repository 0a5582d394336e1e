"""Create or update a platform account from the command line; print one line of JSON."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import URLValidator

from integrations.models import ProviderAccount
from integrations.registry import PROVIDERS


class Command(BaseCommand):
    help = (
        "Create or update a platform account (matched by kind and name) and print its id, "
        "verify token, webhook path and webhook URL (PUBLIC_BASE_URL + path) as JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=sorted(PROVIDERS), help="Platform kind.")
        parser.add_argument("--name", required=True, help="Account name (unique per kind).")
        parser.add_argument("--base-url", required=True, help="The platform's API base URL.")
        parser.add_argument("--api-key", default=None, help="API key (stored encrypted).")
        parser.add_argument("--api-id", default=None, help="API id (stored encrypted).")
        parser.add_argument(
            "--email", default=None, help="MessageWhiz: the account's login email (encrypted)."
        )
        parser.add_argument(
            "--password", default=None, help="MessageWhiz: the account's password (encrypted)."
        )
        parser.add_argument(
            "--verify-token",
            default=None,
            help="Callback verify token; a random one is made for a new account when omitted.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base_url = options["base_url"].rstrip("/")
        try:
            URLValidator(schemes=["http", "https"])(base_url)
        except ValidationError:
            raise CommandError(f"--base-url {base_url!r} is not an http(s) URL") from None
        if options["verify_token"] is not None and len(options["verify_token"]) < 8:
            raise CommandError("--verify-token must be at least 8 characters")
        # MessageWhiz logs in with an email and password (its spec §1.2), kept in the same two
        # encrypted fields other platforms keep their API key and id in.
        if options["email"] is not None or options["password"] is not None:
            if options["api_key"] is not None or options["api_id"] is not None:
                raise CommandError("Give either --email/--password or --api-key/--api-id.")
            options["api_id"], options["api_key"] = options["email"], options["password"]
        if options["kind"] == "messagewhiz" and not (options["api_id"] and options["api_key"]):
            raise CommandError("A MessageWhiz account needs --email and --password.")
        if options["api_key"] is None:
            raise CommandError("Give the account's --api-key.")

        account = ProviderAccount.objects.filter(kind=options["kind"], name=options["name"]).first()
        created = account is None
        if account is None:
            account = ProviderAccount(kind=options["kind"], name=options["name"])
        account.base_url = base_url
        account.api_key = options["api_key"]
        if options["api_id"] is not None:
            account.api_id = options["api_id"]
        if options["verify_token"] is not None:
            account.verify_token = options["verify_token"]
        account.is_active = True
        account.save()
        self.stdout.write(
            json.dumps(
                {
                    "id": str(account.id),
                    "kind": account.kind,
                    "name": account.name,
                    "created": created,
                    "verify_token": account.verify_token,
                    "webhook_path": account.webhook_path,
                    "webhook_url": account.webhook_url,
                }
            )
        )
        host = urlsplit(settings.PUBLIC_BASE_URL).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1") or host.endswith(".local"):
            # stderr: stdout stays one line of JSON for scripts.
            self.stderr.write(
                f"PUBLIC_BASE_URL is {settings.PUBLIC_BASE_URL}: a platform cannot reach that "
                "webhook URL. Set PUBLIC_BASE_URL to this server's public HTTPS address."
            )
