"""Admin for the mirror. Read-only where the platform is the source of truth."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib import messages as admin_messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from inbox.models import (
    CannedReply,
    Contact,
    ContactIdentity,
    Label,
    MediaFile,
    Message,
    MessageReceipt,
    MessageStatusChange,
    Session,
    SessionAction,
    TimelineEntry,
)
from inbox.services.media import media_retry
from inbox.services.refusals import SendRefused
from inbox.services.send import message_retry
from integrations.base import MEDIA_TYPES

RECENT = 50


class ReadOnlyAdminMixin:
    """The platform owns these rows: admins look, they do not edit."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ContactIdentityInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ContactIdentity
    extra = 0
    fields = ("medium", "external_id", "address", "profile_name", "channel", "updated_at")
    readonly_fields = fields


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ("__str__", "phone", "email", "language", "account", "updated_at")
    list_filter = ("account", "language")
    search_fields = ("name", "phone", "email", "identities__external_id")
    readonly_fields = ("uid", "business_profile_id", "profile", "sessions_list", "created_at")
    inlines = [ContactIdentityInline]
    list_select_related = ("account",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Sessions")
    def sessions_list(self, obj: Contact) -> SafeString:
        sessions = obj.sessions.select_related("channel").order_by("-last_activity_at")[:RECENT]
        return (
            format_html(
                "<ul>{}</ul>",
                format_html_join(
                    "",
                    '<li><a href="{}">{}</a> on {} — {}</li>',
                    (
                        (
                            reverse("admin:inbox_session_change", args=[s.pk]),
                            s.external_id or f"#{s.pk}",
                            s.channel,
                            s.get_status_display(),
                        )
                        for s in sessions
                    ),
                ),
            )
            if sessions
            else mark_safe("—")
        )


class TimelineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TimelineEntry
    fk_name = "session"
    extra = 0
    fields = ("occurred_at", "kind", "summary")
    readonly_fields = fields
    ordering = ("occurred_at", "id")


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "contact",
        "channel",
        "status",
        "platform_queue",
        "platform_agent",
        "assignee",
        "unread_count",
        "last_activity_at",
    )
    list_filter = ("status", "account", "channel", "team")
    search_fields = ("external_id", "contact__name", "contact__phone")
    list_select_related = ("contact", "channel", "assignee")
    date_hierarchy = "last_activity_at"
    inlines = [TimelineInline]
    fields = (
        "account",
        "channel",
        "contact",
        "identity",
        "external_id",
        "routing_id",
        "status",
        ("platform_queue", "platform_agent", "platform_dept", "platform_bot", "platform_mode"),
        ("assignee", "team"),
        ("opened_at", "last_inbound_at", "last_activity_at"),
        ("resolved_at", "closed_at"),
        "unread_count",
        "ticket_hash",
        "recent_messages",
    )
    readonly_fields = tuple(
        f
        for f in (
            "account",
            "channel",
            "contact",
            "identity",
            "external_id",
            "routing_id",
            "status",
            "platform_queue",
            "platform_agent",
            "platform_dept",
            "platform_bot",
            "platform_mode",
            "opened_at",
            "last_inbound_at",
            "last_activity_at",
            "resolved_at",
            "closed_at",
            "unread_count",
            "ticket_hash",
            "recent_messages",
        )
    )
    autocomplete_fields = ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Messages (latest 50)")
    def recent_messages(self, obj: Session) -> SafeString:
        rows = list(obj.messages.order_by("-sent_at", "-id")[:RECENT])
        rows.reverse()
        if not rows:
            return mark_safe("No messages.")
        link = reverse("admin:inbox_message_changelist") + f"?session__id__exact={obj.pk}"
        return format_html(
            "<table><thead><tr><th>Sent</th><th>Dir</th><th>Type</th><th>Content</th>"
            '<th>Status</th></tr></thead><tbody>{}</tbody></table><p><a href="{}">All messages'
            " of this session</a></p>",
            format_html_join(
                "",
                '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
                (
                    (
                        reverse("admin:inbox_message_change", args=[m.pk]),
                        m.sent_at.strftime("%Y-%m-%d %H:%M:%S"),
                        m.get_direction_display(),
                        m.raw_type or m.type,
                        _content(m),
                        m.get_status_display(),
                    )
                    for m in rows
                ),
            ),
            link,
        )


def _content(message: Message) -> str:
    if message.body:
        return message.body[:200]
    if message.type in MEDIA_TYPES:
        name = message.media_filename or message.media_mime_type or "media"
        return f"[{name}] {message.caption}".strip()[:200]
    if message.latitude is not None:
        return f"📍 {message.location_name} {message.latitude},{message.longitude}".strip()
    return ""


class StatusChangeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = MessageStatusChange
    extra = 0
    fields = ("status", "occurred_at", "error_code", "error_title")
    readonly_fields = fields


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "sent_at",
        "direction",
        "type",
        "short_content",
        "status",
        "error_title",
        "session",
    )
    list_filter = ("direction", "type", "status", "outcome_unknown", "account")
    search_fields = ("body", "external_id", "external_id_ext", "idempotency_key")
    list_select_related = ("session",)
    inlines = [StatusChangeInline]
    show_full_result_count = False
    actions = ["retry"]

    @admin.action(description="Retry selected failed messages")
    def retry(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        done, refused = 0, []
        for message in queryset.filter(
            direction=Message.Direction.OUTBOUND, status=Message.Status.FAILED
        ):
            try:
                message_retry(message, by=request.user)
                done += 1
            except SendRefused as exc:
                refused.append(f"#{message.pk}: {exc.reason}")
        self.message_user(request, f"Retrying {done} message(s).", admin_messages.SUCCESS)
        for line in refused[:10]:
            self.message_user(request, line, admin_messages.WARNING)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Content")
    def short_content(self, obj: Message) -> str:
        return _content(obj)[:80]


@admin.register(MessageReceipt)
class MessageReceiptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("external_id", "status", "occurred_at", "message", "applied_at", "error_code")
    list_filter = ("status", "account")
    search_fields = ("external_id", "external_id_ext")
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[MessageReceipt]:
        return super().get_queryset(request).select_related("message")


@admin.register(SessionAction)
class SessionActionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "kind", "session", "state", "error", "requested_by", "attempts")
    list_filter = ("kind", "state")
    list_select_related = ("session", "requested_by")


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ("shortcut", "title", "team", "updated_at")
    list_filter = ("team",)
    search_fields = ("shortcut", "title", "body")
    list_select_related = ("team",)
    fields = ("title", "shortcut", "body", "team")
    prepopulated_fields = {"shortcut": ("title",)}


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ("name", "color", "session_count")
    search_fields = ("name",)
    fields = ("name", "color")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Label]:
        return super().get_queryset(request).annotate(session_total=Count("sessions"))

    @admin.display(description="Sessions", ordering="session_total")
    def session_count(self, obj: Label) -> int:
        return int(getattr(obj, "session_total", 0))


@admin.register(MediaFile)
class MediaFileAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every media file and where it stands: what failed and why, what is stored and how big."""

    list_display = (
        "id",
        "created_at",
        "channel",
        "filename",
        "state",
        "content_type",
        "size_shown",
        "attempts",
        "short_error",
    )
    list_filter = ("state", "inline", "channel")
    search_fields = ("filename", "error", "source_id")
    date_hierarchy = "created_at"
    list_select_related = ("channel",)
    actions = ["retry"]
    # The platform's own link is kept for the fetch; it is not shown, even here.
    exclude = ("source_url",)

    @admin.display(description="size", ordering="size")
    def size_shown(self, media: MediaFile) -> str:
        return filesizeformat(media.size) if media.size is not None else "—"

    @admin.display(description="error")
    def short_error(self, media: MediaFile) -> str:
        return media.error[:120]

    @admin.action(description="Download the selected failed files again")
    def retry(self, request: HttpRequest, queryset: QuerySet[MediaFile]) -> None:
        retried = sum(media_retry(media) for media in queryset.select_related("message"))
        self.message_user(request, f"Downloading {retried} file(s) again.", admin_messages.SUCCESS)
