"""A text field encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

Written here rather than taken from a package because the maintained packages on PyPI either
tie the key to SECRET_KEY or return the ciphertext unchanged when it cannot be decrypted, which
would send a garbled secret to a platform instead of failing loudly.

Keys come from `settings.FIELD_ENCRYPTION_KEYS` (newest first, so keys can rotate: old rows
stay readable, new writes use the first key). Development derives one key from SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


@cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())
        return MultiFernet([Fernet(derived)])
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS holds an invalid key: {exc}") from exc


def fernet() -> MultiFernet:
    """Return the MultiFernet for the configured keys."""
    return _fernet(tuple(getattr(settings, "FIELD_ENCRYPTION_KEYS", ())), settings.SECRET_KEY)


class DecryptionError(Exception):
    """A stored secret cannot be read with any configured key."""


def encrypt(value: str) -> str:
    """Return the stored form of a secret."""
    return PREFIX + fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    """Return the secret from its stored form; raise `DecryptionError` if no key opens it."""
    if not stored.startswith(PREFIX):
        raise DecryptionError("stored value is not encrypted")
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS; "
            "was the key changed without keeping the old one?"
        ) from exc


class EncryptedTextField(models.TextField):
    """A TextField whose value is encrypted in the database and plain in Python."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        return value if prepared else self.get_prep_value(value)
