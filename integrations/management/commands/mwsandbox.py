"""Run the MessageWhiz simulator: `python manage.py mwsandbox --port 8002 --account NAME`."""

from __future__ import annotations

import logging
import random
import secrets
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.management.sandbox_setup import when_listening

logger = logging.getLogger("mwsandbox")

DEFAULT_EMAIL = "sandbox@messagewhiz.test"
KIND = "messagewhiz"


class Command(BaseCommand):
    help = (
        "Run the MessageWhiz omni API simulator. With --account, also create or update that "
        "MessageWhiz account to log in to the sandbox, then sync its channels and templates."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8002)
        parser.add_argument("--account", help="Name of the MessageWhiz account to point here.")
        parser.add_argument(
            "--email", help="Login email the sandbox accepts (default: the account's)."
        )
        parser.add_argument(
            "--password", help="Password the sandbox accepts (default: the account's)."
        )
        parser.add_argument("--rate", type=float, default=6.0, help="Customer messages per minute.")
        parser.add_argument(
            "--reply-rate", type=float, default=0.6, help="Share of agent sends a customer answers."
        )
        parser.add_argument(
            "--no-customers",
            action="store_true",
            help="No simulated traffic, replies or seeded conversations.",
        )
        parser.add_argument("--seed", type=int, help="Random seed, for repeatable runs.")
        parser.add_argument(
            "--status-delays",
            default="0.5,1.5,3",
            help="Seconds after a send until SENT, DELIVERED (or a failure) and READ.",
        )
        parser.add_argument(
            "--window-hours", type=float, default=24.0, help="The WhatsApp window, in hours."
        )
        for name, kind, default, text in (
            ("latency-ms", int, 0, "Added latency on every API call."),
            ("error-rate", float, 0.0, "Share of API calls answered 503 (not processed)."),
            ("timeout-rate", float, 0.0, "Share of API calls that hang (not processed)."),
            ("ambiguous-rate", float, 0.0, "Share of sends accepted whose answer never comes."),
            ("upstream-error-rate", float, 0.0, "Share of WhatsApp template calls answered 502."),
            ("timeout-seconds", float, 40.0, "How long a hanging call hangs."),
            ("token-ttl-seconds", float, 86400.0, "Real lifetime (JWT exp) of issued tokens."),
            ("status-error-rate", float, 0.0, "Share of sends ending ERROR or UNDELIVERABLE."),
        ):
            parser.add_argument(f"--{name}", type=kind, default=default, help=text)

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        from integrations.mwsandbox.server import MessageWhizServer
        from integrations.mwsandbox.state import Faults, MessageWhizPlatform

        base = f"http://{options['host']}:{options['port']}"
        delays = _delays(options["status_delays"])
        faults = Faults()
        try:
            faults.update(
                {
                    key: options[key]
                    for key in (
                        "latency_ms",
                        "error_rate",
                        "timeout_rate",
                        "ambiguous_rate",
                        "upstream_error_rate",
                        "timeout_seconds",
                        "token_ttl_seconds",
                        "status_error_rate",
                    )
                }
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        account = self._account(options, base) if options["account"] else None
        email = options["email"] or (account.api_id if account else "") or DEFAULT_EMAIL
        password = options["password"] or (account.api_key if account else "")
        password = password or secrets.token_urlsafe(18)
        seed = options["seed"]
        simulate = not options["no_customers"]
        platform = MessageWhizPlatform(
            email=email,
            password=password,
            base_url=base,
            rng=random.Random(seed),  # noqa: S311 (simulated traffic, not secrets)
            status_delays=delays,
            window_hours=options["window_hours"],
            faults=faults,
            history=simulate,
        )
        server = MessageWhizServer(
            platform,
            rng=random.Random(None if seed is None else seed + 1),  # noqa: S311
            simulate=simulate,
            rate_per_minute=options["rate"],
            reply_rate=options["reply_rate"],
        )
        if account is not None:
            threading.Thread(
                target=self._sync, args=(account, options["host"], options["port"]), daemon=True
            ).start()
        self.stdout.write(
            f"MessageWhiz sandbox on {base}/api (login {email}); control API {base}/_sandbox/state"
        )
        uvicorn.run(
            server, host=options["host"], port=options["port"], log_level="warning", lifespan="on"
        )

    def _account(self, options: dict[str, Any], base: str) -> Any:
        """Create or update the account to log in here; keep its email and password if set."""
        from integrations.models import ProviderAccount

        account = ProviderAccount.objects.filter(kind=KIND, name=options["account"]).first()
        if account is None:
            account = ProviderAccount(kind=KIND, name=options["account"])
        account.base_url = base
        # The provider reads the login email from api_id and the password from api_key.
        account.api_id = options["email"] or account.api_id or DEFAULT_EMAIL
        account.api_key = options["password"] or account.api_key or secrets.token_urlsafe(18)
        account.is_active = True
        # The demo's channels should reach agents without an admin step.
        account.options = {**(account.options or {}), "activate_new_channels": True}
        account.save()
        return account

    def _sync(self, account: Any, host: str, port: int) -> None:
        """Once the sandbox listens, sync the account's channels and templates from it."""
        from integrations.services.channels import channels_sync
        from integrations.services.templates import templates_sync

        def setup() -> None:
            channels_sync(account)
            templates_sync(account, trigger="sandbox")

        if when_listening(host, port, setup, what=f"syncing {account.name}", attempts=5):
            self.stdout.write(f"Sandbox account {account.name!r}: channels and templates synced")


def _delays(text: str) -> tuple[float, float, float]:
    """Parse --status-delays: three growing numbers of seconds."""
    try:
        first, second, third = (float(x) for x in text.split(","))
    except ValueError:
        raise CommandError("--status-delays takes three numbers: SENT,DELIVERED,READ") from None
    if not 0 <= first <= second <= third:
        raise CommandError("--status-delays must grow: SENT <= DELIVERED <= READ")
    return first, second, third
