"""Store files agents attach in the composer, and build the public URL a platform fetches.

A platform sends media by downloading it from a link (XMS `image.link`, spec §5), so an upload
is stored under an unguessable path (`uploads/<yyyy>/<mm>/<random>/<safe name>`) and served
without sign-in by `inbox.views.uploads.upload_serve`. Only media and office documents are
accepted; anything a browser could run (HTML, SVG, scripts) is refused.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.urls import reverse
from django.utils import timezone
from django.utils.text import get_valid_filename

from inbox.services.outbound import SendRefused
from integrations.base import MessageType

UPLOAD_MAX_BYTES = 16 * 1024 * 1024
UPLOAD_PREFIX = "uploads"
# A stored path: uploads/2025/11/<22+ url-safe characters>/<file name without slashes>.
UPLOAD_PATH = re.compile(r"^uploads/\d{4}/\d{2}/[A-Za-z0-9_-]{20,64}/[^/\\]{1,150}$")

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


def safe_filename(name: str) -> str:
    """Return a file name that is safe in a path and a URL, keeping its extension."""
    base = PurePosixPath(name.replace("\\", "/")).name
    try:
        cleaned = get_valid_filename(base)
    except SuspiciousFileOperation:  # ".", ".." and the like
        cleaned = ""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", cleaned).strip("._") or "file"
    stem, dot, suffix = cleaned.rpartition(".")
    if dot and len(suffix) <= 10:
        return f"{stem[:100] or 'file'}.{suffix.lower()}"
    return cleaned[:100]


def upload_url(path: str) -> str:
    """Return the public URL a platform downloads a stored upload from."""
    relative = path.removeprefix(f"{UPLOAD_PREFIX}/")
    return f"{settings.PUBLIC_BASE_URL}{reverse('upload-serve', kwargs={'path': relative})}"


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
