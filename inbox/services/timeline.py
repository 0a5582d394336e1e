"""Add lines to a session's or contact's timeline, once per platform event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from inbox.models import Contact, Session, TimelineEntry
from integrations.models import ProviderAccount
from integrations.payload import key_fit


def timeline_add(
    account: ProviderAccount,
    *,
    kind: str,
    summary: str,
    occurred_at: datetime,
    session: Session | None = None,
    contact: Contact | None = None,
    data: dict[str, Any] | None = None,
    dedupe_key: str = "",
) -> TimelineEntry | None:
    """Add a timeline entry; return None if one with this dedupe key already exists."""
    try:
        with transaction.atomic():
            return TimelineEntry.objects.create(
                account=account,
                session=session,
                contact=contact or (session.contact if session else None),
                kind=kind,
                summary=summary[:500],
                occurred_at=occurred_at,
                data=data or {},
                # (A longer key, e.g. one naming a long platform session id, is hashed rather
                # than cut: two keys sharing their first 200 characters stay apart.)
                dedupe_key=key_fit(dedupe_key, 200),
            )
    except IntegrityError:
        if not dedupe_key:
            raise
        return None
