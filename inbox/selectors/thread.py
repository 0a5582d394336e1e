"""The thread of a conversation: messages, notes and timeline entries in order, paged.

Also what changed since a page was shown, and the sessions before and after in the thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from inbox.models import Message, Note, Session, TimelineEntry
from inbox.selectors.messages import message_media

THREAD_PAGE_SIZE = 40


@dataclass(frozen=True)
class ThreadItem:
    """One line of a thread: a message, a private note or a timeline entry."""

    kind: str  # "message", "note" or "event"
    at: datetime
    obj: Any

    @property
    def sort_key(self) -> tuple[datetime, int, int]:
        return (self.at, _KIND_ORDER[self.kind], self.obj.pk)


_KIND_ORDER = {"event": 0, "message": 1, "note": 2}


@dataclass(frozen=True)
class ThreadPage:
    """A page of a thread, oldest first; `older_than` is the message to page back from."""

    items: list[ThreadItem]
    older_than: int | None


def _thread_messages(session: Session) -> QuerySet[Message]:
    return (
        Message.objects.filter(session=session)
        .select_related("author", "template", "media_file")
        .prefetch_related("replaced_by", "copies")
        .defer("raw")
    )


def _notes_and_events(
    session: Session, *, since: datetime | None, until: datetime | None
) -> list[ThreadItem]:
    notes = Note.objects.filter(session=session).select_related("author")
    events = TimelineEntry.objects.filter(session=session).select_related("actor")
    if since is not None:
        notes = notes.filter(created_at__gte=since)
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        notes = notes.filter(created_at__lt=until)
        events = events.filter(occurred_at__lt=until)
    return [ThreadItem("note", n.created_at, n) for n in notes] + [
        ThreadItem("event", e.occurred_at, e) for e in events
    ]


def thread_page(
    session: Session, *, before: Message | None = None, limit: int = THREAD_PAGE_SIZE
) -> ThreadPage:
    """Return the latest `limit` messages (before `before`), with the notes and timeline
    entries of the same stretch of time, in conversation order.

    Keyset pagination on (sent_at, id): pages neither skip nor repeat messages when new ones
    arrive. Notes and timeline entries belong to the page whose time range holds them.
    """
    messages = _thread_messages(session)
    if before is not None:
        messages = messages.filter(
            Q(sent_at__lt=before.sent_at) | Q(sent_at=before.sent_at, id__lt=before.pk)
        )
    rows = list(messages.order_by("-sent_at", "-id")[: limit + 1])
    has_older = len(rows) > limit
    rows = rows[:limit]
    oldest = rows[-1] if rows else None
    since = oldest.sent_at if (has_older and oldest is not None) else None
    until = before.sent_at if before is not None else None
    items = [ThreadItem("message", m.sent_at, m) for m in rows]
    items += _notes_and_events(session, since=since, until=until)
    items.sort(key=lambda item: item.sort_key)
    return ThreadPage(items=items, older_than=oldest.pk if has_older and oldest else None)


def session_before(session: Session) -> Session | None:
    """Return the session this customer had on this channel before this one, if any.

    A thread is the customer on a channel; its sessions follow each other (spec §6.1), and the
    thread shows the earlier ones above a separator as the agent scrolls up. (Same channel, so
    whoever sees this session sees that one.)
    """
    return (
        Session.objects.filter(channel_id=session.channel_id, contact_id=session.contact_id)
        .filter(
            Q(opened_at__lt=session.opened_at) | Q(opened_at=session.opened_at, pk__lt=session.pk)
        )
        .order_by("-opened_at", "-id")
        .first()
    )


def session_in_thread(session: Session, session_id: int) -> Session | None:
    """Return an earlier session of the same thread (customer and channel) by id, or None."""
    return (
        Session.objects.filter(
            pk=session_id, channel_id=session.channel_id, contact_id=session.contact_id
        )
        .filter(
            Q(opened_at__lt=session.opened_at) | Q(opened_at=session.opened_at, pk__lt=session.pk)
        )
        .first()
    )


def thread_items_after(
    session: Session, *, message_id: int, note_id: int, event_id: int
) -> list[ThreadItem]:
    """Return the thread items newer (by id) than the ones a page already shows."""
    messages = _thread_messages(session).filter(pk__gt=message_id).order_by("id")[:200]
    notes = Note.objects.filter(session=session, pk__gt=note_id).select_related("author")
    events = TimelineEntry.objects.filter(session=session, pk__gt=event_id).select_related("actor")
    items = [ThreadItem("message", m.sent_at, m) for m in messages]
    items += [ThreadItem("note", n.created_at, n) for n in notes[:200]]
    items += [ThreadItem("event", e.occurred_at, e) for e in events[:200]]
    items.sort(key=lambda item: item.sort_key)
    return items


def message_shown_state(message: Message) -> str:
    """Return the delivery state a thread shows: the status, with the attempt while a send
    is being retried ("queued-2"), since each attempt changes what the thread says."""
    retrying = message.status in (Message.Status.QUEUED, Message.Status.SENDING)
    state = (
        f"{message.status}-{message.attempts}" if retrying and message.attempts else message.status
    )
    # A copy the platform accepted again changes what the thread says ("delivered twice").
    copies = len(message.copies.all()) if message.direction == Message.Direction.OUTBOUND else 0
    if copies:
        state = f"{state}+{copies}"
    # So does a file that arrived, failed or was deleted, and each new download attempt.
    media = message_media(message)
    if media is not None:
        state = f"{state}~{media.state}-{media.attempts}"
    return state


def thread_messages_changed(session: Session, shown: dict[int, str]) -> list[Message]:
    """Return the session's messages among `shown` ({id: state}) whose state differs now."""
    if not shown:
        return []
    rows = _thread_messages(session).filter(pk__in=list(shown)[:500])
    return [m for m in rows if shown.get(m.pk) != message_shown_state(m)]


def session_newer(session: Session) -> Session | None:
    """Return the session that followed this one for its customer on its channel, if any.

    (Same channel, so whoever sees this session sees that one.)
    """
    return (
        Session.objects.filter(channel_id=session.channel_id, contact_id=session.contact_id)
        .filter(
            Q(opened_at__gt=session.opened_at) | Q(opened_at=session.opened_at, pk__gt=session.pk)
        )
        .order_by("opened_at", "id")
        .first()
    )
