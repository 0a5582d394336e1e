"""The live-update endpoint: Server-Sent Events read from the Redis stream of `inbox.live`.

Runs as an async view on the ASGI server, so an open stream costs no thread. A browser that
reconnects sends `Last-Event-ID` (EventSource does this itself) and gets every event it missed
that the stream still holds; a first connection starts from the `last` id the page was rendered
with. Events are filtered to the channels the user may see.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator

import redis
from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from inbox import live
from inbox.selectors import channels_visible_to, user_sees_everything

logger = logging.getLogger(__name__)
KEEPALIVE_MS = 15_000
# How often an open stream re-checks who is listening: a signed-out or deactivated user's
# stream ends, and an agent added to a team starts getting that team's channels.
RECHECK_SECONDS = 60
_STREAM_ID = re.compile(r"^\d+-\d+$")


def _still_allowed(request: HttpRequest, user_id: int) -> bool:
    from accounts.models import User

    key = request.session.session_key
    if not key or not request.session.exists(key):
        return False
    return User.objects.filter(pk=user_id, is_active=True).exists()


def _visible_channels(user: object) -> set[int] | None:
    if user_sees_everything(user):  # type: ignore[arg-type]
        return None
    return set(channels_visible_to(user).values_list("pk", flat=True))  # type: ignore[arg-type]


@require_GET
async def events(request: HttpRequest) -> HttpResponseBase:
    """Stream inbox events to a signed-in agent (text/event-stream)."""
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"error": "not_authenticated", "detail": "Sign in first."}, status=401)
    if not live.enabled():
        return JsonResponse(
            {"error": "live_unavailable", "detail": "Live updates need Redis; poll instead."},
            status=503,
        )
    visible_at_start = await sync_to_async(_visible_channels)(user)
    start = request.headers.get("Last-Event-ID") or request.GET.get("last", "")
    if not _STREAM_ID.match(start):
        start = await sync_to_async(live.latest_id)()

    async def stream() -> AsyncIterator[str]:
        client = live.stream_client()
        if client is None:
            return
        last = start
        visible = visible_at_start
        checked = time.monotonic()
        yield "retry: 2000\n\n"
        try:
            while True:
                if time.monotonic() - checked > RECHECK_SECONDS:
                    checked = time.monotonic()
                    if not await sync_to_async(_still_allowed)(request, user.pk):
                        yield "event: live.ended\ndata: {}\n\n"
                        return
                    visible = await sync_to_async(_visible_channels)(user)
                try:
                    batch = await live.read(client, last, block_ms=KEEPALIVE_MS)
                except redis.RedisError as exc:
                    logger.warning("live stream interrupted: %s", exc)
                    yield "event: live.error\ndata: {}\n\n"
                    return
                if not batch:
                    yield ": keep-alive\n\n"
                    continue
                for event_id, event in batch:
                    last = event_id
                    if visible is not None and event.get("channel") not in visible:
                        continue
                    kind = event.get("type", "message")
                    yield f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(event)}\n\n"
        finally:
            await client.aclose()

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
