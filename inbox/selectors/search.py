"""Text search over sessions: the contact's name or phone, or any message body."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.db.models.lookups import IsNull

from inbox.models import Message, Session
from inbox.search import contacts_matching


def sessions_matching_ids(text: str) -> QuerySet[Any]:
    """Return (as a subquery) the ids of the sessions whose contact name/phone or any message
    body contains `text` (a name accents aside, a phone however it is typed: `inbox.search`).

    The matching sessions are found from the matches (contacts and messages through their
    trigram indexes, migration 0006), so the cost follows the number of matches rather than the
    number of sessions; one subquery, without OR, lets PostgreSQL join on it.
    """
    text = text.strip()
    contacts = contacts_matching(text)
    # No ORDER BY in the parts of a UNION (the models' default orderings would add one).
    by_contact = (
        Session.objects.filter(contact_id__in=contacts.values("pk")).order_by().values("pk")
    )
    by_message = Message.objects.filter(body__icontains=text).order_by().values("session_id")
    return by_contact.union(by_message)


def sessions_matching_q(text: str, *, many_match: bool = False) -> Q:
    """Return the condition "the contact's name/phone or a message body contains `text`".

    By default the matches are collected first (`sessions_matching_ids`): the cost follows the
    number of matching messages. When the caller knows that many sessions match, checking each
    session as a list walks past it finds a page after a few dozen sessions instead.
    """
    text = text.strip()
    if not many_match:
        return Q(pk__in=sessions_matching_ids(text))
    contacts = contacts_matching(text)
    first_match = Message.objects.filter(session_id=OuterRef("pk"), body__icontains=text)
    # A scalar subquery, not EXISTS: PostgreSQL would turn EXISTS into a hash of every matching
    # message (its estimate of a LIKE's matches is far too low), which is the cost avoided here.
    has_match = IsNull(Subquery(first_match.order_by().values("pk")[:1]), False)
    return Q(contact_id__in=contacts.values("pk")) | Q(has_match)


def sessions_matching(sessions: QuerySet[Session], text: str) -> QuerySet[Session]:
    """Return the sessions whose contact name/phone or any message body contains `text`."""
    if not text.strip():
        return sessions
    return sessions.filter(pk__in=sessions_matching_ids(text))
