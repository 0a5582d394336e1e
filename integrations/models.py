"""Platform accounts, their channels, and every callback they send us, stored raw.

A `ProviderAccount` is one set of credentials at one platform (kind `xms` now; MessageWhiz and
courier later). Its UUID is part of the callback URL an admin registers at the platform.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from integrations.base import MEDIUM_LABELS, AccountConfig, Medium
from integrations.fields import EncryptedTextField
from integrations.registry import kind_choices


def new_verify_token() -> str:
    """Return a fresh, unguessable callback verification token."""
    return secrets.token_urlsafe(32)


class ProviderAccount(models.Model):
    """One account at a messaging platform: credentials, callback token and health."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=32, choices=kind_choices)
    name = models.CharField(max_length=120)
    base_url = models.URLField("base URL", max_length=500, help_text="The platform's API base URL.")
    api_key = EncryptedTextField(
        "API key", blank=True, help_text="Encrypted at rest; never shown in full."
    )
    api_id = EncryptedTextField(
        "API id", blank=True, help_text="Encrypted at rest (XMS `x-api-id`)."
    )
    verify_token = EncryptedTextField(
        default=new_verify_token,
        help_text="The platform sends this in `x-verify-token` on every callback.",
    )
    # After a rotation the old token is still accepted for WEBHOOK_TOKEN_GRACE_HOURS, so
    # callbacks already on their way are not lost while the platform is updated.
    previous_verify_token = EncryptedTextField(blank=True, editable=False)
    verify_token_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    options = models.JSONField(
        default=dict, blank=True, help_text="Platform-specific settings (JSON object)."
    )
    is_active = models.BooleanField(default=True)
    # Health: what happened the last time we talked to (or heard from) the platform.
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "name"], name="provideraccount_kind_name_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def rotate_verify_token(self) -> None:
        """Give the account a new token, keeping the old one valid for a grace period."""
        self.previous_verify_token = self.verify_token
        self.verify_token = new_verify_token()
        self.verify_token_rotated_at = timezone.now()
        self.save(
            update_fields=[
                "verify_token",
                "previous_verify_token",
                "verify_token_rotated_at",
                "updated_at",
            ]
        )

    def accepted_verify_tokens(self) -> list[str]:
        """Return the tokens a callback may carry now (the current one, and the previous one
        during its grace period)."""
        tokens = [self.verify_token or ""]
        grace = timedelta(hours=settings.WEBHOOK_TOKEN_GRACE_HOURS)
        if (
            self.previous_verify_token
            and self.verify_token_rotated_at is not None
            and timezone.now() - self.verify_token_rotated_at < grace
        ):
            tokens.append(self.previous_verify_token)
        return tokens

    @property
    def is_healthy(self) -> bool:
        """Say whether the last contact with the platform succeeded (or none failed yet)."""
        if self.last_error_at is None:
            return True
        return self.last_success_at is not None and self.last_success_at > self.last_error_at

    @property
    def webhook_path(self) -> str:
        """Return the callback path to register at the platform."""
        return reverse("integrations:webhook", kwargs={"kind": self.kind, "account_id": self.id})

    @property
    def webhook_url(self) -> str:
        """Return the absolute callback URL, built from PUBLIC_BASE_URL."""
        return f"{settings.PUBLIC_BASE_URL}{self.webhook_path}"

    def config(self) -> AccountConfig:
        """Return the decrypted credentials for a provider."""
        return AccountConfig(
            id=str(self.id),
            kind=self.kind,
            base_url=self.base_url,
            api_key=self.api_key or "",
            api_id=self.api_id or "",
            options=dict(self.options or {}),
        )


class Channel(models.Model):
    """A business number or address at a platform that customers write to."""

    account = models.ForeignKey(ProviderAccount, on_delete=models.PROTECT, related_name="channels")
    external_id = models.CharField(
        "platform id", max_length=255, help_text="The platform's channel id."
    )
    medium = models.CharField(max_length=20, choices=[(m.value, MEDIUM_LABELS[m]) for m in Medium])
    lane = models.CharField(max_length=255, blank=True, help_text="The business number/address.")
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    # True while we only know the channel from inbound traffic, not from the platform's list.
    discovered = models.BooleanField(default=False)
    send_rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Messages per second this channel may send (blank: SEND_RATE_LIMIT_PER_SECOND).",
    )
    media_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Delete the channel's media files this many days after they were stored "
        "(blank: keep them forever). The messages stay and say the file was deleted.",
    )
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account", "name", "external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_id"], name="channel_account_external_id_unique"
            ),
        ]
        indexes = [models.Index(fields=["account", "lane"], name="channel_account_lane_idx")]

    def __str__(self) -> str:
        return self.name or self.lane or self.external_id


class WebhookEvent(models.Model):
    """One callback exactly as it arrived, stored before anything else happens.

    Processing is a task that may run more than once: it claims the row with a conditional
    UPDATE, applies the callback idempotently, and records the outcome here. A failed event keeps
    its raw body and can be replayed.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"
        IGNORED = "ignored", "Ignored"

    account = models.ForeignKey(
        ProviderAccount, on_delete=models.CASCADE, related_name="webhook_events"
    )
    received_at = models.DateTimeField(db_index=True)
    path = models.CharField(max_length=200, blank=True, help_text="Sub-path it was posted to.")
    headers = models.JSONField(default=dict, blank=True, help_text="Without secrets.")
    body = models.TextField(help_text="The raw body as received (UTF-8).")
    kind = models.CharField(max_length=20, blank=True, db_index=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    error = models.TextField(blank=True)
    warnings = models.JSONField(default=list, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # When a task was last handed to the broker for it (null: the broker refused).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["state", "received_at"], name="webhookevent_state_received"),
            models.Index(fields=["account", "-received_at"], name="webhookevent_account_recent"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind or 'callback'} {self.state}"

    def summary(self) -> dict[str, Any]:
        """Return a short description for logs."""
        return {"id": self.pk, "account": str(self.account_id), "state": self.state}


class PollCursor(models.Model):
    """Where a polling account's next poll starts, and how its polls are going.

    The cursor moves in the transaction that stores the page it came with (a WebhookEvent, so
    the drain, the sweep and replay treat polled pages like callbacks): a page is stored once,
    or fetched again from the old cursor. `claimed_at` keeps polls of one account one at a
    time; a claim older than the lease is a dead worker's and is taken over.
    """

    account = models.OneToOneField(
        ProviderAccount, on_delete=models.CASCADE, related_name="poll_cursor"
    )
    cursor = models.TextField(blank=True, help_text="The platform's position after the last page.")
    polled_at = models.DateTimeField(null=True, blank=True, help_text="The last poll that worked.")
    pages = models.PositiveBigIntegerField(default=0, help_text="Pages stored so far.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the last poll failed, if it did.")

    def __str__(self) -> str:
        return f"poll cursor of {self.account}"


class Template(models.Model):
    """An HSM (WhatsApp) template as the platform lists it, kept even after it disappears."""

    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="templates")
    external_id = models.CharField("platform id", max_length=255)
    code = models.CharField(max_length=255, db_index=True)
    lang = models.CharField("language", max_length=32)
    name = models.CharField(max_length=255, blank=True)
    title = models.CharField(max_length=255, blank=True)
    category = models.CharField(max_length=64, blank=True)
    header = models.TextField(blank=True)
    body = models.TextField(blank=True)
    footer = models.TextField(blank=True)
    text = models.TextField(blank=True, help_text="The whole template with its placeholders.")
    buttons = models.JSONField(default=list, blank=True)
    placeholders = models.JSONField(
        default=list, blank=True, help_text="[{name, label, sample, source}] in order of use."
    )
    attachments = models.JSONField(default=list, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(
        default=True, help_text="False once the platform stopped listing it."
    )
    first_seen_at = models.DateTimeField(auto_now_add=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["code", "lang"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "external_id"], name="template_account_external_id_unique"
            ),
        ]
        indexes = [models.Index(fields=["account", "code", "lang"], name="template_code_lang")]

    def __str__(self) -> str:
        return f"{self.code} ({self.lang})"


class TemplateApproval(models.Model):
    """Whether a template may be sent on one channel (XMS `approved[]`)."""

    APPROVED = "APPROVED"

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="approvals")
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="template_approvals"
    )
    status = models.CharField(max_length=64)
    platform_template_id = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["template", "channel"], name="templateapproval_template_channel_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template} on {self.channel}: {self.status}"

    @property
    def is_approved(self) -> bool:
        return self.status.upper() == self.APPROVED


class SyncRun(models.Model):
    """One synchronisation with a platform (templates, channels): its progress and outcome."""

    class Kind(models.TextChoices):
        TEMPLATES = "templates", "Templates"
        CHANNELS = "channels", "Channels"

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="sync_runs")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.RUNNING)
    trigger = models.CharField(max_length=20, blank=True, help_text="beat, admin, command, api")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deactivated = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["account", "kind", "-started_at"], name="syncrun_recent")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} sync {self.get_state_display().lower()}"

    @property
    def progress(self) -> str:
        """Say how far it got, e.g. '1200/2000'."""
        return f"{self.processed}/{self.total}" if self.total else str(self.processed)

    def summary(self) -> str:
        """One line for admins: what changed, or why it failed."""
        if self.state == self.State.FAILED:
            return f"failed: {self.error}"
        changes = f"{self.created} new, {self.updated} updated, {self.deactivated} deactivated"
        if self.state == self.State.RUNNING:
            return f"running: {self.progress}"
        return f"{self.processed} listed; {changes}"
