"""What changes accounts: API tokens (made, revoked, checked)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from accounts.models import ApiToken, User

# Visible start of a key, kept in the database so people can tell their tokens apart.
PREFIX_LENGTH = 8
# `last_used_at` is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenError(Exception):
    """A token that does not authenticate; the message says why, for the integrator."""


class ApiTokenUnknown(ApiTokenError):
    """No token has this key (a typo, a deleted token, or someone guessing)."""


def api_token_digest(key: str) -> str:
    """Return the stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def api_token_create(
    user: User, *, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Make a token for `user` and return it with its key, which is never available again.

    Only the key's digest and its first characters are stored.
    """
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("A token's expiry must be in the future.")
    key = f"sb_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=key[:PREFIX_LENGTH],
        digest=api_token_digest(key),
        expires_at=expires_at,
    )
    return token, key


def api_token_revoke(token: ApiToken) -> bool:
    """Revoke `token` now; return False if it already was (its first revocation time stays)."""
    now = timezone.now()
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    if updated:
        token.revoked_at = now
    return bool(updated)


def api_token_authenticate(key: str) -> ApiToken:
    """Return the live token with this key (its user loaded), or raise why it does not count.

    Raises ApiTokenUnknown for a key no token has, ApiTokenError for a revoked or expired
    token or an inactive user. Records when the token was last used (at most once a minute).
    """
    token = ApiToken.objects.select_related("user").filter(digest=api_token_digest(key)).first()
    if token is None:
        raise ApiTokenUnknown("Invalid token.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise ApiTokenError(f"This token was revoked at {_utc(token.revoked_at)}.")
    if token.expires_at is not None and token.expires_at <= now:
        raise ApiTokenError(f"This token expired at {_utc(token.expires_at)}.")
    if not token.user.is_active:
        raise ApiTokenError("The token's user is inactive or deleted.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
