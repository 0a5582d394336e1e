"""Where the files agents attach are kept, and how a kept one is found again from its link.

An upload is stored under an unguessable path (`uploads/<yyyy>/<mm>/<random>/<safe name>`).
The message names it by its link (`upload_url`), which serves nothing by itself: a platform
that fetches media is given the link signed for MEDIA_PLATFORM_LINK_SECONDS
(`upload_link_for_platform`, checked by `inbox.views.uploads.upload_serve`), and agents see the
file through the media view, as they may see its session. For a platform that takes files only
as uploads (`Capability.MEDIA_UPLOAD`) the delivery reads the file back (`upload_read`).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.urls import reverse

logger = logging.getLogger(__name__)
UPLOAD_PREFIX = "uploads"
# A stored path: uploads/2025/11/<22+ url-safe characters>/<file name without slashes>.
UPLOAD_PATH = re.compile(r"^uploads/\d{4}/\d{2}/[A-Za-z0-9_-]{20,64}/[^/\\]{1,150}$")


def upload_url(path: str) -> str:
    """Return the public URL a platform downloads a stored upload from."""
    relative = path.removeprefix(f"{UPLOAD_PREFIX}/")
    return f"{settings.PUBLIC_BASE_URL}{reverse('upload-serve', kwargs={'path': relative})}"


_PLATFORM_LINK = signing.TimestampSigner(salt="inbox.uploads.platform-link")


def upload_link_for_platform(url: str) -> str:
    """Return the link a platform fetches one of our uploads from: `url` with a signature that
    expires (any other link is returned as it is)."""
    path = upload_path_of(url)
    if path is None:
        return url
    signature = _PLATFORM_LINK.sign(path).removeprefix(f"{path}:")
    return f"{url}?sig={signature}"


def upload_link_valid(path: str, signature: str) -> bool:
    """Say whether a platform link's signature is good for this stored path and not too old."""
    try:
        _PLATFORM_LINK.unsign(f"{path}:{signature}", max_age=settings.MEDIA_PLATFORM_LINK_SECONDS)
    except signing.BadSignature:
        return False
    return True


def upload_path_of(url: str) -> str | None:
    """Return the stored path behind one of our upload links, or None for any other link."""
    base = upload_url(f"{UPLOAD_PREFIX}/x")[:-1]  # (the link of a path, without the path)
    if not url.startswith(base):
        return None
    path = f"{UPLOAD_PREFIX}/{unquote(url.removeprefix(base))}"
    return path if ".." not in path and UPLOAD_PATH.match(path) else None


def upload_read(path: str) -> bytes:
    """Return a stored upload's bytes (OSError when it is gone)."""
    with default_storage.open(path, "rb") as stored:
        content: bytes = stored.read()
    return content


def upload_delete(path: str) -> None:
    """Delete a stored upload (a missing one is fine)."""
    try:
        default_storage.delete(path)
    except OSError:
        logger.warning("could not delete the upload %s", path, exc_info=True)
