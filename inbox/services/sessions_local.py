"""Session changes that stay inside Switchboard: reopening, marking read, and resolving where
the platform keeps no sessions.

A platform with sessions (`Capability.SESSIONS`, XMS) has no call to reopen one (a resolved
session continues by itself when the customer writes again), so reopening only changes our
copy. That works for a resolved session only: a closed one is over at the platform (XMS spec
§6.4, §6.6), and the customer's next message starts a new session, so reopening our copy would
show an open session nothing reaches. A platform without sessions has nothing to end: our copy
is the conversation, which agents resolve, close and reopen here.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from inbox import live
from inbox.models import Session, TimelineEntry
from inbox.services.refusals import SendRefused
from inbox.services.timeline import timeline_add
from integrations.base import Capability
from integrations.registry import get_provider
from integrations.services.accounts import account_kind


def session_reopen(session: Session, *, by: Any = None) -> Session:
    """Reopen a resolved session here (no platform call exists for it).

    Raises `SendRefused` when it cannot be reopened (`session_reopen_refusal`). Writes
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


def sessions_kept_here(session: Session) -> bool:
    """Say whether the session's platform keeps no sessions, so that ours is the only one."""
    # (The account row when it is loaded already; else the process's map of kinds.)
    loaded = Session.account.is_cached(session)
    kind = session.account.kind if loaded else account_kind(session.account_id)
    return not get_provider(kind).can(Capability.SESSIONS)


def session_resolve_here(session: Session, *, by: Any = None) -> Session:
    """Resolve a session of a platform without sessions: ours is the conversation.

    Raises `SendRefused` when it is resolved or closed already. Writes "Resolved by …" on the
    timeline and publishes a live event; the customer's next message reopens it.
    """
    with transaction.atomic():
        locked = Session.objects.select_for_update().get(pk=session.pk)
        if locked.status in (Session.Status.RESOLVED, Session.Status.CLOSED):
            raise SendRefused(locked.status, f"The session is already {locked.status}.")
        now = timezone.now()
        locked.status, locked.resolved_at = Session.Status.RESOLVED, now
        locked.save(update_fields=["status", "resolved_at", "updated_at"])
        timeline_add(
            locked.account,
            session=locked,
            kind=TimelineEntry.Kind.RESOLVED,
            summary="Resolved" + (f" by {by}" if by else ""),
            occurred_at=now,
        )
        live.publish(live.SESSION_UPDATED, session_id=locked.pk, channel_id=locked.channel_id)
    session.status, session.resolved_at = locked.status, locked.resolved_at
    return session


def session_reopen_refusal(session: Session) -> str:
    """Say why this session cannot be reopened, or "" when it can (it is resolved, or closed
    here on a platform without sessions)."""
    if session.status == Session.Status.RESOLVED:
        return ""
    if session.status == Session.Status.CLOSED and sessions_kept_here(session):
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
