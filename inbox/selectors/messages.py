"""Messages as a list shows them: a session's messages in order, one line standing for one."""

from __future__ import annotations

from django.db.models import QuerySet

from inbox.models import MediaFile, Message, Session
from integrations.base import MEDIA_TYPES, MessageType


def message_list_for_session(session: Session) -> QuerySet[Message]:
    """Return a session's messages in conversation order, with what a list shows."""
    return (
        Message.objects.filter(session=session)
        .select_related("author", "template", "media_file")
        .prefetch_related("copies")
        .order_by("sent_at", "id")
    )


_LABELS = {
    MessageType.IMAGE: ("📷", "Photo"),
    MessageType.VIDEO: ("🎥", "Video"),
    MessageType.AUDIO: ("🎵", "Audio"),
    MessageType.VOICE: ("🎤", "Voice note"),
    MessageType.DOCUMENT: ("📄", "Document"),
    MessageType.LOCATION: ("📍", "Location"),
    MessageType.CONTACT: ("👤", "Contact"),
    MessageType.TEMPLATE: ("", "Template"),
}
MEDIA_TYPE_VALUES = frozenset(t.value for t in MEDIA_TYPES)


def media_kind_label(message_type: str) -> str:
    """Return what a message of this type is called ("Photo", "Voice note")."""
    try:
        return _LABELS[MessageType(message_type)][1]
    except (ValueError, KeyError):
        return "File"


def message_media(message: Message) -> MediaFile | None:
    """Return a message's stored-file row, or None (select_related("media_file") reads it
    with the message; otherwise this costs a query)."""
    try:
        return message.media_file
    except MediaFile.DoesNotExist:
        return None


def clock_duration(seconds: float | None) -> str:
    """Return a length in seconds as m:ss, or h:mm:ss from an hour on ("" for none)."""
    if seconds is None or seconds < 0:
        return ""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _media_preview(message: Message, kind: MessageType) -> str:
    icon, label = _LABELS[kind]
    media = message_media(message)
    if kind is MessageType.DOCUMENT:
        name = (media.filename if media else "") or message.media_filename
        return f"{icon} {message.caption or name or label}"
    if kind in (MessageType.VOICE, MessageType.AUDIO):
        length = clock_duration(media.duration_seconds if media else None)
        words = label if kind is MessageType.VOICE else (message.caption or label)
        return f"{icon} {words} {length}".rstrip()
    return f"{icon} {message.caption or label}"


def message_preview_text(message: Message, length: int = 120) -> str:
    """Return one short line that stands for a message in a list: its text, or what it
    carries ("📷 Photo", "🎤 Voice note 0:12", "📄 invoice.pdf")."""
    try:
        kind: MessageType | None = MessageType(message.type)
    except ValueError:
        kind = None
    if kind in MEDIA_TYPES:
        assert kind is not None
        text = _media_preview(message, kind)
    elif message.body:
        text = message.body
    elif kind is MessageType.LOCATION:
        text = f"📍 {message.location_name or 'Location'}"
    elif kind in _LABELS:
        assert kind is not None
        icon, label = _LABELS[kind]
        text = f"{icon} {label}".strip()
    else:
        text = f"[{message.type}]"
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"
