"""API authentication: hashed tokens (`Authorization: Token <key>` or `Bearer <key>`).

An address that sends too many unknown keys is refused with 429 before any key it sends is
looked up, so keys cannot be guessed at speed; requests with valid keys never count.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ApiToken, User
from accounts.services import ApiTokenError, ApiTokenUnknown, api_token_authenticate

KEYWORDS = (b"token", b"bearer")
logger = logging.getLogger(__name__)


class TokenFailureThrottle(SimpleRateThrottle):
    """Count unknown API keys per client address in the cache (Redis when configured).

    DRF's sliding-window throttle, split in two: `blocked` only reads, `record_failure` only
    counts, because a request must be checked before its key is looked up and counted only
    when the lookup failed. The rate is API_TOKEN_FAILURE_RATE (`20/min`: 20 unknown keys a
    minute). The address is the one the ASGI server reports (REST_FRAMEWORK NUM_PROXIES = 0:
    a client's own X-Forwarded-For is never trusted; see .env.example for proxies).
    """

    scope = "api_token_failures"
    num_requests: int
    duration: int

    def get_rate(self) -> str:
        return str(settings.API_TOKEN_FAILURE_RATE)

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def _load(self, request: Request) -> None:
        self.key = self.get_cache_key(request, None)
        self.history: list[float] = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()

    def blocked(self, request: Request) -> bool:
        """Return whether this address sent its allowance of unknown keys in the window.

        With the cache unreachable (Redis down) nothing is blocked: keys are still checked,
        only not counted, and the outage is logged.
        """
        try:
            self._load(request)
        except RedisError:
            logger.warning("API token throttle: the cache is unreachable; not counting")
            self.history = []
            return False
        return len(self.history) >= self.num_requests

    def record_failure(self, request: Request) -> None:
        """Count one unknown key from this address (not at all while the cache is down)."""
        try:
            self._load(request)
            self.history.insert(0, self.now)
            del self.history[self.num_requests :]
            self.cache.set(self.key, self.history, self.duration)
        except RedisError:
            logger.warning("API token throttle: the cache is unreachable; not counting")

    def wait(self) -> float:
        """Return the seconds until the oldest counted failure leaves the window."""
        if len(self.history) < self.num_requests:
            return 0.0
        return max(0.0, self.duration - (self.now - self.history[self.num_requests - 1]))


def token_failures_reset(address: str) -> None:
    """Forget the unknown keys counted for `address` (an admin's unblock, and tests)."""
    throttle = TokenFailureThrottle()
    throttle.cache.delete(throttle.cache_format % {"scope": throttle.scope, "ident": address})


class ApiTokenAuthentication(BaseAuthentication):
    """Authenticate `Authorization: Token <key>` (or `Bearer <key>`) against hashed tokens."""

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid token header: send `Authorization: Token <key>` with no spaces in the key."
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(
                "Invalid token header: the key has characters no key has."
            ) from None
        throttle = TokenFailureThrottle()
        if throttle.blocked(request):
            raise exceptions.Throttled(
                wait=math.ceil(throttle.wait()),
                detail="Too many requests with invalid tokens from this address.",
            )
        try:
            token = api_token_authenticate(key)
        except ApiTokenUnknown as exc:
            throttle.record_failure(request)
            raise exceptions.AuthenticationFailed(str(exc)) from None
        except ApiTokenError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return "Token"
