"""HTTP calls to MessageWhiz's omni API (spec §1-2), through the one seam in `integrations.http`.

Every call but the login carries the account's JWT, raw in `Authorization` (§1.2, G9). The
token is cached for every process until shortly before it expires: the earlier of the
login's `expires_at` and the token's own `exp` claim (G10; the sample gives 2030 for a token
that lives a day). A login runs under a lock all processes share, so a fleet of workers whose
token expired logs in once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.core.cache import cache

from config.redis import redis_client
from integrations import http
from integrations.base import (
    JSON,
    AccountConfig,
    AuthenticationError,
    PayloadError,
    ProviderError,
)
from integrations.downloads import http_errors

logger = logging.getLogger(__name__)

# Pages are asked for at the documented default size; the server may cap it (§1.5).
PAGE_LIMIT = 50
# A token is dropped this long before it expires (§1.2: five minutes), or after nine tenths of
# its life for one that lives less than fifty minutes.
REFRESH_EARLY_SECONDS = 300.0
# How long a refused login stands before the same credentials are tried again.
REFUSED_LOGIN_SECONDS = 300
_local_lock = threading.Lock()
# The token this process last sent, per account: a 401 refuses that one (another process may
# have renewed the cached one since). Process-wide, as history calls run in pool threads.
_sent: dict[str, str] = {}


def error_words(body: Any) -> str:
    """The platform's reason from its error body (§1.4: any field may be missing, G40)."""
    if isinstance(body, dict):
        for key in ("message", "reason", "error"):
            value = body.get(key)
            if isinstance(value, list):
                value = "; ".join(str(v) for v in value)
            if isinstance(value, str) and value.strip():
                return value.strip()
    if isinstance(body, str):
        return body.strip()[:500]
    return ""


@contextmanager
def platform_errors() -> Iterator[None]:
    """Raise the contract's errors for the seam's, with the platform's words (§1.4).

    A 403 is a refusal of this request (an opted-out customer, a foreign entity), not of the
    account's credentials: only a 401 is `AuthenticationError`.
    """
    try:
        try:
            yield
        except http.HttpError as exc:
            words = error_words(exc.body)
            if words:
                exc.detail = f"{words} (HTTP {exc.status})" if exc.status else words
            if isinstance(exc, http.AuthError) and exc.status == 403:
                raise http.RejectedError(
                    str(exc), status=403, body=exc.body, detail=exc.detail
                ) from exc
            raise
    except http.HttpError as exc:
        with http_errors():
            raise exc


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT, read without verifying it (§1.2); None when unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, (int, float)) else None
    except (IndexError, ValueError, TypeError):
        return None


def token_keep_seconds(token: str, expires_at: Any, now: float) -> float:
    """How long to keep a token: until REFRESH_EARLY_SECONDS before the earlier of the login's
    `expires_at` and the token's own `exp` (G10), or nine tenths of a short life."""
    ends = [e for e in (expires_at, jwt_expiry(token)) if isinstance(e, (int, float))]
    life = (min(ends) if ends else now + 3600) - now
    return life - REFRESH_EARLY_SECONDS if life > REFRESH_EARLY_SECONDS * 10 else life * 0.9


def _refused_key(account: AccountConfig) -> str:
    return _token_key(account).replace("mw:token:", "mw:refused:", 1)


def _token_key(account: AccountConfig) -> str:
    fingerprint = hashlib.sha256(
        f"{account.base_url}\0{account.api_id}\0{account.api_key}".encode()
    ).hexdigest()[:16]
    return f"mw:token:{account.id}:{fingerprint}"


@contextmanager
def _login_lock(account: AccountConfig) -> Iterator[None]:
    """One login at a time per account, across processes (Redis) or within one (no Redis)."""
    client = redis_client()
    if client is None:
        with _local_lock:
            yield
        return
    lock = client.lock(f"switchboard:mw:login:{account.id}", timeout=30, blocking_timeout=20)
    acquired = False
    with contextlib.suppress(Exception):
        acquired = bool(lock.acquire())
    try:
        yield  # (without the lock after 20 s: a login of our own beats none at all)
    finally:
        if acquired:
            with contextlib.suppress(Exception):
                lock.release()


class MessageWhizClient:
    """Call one MessageWhiz account's API with its token (the email is `api_id`, the
    password `api_key`)."""

    def __init__(self, account: AccountConfig) -> None:
        self.account = account
        self.base = account.base_url.rstrip("/")

    # --- auth ------------------------------------------------------------------------------

    def login(self) -> str:
        """POST /api/auth (E01); cache the token for its life less the margin; return it."""
        if not self.account.api_id or not self.account.api_key:
            raise AuthenticationError(
                "The account has no email and password for MessageWhiz.",
                detail="Set the account's MessageWhiz email and password.",
            )
        refused = cache.get(_refused_key(self.account))
        if refused:
            # §1.2: a refused login stops the account's work, not retried every few seconds
            # (a lockout at the vendor would follow); new credentials are tried at once.
            raise AuthenticationError(str(refused), detail=str(refused))
        body = {"email": self.account.api_id, "password": self.account.api_key}
        try:
            with platform_errors():
                answer = http.request("POST", f"{self.base}/api/auth", json=body).json
        except AuthenticationError as exc:
            words = (
                f"MessageWhiz refused the account's email and password: {exc.detail}. Not "
                f"tried again for {REFUSED_LOGIN_SECONDS // 60} minutes unless they change."
            )
            cache.set(_refused_key(self.account), words, timeout=REFUSED_LOGIN_SECONDS)
            raise AuthenticationError(str(exc), status=exc.status, detail=words) from exc
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise PayloadError("POST /api/auth answered without a token")
        now = time.time()
        keep = token_keep_seconds(token, answer.get("expires_at"), now)
        if keep > 1:
            cache.set(_token_key(self.account), {"token": token, "at": now}, timeout=keep)
        return token

    def token(self) -> str:
        """The cached token, or a fresh one (one login per account at a time, §1.2)."""
        cached = cache.get(_token_key(self.account))
        if isinstance(cached, dict) and cached.get("token"):
            return str(cached["token"])
        with _login_lock(self.account):
            cached = cache.get(_token_key(self.account))  # another process may have logged in
            if isinstance(cached, dict) and cached.get("token"):
                return str(cached["token"])
            return self.login()

    def token_renew(self, refused: str | None = None) -> str:
        """Log in again after `refused` was refused, unless another process already renewed it
        (the cached token is another one)."""
        with _login_lock(self.account):
            cached = cache.get(_token_key(self.account))
            if isinstance(cached, dict) and cached.get("token") and cached["token"] != refused:
                return str(cached["token"])  # renewed by another process since
            cache.delete(_token_key(self.account))
            return self.login()

    # --- calls -----------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        token = self.token()
        _sent[self.account.id] = token
        return {"Authorization": token}

    def token_sent(self) -> str:
        """The token this process last sent for the account ("" before any call)."""
        return _sent.get(self.account.id, "")

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> http.HttpResponse:
        """One authenticated call; raises the contract's errors (`platform_errors`)."""
        with platform_errors():
            return http.request(
                method,
                f"{self.base}{path}",
                headers=self.headers(),
                json=json,
                params=params,
                files=files,
                timeout=timeout,
            )

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> JSON:
        answer = self.call("GET", path, params=params).json
        if not isinstance(answer, dict):
            raise PayloadError(f"GET {path} did not answer a JSON object")
        return answer

    def pages(
        self, path: str, key: str, params: Mapping[str, Any] | None = None, *, max_items: int = 0
    ) -> Iterator[list[JSON]]:
        """Walk an offset/limit listing (§1.5): offset moves by what came back, not by the
        limit (the server may cap it), until nothing comes or `total` is reached."""
        offset = 0
        seen = 0
        while True:
            answer = self.get(path, {**(params or {}), "offset": offset, "limit": PAGE_LIMIT})
            items = [i for i in answer.get(key) or [] if isinstance(i, dict)]
            if not items:
                return
            yield items
            offset += len(items)
            seen += len(items)
            total = answer.get("total")
            if (isinstance(total, int) and offset >= total) or (max_items and seen >= max_items):
                return

    def media_head(self, link: str) -> tuple[str, int] | None:
        """(Content-Type, Content-Length) of a rendition link (§3.5, G14); None when unknown."""
        try:
            with platform_errors():
                answer = http.request("HEAD", link, headers=self.headers())
        except ProviderError as exc:
            logger.info("HEAD %s failed: %s", link, exc)
            return None
        headers = {k.lower(): v for k, v in answer.headers.items()}
        mime = headers.get("content-type", "").split(";")[0].strip()
        try:
            size = int(headers.get("content-length", ""))
        except ValueError:
            return None
        return (mime, size) if mime else None
