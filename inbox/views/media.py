"""Serve stored media files to the people who may see their session, and nobody else.

A signed-in agent reaches a file by its id; an API client by the signed link the API gave
it (`?token=`, for the same user, for MEDIA_SIGNED_URL_SECONDS). Either way the visibility
rules of pages and API decide, and anything else, a guessed id included, is a 404. With object
storage the browser is sent on to a short-lived signed URL once the check has passed; from the
file system the file is streamed. The headers keep a browser from running anything it gets,
and a file whose bytes contradict its claimed type is offered only as a download.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
)
from django.views.decorators.http import require_POST, require_safe

from accounts.models import User
from inbox.models import MediaFile
from inbox.selectors.media import media_get_for_user, media_link_user
from inbox.services.media import media_retry
from inbox.services.uploads import upload_content_disposition
from inbox.views.common import HtmxHttpRequest, flash, request_user, session_for_page

THUMBNAIL_TYPE = "image/webp"


@require_safe
def media_file(request: HttpRequest, media_id: int) -> HttpResponseBase:
    """Return a stored media file (404 unless the asker may see its session)."""
    return _serve(request, media_id, thumbnail=False)


@require_safe
def media_thumbnail(request: HttpRequest, media_id: int) -> HttpResponseBase:
    """Return a stored picture's thumbnail (404 as for the file, or when it has none)."""
    return _serve(request, media_id, thumbnail=True)


def _viewer(request: HttpRequest, media_id: int) -> User | None:
    if isinstance(request.user, User) and request.user.is_active:
        return request.user
    token = request.GET.get("token", "")
    user_id = media_link_user(media_id, token) if token else None
    if user_id is None:
        return None
    return User.objects.filter(pk=user_id, is_active=True).first()


def _serve(request: HttpRequest, media_id: int, *, thumbnail: bool) -> HttpResponseBase:
    user = _viewer(request, media_id)
    media = media_get_for_user(user, media_id) if user is not None else None
    if media is None or media.state != MediaFile.State.STORED:
        raise Http404("No such file.")
    path = media.thumbnail_path if thumbnail else media.path
    if not path:
        raise Http404("No such file.")
    inline = thumbnail or media.inline
    content_type = THUMBNAIL_TYPE if thumbnail else media.content_type or "application/octet-stream"
    disposition = upload_content_disposition(media.filename or "file", inline=inline)
    if settings.MEDIA_STORAGE_IS_S3 and settings.MEDIA_SERVE_REDIRECT:
        response: HttpResponseBase = HttpResponseRedirect(
            default_storage.url(  # type: ignore[call-arg]  # S3Storage.url takes these
                path,
                parameters={
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": disposition,
                    "ResponseCacheControl": "private, max-age=300",
                },
                expire=settings.MEDIA_SIGNED_URL_SECONDS,
            )
        )
        response["Cache-Control"] = "private, no-store"
    else:
        try:
            handle = default_storage.open(path, "rb")
        except OSError:
            raise Http404("No such file.") from None
        response = FileResponse(handle, content_type=content_type)
        response["Content-Disposition"] = disposition
        response["Cache-Control"] = "private, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Referrer-Policy"] = "no-referrer"
    return response


@login_required
@require_POST
def media_retry_view(request: HtmxHttpRequest, session_id: int, media_id: int) -> HttpResponse:
    """Try a failed download again (an agent's *Retry* on the file)."""
    session = session_for_page(request, session_id)
    media = media_get_for_user(request_user(request), media_id)
    if media is None or media.message.session_id != session.pk:
        raise Http404("No such file.")
    if not media_retry(media):
        return flash(
            request, session, "This file is not failed any more.", level=messages.INFO, status=409
        )
    return flash(request, session, "Downloading the file again.")
