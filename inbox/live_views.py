"""The live-update endpoint: Server-Sent Events read from the Redis stream of `inbox.live`.

Runs as an async view on the ASGI server, so an open stream costs no thread while it waits,
and it holds no database connection either: the handler hands the request's connection back
before streaming (`config.asgi`), and each re-check below takes one and gives it back at once.
A browser that reconnects sends `Last-Event-ID` (EventSource does this itself) or `?last=`
(live.js, after it reconnected by itself) and gets every event it missed that the stream still
holds; a first connection starts from the `last` id the page was rendered with. Events are
filtered to the channels the user may see.

Each wait on Redis is at most KEEPALIVE_MS; a quiet wait sends `live.ping` (which lets the
page see that the connection is alive) and checks the sign-out markers of `inbox.live`. A
Redis error is retried after a short pause; Redis down for longer ends the stream with
`live.error` and a retry hint, and the page reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, TypeVar

import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from config.db import release_connections
from inbox import live, live_hub
from inbox.selectors.visibility import channels_visible_to, user_sees_everything

logger = logging.getLogger(__name__)
T = TypeVar("T")
# The longest wait on Redis: also how often a quiet stream pings and checks for sign-out.
KEEPALIVE_MS = 5_000
# How often an open stream re-checks in the database who is listening: an agent added to a
# team starts getting that team's channels; a session removed without a sign-out ends.
RECHECK_SECONDS = 60
# How long the browser waits before reconnecting after the stream ended.
RETRY_MS = 2_000
_STREAM_ID = re.compile(r"^\d+-\d+$")
# Redis stayed down: the browser reconnects (with backoff) and polls meanwhile.
_LIVE_ERROR = f"retry: {RETRY_MS}\nevent: live.error\ndata: {{}}\n\n"


def _stream_id(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


async def _revoked(client: redis.asyncio.Redis, keys: list[str]) -> bool:
    try:
        return await live.revoked(client, keys)
    except redis.RedisError as exc:  # the hub sees Redis fail too, and ends the stream
        logger.info("live stream could not check for sign-outs: %s", exc)
        return False


def _briefly(function: Callable[[], T]) -> Callable[[], T]:
    """Wrap a database read so the connection it takes goes back to the pool at once.

    Runs in the request's own thread (thread-sensitive `sync_to_async`), which is the thread
    the connection belongs to; closing it there returns it to the pool (or closes it).
    """

    def run() -> T:
        try:
            return function()
        finally:
            release_connections()

    return run


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
    unavailable = JsonResponse(
        {"error": "live_unavailable", "detail": "Live updates need Redis; poll instead."},
        status=503,
    )
    if not live.enabled():
        return unavailable
    visible_at_start = await sync_to_async(_visible_channels)(user)
    start = request.headers.get("Last-Event-ID") or request.GET.get("last", "")
    if not _STREAM_ID.match(start):
        start = await sync_to_async(live.latest_id)()
        if not start:
            return unavailable
    revoked_keys = live.revoked_keys_for(
        session_key=request.session.session_key or "", user_id=user.pk
    )

    stream = _stream(
        request,
        user,
        start=start,
        visible_at_start=visible_at_start,
        revoked_keys=revoked_keys,
    )
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _stream(
    request: HttpRequest,
    user: Any,
    *,
    start: str,
    visible_at_start: set[int] | None,
    revoked_keys: list[str],
) -> AsyncIterator[str]:
    """Yield the stream's text: the agent's events from `start` on, pings, and its end."""
    hub = live_hub.hub()
    try:
        subscription = await hub.subscribe()
    except live_hub.Failed:
        yield _LIVE_ERROR
        return
    client = hub.redis()
    last_key = live_hub.id_key(start)
    visible = visible_at_start
    checked = listened = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n"
    try:
        events = await hub.retrying(partial(live_hub.catch_up, client, _stream_id(last_key)))
        while True:
            out = []
            for item in events:
                if item.key <= last_key:
                    continue  # sent already (caught up while the hub queued it)
                last_key = item.key
                if visible is None or item.channel in visible:
                    out.append(item.block)
            if out:
                # One write for the whole batch: a burst costs one send, not one per event.
                yield "".join(out)
            now = time.monotonic()
            if now - listened >= KEEPALIVE_MS / 1000:
                listened = now
                if await _revoked(client, revoked_keys):
                    yield "event: live.ended\ndata: {}\n\n"
                    return
            if now - checked > RECHECK_SECONDS:
                checked = now
                if not await sync_to_async(_briefly(lambda: _still_allowed(request, user.pk)))():
                    yield "event: live.ended\ndata: {}\n\n"
                    return
                visible = await sync_to_async(_briefly(lambda: _visible_channels(user)))()
            if subscription.failed is not None:
                raise subscription.failed
            if subscription.behind:
                subscription.behind = False
                events = await hub.retrying(
                    partial(live_hub.catch_up, client, _stream_id(last_key))
                )
                continue
            try:
                async with asyncio.timeout(KEEPALIVE_MS / 1000):  # no task per wait
                    handed = await subscription.queue.get()
            except TimeoutError:
                events = []
                yield "event: live.ping\ndata: {}\n\n"
                continue
            if isinstance(handed, live_hub.Failed):
                raise handed
            events = handed
    except live_hub.Failed:
        yield _LIVE_ERROR
    finally:
        hub.unsubscribe(subscription)
