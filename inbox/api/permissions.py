"""Who may do what through the API, beyond seeing a session (see `inbox.selectors`).

Seeing is decided by the visibility selectors: a session, message or action outside a user's
reach is not found (404), never forbidden, so ids cannot be probed. What a user may do with a
session they see is decided here and refused with 403 and a reason.
"""

from __future__ import annotations

from rest_framework import exceptions, status
from rest_framework.request import Request

from accounts.models import Team, User
from inbox.models import Session
from inbox.selectors.visibility import user_sees_everything


class Forbidden(exceptions.APIException):
    """A refusal that says why, as {"error": "forbidden", "detail": <reason>}."""

    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "You may not do this."
    default_code = "forbidden"


def request_user(request: Request) -> User:
    """Return the signed-in user of a request (authentication has already required one)."""
    user = request.user
    if not isinstance(user, User):
        raise exceptions.NotAuthenticated()
    return user


def assignment_refusal(
    user: User, session: Session, *, assignee: User | None, team: Team | None
) -> str:
    """Return why `user` may not make this assignment, or "" when they may.

    Supervisors and staff assign anyone. An agent may take a session or give up their own, and
    may put it in a team only if they are a member of that team.
    """
    if user_sees_everything(user):
        return ""
    if assignee is not None and assignee.pk != user.pk:
        return "Only a supervisor can assign a session to someone else."
    if assignee is None and session.assignee_id not in (None, user.pk):
        return "Only a supervisor can unassign a session assigned to someone else."
    if (
        team is not None
        and team.pk != session.team_id
        and not team.members.filter(pk=user.pk).exists()
    ):
        return "Only a supervisor can move a session to a team you are not a member of."
    return ""
