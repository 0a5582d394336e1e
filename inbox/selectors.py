"""Read the inbox for pages, APIs and platform answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.lookups import IsNull
from django.utils import timezone

from accounts.models import AgentProfile, Team, User
from inbox.models import (
    CannedReply,
    ContactIdentity,
    Label,
    Message,
    Note,
    Session,
    SessionAction,
    TimelineEntry,
)
from inbox.search import contacts_matching
from inbox.window import Window, window_at
from integrations.base import ContactView, MessageType
from integrations.models import Channel, ProviderAccount, Template, TemplateApproval


def contact_view_for_identity(account: ProviderAccount, external_id: str) -> ContactView | None:
    """Return what we know of the contact behind a platform contact id (one query)."""
    identity = (
        ContactIdentity.objects.select_related("contact")
        .filter(account=account, external_id=external_id)
        .first()
    )
    if identity is None:
        return None
    contact = identity.contact
    return ContactView(
        profile_id=contact.business_profile_id or str(contact.uid),
        name=contact.name,
        email=contact.email,
        phone=contact.phone,
        language=contact.language,
    )


# --- Who sees what ----------------------------------------------------------------------------
#
# Superusers, staff and supervisors see every session; an agent sees the sessions of the
# channels their teams serve. Everything below filters with `channel_id IN (subquery)` rather
# than a join through the teams, so a channel served by two of an agent's teams does not
# duplicate rows.


def user_sees_everything(user: User) -> bool:
    """Say whether a user sees every channel and session (superuser, staff or supervisor)."""
    if user.is_superuser or user.is_staff:
        return True
    # The reverse one-to-one caches its answer (even a missing profile) on the instance.
    profile: AgentProfile | None = getattr(user, "agent_profile", None)
    return profile is not None and profile.role == AgentProfile.Role.SUPERVISOR


def _served_channel_ids(user: User) -> QuerySet[Any]:
    # Straight from the two link tables: a join through the team table would add a relation
    # to every visible-session query for the planner to order, and filter nothing.
    teams = Team.members.through.objects.filter(user_id=user.pk).values("team_id")
    return Team.channels.through.objects.filter(team_id__in=teams).values("channel_id")


def channels_visible_to(user: User) -> QuerySet[Channel]:
    """Return the channels a user may see (all, or those their teams serve)."""
    channels = Channel.objects.all()
    if user_sees_everything(user):
        return channels
    return channels.filter(pk__in=_served_channel_ids(user))


def sessions_visible_to(user: User) -> QuerySet[Session]:
    """Return the sessions a user may see and act on; anything else is answered 404."""
    sessions = Session.objects.all()
    if user_sees_everything(user):
        return sessions
    return sessions.filter(channel_id__in=_served_channel_ids(user))


def messages_visible_to(user: User) -> QuerySet[Message]:
    """Return the messages of the sessions a user may see."""
    messages = Message.objects.all()
    if user_sees_everything(user):
        return messages
    return messages.filter(session__channel_id__in=_served_channel_ids(user))


def session_actions_visible_to(user: User) -> QuerySet[SessionAction]:
    """Return the session actions of the sessions a user may see."""
    actions = SessionAction.objects.all()
    if user_sees_everything(user):
        return actions
    return actions.filter(session__channel_id__in=_served_channel_ids(user))


def templates_visible_to(user: User) -> QuerySet[Template]:
    """Return the active templates of the accounts whose channels a user may see."""
    accounts = channels_visible_to(user).values("account_id")
    return Template.objects.filter(is_active=True, account_id__in=accounts)


# --- Session lists ----------------------------------------------------------------------------


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
        sessions.select_related("channel", "contact", "assignee", "team", "last_message")
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


def _unanswered() -> Q:
    return Q(
        status__in=[Session.Status.OPEN, Session.Status.PENDING],
        last_message__direction=Message.Direction.INBOUND,
    )


def sessions_unanswered(sessions: QuerySet[Session], unanswered: bool) -> QuerySet[Session]:
    """Return the open sessions whose last message is the customer's (or all the others)."""
    return sessions.filter(_unanswered()) if unanswered else sessions.exclude(_unanswered())


def sessions_waiting_first(sessions: QuerySet[Session]) -> QuerySet[Session]:
    """Order unanswered sessions first, longest waiting first, then the rest by activity."""
    waiting_since = Case(When(_unanswered(), then=F("last_inbound_at")), default=Value(None))
    return sessions.annotate(waiting_since=waiting_since).order_by(
        F("waiting_since").asc(nulls_last=True), "-last_activity_at", "-id"
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
    return window_at(session.channel.medium, max(candidates) if candidates else None, now=now)


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


# --- Messages ---------------------------------------------------------------------------------


def message_list_for_session(session: Session) -> QuerySet[Message]:
    """Return a session's messages in conversation order, with what a list shows."""
    return (
        Message.objects.filter(session=session)
        .select_related("author", "template")
        .prefetch_related("copies")
        .order_by("sent_at", "id")
    )


_PREVIEW_LABELS = {
    MessageType.IMAGE: "Photo",
    MessageType.VIDEO: "Video",
    MessageType.AUDIO: "Audio",
    MessageType.VOICE: "Voice message",
    MessageType.DOCUMENT: "Document",
    MessageType.LOCATION: "Location",
    MessageType.CONTACT: "Contact",
    MessageType.TEMPLATE: "Template",
}


def message_preview_text(message: Message, length: int = 120) -> str:
    """Return one short line that stands for a message in a list."""
    text = message.body or message.caption or message.location_name or message.media_filename
    if not text:
        try:
            text = _PREVIEW_LABELS.get(MessageType(message.type), "")
        except ValueError:
            text = ""
        text = f"[{text or message.type}]"
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def template_list_for_user(user: User) -> QuerySet[Template]:
    """Return the active templates a user may send, each with `visible_approvals` prefetched.

    `visible_approvals` holds the template's approvals on the channels the user sees.
    """
    approvals = TemplateApproval.objects.filter(
        channel_id__in=channels_visible_to(user).values("pk")
    ).order_by("channel_id")
    return (
        templates_visible_to(user)
        .prefetch_related(Prefetch("approvals", queryset=approvals, to_attr="visible_approvals"))
        .order_by("code", "lang", "id")
    )


def templates_approved_on(templates: QuerySet[Template], channel: Channel) -> QuerySet[Template]:
    """Return the templates approved for sending on `channel`."""
    approved = TemplateApproval.objects.filter(
        template_id=OuterRef("pk"), channel=channel, status__iexact=TemplateApproval.APPROVED
    )
    return templates.filter(Exists(approved))


def template_get_for_account(account_id: UUID, template_id: int) -> Template | None:
    """Return one of an account's templates by id (active or not: the send decides)."""
    return Template.objects.filter(account_id=account_id, pk=template_id).first()


# --- Agent pages ------------------------------------------------------------------------------
#
# The inbox list needs three queries whatever the number of sessions: the counts of every view
# (one aggregate with conditional counts), the page of rows (everything a row shows is joined
# or annotated), and the labels of that page (one prefetch).

INBOX_VIEWS: dict[str, str] = {
    "mine": "Mine",
    "unassigned": "Unassigned",
    "teams": "My teams",
    "all": "All",
}
STATUS_FILTERS: dict[str, str] = {
    "active": "Open & pending",
    "open": "Open",
    "pending": "Pending",
    "resolved": "Resolved",
    "closed": "Closed",
    "any": "Any status",
}
SORTS: dict[str, str] = {
    "activity": "Last activity",
    "waiting": "Longest waiting",
    "window": "Window closing soonest",
}


@dataclass(frozen=True)
class SessionListFilters:
    """What an agent narrowed the inbox list to (the view apart)."""

    view: str = "all"
    status: str = "active"
    channel: int | None = None
    medium: str = ""
    team: int | None = None
    label: int | None = None
    q: str = ""
    sort: str = "activity"


def _user_team_ids(user: User) -> QuerySet[Any]:
    return Team.members.through.objects.filter(user_id=user.pk).values("team_id")


def _status_q(status: str) -> Q:
    if status == "active":
        return Q(status__in=[Session.Status.OPEN, Session.Status.PENDING])
    if status in Session.Status.values:
        return Q(status=status)
    return Q()


def session_filters_q(filters: SessionListFilters, *, many_match: bool = False) -> Q:
    """Return every list filter except the view (status, channel, medium, team, label, text)
    as one condition on the session row, without joins.

    `many_match` says that the text matches many sessions (see `session_list_page`).
    """
    condition = _status_q(filters.status)
    if filters.channel is not None:
        condition &= Q(channel_id=filters.channel)
    if filters.medium:
        condition &= Q(channel_id__in=Channel.objects.filter(medium=filters.medium).values("pk"))
    if filters.team is not None:
        condition &= Q(team_id=filters.team)
    if filters.label is not None:
        labelled = Session.labels.through.objects.filter(label_id=filters.label)
        condition &= Q(pk__in=labelled.values("session_id"))
    if filters.q.strip():
        condition &= sessions_matching_q(filters.q, many_match=many_match)
    return condition


def sessions_filtered(
    sessions: QuerySet[Session], filters: SessionListFilters
) -> QuerySet[Session]:
    """Apply every list filter except the view (status, channel, medium, team, label, text)."""
    return sessions.filter(session_filters_q(filters))


def _view_q(view: str, user: User) -> Q:
    if view == "mine":
        return Q(assignee_id=user.pk)
    if view == "unassigned":
        return Q(assignee__isnull=True)
    if view == "teams":
        return Q(team_id__in=_user_team_ids(user))
    return Q()


def session_view_counts(user: User, filters: SessionListFilters) -> dict[str, int]:
    """Return how many sessions each view holds under the other filters, in one query."""
    sessions = sessions_filtered(sessions_visible_to(user), filters)
    counts = sessions.aggregate(
        **{
            view: Count("pk", filter=_view_q(view, user)) if view != "all" else Count("pk")
            for view in INBOX_VIEWS
        }
    )
    return {view: int(counts[view] or 0) for view in INBOX_VIEWS}


def sessions_window_closing_first(
    sessions: QuerySet[Session], *, now: datetime | None = None
) -> QuerySet[Session]:
    """Order sessions whose messaging window is open by when it closes, soonest first.

    A window is open while the customer's last message on the channel (across all their
    sessions, as `contact_last_inbound_at`) is younger than the medium's window. Sessions whose
    window is closed, or whose medium has none, follow by last activity.
    """
    now = now or timezone.now()
    whens = []
    for medium, hours in settings.MESSAGING_WINDOW_HOURS.items():
        window = timedelta(hours=float(hours))
        # Only inbound messages inside the window count, so one subquery per row both says
        # whether the window is open and when it closes (NULL: closed).
        last_inside = (
            Session.objects.filter(
                channel_id=OuterRef("channel_id"),
                contact_id=OuterRef("contact_id"),
                last_inbound_at__gt=now - window,
            )
            .order_by("-last_inbound_at")
            .values("last_inbound_at")[:1]
        )
        closes_at = ExpressionWrapper(Subquery(last_inside) + window, output_field=DateTimeField())
        whens.append(When(channel__medium=medium, then=closes_at))
    if not whens:
        return sessions.order_by("-last_activity_at", "-id")
    closes = Case(*whens, default=Value(None), output_field=DateTimeField())
    return sessions.annotate(window_closes_at=closes).order_by(
        F("window_closes_at").asc(nulls_last=True), "-last_activity_at", "-id"
    )


def _sessions_sorted(sessions: QuerySet[Session], sort: str) -> QuerySet[Session]:
    if sort == "waiting":
        return sessions_waiting_first(sessions)
    if sort == "window":
        return sessions_window_closing_first(sessions)
    return sessions.order_by("-last_activity_at", "-id")


# From this many matching sessions on, the first pages of a search (by last activity) are
# found by checking sessions in list order rather than by collecting every match first.
SEARCH_MANY_MATCH = 2000


def _search_walks(
    filters: SessionListFilters, offset: int, limit: int, matching: int | None
) -> bool:
    """Say whether a search page is cheaper found by checking sessions as the list goes.

    Walking the list by last activity checks about (offset + limit) * sessions / matches
    sessions, each by its own messages: a few hundred for the first pages of a search that
    thousands of sessions match, where collecting the matches first reads every matching
    message (a common word: a hundred thousand). The other sorts order every candidate, so
    they would check them all; few matches are cheaper collected.
    """
    return (
        bool(filters.q.strip())
        and filters.sort == "activity"
        and matching is not None
        and matching >= SEARCH_MANY_MATCH
        and offset + limit <= matching // 20
    )


def session_list_page(
    user: User,
    filters: SessionListFilters,
    *,
    offset: int = 0,
    limit: int = 50,
    keep: int | None = None,
    matching: int | None = None,
) -> list[Session]:
    """Return one page of the inbox list: rows with all they show, labels prefetched.

    `keep` is the session the agent has open: it stays in the list, in its place, even when it
    no longer matches the view or the channel, team and label filters (just assigned away),
    until they open another. It does leave a status it no longer has (resolved: out of "Open &
    pending"), and a search shows only what matches it ("Nothing matches", not the open one).

    The page's ids are chosen first, on the session table alone; only those rows are then
    joined with what they show. Joining first would join every matching session (thousands)
    before sorting away all but a page of them.

    `matching` is how many sessions the list holds, when the caller knows (the view counts):
    a search that many sessions match is then checked session by session in list order.
    """
    walk = _search_walks(filters, offset, limit, matching)
    condition = session_filters_q(filters, many_match=walk) & _view_q(filters.view, user)
    if keep is not None and condition and not filters.q.strip():
        # One condition on the row (not "in the matching set, or"): PostgreSQL can then walk
        # the sessions in list order and stop after a page. (An empty condition matches every
        # session already; `Q() | Q(pk=keep)` would match only the kept one.)
        condition |= Q(pk=keep) & _status_q(filters.status)
    sessions = sessions_visible_to(user).filter(condition)
    page = _sessions_sorted(sessions, filters.sort).values("pk")[offset : offset + limit]
    # The page's ids are visible sessions already; filtering again would only add a join.
    rows = sessions_with_failed_send(sessions_for_list(Session.objects.filter(pk__in=page)))
    labels = Prefetch("labels", queryset=Label.objects.order_by("name"))
    return list(_sessions_sorted(rows, filters.sort).prefetch_related(labels))


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


# --- The thread -------------------------------------------------------------------------------

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
        .select_related("author", "template")
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
    return f"{state}+{copies}" if copies else state


def thread_messages_changed(session: Session, shown: dict[int, str]) -> list[Message]:
    """Return the session's messages among `shown` ({id: state}) whose state differs now."""
    if not shown:
        return []
    rows = _thread_messages(session).filter(pk__in=list(shown)[:500])
    return [m for m in rows if shown.get(m.pk) != message_shown_state(m)]


# --- Around a conversation --------------------------------------------------------------------


def contact_sessions_other(user: User, session: Session, limit: int = 10) -> list[Session]:
    """Return the contact's other sessions this user may see, newest first."""
    return list(
        sessions_visible_to(user)
        .filter(contact_id=session.contact_id)
        .exclude(pk=session.pk)
        .select_related("channel")
        .order_by("-last_activity_at", "-id")[:limit]
    )


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


def contact_labels(session: Session, user: User) -> list[Label]:
    """Return the labels on the contact's sessions this user may see."""
    sessions = sessions_visible_to(user).filter(contact_id=session.contact_id)
    return list(Label.objects.filter(sessions__in=sessions).distinct().order_by("name"))


def contact_identities_visible(user: User, session: Session) -> list[ContactIdentity]:
    """Return the contact's identities on channels this user may see (prefetched on the row)."""
    identities = list(session.contact.identities.all())
    if user_sees_everything(user):
        return identities
    visible = set(channels_visible_to(user).values_list("pk", flat=True))
    return [i for i in identities if i.channel_id in visible]


def labels_all() -> QuerySet[Label]:
    """Return every label, by name."""
    return Label.objects.order_by("name")


def canned_replies_for_user(user: User) -> QuerySet[CannedReply]:
    """Return the canned replies a user may insert: everyone's and their teams'."""
    replies = CannedReply.objects.select_related("team").order_by("shortcut")
    if user_sees_everything(user):
        return replies
    return replies.filter(Q(team__isnull=True) | Q(team_id__in=_user_team_ids(user)))


def teams_assignable_by(user: User) -> QuerySet[Team]:
    """Return the teams a user may put a session in (supervisors: all; agents: their own)."""
    if user_sees_everything(user):
        return Team.objects.order_by("name")
    return Team.objects.filter(members=user).order_by("name")


def users_serving_session(session: Session) -> QuerySet[User]:
    """Return the active users who can see a session (and so can be assigned to it)."""
    return (
        User.objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(is_staff=True)
            | Q(agent_profile__role=AgentProfile.Role.SUPERVISOR)
            | Q(
                pk__in=Team.members.through.objects.filter(
                    team__channels=session.channel_id
                ).values("user_id")
            )
        )
        .order_by("display_name", "first_name", "username")
    )


def platform_queues_known(limit: int = 50) -> list[str]:
    """Return the platform queues sessions have been in (suggestions for routing), by name.

    A recursive query jumps from one queue name to the next through the `session_queue`
    index, so it reads one index entry per queue rather than every session.
    """
    table = Session._meta.db_table
    sql = f"""
        WITH RECURSIVE queues(name) AS (
            SELECT MIN(platform_queue) FROM {table} WHERE platform_queue <> ''
            UNION ALL
            SELECT (
                SELECT MIN(platform_queue) FROM {table}
                WHERE platform_queue <> '' AND platform_queue > queues.name
            )
            FROM queues WHERE queues.name IS NOT NULL
        )
        SELECT name FROM queues WHERE name IS NOT NULL LIMIT %s
    """  # noqa: S608 - the table name is ours
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]


def skills_known() -> list[str]:
    """Return the skills agents have (suggestions for routing)."""
    skills: set[str] = set()
    for values in AgentProfile.objects.exclude(skills=[]).values_list("skills", flat=True):
        if isinstance(values, list):
            skills.update(str(v) for v in values if v)
    return sorted(skills)


def templates_for_session(user: User, session: Session) -> list[Template]:
    """Return the templates the user may send in this session (approved on its channel)."""
    return list(
        templates_approved_on(template_list_for_user(user), session.channel).order_by(
            "lang", "code", "id"
        )
    )


# --- Changes, for pages that poll -------------------------------------------------------------


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
