"""Sync message templates from the platform: upsert, approvals per channel, deactivate removed.

Templates that disappear are marked inactive, never deleted: messages that used them keep
their reference. Progress is written to the `SyncRun` as it goes, so a sync of thousands of
templates shows how far it got.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from integrations.base import ProviderError, TemplateInfo, with_fresh_credentials
from integrations.models import Channel, ProviderAccount, SyncRun, Template, TemplateApproval
from integrations.registry import get_provider
from integrations.services.accounts import account_health_record

logger = logging.getLogger(__name__)
PROGRESS_EVERY = 250
FIELDS = (
    "code",
    "lang",
    "name",
    "title",
    "category",
    "header",
    "body",
    "footer",
    "text",
    "buttons",
    "placeholders",
    "attachments",
    "raw",
)


def _values(info: TemplateInfo) -> dict[str, Any]:
    return {
        "code": info.code,
        "lang": info.lang,
        "name": info.name,
        "title": info.title,
        "category": info.category,
        "header": info.header,
        "body": info.body,
        "footer": info.footer,
        "text": info.text,
        "buttons": list(info.buttons),
        "placeholders": list(info.placeholders),
        "attachments": list(info.attachments),
        "raw": info.raw,
    }


def templates_sync(account: ProviderAccount, *, trigger: str = "command") -> SyncRun:
    """Sync the account's templates, channel by channel; return the finished run."""
    run = SyncRun.objects.create(account=account, kind=SyncRun.Kind.TEMPLATES, trigger=trigger)
    provider = get_provider(account.kind)
    channels = {c.external_id: c for c in Channel.objects.filter(account=account)}
    listed: dict[str, TemplateInfo] = {}
    try:
        for channel in channels.values():
            found = with_fresh_credentials(
                provider,
                account.config(),
                partial(provider.list_templates, channel_external_id=channel.external_id),
            )
            for info in found:
                known = listed.get(info.external_id)
                # One template listed on several channels (WhatsApp numbers of one business
                # account share template ids): approved on each of them.
                listed[info.external_id] = (
                    info
                    if known is None
                    else replace(known, approvals={**known.approvals, **info.approvals})
                )
            SyncRun.objects.filter(pk=run.pk).update(total=len(listed))
    except ProviderError as exc:  # UnsupportedError: a platform without templates
        return _failed(run, account, f"{exc}")
    run.total = len(listed)
    try:
        _apply(run, account, listed, channels)
    except Exception as exc:
        logger.exception("template sync of %s failed", account)
        return _failed(run, account, f"{type(exc).__name__}: {exc}")
    account_health_record(account)
    run.state = SyncRun.State.SUCCEEDED
    run.finished_at = timezone.now()
    run.save()
    return run


def _failed(run: SyncRun, account: ProviderAccount, error: str) -> SyncRun:
    run.state = SyncRun.State.FAILED
    run.error = error[:2000]
    run.finished_at = timezone.now()
    run.save()
    account_health_record(account, error=f"Template sync failed: {error}")
    return run


def _apply(
    run: SyncRun,
    account: ProviderAccount,
    listed: dict[str, TemplateInfo],
    channels: dict[str, Channel],
) -> None:
    now = timezone.now()
    existing = {t.external_id: t for t in Template.objects.filter(account=account)}
    approvals = {
        (a.template_id, a.channel_id): a
        for a in TemplateApproval.objects.filter(template__account=account)
    }
    batch: list[TemplateInfo] = []
    for info in listed.values():
        batch.append(info)
        if len(batch) >= PROGRESS_EVERY:
            _apply_batch(run, account, batch, existing, approvals, channels, now)
            batch = []
    if batch:
        _apply_batch(run, account, batch, existing, approvals, channels, now)
    with transaction.atomic():
        gone = Template.objects.filter(account=account, is_active=True).exclude(
            external_id__in=list(listed)
        )
        run.deactivated = gone.update(is_active=False, removed_at=now)


def _apply_batch(
    run: SyncRun,
    account: ProviderAccount,
    batch: list[TemplateInfo],
    existing: dict[str, Template],
    approvals: dict[tuple[int, int], TemplateApproval],
    channels: dict[str, Channel],
    now: Any,
) -> None:
    with transaction.atomic():
        new: list[Template] = []
        changed: list[Template] = []
        for info in batch:
            values = _values(info)
            template = existing.get(info.external_id)
            if template is None:
                template = Template(
                    account=account, external_id=info.external_id, synced_at=now, **values
                )
                new.append(template)
                existing[info.external_id] = template
                continue
            dirty = [f for f in FIELDS if getattr(template, f) != values[f]]
            for f in dirty:
                setattr(template, f, values[f])
            if dirty or not template.is_active:
                template.is_active = True
                template.removed_at = None
                changed.append(template)
            template.synced_at = now
        Template.objects.bulk_create(new)
        if changed:
            Template.objects.bulk_update(changed, [*FIELDS, "is_active", "removed_at"])
        Template.objects.filter(pk__in=[existing[i.external_id].pk for i in batch]).update(
            synced_at=now
        )
        new_approvals: list[TemplateApproval] = []
        changed_approvals: list[TemplateApproval] = []
        for info in batch:
            template = existing[info.external_id]
            for channel_id, (status, platform_template_id) in info.approvals.items():
                channel = channels.get(channel_id)
                if channel is None:
                    continue
                approval = approvals.get((template.pk, channel.pk))
                if approval is None:
                    approval = TemplateApproval(
                        template=template,
                        channel=channel,
                        status=status,
                        platform_template_id=platform_template_id,
                    )
                    approvals[(template.pk, channel.pk)] = approval
                    new_approvals.append(approval)
                elif (approval.status, approval.platform_template_id) != (
                    status,
                    platform_template_id,
                ):
                    approval.status, approval.platform_template_id = status, platform_template_id
                    changed_approvals.append(approval)
        TemplateApproval.objects.bulk_create(new_approvals)
        if changed_approvals:
            TemplateApproval.objects.bulk_update(
                changed_approvals, ["status", "platform_template_id"]
            )
        run.created += len(new)
        run.updated += len(changed)
        run.processed += len(batch)
        SyncRun.objects.filter(pk=run.pk).update(
            processed=run.processed, created=run.created, updated=run.updated, total=run.total
        )
