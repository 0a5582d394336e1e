"""The baselines that live in the web server, next to the endpoints they are compared with.

Mounted under `/_bench/` only when `settings.BENCH_ENDPOINTS` is on (the benchmark turns it on;
nothing else does). Each one does the least its real counterpart must do, through the same
ASGI server, middleware and database connection handling.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

RAW_TABLE = "bench_raw_callback"


@csrf_exempt
@require_POST
def raw_insert(request: HttpRequest) -> JsonResponse:
    """Insert the raw body as one row and answer `{}`: the floor of any webhook."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RAW_TABLE} (body, received_at) VALUES (%s, now())",  # noqa: S608
            [request.body.decode("utf-8", "replace")],
        )
    return JsonResponse({})


@require_GET
@login_required
def floor(request: HttpRequest) -> HttpResponse:
    """Answer a signed-in agent with a tiny page: the floor of any agent page."""
    return HttpResponse(f"<!doctype html><title>floor</title><p>{request.user.pk}</p>")
