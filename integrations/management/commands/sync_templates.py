"""Sync message templates (and first channels) from the platforms, showing progress."""

from __future__ import annotations

import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.base import ProviderError
from integrations.models import ProviderAccount, SyncRun
from integrations.services.channels import channels_sync
from integrations.services.templates import templates_sync


class Command(BaseCommand):
    help = "Sync channels and HSM templates of every active account (or the ones named)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", action="append", help="Account id or name (repeatable).")
        parser.add_argument("--skip-channels", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = list(ProviderAccount.objects.filter(is_active=True))
        if options["account"]:
            wanted = options["account"]
            accounts = [a for a in accounts if str(a.pk) in wanted or a.name in wanted]
            if not accounts:
                raise CommandError(f"No active account matches {', '.join(wanted)}.")
        failed = False
        for account in accounts:
            if not options["skip_channels"]:
                try:
                    self.stdout.write(f"{account}: channels {channels_sync(account)}")
                except ProviderError as exc:
                    self.stderr.write(f"{account}: channel sync failed: {exc}")
            run = self._with_progress(account)
            line = f"{account}: templates {run.summary()}"
            if run.state == SyncRun.State.FAILED:
                failed = True
                self.stderr.write(line)
            else:
                self.stdout.write(line)
        if failed:
            raise CommandError("At least one sync failed (see above).")

    def _with_progress(self, account: ProviderAccount) -> SyncRun:
        result: dict[str, SyncRun] = {}
        worker = threading.Thread(
            target=lambda: result.update(run=templates_sync(account, trigger="command"))
        )
        worker.start()
        while worker.is_alive():
            worker.join(timeout=1.0)
            run = SyncRun.objects.filter(account=account, kind=SyncRun.Kind.TEMPLATES).first()
            if worker.is_alive() and run is not None and run.state == SyncRun.State.RUNNING:
                self.stdout.write(f"  {account}: {run.progress} templates…")
        return result["run"]
