"""The inbox list: its views, filters and sorts, the count of each view and one page of rows.

The inbox list needs three queries whatever the number of sessions: the counts of every view
(one aggregate with conditional counts), the page of rows (everything a row shows is joined
or annotated), and the labels of that page (one prefetch).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    ExpressionWrapper,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils import timezone

from accounts.models import User
from inbox.models import Label, Message, Session
from inbox.selectors.search import sessions_matching_q
from inbox.selectors.sessions import sessions_for_list, sessions_with_failed_send
from inbox.selectors.visibility import sessions_visible_to, user_team_ids
from integrations.models import Channel
from integrations.registry import messaging_windows


def _unanswered() -> Q:
    return Q(
        status__in=[Session.Status.OPEN, Session.Status.PENDING],
        last_message__direction=Message.Direction.INBOUND,
    )


def sessions_waiting_first(sessions: QuerySet[Session]) -> QuerySet[Session]:
    """Order unanswered sessions first, longest waiting first, then the rest by activity."""
    waiting_since = Case(When(_unanswered(), then=F("last_inbound_at")), default=Value(None))
    return sessions.annotate(waiting_since=waiting_since).order_by(
        F("waiting_since").asc(nulls_last=True), "-last_activity_at", "-id"
    )


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

# Every order the list knows: the pages offer `SORTS`; the API's `ordering` also names this one.
LIST_SORTS: dict[str, str] = {**SORTS, "oldest": "Oldest activity first"}


@dataclass(frozen=True)
class SessionListFilters:
    """What the inbox list (a page or the API) is narrowed to and how it is ordered.

    `statuses` holds keys of `STATUS_FILTERS` ("active" and "any" included), the sessions
    having any of them; `assignee` is a user id and `unassigned` the sessions without one
    (beside the `view`, which the pages count tab by tab); `unanswered` None: either way.
    """

    view: str = "all"
    statuses: tuple[str, ...] = ("active",)
    channel: int | None = None
    medium: str = ""
    team: int | None = None
    label: int | None = None
    assignee: int | None = None
    unassigned: bool = False
    unanswered: bool | None = None
    q: str = ""
    sort: str = "activity"

    @property
    def status(self) -> str:
        """Return the one status filter (as the pages' menu shows it), or "" for several."""
        return self.statuses[0] if len(self.statuses) == 1 else ""


def _status_q(statuses: tuple[str, ...]) -> Q:
    if not statuses or "any" in statuses:
        return Q()
    wanted: list[str] = []
    for status in statuses:
        if status == "active":
            wanted += [Session.Status.OPEN, Session.Status.PENDING]
        elif status in Session.Status.values:
            wanted.append(status)
    if not wanted:
        return Q()
    if len(set(wanted)) == 1:
        return Q(status=wanted[0])
    return Q(status__in=sorted(set(wanted)))


def session_filters_q(filters: SessionListFilters, *, many_match: bool = False) -> Q:
    """Return every list filter except the view (status, channel, medium, team, label,
    assignee, text) as one condition on the session row, without joins (`unanswered` apart,
    which reads the last message).

    `many_match` says that the text matches many sessions (see `session_list_page`).
    """
    condition = _status_q(filters.statuses)
    if filters.channel is not None:
        condition &= Q(channel_id=filters.channel)
    if filters.medium:
        condition &= Q(channel_id__in=Channel.objects.filter(medium=filters.medium).values("pk"))
    if filters.team is not None:
        condition &= Q(team_id=filters.team)
    if filters.label is not None:
        labelled = Session.labels.through.objects.filter(label_id=filters.label)
        condition &= Q(pk__in=labelled.values("session_id"))
    if filters.assignee is not None:
        condition &= Q(assignee_id=filters.assignee)
    if filters.unassigned:
        condition &= Q(assignee__isnull=True)
    if filters.unanswered is not None:
        condition &= _unanswered() if filters.unanswered else ~_unanswered()
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
        return Q(team_id__in=user_team_ids(user))
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
    sessions, as `contact_last_inbound_at`) is younger than the window of the medium on the
    session's platform. Sessions whose
    window is closed, or whose medium has none, follow by last activity.
    """
    now = now or timezone.now()
    whens = []
    for kind, medium, hours in messaging_windows():
        window = timedelta(hours=hours)
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
        whens.append(When(account__kind=kind, channel__medium=medium, then=closes_at))
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
    if sort == "oldest":
        return sessions.order_by("last_activity_at", "id")
    return sessions.order_by("-last_activity_at", "-id")


def sessions_listed(
    sessions: QuerySet[Session], filters: SessionListFilters, user: User
) -> QuerySet[Session]:
    """Narrow `sessions` to the view and every filter, in the filters' order (the API's list;
    the pages page through `session_list_page`, which applies the same conditions).
    """
    condition = session_filters_q(filters) & _view_q(filters.view, user)
    return _sessions_sorted(sessions.filter(condition), filters.sort)


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
        condition |= Q(pk=keep) & _status_q(filters.statuses)
    sessions = sessions_visible_to(user).filter(condition)
    page = _sessions_sorted(sessions, filters.sort).values("pk")[offset : offset + limit]
    # The page's ids are visible sessions already; filtering again would only add a join.
    rows = sessions_with_failed_send(sessions_for_list(Session.objects.filter(pk__in=page)))
    labels = Prefetch("labels", queryset=Label.objects.order_by("name"))
    return list(_sessions_sorted(rows, filters.sort).prefetch_related(labels))
