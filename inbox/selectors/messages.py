"""Messages as a list shows them: a session's messages in order, one line standing for one."""

from __future__ import annotations

from django.db.models import QuerySet

from inbox.models import Message, Session
from integrations.base import MessageType


def message_list_for_session(session: Session) -> QuerySet[Message]:
    """Return a session's messages in conversation order, with what a list shows."""
    return (
        Message.objects.filter(session=session)
        .select_related("author", "template")
        .prefetch_related("copies")
        .order_by("sent_at", "id")
    )


_PREVIEW_LABELS = {
    MessageType.IMAGE: "Photo",
    MessageType.VIDEO: "Video",
    MessageType.AUDIO: "Audio",
    MessageType.VOICE: "Voice message",
    MessageType.DOCUMENT: "Document",
    MessageType.LOCATION: "Location",
    MessageType.CONTACT: "Contact",
    MessageType.TEMPLATE: "Template",
}


def message_preview_text(message: Message, length: int = 120) -> str:
    """Return one short line that stands for a message in a list."""
    text = message.body or message.caption or message.location_name or message.media_filename
    if not text:
        try:
            text = _PREVIEW_LABELS.get(MessageType(message.type), "")
        except ValueError:
            text = ""
        text = f"[{text or message.type}]"
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"
