"""Where a session can go: assignable teams and users, platform queues and agent skills."""

from __future__ import annotations

from django.db import connection
from django.db.models import Q, QuerySet

from accounts.models import AgentProfile, Team, User
from inbox.models import Session
from inbox.selectors.visibility import user_sees_everything


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
