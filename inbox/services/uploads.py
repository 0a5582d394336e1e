"""Store files agents attach in the composer, and build the public URL a platform fetches.

A platform sends media by downloading it from a link (XMS `image.link`, spec §5), so an upload
is stored under an unguessable path (`uploads/<yyyy>/<mm>/<random>/<safe name>`) and served
without sign-in by `inbox.views.uploads.upload_serve`. Only media and office documents are
accepted; anything a browser could run (HTML, SVG, scripts) is refused.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from inbox.models import MediaFile, Message, Session
from inbox.services.refusals import SendRefused
from inbox.services.send import Draft, message_send
from inbox.services.stored_files import UPLOAD_PREFIX, upload_delete, upload_url
from integrations.base import MessageType

logger = logging.getLogger(__name__)
UPLOAD_MAX_BYTES = 16 * 1024 * 1024

OFFICE_TYPES = frozenset(
    {
        "application/pdf",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/rtf",
        "text/plain",
        "text/csv",
    }
)
# Image types a browser could execute script from, even though they are image/*.
REFUSED_TYPES = frozenset({"image/svg+xml"})
_EXTRA_TYPES = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    ".opus": "audio/ogg",
    ".oga": "audio/ogg",
    ".ogg": "audio/ogg",
    ".m4a": "audio/mp4",
    ".amr": "audio/amr",
    ".webp": "image/webp",
    ".3gp": "video/3gpp",
}


@dataclass(frozen=True)
class StoredUpload:
    """A stored file and what a message needs to send it."""

    path: str
    url: str
    filename: str
    mime_type: str
    size: int
    message_type: str


def upload_mime_type(filename: str) -> str:
    """Return the content type a file name stands for ("" when unknown)."""
    suffix = PurePosixPath(filename).suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or ""


def upload_allowed(mime_type: str) -> bool:
    """Say whether files of this type may be uploaded and sent."""
    if mime_type in REFUSED_TYPES:
        return False
    major = mime_type.split("/", 1)[0]
    return major in ("image", "video", "audio") or mime_type in OFFICE_TYPES


def message_type_for(mime_type: str) -> str:
    """Return the message type a file of this content type is sent as."""
    major = mime_type.split("/", 1)[0]
    if major == "image":
        return MessageType.IMAGE.value
    if major == "video":
        return MessageType.VIDEO.value
    if major == "audio":
        return MessageType.AUDIO.value
    return MessageType.DOCUMENT.value


# A stored name's budget in UTF-8 bytes (file systems allow 255; the path holds more).
FILENAME_MAX_BYTES = 180
FILENAME_MAX_CHARS = 100  # of the stem; UPLOAD_PATH allows 150 for the whole name
# Format characters some scripts write words with (Persian, Hindi): zero-width (non-)joiner.
_JOINERS = frozenset("\u200c\u200d")


def _filename_char(char: str) -> str:
    """Return what a character of a file name becomes: itself, "_" or nothing."""
    category = unicodedata.category(char)
    if category[0] in "LMN" or char in "-_." or char in _JOINERS:
        return char
    if char.isspace():
        return "_"
    # Punctuation, symbols, controls, bidi overrides, separators: dropped.
    return ""


def _utf8_cut(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode(errors="ignore")


def safe_filename(name: str) -> str:
    """Return a file name that is safe in a path, a URL and a header, keeping its extension.

    Letters, marks and digits of every script are kept (NFC), spaces become "_", and
    everything else (slashes, dots that lead, punctuation, controls, bidi overrides) goes; the
    name fits FILENAME_MAX_BYTES.
    """
    base = unicodedata.normalize("NFC", name.replace("\\", "/")).rsplit("/", 1)[-1]
    cleaned = "".join(_filename_char(c) for c in base)
    cleaned = re.sub(r"_{2,}", "_", cleaned).strip("._") or "file"
    stem, dot, suffix = cleaned.rpartition(".")
    if not (dot and 0 < len(suffix) <= 10 and suffix.isascii() and suffix.isalnum()):
        stem, suffix = cleaned, ""
    suffix = suffix.lower()
    budget = FILENAME_MAX_BYTES - (len(suffix) + 1 if suffix else 0)
    stem = _utf8_cut(stem[:FILENAME_MAX_CHARS], budget).rstrip("._\u200c\u200d") or "file"
    # Dropping a character can bring a letter and a mark together: compose them again.
    return unicodedata.normalize("NFC", f"{stem}.{suffix}" if suffix else stem)


def upload_content_disposition(filename: str, *, inline: bool) -> str:
    """Return a Content-Disposition header for a stored name: plain ASCII for old clients,
    the whole name in `filename*` (RFC 5987, UTF-8 percent-encoded)."""
    fallback = "".join(
        c if c.isascii() and (c.isalnum() or c in "-_.") else "_"
        for c in unicodedata.normalize("NFKD", filename)
        if not unicodedata.combining(c)
    )
    fallback = re.sub(r"_{2,}", "_", fallback).strip("_") or "file"
    disposition = "inline" if inline else "attachment"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def upload_store(file: UploadedFile) -> StoredUpload:
    """Check and store an uploaded file; raise `SendRefused` with the reason if refused."""
    name = file.name or "file"
    size = file.size or 0
    if size <= 0:
        raise SendRefused("upload_empty", f"The file {name} is empty.")
    if size > UPLOAD_MAX_BYTES:
        raise SendRefused(
            "upload_too_large",
            f"The file {name} is {size / 1024 / 1024:.1f} MiB; at most 16 MiB can be sent.",
        )
    filename = safe_filename(name)
    # The name decides the type, not the browser's claim: what we serve later is what we checked.
    mime_type = upload_mime_type(filename)
    if not mime_type or not upload_allowed(mime_type):
        raise SendRefused(
            "upload_type",
            f"Files of this type cannot be sent ({mime_type or 'unknown type'}). Send an "
            "image, a video, an audio file, a PDF or an office document.",
        )
    now = timezone.now()
    path = f"{UPLOAD_PREFIX}/{now:%Y}/{now:%m}/{secrets.token_urlsafe(24)}/{filename}"
    stored = default_storage.save(path, file)
    return StoredUpload(
        path=stored,
        url=upload_url(stored),
        filename=filename,
        mime_type=mime_type,
        size=size,
        message_type=message_type_for(mime_type),
    )


def _upload_track(message: Message, stored: StoredUpload) -> None:
    """Record an agent's upload as the message's stored file, served like every other."""
    MediaFile.objects.get_or_create(
        message=message,
        defaults={
            "account_id": message.account_id,
            "channel_id": message.session.channel_id,
            "state": MediaFile.State.STORED,
            "path": stored.path,
            "filename": stored.filename,
            "content_type": stored.mime_type,
            "declared_type": stored.mime_type,
            "inline": stored.mime_type.split("/", 1)[0] in ("image", "video", "audio"),
            "size": stored.size,
            "stored_at": timezone.now(),
        },
    )


def message_send_upload(
    session: Session,
    file: UploadedFile,
    caption: str,
    *,
    author: Any = None,
    idempotency_key: str = "",
) -> tuple[Message, bool]:
    """Store an attachment and send it (as `message_send` does); return the message and whether
    it is new.

    A send that is refused (`SendRefused`: a closed window, an inactive channel) or fails in
    any other way deletes the stored file again: no message points at it, so no platform will
    ever fetch it. So does a repeated request whose idempotency key names an earlier message.
    """
    stored = upload_store(file)
    # An audio message has no caption (spec §5.5): the words go as a text right after it (the
    # conversation's order keeps them second).
    audio = stored.message_type in (MessageType.AUDIO.value, MessageType.VOICE.value)
    draft = Draft(
        type=stored.message_type,
        media_url=stored.url,
        media_filename=stored.filename,
        media_mime_type=stored.mime_type,
        caption="" if audio else caption,
    )
    try:
        message, created = message_send(
            session, draft, author=author, idempotency_key=idempotency_key
        )
    except BaseException:
        upload_delete(stored.path)
        raise
    if message.media_url != stored.url:
        upload_delete(stored.path)
    elif created:
        _upload_track(message, stored)
    if audio and caption.strip() and created:
        key = f"{idempotency_key.strip()[:90]}:caption" if idempotency_key.strip() else ""
        message_send(
            session,
            Draft(type=MessageType.TEXT.value, body=caption),
            author=author,
            idempotency_key=key,
        )
    return message, created
