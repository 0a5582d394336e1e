"""Who sees what: the channels, sessions, messages, actions and templates a user may see.

Superusers, staff and supervisors see every session; an agent sees the sessions of the
channels their teams serve. Everything here filters with `channel_id IN (subquery)` rather
than a join through the teams, so a channel served by two of an agent's teams does not
duplicate rows. A session outside a user's reach is answered 404 wherever it is asked for.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import AgentProfile, Team, User
from inbox.models import MediaFile, Message, Session, SessionAction
from integrations.models import Channel, Template


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


def media_files_visible_to(user: User) -> QuerySet[MediaFile]:
    """Return the media files of the sessions a user may see (others: 404, also by id)."""
    files = MediaFile.objects.all()
    if user_sees_everything(user):
        return files
    return files.filter(channel_id__in=_served_channel_ids(user))


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


def user_team_ids(user: User) -> QuerySet[Any]:
    """Return (as a subquery) the ids of the teams a user belongs to."""
    return Team.members.through.objects.filter(user_id=user.pk).values("team_id")
