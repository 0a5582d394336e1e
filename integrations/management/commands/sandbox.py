"""Run the Mehery XMS simulator: `python manage.py sandbox --port 8001 --account "Sandbox"`."""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.management.sandbox_setup import when_listening

logger = logging.getLogger("sandbox")


class Command(BaseCommand):
    help = (
        "Run the Mehery XMS platform simulator. With --account, also create or update that XMS "
        "account to point at the sandbox and register its callback URL through config/webhook."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--account", help="Name of the XMS account to point at the sandbox.")
        parser.add_argument(
            "--api-key", help="API key the sandbox accepts (default: the account's)."
        )
        parser.add_argument("--api-id", default="", help="API id the sandbox accepts.")
        parser.add_argument(
            "--verify-token", help="Token sent with callbacks (default: the account's)."
        )
        parser.add_argument(
            "--webhook-url", help="Where to send callbacks before one is registered."
        )
        parser.add_argument("--rate", type=float, default=6.0, help="Customer messages per minute.")
        parser.add_argument(
            "--reply-rate",
            type=float,
            default=0.6,
            help="Share of agent messages a customer answers.",
        )
        parser.add_argument("--no-customers", action="store_true", help="No simulated traffic.")
        parser.add_argument("--scenario", type=Path, help="JSON scenario file to play instead.")
        parser.add_argument("--seed", type=int, help="Random seed, for repeatable runs.")
        parser.add_argument("--templates", type=int, default=0, help="Extra synthetic templates.")
        parser.add_argument(
            "--receipt-delays", default="0.4,1.2,2.5", help="Seconds until SENT, DLVRD, READ."
        )
        parser.add_argument("--window-hours", type=float, default=24.0)
        parser.add_argument(
            "--no-append-paths",
            action="store_true",
            help="Post callbacks to the registered URL as-is.",
        )
        for name, kind, default, text in (
            ("latency-ms", int, 0, "Added latency on every API call."),
            ("error-rate", float, 0.0, "Share of API calls answered 503 (not processed)."),
            ("timeout-rate", float, 0.0, "Share of API calls that hang (not processed)."),
            ("timeout-seconds", float, 40.0, "How long a hanging call hangs."),
            ("duplicate-rate", float, 0.0, "Share of callbacks delivered twice."),
            ("reorder-rate", float, 0.0, "Share of messages whose receipts come newest first."),
            ("drop-rate", float, 0.0, "Share of callbacks never delivered."),
        ):
            parser.add_argument(f"--{name}", type=kind, default=default, help=text)

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        from integrations.sandbox.server import SandboxServer
        from integrations.sandbox.state import Faults, SandboxPlatform

        base = f"http://{options['host']}:{options['port']}"
        account = self._account(options, base) if options["account"] else None
        api_key = options["api_key"] or (account.api_key if account else "") or "sandbox-key"
        verify_token = options["verify_token"] or (account.verify_token if account else "")
        if not verify_token:
            raise CommandError("Give --verify-token (or --account) so callbacks authenticate.")
        scenario = None
        if options["scenario"]:
            try:
                data = json.loads(options["scenario"].read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read scenario {options['scenario']}: {exc}") from exc
            scenario = data["steps"] if isinstance(data, dict) else data
        try:
            delays = tuple(float(x) for x in options["receipt_delays"].split(","))
            assert len(delays) == 3
        except (ValueError, AssertionError):
            raise CommandError("--receipt-delays takes three numbers: SENT,DLVRD,READ") from None

        rng = random.Random(options["seed"])
        faults = Faults(
            latency_ms=options["latency_ms"],
            error_rate=options["error_rate"],
            timeout_rate=options["timeout_rate"],
            timeout_seconds=options["timeout_seconds"],
            duplicate_rate=options["duplicate_rate"],
            reorder_rate=options["reorder_rate"],
            drop_rate=options["drop_rate"],
        )
        platform = SandboxPlatform(
            api_key=api_key,
            api_id=options["api_id"],
            verify_token=verify_token,
            media_base=f"{base}/media",
            rng=rng,
            extra_templates=options["templates"],
            receipt_delays=(delays[0], delays[1], delays[2]),
            window_hours=options["window_hours"],
            reply_rate=options["reply_rate"],
            faults=faults,
        )
        if options["webhook_url"]:
            platform.webhook_url = options["webhook_url"]
        server = SandboxServer(
            platform,
            rng=rng,
            append_paths=not options["no_append_paths"],
            simulate=not options["no_customers"],
            rate_per_minute=options["rate"],
            scenario=scenario,
        )
        if account is not None:
            threading.Thread(
                target=self._register, args=(account, options["host"], options["port"]), daemon=True
            ).start()
        self.stdout.write(
            f"Mehery XMS sandbox on {base}/xms (x-api-key {api_key[:4]}…); "
            f"control API {base}/_sandbox/state"
        )
        uvicorn.run(
            server, host=options["host"], port=options["port"], log_level="warning", lifespan="on"
        )

    def _account(self, options: dict[str, Any], base: str) -> Any:
        from integrations.models import ProviderAccount

        account = ProviderAccount.objects.filter(kind="xms", name=options["account"]).first()
        if account is None:
            account = ProviderAccount(kind="xms", name=options["account"])
        account.base_url = f"{base}/xms"
        account.api_key = options["api_key"] or account.api_key or secrets.token_urlsafe(24)
        if options["api_id"]:
            account.api_id = options["api_id"]
        if options["verify_token"]:
            account.verify_token = options["verify_token"]
        account.is_active = True
        # The demo's channels should reach agents without an admin step.
        account.options = {**(account.options or {}), "activate_new_channels": True}
        account.save()
        return account

    def _register(self, account: Any, host: str, port: int) -> None:
        """Once the sandbox listens, register the callback URL through our own client."""
        from integrations.services.accounts import account_webhook_register
        from integrations.services.channels import channels_sync
        from integrations.services.templates import templates_sync

        def setup() -> None:
            account_webhook_register(account)
            channels_sync(account)
            templates_sync(account, trigger="sandbox")

        if when_listening(host, port, setup, what="registering the webhook"):
            self.stdout.write(
                f"Sandbox account {account.name!r}: callbacks go to {account.webhook_url} "
                f"(PUBLIC_BASE_URL={settings.PUBLIC_BASE_URL})"
            )
