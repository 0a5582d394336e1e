"""What every stage of a run shares: the running processes, the report, the bench account."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.report import Report

if TYPE_CHECKING:
    from devstack import Stack
    from integrations.models import ProviderAccount

ADMIN_USERNAME = "bench-admin"
ADMIN_PASSWORD = "bench-admin-password-0123"  # noqa: S105 - a throwaway user in a throwaway database


@dataclass
class Bench:
    """One run. Django is set up in this process against the run's own database."""

    quick: bool
    stack: Stack
    report: Report
    account: ProviderAccount
    started: float = field(default_factory=time.monotonic)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        return self.stack.web_url

    def webhook_url(self, account: ProviderAccount | None = None) -> str:
        account = account or self.account
        return f"{self.web_url}/webhooks/{account.kind}/{account.pk}/"

    def tenant(self) -> dict[str, str]:
        """Return the `meta` the platform sends for this account (its app id and domain)."""
        options = self.account.options or {}
        names = (("appId", "app_id"), ("domain", "domain"))
        return {key: str(options[name]) for key, name in names if options.get(name)}

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    def pending(self) -> int:
        """Count the bench account's callbacks not processed yet."""
        from integrations.models import WebhookEvent

        return WebhookEvent.objects.filter(
            account=self.account,
            state__in=[WebhookEvent.State.PENDING, WebhookEvent.State.PROCESSING],
        ).count()

    def drain(self, timeout: float) -> float:
        """Wait until the worker has processed every stored callback; return the seconds."""
        from devstack import wait_for

        began = time.monotonic()
        wait_for(lambda: self.pending() == 0, timeout=timeout, interval=0.25, what="backlog")
        return time.monotonic() - began

    @contextmanager
    def stage(self, title: str) -> Iterator[None]:
        self.log(f"== {title}")
        began = time.monotonic()
        yield
        self.log(f"   {title}: {time.monotonic() - began:.1f} s")
