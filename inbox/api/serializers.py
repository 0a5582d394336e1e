"""The API's JSON shapes: what goes out (read serializers) and what comes in (input serializers).

Serializers here only describe data. Reading goes through `inbox.selectors`, changing state
through the services; nothing here decides whether a message may be sent or a session assigned.
"""

from __future__ import annotations

import math
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Team, User
from inbox.api.permissions import request_user
from inbox.api.schema import BUTTON_TYPE_CHOICES, SENDABLE_TYPE_CHOICES
from inbox.models import (
    ContactIdentity,
    MediaFile,
    Message,
    Session,
    SessionAction,
    TimelineEntry,
)
from inbox.selectors.contacts import contact_identities_visible
from inbox.selectors.media import media_url_signed
from inbox.selectors.messages import message_media, message_preview_text
from inbox.selectors.sessions import (
    session_actions_unfinished,
    session_timeline_recent,
    session_window_from_row,
)
from inbox.send_failures import send_failure_text
from inbox.window import window_hours
from integrations.models import Channel, Template, TemplateApproval

# --- Small references -------------------------------------------------------------------------


class UserRefSerializer(serializers.Serializer[User]):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(source="__str__", read_only=True)


class TeamRefSerializer(serializers.Serializer[Team]):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)


class ChannelRefSerializer(serializers.ModelSerializer[Channel]):
    class Meta:
        model = Channel
        fields = ["id", "name", "medium"]
        read_only_fields = fields


class ContactRefSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    phone = serializers.CharField(read_only=True)


class WindowSerializer(serializers.Serializer[Any]):
    """Whether a free-form message can be sent now (outside it, only an approved template)."""

    applies = serializers.BooleanField(
        read_only=True, help_text="False when the channel's medium has no messaging window."
    )
    open = serializers.BooleanField(source="is_open", read_only=True)
    closes_at = serializers.DateTimeField(read_only=True, allow_null=True)


class MessagePreviewSerializer(serializers.ModelSerializer[Message]):
    preview = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ["id", "direction", "type", "preview", "sent_at", "status"]
        read_only_fields = fields

    def get_preview(self, message: Message) -> str:
        return message_preview_text(message)


# --- Sessions ---------------------------------------------------------------------------------


class SessionSerializer(serializers.ModelSerializer[Session]):
    channel = ChannelRefSerializer(read_only=True)
    contact = ContactRefSerializer(read_only=True)
    assignee = UserRefSerializer(read_only=True, allow_null=True)
    team = TeamRefSerializer(read_only=True, allow_null=True)
    window = serializers.SerializerMethodField()
    last_message = MessagePreviewSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Session
        fields = [
            "id",
            "external_id",
            "status",
            "channel",
            "contact",
            "assignee",
            "team",
            "platform_queue",
            "platform_agent",
            "unread_count",
            "last_activity_at",
            "last_inbound_at",
            "window",
            "last_message",
        ]
        read_only_fields = fields

    @extend_schema_field(WindowSerializer)
    def get_window(self, session: Session) -> dict[str, Any]:
        return WindowSerializer(session_window_from_row(session)).data


class IdentitySerializer(serializers.ModelSerializer[ContactIdentity]):
    class Meta:
        model = ContactIdentity
        fields = ["id", "medium", "external_id", "address", "profile_name", "channel"]
        read_only_fields = fields


class ContactDetailSerializer(ContactRefSerializer):
    """A session's contact; `identities` are given in the context (those the user may see)."""

    email = serializers.CharField(read_only=True)
    language = serializers.CharField(read_only=True)
    identities = serializers.SerializerMethodField(
        help_text="The contact's identities on the channels you can see."
    )

    @extend_schema_field(IdentitySerializer(many=True))
    def get_identities(self, contact: Any) -> Any:
        return IdentitySerializer(self.context["identities"], many=True).data


class TimelineEntrySerializer(serializers.ModelSerializer[TimelineEntry]):
    actor = UserRefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = TimelineEntry
        fields = ["id", "kind", "summary", "data", "actor", "occurred_at"]
        read_only_fields = fields


class SessionActionSerializer(serializers.ModelSerializer[SessionAction]):
    params = serializers.DictField(read_only=True)

    class Meta:
        model = SessionAction
        fields = [
            "id",
            "session",
            "kind",
            "state",
            "error",
            "params",
            "attempts",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class SessionDetailSerializer(SessionSerializer):
    """A session as one user sees it: the context must carry the `request`."""

    contact = serializers.SerializerMethodField()  # type: ignore[assignment]
    timeline = serializers.SerializerMethodField(help_text="The last 50 entries, oldest first.")
    actions = serializers.SerializerMethodField(
        help_text="Actions still pending or running, and those that failed, newest first."
    )

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "timeline", "actions"]

    @extend_schema_field(ContactDetailSerializer)
    def get_contact(self, session: Session) -> Any:
        # The same rule as the contact panel of the pages (inbox.selectors).
        identities = contact_identities_visible(request_user(self.context["request"]), session)
        return ContactDetailSerializer(session.contact, context={"identities": identities}).data

    @extend_schema_field(TimelineEntrySerializer(many=True))
    def get_timeline(self, session: Session) -> Any:
        return TimelineEntrySerializer(session_timeline_recent(session), many=True).data

    @extend_schema_field(SessionActionSerializer(many=True))
    def get_actions(self, session: Session) -> Any:
        return SessionActionSerializer(session_actions_unfinished(session), many=True).data


# --- Messages ---------------------------------------------------------------------------------


class MediaSerializer(serializers.Serializer[Any]):
    state = serializers.ChoiceField(
        choices=[*MediaFile.State.values, "link"],
        read_only=True,
        help_text="pending: being downloaded from the platform; stored: `url` serves it; "
        "failed: see `error` (an agent can retry); expired: the platform no longer had it; "
        "deleted: removed by the channel's retention; link: sent from a link the API was given.",
    )
    url = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Where to download the file: a link signed for the caller, valid for "
        "MEDIA_SIGNED_URL_SECONDS (stored files only; never the platform's own link).",
    )
    thumbnail_url = serializers.CharField(read_only=True, allow_null=True)
    mime_type = serializers.CharField(
        read_only=True, help_text="Read from the file's bytes once stored; before, as declared."
    )
    filename = serializers.CharField(read_only=True)
    size = serializers.IntegerField(read_only=True, allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    width = serializers.IntegerField(read_only=True, allow_null=True)
    height = serializers.IntegerField(read_only=True, allow_null=True)
    error = serializers.CharField(read_only=True)


def media_data(message: Message, request: Any) -> dict[str, Any] | None:
    """Return what the API says of a message's file, with links for the asking user."""
    media = message_media(message)
    if media is None:
        if message.direction == Message.Direction.OUTBOUND and message.media_url:
            return _media_link(message)
        return None
    stored = media.state == MediaFile.State.STORED
    user = getattr(request, "user", None)
    if not (stored and isinstance(user, User)):
        user = None
    return {
        "state": media.state,
        "url": _absolute(request, media_url_signed(media, user)) if user else None,
        "thumbnail_url": (
            _absolute(request, media_url_signed(media, user, thumbnail=True))
            if user and media.thumbnail_path
            else None
        ),
        "mime_type": media.content_type or media.declared_type,
        "filename": media.filename,
        "size": media.size,
        "duration_seconds": media.duration_seconds,
        "width": media.width,
        "height": media.height,
        "error": media.error,
    }


def _media_link(message: Message) -> dict[str, Any]:
    return {
        "state": "link",
        "url": message.media_url,
        "thumbnail_url": None,
        "mime_type": message.media_mime_type,
        "filename": message.media_filename,
        "size": message.media_size,
        "duration_seconds": None,
        "width": None,
        "height": None,
        "error": "",
    }


def _absolute(request: Any, path: str) -> str:
    return request.build_absolute_uri(path) if request is not None else path


class LocationSerializer(serializers.Serializer[Any]):
    latitude = serializers.FloatField(read_only=True)
    longitude = serializers.FloatField(read_only=True)
    name = serializers.CharField(source="location_name", read_only=True)
    address = serializers.CharField(source="location_address", read_only=True)
    url = serializers.CharField(source="location_url", read_only=True)


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(source="error_code", read_only=True)
    title = serializers.SerializerMethodField(
        help_text="Why it failed, in words for people (the full detail is in admin)."
    )

    def get_title(self, message: Message) -> str:
        return send_failure_text(message.error_code, message.error_title)


class TemplateRefSerializer(serializers.Serializer[Template]):
    id = serializers.IntegerField(read_only=True)
    code = serializers.CharField(read_only=True)
    lang = serializers.CharField(read_only=True)


class MessageSerializer(serializers.ModelSerializer[Message]):
    media = serializers.SerializerMethodField()
    location = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField(
        help_text="Why the message failed (failed), or why it may not have been delivered "
        "(unconfirmed: the platform never confirmed it; sending it again may duplicate it)."
    )
    copies = serializers.SerializerMethodField(
        help_text="How many further copies the platform accepted (1: the customer got it twice)."
    )
    template = TemplateRefSerializer(read_only=True, allow_null=True)
    author = UserRefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "direction",
            "type",
            "body",
            "caption",
            "media",
            "location",
            "status",
            "error",
            "copies",
            "external_id",
            "template",
            "author",
            "author_name",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
            "replaces",
        ]
        read_only_fields = fields

    @extend_schema_field(MediaSerializer(allow_null=True))
    def get_media(self, message: Message) -> dict[str, Any] | None:
        return media_data(message, self.context.get("request"))

    @extend_schema_field(LocationSerializer(allow_null=True))
    def get_location(self, message: Message) -> dict[str, Any] | None:
        # A coordinate stored as NaN or infinity (possible in a float column) is no location,
        # and JSON has no way to say it.
        coordinates = (message.latitude, message.longitude)
        if any(c is None or not math.isfinite(c) for c in coordinates):
            return None
        return LocationSerializer(message).data

    @extend_schema_field(ErrorDetailSerializer(allow_null=True))
    def get_error(self, message: Message) -> dict[str, Any] | None:
        if message.status not in (Message.Status.FAILED, Message.Status.UNCONFIRMED):
            return None
        return ErrorDetailSerializer(message).data

    def get_copies(self, message: Message) -> int:
        if message.direction != Message.Direction.OUTBOUND:
            return 0
        return len(message.copies.all())


class ButtonSerializer(serializers.Serializer[Any]):
    type = serializers.ChoiceField(choices=BUTTON_TYPE_CHOICES, default="QUICK_REPLY")
    label = serializers.CharField(max_length=100)  # type: ignore[assignment]
    code = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)
    url = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)
    phone = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)


class MessageSendSerializer(serializers.Serializer[Any]):
    """A message to the session's customer; which fields matter depends on `type`."""

    type = serializers.ChoiceField(
        choices=SENDABLE_TYPE_CHOICES,
        required=False,
        help_text='Defaults to "template" when template_id is given, else "text".',
    )
    body = serializers.CharField(
        required=False, default="", allow_blank=True, trim_whitespace=False
    )
    media_url = serializers.CharField(
        max_length=2000, required=False, default="", allow_blank=True, help_text="http(s) URL."
    )
    media_filename = serializers.CharField(
        max_length=255, required=False, default="", allow_blank=True
    )
    media_mime_type = serializers.CharField(
        max_length=255, required=False, default="", allow_blank=True
    )
    caption = serializers.CharField(required=False, default="", allow_blank=True)
    latitude = serializers.FloatField(
        required=False, allow_null=True, default=None, min_value=-90, max_value=90
    )
    longitude = serializers.FloatField(
        required=False, allow_null=True, default=None, min_value=-180, max_value=180
    )
    location_name = serializers.CharField(
        max_length=255, required=False, default="", allow_blank=True
    )
    location_address = serializers.CharField(
        max_length=500, required=False, default="", allow_blank=True
    )
    contact_cards = serializers.ListField(
        child=serializers.DictField(), required=False, default=list
    )
    buttons = ButtonSerializer(many=True, required=False, default=list)
    template_id = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="A template's id (/templates/)."
    )
    template_data = serializers.DictField(
        required=False, default=dict, help_text="Placeholder name -> value."
    )
    idempotency_key = serializers.CharField(
        max_length=100,
        required=False,
        default="",
        allow_blank=True,
        help_text="Same as the Idempotency-Key header (the header wins).",
    )


class ResendAsTemplateSerializer(serializers.Serializer[Any]):
    template_id = serializers.IntegerField()
    template_data = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(
        max_length=100, required=False, default="", allow_blank=True
    )


# --- Session requests -------------------------------------------------------------------------


class AssignSerializer(serializers.Serializer[Any]):
    assignee = serializers.PrimaryKeyRelatedField(
        queryset=User.objects.filter(is_active=True),
        allow_null=True,
        required=False,
        help_text="A user id, or null to unassign; leave it out to keep the assignee.",
    )
    team = serializers.PrimaryKeyRelatedField(
        queryset=Team.objects.all(),
        allow_null=True,
        required=False,
        help_text="A team id; null or left out keeps the team.",
    )


class RouteSerializer(serializers.Serializer[Any]):
    queue = serializers.CharField(max_length=255)
    agent = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)
    team = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)
    skills = serializers.ListField(
        child=serializers.CharField(max_length=120), required=False, default=list
    )
    params = serializers.DictField(required=False, default=dict)


# --- Templates and channels -------------------------------------------------------------------


class TemplateApprovalSerializer(serializers.ModelSerializer[TemplateApproval]):
    approved = serializers.BooleanField(source="is_approved", read_only=True)

    class Meta:
        model = TemplateApproval
        fields = ["channel", "status", "approved"]
        read_only_fields = fields


class TemplateSerializer(serializers.ModelSerializer[Template]):
    approvals = TemplateApprovalSerializer(
        source="visible_approvals",
        many=True,
        read_only=True,
        help_text="Its state on each channel you can see.",
    )
    buttons = serializers.ListField(child=serializers.DictField(), read_only=True)
    placeholders = serializers.ListField(
        child=serializers.DictField(),
        read_only=True,
        help_text="[{name, label, sample, source}]: template_data needs a value for each name.",
    )

    class Meta:
        model = Template
        fields = [
            "id",
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
            "approvals",
        ]
        read_only_fields = fields


class ChannelSerializer(serializers.ModelSerializer[Channel]):
    window_hours = serializers.SerializerMethodField(
        help_text="Hours after the customer's last message that free-form sends are allowed."
    )

    class Meta:
        model = Channel
        fields = ["id", "name", "medium", "lane", "is_active", "account", "window_hours"]
        read_only_fields = fields

    def get_window_hours(self, channel: Channel) -> float | None:
        return window_hours(channel.account_id, channel.medium)


# --- Errors (for the schema; config.api.exception_handler renders them) ----------------------


class ErrorSerializer(serializers.Serializer[Any]):
    error = serializers.CharField(help_text="A code for programs, e.g. window_closed.")
    detail = serializers.CharField(help_text="What went wrong, for people.")


class ValidationErrorSerializer(ErrorSerializer):
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(),
        required=False,
        help_text="Field name -> list of problems (absent when the body is not JSON at all).",
    )
