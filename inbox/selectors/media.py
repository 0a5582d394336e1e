"""Media files as agents and integrators reach them: by id, only where they may see the session,
and the links that serve them (never the platform's own)."""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse

from accounts.models import User
from inbox.models import MediaFile
from inbox.selectors.visibility import media_files_visible_to

# What a link for someone without a browser session (an API client) is signed for.
_LINK_SALT = "inbox.media.link"


def media_get_for_user(user: User, media_id: int) -> MediaFile | None:
    """Return a media file the user may see (None: not there, or not theirs to see)."""
    return media_files_visible_to(user).filter(pk=media_id).first()


def media_url(media: MediaFile, *, thumbnail: bool = False) -> str:
    """Return the path that serves a media file to a signed-in user who may see it."""
    name = "media-thumbnail" if thumbnail else "media-file"
    return reverse(name, kwargs={"media_id": media.pk})


def media_url_signed(media: MediaFile, user: User, *, thumbnail: bool = False) -> str:
    """Return a link to a media file that works without a browser session for a while
    (MEDIA_SIGNED_URL_SECONDS), for `user` only: whether they may still see it is checked
    when it is used."""
    token = signing.dumps([media.pk, user.pk], salt=_LINK_SALT, compress=False)
    return f"{media_url(media, thumbnail=thumbnail)}?token={token}"


def media_link_user(media_id: int, token: str) -> int | None:
    """Return the id of the user a signed link was made for, or None for a bad or old one."""
    try:
        signed_media, user_id = signing.loads(
            token, salt=_LINK_SALT, max_age=settings.MEDIA_SIGNED_URL_SECONDS
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return int(user_id) if signed_media == media_id and isinstance(user_id, int) else None
