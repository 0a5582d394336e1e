"""Session actions from the conversation header: assign, route, resolve, close, reopen, labels,
and the contact's language.

Each checks visibility first (404), calls a service, and answers with a flash line (htmx, which
then refreshes the thread and the list) or a redirect back to the session (without JavaScript).
Route, resolve, close and language go to the platform from a worker; the page shows them as
pending until the platform accepted, then as a timeline line.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.views.decorators.http import require_POST

from accounts.models import Team, User
from inbox.api.permissions import assignment_refusal
from inbox.models import Label, SessionAction
from inbox.request_checks import id_from
from inbox.selectors.visibility import sessions_visible_to
from inbox.services.labels import session_label_set
from inbox.services.refusals import SendRefused
from inbox.services.session_actions import session_action_request, session_assign
from inbox.services.sessions_local import (
    session_reopen,
    session_resolve_here,
    sessions_kept_here,
)
from inbox.views.common import HtmxHttpRequest, flash, request_user, session_for_action

_PLATFORM_PENDING = "waiting for the platform to confirm"


@login_required
@require_POST
def session_assign_view(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Assign the session to me, to an agent, or to a team (or unassign it)."""
    user = request_user(request)
    session = session_for_action(request, session_id)
    choice = request.POST.get("assignee", "keep")
    if choice == "me":
        assignee: User | None = user
    elif choice in ("none", ""):
        assignee = None
    elif choice == "keep":
        assignee = session.assignee
    else:
        assignee = User.objects.filter(pk=id_from(choice) or 0).first()
        if assignee is None:
            return flash(request, session, "No such agent.", level=messages.ERROR, status=422)
    team_value = request.POST.get("team", "")
    team: Team | None = None
    if team_value.strip():
        team = Team.objects.filter(pk=id_from(team_value) or 0).first()
        if team is None:
            return flash(request, session, "No such team.", level=messages.ERROR, status=422)
    reason = assignment_refusal(user, session, assignee=assignee, team=team)
    if reason:
        return flash(request, session, reason, level=messages.ERROR, status=403)
    if assignee is not None and not sessions_visible_to(assignee).filter(pk=session.pk).exists():
        return flash(
            request,
            session,
            f"{assignee} does not serve this channel, so they could not see the session.",
            level=messages.ERROR,
            status=422,
        )
    session_assign(session, assignee=assignee, team=team, by=user)
    who = "you" if assignee == user else (str(assignee) if assignee else "nobody")
    text = f"Assigned to {who}" + (f", team {team}" if team else "") + "."
    return flash(request, session, text)


def _request(
    request: HtmxHttpRequest, session_id: int, kind: str, params: dict[str, object]
) -> HttpResponse:
    session = session_for_action(request, session_id)
    try:
        session_action_request(session, kind, params, by=request_user(request))
    except SendRefused as exc:
        return flash(request, session, exc.reason, level=messages.ERROR, status=422)
    label = dict(SessionAction.Kind.choices)[kind]
    return flash(request, session, f"{label} requested; {_PLATFORM_PENDING}.")


@login_required
@require_POST
def session_route_view(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Route the session to a platform queue, optionally with skills, an agent and a team."""
    params: dict[str, object] = {
        "queue": request.POST.get("queue", ""),
        "skills": request.POST.get("skills", ""),
        "agent": request.POST.get("agent", ""),
        "team": request.POST.get("team", ""),
    }
    return _request(request, session_id, SessionAction.Kind.ROUTE, params)


@login_required
@require_POST
def session_resolve_view(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Resolve the session at the platform, or here where the platform keeps no sessions."""
    session = session_for_action(request, session_id)
    if not sessions_kept_here(session):
        return _request(request, session_id, SessionAction.Kind.RESOLVE, {})
    try:
        session_resolve_here(session, by=request_user(request))
    except SendRefused as exc:
        return flash(request, session, exc.reason, level=messages.ERROR, status=422)
    return flash(request, session, "Resolved.")


@login_required
@require_POST
def session_close_view(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Close the session at the platform (the customer's next message opens a new one)."""
    return _request(request, session_id, SessionAction.Kind.CLOSE, {})


@login_required
@require_POST
def contact_language_view(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Set the contact's language at the platform."""
    return _request(
        request, session_id, SessionAction.Kind.LANGUAGE, {"lang": request.POST.get("lang", "")}
    )


@login_required
@require_POST
def session_reopen_view(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Reopen a resolved or closed session (here only: the platform has no reopen)."""
    session = session_for_action(request, session_id)
    try:
        session_reopen(session, by=request_user(request))
    except SendRefused as exc:
        return flash(request, session, exc.reason, level=messages.ERROR, status=422)
    return flash(request, session, "Reopened.")


@login_required
@require_POST
def session_labels_view(request: HtmxHttpRequest, session_id: int) -> HttpResponse:
    """Set the session's labels to those ticked."""
    session = session_for_action(request, session_id)
    ids = [i for i in map(id_from, request.POST.getlist("label")) if i is not None]
    labels = list(Label.objects.filter(pk__in=ids))
    changed = session_label_set(session, labels, by=request_user(request))
    return flash(request, session, "Labels saved." if changed else "Labels unchanged.")
