"""Private notes on a session: for the team, never sent to the customer or the platform."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from inbox import live
from inbox.models import Note, Session
from inbox.services.refusals import SendRefused

NOTE_MAX_LENGTH = 10_000


def note_add(
    session: Session, body: str, *, by: Any = None, idempotency_key: str = ""
) -> tuple[Note, bool]:
    """Add a private note to a session; return it and whether it is new.

    Nothing is sent anywhere: a note is a row of ours, shown only in the inbox. The same
    idempotency key returns the note it first created (a double submit stores one note).
    Refuses an empty or oversized note with `SendRefused`, like a message.
    """
    key = idempotency_key.strip()[:100]
    if key:
        existing = Note.objects.filter(session=session, idempotency_key=key).first()
        if existing is not None:
            return existing, False
    body = body.strip()
    if not body:
        raise SendRefused("empty", "The note is empty.")
    if len(body) > NOTE_MAX_LENGTH:
        raise SendRefused("too_long", f"A note can be at most {NOTE_MAX_LENGTH} characters.")
    try:
        with transaction.atomic():
            note = Note.objects.create(
                session=session,
                author=by if getattr(by, "pk", None) else None,
                body=body,
                idempotency_key=key,
            )
    except IntegrityError:
        if not key:
            raise
        return Note.objects.get(session=session, idempotency_key=key), False
    live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
    return note, True
