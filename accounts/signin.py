"""Sign-in throttling with django-axes: who is locked out, until when, and what they see.

Axes counts failed sign-ins per account and per client address (AXES_LOCKOUT_PARAMETERS) in
the database, on the inbox's sign-in page and the admin's alike (both go through
`authenticate()`, which AxesStandaloneBackend guards). Settings: SIGNIN_* in .env.example.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


class SignInAttemptHandler(AxesDatabaseHandler):
    """Axes' database handler, except that a sign-in resets only its own account's failures.

    Axes' own reset deletes every attempt matching any lockout parameter, the address's too:
    anyone with one valid account could then clear the failures an attacker piled up on other
    accounts from the same address by signing in between guesses.
    """

    def reset_user_attempts(
        self, request: HttpRequest, credentials: dict[str, Any] | None = None
    ) -> int:
        username = get_client_username(request, credentials)
        if not username:
            return 0
        count, _ = AccessAttempt.objects.filter(username=username).delete()
        return int(count)


def client_address(request: HttpRequest) -> str | None:
    """Return the address the ASGI server reports (it resolves a trusted proxy's headers).

    Set explicitly so that installing django-ipware never makes axes trust a header a client
    can write; the API's token throttle counts by the same address.
    """
    return request.META.get("REMOTE_ADDR")


def signin_locked_out(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """Render the lockout page (429): why, and from when to try again.

    Every attempt during a lockout restarts the cool-off
    (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT), so the wait starts now.
    """
    cool_off = get_cool_off(request) or timedelta(0)
    retry_at = timezone.now() + cool_off
    minutes = max(1, round(cool_off.total_seconds() / 60))
    response = render(
        request,
        "inbox/locked_out.html",
        {
            "retry_at": retry_at,
            "minutes": minutes,
            "admin": request.path.startswith("/admin/"),
        },
        status=429,
    )
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response
