"""Stage 6: template sync of 2,000 templates from the sandbox."""

from __future__ import annotations

import time

from bench.context import Bench
from integrations.models import Channel, SyncRun, Template
from integrations.registry import get_provider
from integrations.services.templates import templates_sync

SECTION = "6. Sync"


def run(bench: Bench) -> None:
    extra = 200 if bench.quick else 2000
    stack = bench.stack
    # The sandbox forgets its state on restart: nothing else needs it after this stage.
    stack.start_sandbox(
        ["--no-customers", "--receipt-delays", "0.2,0.4,0.6", "--templates", str(extra)]
    )
    account = bench.account
    provider = get_provider(account.kind)
    channels = list(Channel.objects.filter(account=account).values_list("external_id", flat=True))

    began = time.monotonic()
    listed = sum(len(provider.list_templates(account.config(), c)) for c in channels)
    fetch = time.monotonic() - began

    figures = []
    for label in ("first sync", "sync again, nothing changed"):
        began = time.monotonic()
        run_ = templates_sync(account, trigger="bench")
        took = time.monotonic() - began
        if run_.state != SyncRun.State.SUCCEEDED:
            raise RuntimeError(f"template sync failed: {run_.error}")
        figures.append((label, took, run_.total))
    templates = Template.objects.filter(account=account).count()
    for label, took, total in figures:
        bench.report.add(
            SECTION,
            f"{label}: {total:,} templates on {len(channels)} channels",
            f"{took:.2f} s",
            baseline=f"fetching them only: {fetch:.2f} s",
            ratio=took / fetch if fetch else None,
            note=f"{templates:,} template rows",
            seconds=round(took, 3),
            fetch_seconds=round(fetch, 3),
            listed=listed,
            templates=templates,
        )
