"""Serve uploaded attachments to the platforms that fetch them (no sign-in: they cannot).

Only with a signature the delivery made for the platform (`?sig=`, valid for
MEDIA_PLATFORM_LINK_SECONDS), only paths of the shape `uploads/<yyyy>/<mm>/<random>/<name>`,
and only files: there is no listing. Agents see uploads through the media view instead, as
they may see the session. The content type is the one the upload was checked for, and the
headers keep a browser from running anything it gets here.
"""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_safe

from inbox.services.stored_files import UPLOAD_PATH, UPLOAD_PREFIX, upload_link_valid
from inbox.services.uploads import (
    upload_allowed,
    upload_content_disposition,
    upload_mime_type,
)


@require_safe
def upload_serve(request: HttpRequest, path: str) -> FileResponse:
    """Return a stored upload by its path and a good signature (404 for anything else)."""
    stored = f"{UPLOAD_PREFIX}/{path}"
    if ".." in path or not UPLOAD_PATH.match(stored):
        raise Http404("No such file.")
    if not upload_link_valid(stored, request.GET.get("sig", "")):
        raise Http404("No such file.")
    mime_type = upload_mime_type(stored)
    if not upload_allowed(mime_type):
        raise Http404("No such file.")
    try:
        handle = default_storage.open(stored, "rb")
    except (FileNotFoundError, OSError):
        raise Http404("No such file.") from None
    # Media plays inline; documents (PDFs too: a sandboxed PDF viewer will not open) download.
    inline = mime_type.split("/", 1)[0] in ("image", "video", "audio")
    response = FileResponse(handle, content_type=mime_type)
    # Plain ASCII for old clients, the whole name (any script) as RFC 5987 `filename*`.
    response["Content-Disposition"] = upload_content_disposition(
        stored.rsplit("/", 1)[-1], inline=inline
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
