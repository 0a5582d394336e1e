"""What every agent page shares: the signed-in user, visible sessions, list filters, answers.

A session outside the user's reach is a 404 wherever it is asked for (page, partial, action),
so ids cannot be probed. Pages work without JavaScript; htmx requests get partials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django_htmx.http import trigger_client_event
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from inbox.filters import SessionListFilterSet, filters_query_pairs
from inbox.models import Session
from inbox.request_checks import id_from
from inbox.selectors.lists import SessionListFilters
from inbox.selectors.sessions import ACCOUNT_SECRETS, session_get_for_page
from inbox.selectors.visibility import sessions_visible_to
from inbox.window import Window

PAGE_SIZE = 50
SOON = timedelta(hours=2)


def request_user(request: HttpRequest) -> User:
    """Return the signed-in user (the views require one)."""
    user = request.user
    if not isinstance(user, User):
        raise Http404
    return user


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware (the agent pages' views get one)."""

    htmx: HtmxDetails


def wants_partial(request: HtmxHttpRequest) -> bool:
    """Say whether htmx made the request (and not a history restore, which wants a page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def vary_on_htmx(response: HttpResponse) -> HttpResponse:
    """Keep caches from serving a partial for a page or the other way round."""
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


def session_for_page(request: HttpRequest, session_id: int) -> Session:
    """Return a visible session with what the conversation shows, or raise 404."""
    session = session_get_for_page(request_user(request), session_id)
    if session is None:
        raise Http404("No such session.")
    return session


def session_for_action(request: HttpRequest, session_id: int) -> Session:
    """Return a visible session for a service call, or raise 404."""
    session = (
        sessions_visible_to(request_user(request))
        .select_related("account", "channel", "contact", "identity")
        .defer(*ACCOUNT_SECRETS)
        .filter(pk=session_id)
        .first()
    )
    if session is None:
        raise Http404("No such session.")
    return session


# --- The list's filters, from and to the query string -----------------------------------------


def filters_from(request: HttpRequest) -> SessionListFilters:
    """Read the list filters from the query string; unknown values fall back to defaults."""
    return SessionListFilterSet.lenient(request.GET, request_user(request))


def filters_query(filters: SessionListFilters, **changes: Any) -> str:
    """Return the query string for these filters (defaults left out), with `changes` applied."""
    page = changes.pop("page", None)
    pairs = filters_query_pairs(replace(filters, **changes))
    if page and page > 1:
        pairs.append(("page", page))
    return urlencode(pairs)


def page_number(request: HttpRequest) -> int:
    """Return the list page asked for (1 when missing or wrong)."""
    return id_from(request.GET.get("page")) or 1


def page_count(total: int) -> int:
    """Return how many list pages `total` sessions fill."""
    return max(1, math.ceil(total / PAGE_SIZE))


def session_url(session_id: int, query: str = "") -> str:
    """Return a session's page URL, keeping the list's filters."""
    url = reverse("inbox:session", args=[session_id])
    return f"{url}?{query}" if query else url


def back_to_session(request: HttpRequest, session: Session) -> HttpResponseRedirect:
    """Redirect to the session's page with the list's filters kept (post/redirect/get)."""
    return HttpResponseRedirect(session_url(session.pk, filters_query(filters_from(request))))


# --- The 24-hour window, as pages show it -----------------------------------------------------


@dataclass(frozen=True)
class WindowView:
    """The messaging window as a badge: none, open, soon (under 2 h) or closed."""

    state: str
    closes_at: datetime | None = None
    text: str = ""
    short: str = ""
    reason: str = ""

    @property
    def is_closed(self) -> bool:
        return self.state == "closed"


def duration_text(delta: timedelta) -> str:
    """Return "3 h 12 min", "45 min" or "under a minute"."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def window_view(window: Window, *, now: datetime | None = None) -> WindowView:
    """Return how a page shows a session's window."""
    if not window.applies:
        return WindowView("none")
    if not window.is_open or window.closes_at is None:
        return WindowView(
            "closed", text="Template only", short="Template only", reason=window.reason
        )
    left = window.closes_at - (now or timezone.now())
    state = "soon" if left < SOON else "open"
    return WindowView(
        state,
        closes_at=window.closes_at,
        text=f"Window closes in {duration_text(left)}",
        short=f"{duration_text(left)} left",
    )


# --- Answers ----------------------------------------------------------------------------------


def flash(
    request: HtmxHttpRequest,
    session: Session,
    text: str,
    *,
    level: int = messages.SUCCESS,
    status: int = 200,
) -> HttpResponse:
    """Answer an action: a flash line for htmx (and refresh events), else a redirect."""
    if wants_partial(request):
        response = render(
            request,
            "inbox/_flash.html",
            {"text": text, "level": "error" if level >= messages.ERROR else "success"},
            status=status,
        )
        return trigger_client_event(response, "sb:changed")
    messages.add_message(request, level, text)
    return back_to_session(request, session)
