"""The one HTTP seam: every call to a platform goes through `request()` here.

It sets timeouts, classifies failures into what the caller can act on, and never writes a secret
header or key to a log. Providers' clients build on it; nothing else imports `requests`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import requests
from django.conf import settings
from urllib3.exceptions import ProtocolError

logger = logging.getLogger("integrations.http")

# Request headers written to logs as they are; any other (a platform's key, token or id,
# whatever its name) is written as ***.
SAFE_HEADERS = frozenset({"accept", "content-type", "user-agent"})

_session = requests.Session()
_session.headers["User-Agent"] = "Switchboard/0.1"
# Kept-alive connections for every thread of a platform-lane worker (urllib3 keeps 10 per host
# by default: with more threads sending, each extra answer closed its connection).
for _scheme in ("http://", "https://"):
    _session.mount(_scheme, requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=64))


def environment_settings(environ: Mapping[str, str]) -> tuple[str | bool, bool]:
    """What requests would read from the environment on every call, read once: the CA bundle
    to verify with, and whether to keep reading it per call (only for proxy variables, whose
    no_proxy exceptions depend on each URL). Per call, that reading (and a look for a .netrc)
    was a tenth of the platform worker's time under `make bench`. A .netrc is never used:
    platform credentials come from the account, not from the machine.
    """
    verify = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or True
    return verify, any(name.lower().endswith("_proxy") for name in environ)


_session.verify, _session.trust_env = environment_settings(os.environ)


class HttpError(Exception):
    """A platform call failed; `retryable` says whether trying again may help.

    `detail` is the reason in words people can act on and `code` the platform's own code, when
    the provider's client could read them from the answer (otherwise the message and "").
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: Any = None,
        detail: str = "",
        code: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.detail = detail or message
        self.code = code


class TransientError(HttpError):
    """Connection error, timeout, 408, 429 or 5xx: retry with backoff."""

    retryable = True


class AuthError(HttpError):
    """401/403: the credentials are wrong; stop and tell an admin."""


class RejectedError(HttpError):
    """Any other 4xx: the platform refused this request; retrying will not help."""


class AmbiguousError(TransientError):
    """The request may have reached the platform (a read timeout, a connection dropped after
    sending): the outcome is unknown."""


class TooLargeError(RejectedError):
    """A download was larger than the caller allows; it was stopped there."""


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A file written whole into the caller's file: its size and what the server called it."""

    size: int
    content_type: str
    elapsed_ms: float


DOWNLOAD_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A successful (2xx) answer."""

    status: int
    json: Any
    text: str
    elapsed_ms: float
    headers: Mapping[str, str] = field(default_factory=dict)


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """Return headers safe to log: every header not known to be harmless is masked."""
    return {k: (v if k.lower() in SAFE_HEADERS else "***") for k, v in headers.items()}


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
    timeout: tuple[float, float] | None = None,
    files: Mapping[str, tuple[str, bytes, str]] | None = None,
) -> HttpResponse:
    """Make one HTTP call; return the 2xx response or raise a classified `HttpError`
    (`files`: a multipart/form-data body, {field: (filename, content, content type)})."""
    timeout = timeout or (settings.PLATFORM_CONNECT_TIMEOUT, settings.PLATFORM_READ_TIMEOUT)
    all_headers = {"Accept": "application/json", **(headers or {})}
    started = time.monotonic()
    try:
        # Never follow redirects: requests would carry the credentials to wherever they point.
        response = _session.request(
            method,
            url,
            headers=all_headers,
            json=json,
            params=params,
            files=files,
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.ConnectTimeout as exc:
        raise TransientError(f"{method} {url}: could not connect in time") from exc
    except requests.ReadTimeout as exc:
        raise AmbiguousError(
            f"{method} {url}: no answer within {timeout[1]:.0f}s (it may have been processed)"
        ) from exc
    except requests.ConnectionError as exc:
        if isinstance(exc.args[0] if exc.args else None, ProtocolError):
            # Dropped after the request was sent ("Connection aborted"): it may have been
            # processed, so it is not retried blindly.
            raise AmbiguousError(
                f"{method} {url}: connection dropped before the answer (it may have been processed)"
            ) from exc
        raise TransientError(
            f"{method} {url}: connection failed ({exc.__class__.__name__})"
        ) from exc
    except requests.RequestException as exc:
        raise TransientError(f"{method} {url}: {exc.__class__.__name__}") from exc
    elapsed_ms = (time.monotonic() - started) * 1000
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    logger.debug(
        "%s %s -> %s in %.0f ms headers=%s",
        method,
        url,
        response.status_code,
        elapsed_ms,
        redact(all_headers),
    )
    status = response.status_code
    if 300 <= status < 400:
        raise RejectedError(
            f"{method} {url}: HTTP {status} redirect to {response.headers.get('location', '?')} "
            "(not followed; check the account's base URL)",
            status=status,
        )
    if 200 <= status < 300:
        return HttpResponse(
            status=status,
            json=body,
            text=response.text,
            elapsed_ms=elapsed_ms,
            headers=dict(response.headers),
        )
    detail = f"{method} {url}: HTTP {status}"
    if status in (401, 403):
        raise AuthError(detail, status=status, body=body)
    if status in (408, 425, 429) or status >= 500:
        raise TransientError(detail, status=status, body=body)
    raise RejectedError(detail, status=status, body=body if body is not None else response.text)


def download(
    url: str,
    into: IO[bytes],
    *,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    timeout: tuple[float, float] | None = None,
) -> Downloaded:
    """Stream a GET's body into `into`, a chunk at a time; raise a classified `HttpError`.

    Never more than `max_bytes` is read: a larger Content-Length is refused before the body,
    and a body that runs past it is cut off there (`TooLargeError`). A GET changes nothing, so
    a timeout or a dropped connection is a plain `TransientError`, never an ambiguous one.
    Redirects are followed only when no headers (credentials) go with the request: a media
    link may well point at a CDN, but a platform's key must not follow it there.
    """
    timeout = timeout or (settings.PLATFORM_CONNECT_TIMEOUT, settings.PLATFORM_READ_TIMEOUT)
    started = time.monotonic()
    try:
        with _session.get(
            url,
            headers=dict(headers or {}),
            timeout=timeout,
            stream=True,
            allow_redirects=not headers,
        ) as response:
            _download_check(url, response, max_bytes)
            size = 0
            for chunk in response.iter_content(DOWNLOAD_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLargeError(
                        f"GET {url}: the file is larger than {max_bytes:,} bytes", status=200
                    )
                into.write(chunk)
            content_type = response.headers.get("content-type", "")
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
    ) as exc:
        raise RejectedError(f"GET {url}: not a link that can be downloaded") from exc
    except requests.Timeout as exc:
        raise TransientError(f"GET {url}: no answer in time while downloading") from exc
    except requests.ConnectionError as exc:
        raise TransientError(f"GET {url}: the connection failed or was cut") from exc
    except requests.RequestException as exc:
        raise TransientError(f"GET {url}: {exc.__class__.__name__} while downloading") from exc
    elapsed_ms = (time.monotonic() - started) * 1000
    logger.debug("GET %s -> %s bytes in %.0f ms", url, size, elapsed_ms)
    return Downloaded(size=size, content_type=content_type, elapsed_ms=elapsed_ms)


def _download_check(url: str, response: requests.Response, max_bytes: int) -> None:
    """Raise for an answer that is not a file we may read whole."""
    status = response.status_code
    detail = f"GET {url}: HTTP {status}"
    if 300 <= status < 400:
        raise RejectedError(f"{detail} redirect (not followed)", status=status)
    if status in (401, 403):
        raise AuthError(detail, status=status)
    if status in (408, 425, 429) or status >= 500:
        raise TransientError(detail, status=status)
    if not 200 <= status < 300:
        raise RejectedError(detail, status=status)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLargeError(
            f"GET {url}: the file is {int(declared):,} bytes, over the limit of {max_bytes:,}",
            status=status,
        )
