"""Serve uploaded attachments to the platforms that fetch them (no sign-in: they cannot).

Only paths of the shape `uploads/<yyyy>/<mm>/<random>/<name>` are served, and only files: there
is no listing, and the random part makes the URL unguessable. The content type is the one the
upload was checked for, and the headers keep a browser from running anything it gets here.
"""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_safe

from inbox.services.stored_files import UPLOAD_PATH, UPLOAD_PREFIX
from inbox.services.uploads import (
    upload_allowed,
    upload_content_disposition,
    upload_mime_type,
)


@require_safe
def upload_serve(request: HttpRequest, path: str) -> FileResponse:
    """Return a stored upload by its unguessable path (404 for anything else)."""
    stored = f"{UPLOAD_PREFIX}/{path}"
    if ".." in path or not UPLOAD_PATH.match(stored):
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
    response["Cache-Control"] = "public, max-age=86400, immutable"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
