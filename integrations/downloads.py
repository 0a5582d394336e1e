"""Downloading a platform's media file through the HTTP seam, in the provider contract's terms.

Providers call `media_download` from their `media_fetch`; the inbox never imports this module
(it sees `integrations.base` errors only).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO

from django.conf import settings

from integrations import http
from integrations.base import (
    AmbiguousError,
    AuthenticationError,
    GoneError,
    MediaFetched,
    ProviderError,
    RejectedError,
    TooLargeError,
    TransientError,
)


def media_download(
    link: str, into: IO[bytes], *, max_bytes: int, headers: Mapping[str, str] | None = None
) -> MediaFetched:
    """Download `link` into `into` (at most `max_bytes`); raise the contract's errors."""
    if not link:
        raise RejectedError("The platform gave no link to download the file from.")
    into.seek(0)
    into.truncate()
    timeout = (settings.PLATFORM_CONNECT_TIMEOUT, settings.MEDIA_READ_TIMEOUT_SECONDS)
    with http_errors():
        got = http.download(link, into, max_bytes=max_bytes, headers=headers, timeout=timeout)
    return MediaFetched(size=got.size, content_type=got.content_type)


@contextmanager
def http_errors() -> Iterator[None]:
    """Raise the contract's errors for the HTTP seam's, so callers never see HTTP errors.

    A 404 or 410 is `GoneError`; the platform's words, code and status pass on unchanged.
    """
    try:
        yield
    except http.TooLargeError as exc:
        raise TooLargeError(str(exc), status=exc.status) from exc
    except http.RejectedError as exc:
        error = GoneError if exc.status in (404, 410) else RejectedError
        raise error(str(exc), status=exc.status, detail=exc.detail, code=exc.code) from exc
    except http.AmbiguousError as exc:
        raise AmbiguousError(str(exc), status=exc.status, detail=exc.detail, code=exc.code) from exc
    except http.TransientError as exc:
        raise TransientError(str(exc), status=exc.status, detail=exc.detail, code=exc.code) from exc
    except http.AuthError as exc:
        raise AuthenticationError(
            str(exc), status=exc.status, detail=exc.detail, code=exc.code
        ) from exc
    except http.HttpError as exc:
        raise ProviderError(str(exc), status=exc.status, detail=exc.detail, code=exc.code) from exc
