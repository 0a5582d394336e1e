"""Session changes that stay inside Switchboard: reopening and marking read.

The platform has no call to reopen a session (a resolved one continues by itself when the
customer writes again), so reopening only changes our copy. That works for a resolved session
only: a closed one is over at the platform (spec §6.4, §6.6), and the customer's next message
starts a new session, so reopening our copy would show an open session nothing reaches.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from inbox import live
from inbox.models import Session, TimelineEntry
from inbox.services.outbound import SendRefused
from inbox.services.timeline import timeline_add


def session_reopen(session: Session, *, by: Any = None) -> Session:
    """Reopen a resolved session here (no platform call exists for it).

    Raises `SendRefused` when the session is not resolved (`session_reopen_refusal`). Writes
    "Reopened by …" on the timeline and publishes a live event.
    """
    with transaction.atomic():
        locked = Session.objects.select_for_update().get(pk=session.pk)
        refusal = session_reopen_refusal(locked)
        if refusal:
            raise SendRefused("not_reopenable", refusal)
        was = locked.get_status_display().lower()
        locked.status = Session.Status.OPEN
        locked.save(update_fields=["status", "updated_at"])
        timeline_add(
            locked.account,
            session=locked,
            kind=TimelineEntry.Kind.REOPENED,
            summary=f"Reopened (was {was})" + (f" by {by}" if by else ""),
            occurred_at=timezone.now(),
        )
        live.publish(live.SESSION_UPDATED, session_id=locked.pk, channel_id=locked.channel_id)
    session.status = locked.status
    return session


def session_reopen_refusal(session: Session) -> str:
    """Say why this session cannot be reopened, or "" when it can (it is resolved)."""
    if session.status == Session.Status.RESOLVED:
        return ""
    if session.status == Session.Status.CLOSED:
        return (
            "A closed session cannot be reopened: the platform ended it, and the customer's "
            "next message starts a new one. Send a template to start a new conversation."
        )
    return "Only a resolved session can be reopened."


def session_mark_read(session: Session, *, by: Any = None) -> bool:
    """Set the session's unread count to zero; return whether it had unread messages.

    A conditional UPDATE: opening a read session writes nothing and publishes nothing.
    """
    changed = bool(
        Session.objects.filter(pk=session.pk, unread_count__gt=0).update(
            unread_count=0, updated_at=timezone.now()
        )
    )
    if changed:
        session.unread_count = 0
        live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
    return changed
