"""Read the inbox for pages, APIs and platform answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import Case, Exists, F, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When

from accounts.models import AgentProfile, Team, User
from inbox.models import ContactIdentity, Message, Session, SessionAction, TimelineEntry
from inbox.services.outbound import Window, window_at
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
    return Team.channels.through.objects.filter(team__members=user).values("channel_id")


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


def session_list_for_user(user: User) -> QuerySet[Session]:
    """Return the visible sessions with what a list shows, in a constant number of queries.

    Each row is annotated with `contact_last_inbound_at`, the customer's last message on the
    channel across all their sessions, so `session_window_from_row` needs no query per row.
    """
    last_inbound = (
        Session.objects.filter(channel_id=OuterRef("channel_id"), contact_id=OuterRef("contact_id"))
        .exclude(last_inbound_at__isnull=True)
        .order_by("-last_inbound_at")
        .values("last_inbound_at")[:1]
    )
    return (
        sessions_visible_to(user)
        .select_related("channel", "contact", "assignee", "team", "last_message")
        # Raw platform payloads can be large and a list shows none of them.
        .defer("channel__raw", "last_message__raw")
        .annotate(contact_last_inbound_at=Subquery(last_inbound))
    )


def session_detail_for_user(user: User) -> QuerySet[Session]:
    """Return the visible sessions with what the detail page shows besides the list fields."""
    return session_list_for_user(user).prefetch_related(
        Prefetch(
            "contact__identities",
            queryset=ContactIdentity.objects.select_related("channel").order_by("created_at", "id"),
        )
    )


def sessions_matching(sessions: QuerySet[Session], text: str) -> QuerySet[Session]:
    """Return the sessions whose contact name/phone or any message body contains `text`."""
    text = text.strip()
    if not text:
        return sessions
    in_messages = Message.objects.filter(session_id=OuterRef("pk"), body__icontains=text)
    return sessions.filter(
        Q(contact__name__icontains=text) | Q(contact__phone__icontains=text) | Exists(in_messages)
    )


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

    Agrees with `inbox.services.outbound.session_window` when the row carries the
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
