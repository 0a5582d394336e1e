"""Sessions with what a list row, the conversation pane or the API shows of them."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Prefetch, QuerySet, Subquery

from accounts.models import User
from inbox.models import ContactIdentity, Label, Message, Session, SessionAction, TimelineEntry
from inbox.selectors.visibility import sessions_visible_to
from inbox.window import Window, window_at


def sessions_with_contact_last_inbound(sessions: QuerySet[Session]) -> QuerySet[Session]:
    """Annotate each session with `contact_last_inbound_at`: the customer's last message on the
    channel across all their sessions (what the messaging window is measured from)."""
    last_inbound = (
        Session.objects.filter(channel_id=OuterRef("channel_id"), contact_id=OuterRef("contact_id"))
        .exclude(last_inbound_at__isnull=True)
        .order_by("-last_inbound_at")
        .values("last_inbound_at")[:1]
    )
    return sessions.annotate(contact_last_inbound_at=Subquery(last_inbound))


def sessions_for_list(sessions: QuerySet[Session]) -> QuerySet[Session]:
    """Return `sessions` with what a list row shows joined or annotated.

    Each row is annotated with `contact_last_inbound_at` (see
    `sessions_with_contact_last_inbound`), so `session_window_from_row` needs no query per row.
    """
    return sessions_with_contact_last_inbound(
        sessions.select_related(
            "channel", "contact", "assignee", "team", "last_message", "last_message__media_file"
        )
        # Raw platform payloads can be large and a list shows none of them.
        .defer("channel__raw", "last_message__raw")
    )


def sessions_with_failed_send(sessions: QuerySet[Session]) -> QuerySet[Session]:
    """Annotate `has_failed_send`: a message to the customer failed and nobody dealt with it,
    and `has_unconfirmed_send`: one may not have been delivered, likewise.

    Dealt with: retried (it is no longer failed), re-sent as a template, or followed by a
    message the platform accepted. One EXISTS each a row, on the (session, sent_at) index.
    """
    accepted_later = Message.objects.filter(
        session=OuterRef("session"),
        direction=Message.Direction.OUTBOUND,
        status__in=[Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ],
        sent_at__gt=OuterRef("sent_at"),
    )
    failed = Message.objects.filter(
        session=OuterRef("pk"),
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.FAILED,
        replaced_by__isnull=True,
    ).filter(~Exists(accepted_later))
    unconfirmed = Message.objects.filter(
        session=OuterRef("pk"),
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.UNCONFIRMED,
    ).filter(~Exists(accepted_later))
    return sessions.annotate(
        has_failed_send=Exists(failed), has_unconfirmed_send=Exists(unconfirmed)
    )


def session_list_for_user(user: User) -> QuerySet[Session]:
    """Return the visible sessions with what a list shows, in a constant number of queries."""
    return sessions_for_list(sessions_visible_to(user))


def session_detail_for_user(user: User) -> QuerySet[Session]:
    """Return the visible sessions with what the detail page shows besides the list fields."""
    return session_list_for_user(user).prefetch_related(
        Prefetch(
            "contact__identities",
            queryset=ContactIdentity.objects.select_related("channel").order_by("created_at", "id"),
        )
    )


def session_window_from_row(session: Session, *, now: datetime | None = None) -> Window:
    """Return the session's messaging window without a query (see `session_list_for_user`).

    Agrees with `inbox.window.session_window` when the row carries the
    `contact_last_inbound_at` annotation; without it, only this session's last message counts.
    """
    candidates = [
        at
        for at in (session.last_inbound_at, getattr(session, "contact_last_inbound_at", None))
        if at is not None
    ]
    return window_at(
        session.account_id, session.channel.medium, max(candidates) if candidates else None, now=now
    )


def session_timeline_recent(session: Session, limit: int = 50) -> list[TimelineEntry]:
    """Return the session's last `limit` timeline entries, oldest first."""
    recent = list(
        TimelineEntry.objects.filter(session=session)
        .select_related("actor")
        .order_by("-occurred_at", "-id")[:limit]
    )
    return recent[::-1]


def session_actions_unfinished(session: Session) -> QuerySet[SessionAction]:
    """Return the session's actions that are pending, running or failed, newest first."""
    return SessionAction.objects.filter(
        session=session,
        state__in=[
            SessionAction.State.PENDING,
            SessionAction.State.RUNNING,
            SessionAction.State.FAILED,
        ],
    ).order_by("-created_at", "-id")


ACCOUNT_SECRETS = (
    "account__api_key",
    "account__api_id",
    "account__verify_token",
    "account__previous_verify_token",
)


def session_get_for_page(user: User, session_id: int) -> Session | None:
    """Return a visible session with what the conversation pane shows, or None."""
    # Not the list's query: the conversation shows no last-message preview, and each join
    # left out is one relation fewer for PostgreSQL to plan on every conversation request.
    sessions = sessions_with_contact_last_inbound(
        sessions_visible_to(user).select_related(
            "channel", "contact", "assignee", "team", "identity", "account"
        )
    )
    return (
        # Pages never need the platform credentials; not loading them saves their decryption.
        sessions.defer("channel__raw", *ACCOUNT_SECRETS)
        .prefetch_related(
            Prefetch(
                "contact__identities",
                queryset=ContactIdentity.objects.select_related("channel").order_by(
                    "created_at", "id"
                ),
            ),
            Prefetch("labels", queryset=Label.objects.order_by("name")),
        )
        .filter(pk=session_id)
        .first()
    )
