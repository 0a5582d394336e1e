"""Stamps that change whenever what a page shows changes, for the pages that poll."""

from __future__ import annotations

from django.db.models import Count, Max, Q, Sum

from accounts.models import User
from inbox.models import Message, Note, Session, TimelineEntry
from inbox.selectors.visibility import sessions_visible_to


def session_list_stamp(user: User) -> str:
    """Return a short string that changes whenever anything a list row shows changes."""
    row = sessions_visible_to(user).aggregate(
        n=Count("pk"),
        updated=Max("updated_at"),
        activity=Max("last_activity_at"),
        unread=Sum("unread_count"),
        last=Max("last_message_id"),
    )
    return "|".join(str(row[k]) for k in ("n", "updated", "activity", "unread", "last"))


def session_thread_stamp(session: Session) -> str:
    """Return a short string that changes whenever anything the thread shows changes."""
    statuses = [s for s, _ in Message.Status.choices]
    row = Message.objects.filter(session=session).aggregate(
        last=Max("pk"),
        **{s: Count("pk", filter=Q(status=s)) for s in statuses},
    )
    notes = Note.objects.filter(session=session).aggregate(last=Max("pk"))["last"]
    events = TimelineEntry.objects.filter(session=session).aggregate(last=Max("pk"))["last"]
    head = Session.objects.filter(pk=session.pk).values_list("updated_at", "unread_count").first()
    parts = [row["last"], *(row[s] for s in statuses), notes, events, head]
    return "|".join(str(p) for p in parts)
