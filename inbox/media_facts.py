"""What a downloaded file is, read from its bytes: type, checksum, picture size, duration.

The platform's word for a file's type is a claim (XMS's own example pairs `"type": "image"`
with `"mime_type": "video/mp4"`, spec §3.2); the bytes decide what we serve it as. A file
whose bytes contradict its claim is kept, but offered only as a download.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import dataclass
from typing import IO

import filetype
import mutagen
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

HEAD_BYTES = 8192
# A picture larger than this is not decoded for a thumbnail (a decompression bomb is small on
# the wire and gigabytes in memory); it is still stored and offered.
THUMBNAIL_MAX_PIXELS = 60_000_000
THUMBNAIL_FORMAT = ("WEBP", "image/webp")
# Types a browser shows in the page without running anything (never SVG: it holds script).
INLINE_TYPES = re.compile(r"^(image/(png|jpeg|gif|webp|bmp|avif)|video/(mp4|webm|3gpp)|audio/.+)$")
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the bytes of a file say about it."""

    content_type: str
    inline: bool
    sha256: str
    size: int
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None


def sha256_of(file: IO[bytes]) -> str:
    """Return the lowercase hex SHA-256 of a file, read from its start in chunks."""
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


def checksum_disagrees(declared: str, actual: str) -> bool:
    """Say whether a platform's checksum is a SHA-256 digest other than the file's.

    Only a real hex digest is compared: the docs' own example value ("m3232kaoe4belrr") is
    not one, and a platform sending such a value has told us nothing to check.
    """
    return bool(SHA256_HEX.match(declared)) and declared.lower() != actual


def sniffed_type(head: bytes, declared: str) -> str:
    """Return the content type the first bytes show, or a safe one when they show none.

    Plain text has no signature: a file said to be text that decodes as UTF-8 stays text;
    anything else unrecognised is `application/octet-stream`.
    """
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    base = declared.split(";", 1)[0].strip().lower()
    if base in ("text/plain", "text/csv"):
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut by the head's end is still text.
            if exc.start < len(head) - 4:
                return "application/octet-stream"
        return base
    return "application/octet-stream"


def shown_inline(content_type: str, declared: str) -> bool:
    """Say whether a file may be shown in the page: a safe media type its claim agrees with."""
    if not INLINE_TYPES.match(content_type):
        return False
    claimed = declared.split("/", 1)[0].strip().lower()
    return not claimed or claimed == content_type.split("/", 1)[0]


def facts_read(file: IO[bytes], *, declared_type: str) -> Facts:
    """Read a downloaded file's facts (the file is left at its start)."""
    file.seek(0, io.SEEK_END)
    size = file.tell()
    file.seek(0)
    head = file.read(HEAD_BYTES)
    content_type = sniffed_type(head, declared_type)
    digest = sha256_of(file)
    width = height = None
    duration = None
    major = content_type.split("/", 1)[0]
    if major == "image":
        width, height = _picture_size(file)
    elif major in ("audio", "video"):
        duration = _duration(file)
    file.seek(0)
    return Facts(
        content_type=content_type,
        inline=shown_inline(content_type, declared_type),
        sha256=digest,
        size=size,
        width=width,
        height=height,
        duration_seconds=duration,
    )


def _picture_size(file: IO[bytes]) -> tuple[int | None, int | None]:
    file.seek(0)
    try:
        with Image.open(file) as picture:
            return picture.width, picture.height
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None, None


def _duration(file: IO[bytes]) -> float | None:
    """Return an audio or video file's length in seconds, where its header says it cheaply."""
    file.seek(0)
    try:
        found = mutagen.File(file)
    except Exception:  # mutagen raises its own errors, and struct/EOF errors on broken files
        logger.debug("no duration readable", exc_info=True)
        return None
    length = getattr(getattr(found, "info", None), "length", None)
    return round(float(length), 2) if isinstance(length, int | float) and length > 0 else None


def thumbnail_make(file: IO[bytes], *, edge: int) -> bytes | None:
    """Return a WebP thumbnail no larger than `edge` on its longer side, or None when the
    picture cannot be decoded (or is too large to decode safely)."""
    file.seek(0)
    try:
        with Image.open(file) as picture:
            if picture.width * picture.height > THUMBNAIL_MAX_PIXELS:
                return None
            picture.thumbnail((edge, edge))
            shown = picture if picture.mode in ("RGB", "RGBA") else picture.convert("RGBA")
            out = io.BytesIO()
            shown.save(out, THUMBNAIL_FORMAT[0], quality=80)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        logger.info("no thumbnail: the picture could not be decoded", exc_info=True)
        return None
    finally:
        file.seek(0)
