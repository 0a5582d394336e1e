"""Admin for platform accounts, channels and the raw callbacks they send."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from integrations.base import ProviderError
from integrations.models import (
    Channel,
    PollCursor,
    ProviderAccount,
    SyncRun,
    Template,
    TemplateApproval,
    WebhookEvent,
)
from integrations.registry import KIND_LABELS, PROVIDERS, get_provider
from integrations.services.accounts import account_credentials_test, account_webhook_register
from integrations.services.channels import channels_sync
from integrations.services.templates import templates_sync
from integrations.services.webhooks import webhook_events_replay


def mask(secret: str | None, *, tail: bool = True) -> str:
    """Show enough of a secret to recognise it, never all of it (`tail`: its last four
    characters, for an API key; none of a password)."""
    if not secret:
        return "(not set)"
    if len(secret) <= 8 or not tail:
        return "•" * 8
    return f"{'•' * 8}{secret[-4:]}"


class ProviderAccountForm(forms.ModelForm):
    """Secrets are write-only: a blank field keeps the stored value."""

    api_key = forms.CharField(
        label="API key",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to keep the current key.",
    )
    api_id = forms.CharField(
        label="API id",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to keep the current API id.",
    )

    class Meta:
        model = ProviderAccount
        fields = ["kind", "name", "base_url", "api_key", "api_id", "options", "is_active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Each platform names its two credentials its own way (MessageWhiz: password, email).
        names = {kind: get_provider(kind).credential_labels for kind in PROVIDERS}
        for index, field in enumerate(("api_key", "api_id")):
            self.fields[field].help_text = "Encrypted at rest. " + "; ".join(
                f"{KIND_LABELS.get(kind, kind)}: {labels[index]}" for kind, labels in names.items()
            )
        if self.instance.pk:
            provider = get_provider(self.instance.kind)
            key_label, id_label = provider.credential_labels
            self.fields["api_key"].label, self.fields["api_id"].label = key_label, id_label
            tail = provider.credentials_recognizable
            for field in ("api_key", "api_id"):
                stored = mask(getattr(self.instance, field), tail=tail)
                self.fields[field].help_text = f"Stored: {stored}. Leave blank to keep it."

    def clean_options(self) -> dict[str, Any]:
        options = self.cleaned_data.get("options") or {}
        if not isinstance(options, dict):
            raise forms.ValidationError("Options must be a JSON object.")
        return options

    def save(self, commit: bool = True) -> ProviderAccount:
        instance: ProviderAccount = super().save(commit=False)
        for field in ("api_key", "api_id"):
            value = self.cleaned_data.get(field)
            if not value and self.instance.pk:
                stored = ProviderAccount.objects.filter(pk=self.instance.pk).first()
                setattr(instance, field, getattr(stored, field) if stored else "")
        if commit:
            instance.save()
        return instance


class ChannelInline(admin.TabularInline):
    model = Channel
    extra = 0
    fields = ("external_id", "medium", "lane", "name", "is_active", "discovered")
    readonly_fields = ("discovered",)
    show_change_link = True


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin):
    form = ProviderAccountForm
    list_display = ("name", "kind", "is_active", "health", "last_success_at", "last_error_at")
    list_filter = ("kind", "is_active")
    search_fields = ("name", "base_url")

    class Media:
        # Click-to-select for the callback URL and token, without inline handlers (CSP).
        js = ("inbox/admin.js",)

    readonly_fields = (
        "id",
        "callback_url",
        "callback_token",
        "health",
        "last_success_at",
        "last_error_at",
        "last_error",
        "polling",
        "recent_events",
        "last_syncs",
        "created_at",
        "updated_at",
    )
    inlines = [ChannelInline]
    actions = [
        "test_credentials",
        "register_webhook",
        "sync_channels",
        "sync_templates",
        "regenerate_verify_token",
    ]

    def get_readonly_fields(
        self, request: HttpRequest, obj: ProviderAccount | None = None
    ) -> tuple[str, ...]:
        # The platform of an existing account never changes (its ids, credentials and
        # callbacks are that platform's; `account_kind` relies on it): a new account instead.
        fields = tuple(super().get_readonly_fields(request, obj))
        return ("kind", *fields) if obj is not None else fields

    def get_fieldsets(self, request: HttpRequest, obj: ProviderAccount | None = None) -> Any:
        main = ("kind", "name", "base_url", "api_key", "api_id", "options", "is_active")
        if obj is None:
            return [(None, {"fields": main})]
        return [
            (None, {"fields": main}),
            (
                "Callbacks: register this URL and token at the platform",
                {"fields": ("id", "callback_url", "callback_token")},
            ),
            (
                "Health",
                {
                    "fields": (
                        "health",
                        "last_success_at",
                        "last_error_at",
                        "last_error",
                        "polling",
                        "last_syncs",
                    )
                },
            ),
            ("Recent callbacks", {"fields": ("recent_events",)}),
            ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
        ]

    @admin.display(description="Polling")
    def polling(self, obj: ProviderAccount) -> str:
        """Where the next poll starts and how the last went (platforms that do not call us)."""
        if get_provider(obj.kind).ingest != "poll":
            return "The platform calls us (no polling)."
        cursor = PollCursor.objects.filter(account=obj).first()
        if cursor is None:
            return "Not polled yet."
        state = f"{cursor.pages:,} pages stored; next poll from {cursor.cursor or 'the start'!r}"
        if cursor.polled_at:
            state += f"; last worked {cursor.polled_at:%Y-%m-%d %H:%M:%S}"
        if cursor.error:
            state += f"; FAILED {cursor.failed_at:%Y-%m-%d %H:%M:%S}: {cursor.error}"
        return state

    @admin.display(description="Callback URL")
    def callback_url(self, obj: ProviderAccount) -> SafeString:
        return format_html(
            '<input type="text" readonly value="{}" size="90" data-select-on-click '
            'aria-label="Callback URL">',
            obj.webhook_url,
        )

    @admin.display(description="Verify token (x-verify-token)")
    def callback_token(self, obj: ProviderAccount) -> SafeString:
        return format_html(
            '<input type="text" readonly value="{}" size="60" data-select-on-click '
            'aria-label="Verify token">',
            obj.verify_token,
        )

    @admin.display(description="Health", boolean=False)
    def health(self, obj: ProviderAccount) -> SafeString:
        if obj.last_success_at is None and obj.last_error_at is None:
            return mark_safe('<span title="No calls yet">—</span>')
        if obj.is_healthy:
            return format_html(
                '<img src="{}" alt="" width="13" height="13"> OK', static("admin/img/icon-yes.svg")
            )
        return format_html(
            '<img src="{}" alt="" width="13" height="13"> <strong title="{}">Failing</strong>',
            static("admin/img/icon-no.svg"),
            obj.last_error[:300],
        )

    @admin.display(description="Last 20 callbacks")
    def recent_events(self, obj: ProviderAccount) -> SafeString:
        events = list(
            WebhookEvent.objects.filter(account=obj)
            .only("id", "received_at", "kind", "state", "error")
            .order_by("-received_at", "-id")[:20]
        )
        if not events:
            return mark_safe("<p>No callbacks received yet.</p>")
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:integrations_webhookevent_change", args=[e.pk]),
                    e.pk,
                    e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                    e.kind or "—",
                    e.get_state_display(),
                    e.error[:120],
                )
                for e in events
            ),
        )
        return format_html(
            "<table><thead><tr><th>Event</th><th>Received</th><th>Kind</th><th>State</th>"
            "<th>Error</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def _for_each(
        self,
        request: HttpRequest,
        queryset: QuerySet[ProviderAccount],
        call: Callable[[ProviderAccount], str],
    ) -> None:
        """Call the platform for each account and report each outcome (or its failure)."""
        for account in queryset:
            try:
                outcome = call(account)
            except ProviderError as exc:
                self.message_user(request, f"{account}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{account}: {outcome}.", messages.SUCCESS)

    @admin.action(description="Test the credentials")
    def test_credentials(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        self._for_each(request, queryset, account_credentials_test)

    @admin.action(description="Register the callback URL at the platform")
    def register_webhook(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        def register(account: ProviderAccount) -> str:
            account_webhook_register(account)
            return f"callbacks now go to {account.webhook_url}"

        self._for_each(request, queryset, register)

    @admin.display(description="Last syncs")
    def last_syncs(self, obj: ProviderAccount) -> SafeString:
        rows = []
        for kind, label in SyncRun.Kind.choices:
            run = SyncRun.objects.filter(account=obj, kind=kind).first()
            if run is None:
                rows.append((label, "never", "", ""))
                continue
            link = reverse("admin:integrations_syncrun_change", args=[run.pk])
            when = run.started_at.strftime("%Y-%m-%d %H:%M:%S")
            rows.append((label, when, run.summary(), link))
        return format_html(
            "<table><tbody>{}</tbody></table>",
            format_html_join(
                "",
                '<tr><th>{}</th><td>{}</td><td><a href="{}">{}</a></td></tr>',
                ((label, when, link or "#", summary or "—") for label, when, summary, link in rows),
            ),
        )

    @admin.action(description="Sync templates from the platform now")
    def sync_templates(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        for account in queryset:
            run = templates_sync(account, trigger="admin")
            level = messages.ERROR if run.state == SyncRun.State.FAILED else messages.SUCCESS
            self.message_user(request, f"{account}: templates {run.summary()}.", level)

    @admin.action(description="Sync channels from the platform")
    def sync_channels(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        self._for_each(
            request, queryset, lambda account: f"channels {channels_sync(account, trigger='admin')}"
        )

    @admin.action(description="Regenerate the verify token (update it at the platform too)")
    def regenerate_verify_token(
        self, request: HttpRequest, queryset: QuerySet[ProviderAccount]
    ) -> None:
        for account in queryset:
            account.rotate_verify_token()
        self.message_user(
            request,
            f"New verify token for {queryset.count()} account(s). Give it to the platform: the "
            f"old one keeps working for {settings.WEBHOOK_TOKEN_GRACE_HOURS} hours.",
            messages.WARNING,
        )


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "account",
        "medium",
        "external_id",
        "lane",
        "is_active",
        "discovered",
        "media_retention",
        "media_used",
    )
    list_filter = ("account", "medium", "is_active", "discovered")
    search_fields = ("name", "external_id", "lane")
    readonly_fields = ("raw", "created_at", "updated_at", "media_used")
    list_select_related = ("account",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Channel]:
        # Storage used, summed in the list's one query (the inbox's files name their channel).
        stored = Q(media_files__state="stored")
        return (
            super()
            .get_queryset(request)
            .annotate(
                stored_bytes=Sum("media_files__size", filter=stored),
                stored_files=Count("media_files", filter=stored),
            )
        )

    @admin.display(description="keeps media")
    def media_retention(self, channel: Channel) -> str:
        days = channel.media_retention_days
        return "forever" if days is None else f"{days} days"

    @admin.display(description="media stored", ordering="stored_bytes")
    def media_used(self, channel: Channel) -> str:
        files = getattr(channel, "stored_files", 0) or 0
        if not files:
            return "none"
        size = filesizeformat(getattr(channel, "stored_bytes", 0) or 0)
        return f"{size} in {files} file{'s' if files != 1 else ''}"


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("id", "received_at", "account", "kind", "state", "attempts", "short_error")
    list_filter = ("state", "kind", "account")
    search_fields = ("body", "error")
    date_hierarchy = "received_at"
    list_select_related = ("account",)
    actions = ["replay"]

    class Media:
        # Styles live in a file: the Content-Security-Policy refuses style="" attributes.
        css = {"all": ("inbox/admin.css",)}

    readonly_fields = (
        "account",
        "received_at",
        "path",
        "kind",
        "state",
        "attempts",
        "enqueued_at",
        "claimed_at",
        "processed_at",
        "error",
        "warnings_list",
        "headers_pretty",
        "body_pretty",
    )
    exclude = ("headers", "body", "warnings")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Error")
    def short_error(self, obj: WebhookEvent) -> str:
        return obj.error[:100]

    @admin.display(description="Warnings")
    def warnings_list(self, obj: WebhookEvent) -> SafeString:
        if not obj.warnings:
            return mark_safe("—")
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((w,) for w in obj.warnings))
        )

    @admin.display(description="Headers")
    def headers_pretty(self, obj: WebhookEvent) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=2, sort_keys=True))

    @admin.display(description="Body (as received)")
    def body_pretty(self, obj: WebhookEvent) -> SafeString:
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = obj.body
        return format_html('<pre class="sb-pre-wrap">{}</pre>', text)

    @admin.action(description="Replay selected failed or ignored events")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        # Counted before the replay: the selection may be a filtered changelist ("state:
        # failed", select all) that no longer matches the events once they are pending again.
        selected = queryset.count()
        count = webhook_events_replay(queryset)
        skipped = selected - count
        note = (
            f" ({skipped} skipped: only failed or ignored events are replayed)" if skipped else ""
        )
        self.message_user(request, f"Replaying {count} event(s){note}.", messages.SUCCESS)


class TemplateApprovalInline(admin.TabularInline):
    model = TemplateApproval
    extra = 0
    fields = ("channel", "status", "platform_template_id", "updated_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("code", "lang", "account", "category", "is_active", "approved_on", "synced_at")
    list_filter = ("is_active", "account", "lang", "category")
    search_fields = ("code", "name", "title", "text")
    inlines = [TemplateApprovalInline]
    list_select_related = ("account",)
    readonly_fields = (
        "account",
        "external_id",
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
        "is_active",
        "first_seen_at",
        "synced_at",
        "removed_at",
        "raw",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Template]:
        return super().get_queryset(request).prefetch_related("approvals__channel")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Approved on")
    def approved_on(self, obj: Template) -> str:
        states = [f"{a.channel}: {a.status.lower()}" for a in obj.approvals.all()]
        return "; ".join(states) or "—"


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ("started_at", "account", "kind", "state", "progress", "summary", "trigger")
    list_filter = ("kind", "state", "account")
    list_select_related = ("account",)
    readonly_fields = (
        "account",
        "kind",
        "state",
        "trigger",
        "started_at",
        "finished_at",
        "total",
        "processed",
        "created",
        "updated",
        "deactivated",
        "error",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
