"""ASGI entry point (the production web server runs this under uvicorn)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler

from config.db import release_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Refuse request bodies over their route's limit before Django buffers them.

    Django reads a whole request body (to memory or a temporary file) before any view runs, so
    a view's own limit alone would not stop a client streaming gigabytes. Here the body of a
    limited route is read up to its limit; past it the client gets 413 and nothing more is read.
    `rules` are (path regex, limit in bytes); the first match applies.
    """

    def __init__(self, app: ASGIApp, *, rules: list[tuple[str, int]]):
        self.app = app
        self.rules = [(re.compile(pattern), limit) for pattern, limit in rules]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = None
        if scope["type"] == "http":
            limit = next((n for rx, n in self.rules if rx.match(scope["path"])), None)
        if limit is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode() or "0"
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._too_large(send, limit)
                return
            chunks.append(body)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, limit: int) -> None:
        payload = json.dumps(
            {
                "error": "payload_too_large",
                "detail": f"The body is over the limit of {limit} bytes.",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler, with the middleware chain run as one sync call per request.

    Django's own handler runs an async chain when the server is async, and every sync-only
    hook then costs a hop between the event loop and a worker thread: each middleware's
    `process_request` and `process_response`, WhiteNoise (sync only) and the view, about a
    dozen hand-offs per request, which `make bench` found were a third of the webhook's CPU
    time. Our views are sync except the live stream, so the chain is built in sync mode and
    entered with one `sync_to_async` (thread-sensitive, as Django's own hops are). An async
    view (the live stream) is run by Django's sync path with `async_to_sync` and returns its
    streaming response, which the handler still streams asynchronously.
    """

    # Idle request threads kept for the next requests (more are made when more are busy).
    SPARE_THREADS = 32

    def __init__(self) -> None:
        super().__init__()
        self._spare: list[ThreadPoolExecutor] = []

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        chain: Any = self._middleware_chain  # type: ignore[has-type]
        self._middleware_chain = sync_to_async(chain, thread_sensitive=True)

    async def run_get_response(self, request: Any) -> Any:
        """Return the response; before a streamed one, give the database connection back.

        A streamed body (the live stream, a file download) can take minutes or hours, and
        Django returns the request's connection to the pool only when the response ends: 8
        open live streams would hold the whole pool and every other request would wait. The
        connection is released in the request's own thread, the one it belongs to; whatever
        the stream reads later takes one briefly (see `inbox.live_views`).
        """
        response = await super().run_get_response(request)
        if response.streaming:
            await sync_to_async(release_connections, thread_sensitive=True)()
        return response

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle a request on a lent thread, as Django does on a new one.

        Django gives each request its own thread (a thread-sensitive context) and starts it
        anew every time, then starts another to join it: two thread starts per request, which
        `make bench` found were a fifth of the webhook's CPU time. Here the request's context
        borrows a single-thread executor from a pool and gives it back, so its sync work
        still runs on one thread of its own, one request at a time.
        """
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._spare.pop() if self._spare else ThreadPoolExecutor(max_workers=1)
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            if len(self._spare) < self.SPARE_THREADS:
                self._spare.append(executor)
            else:
                executor.shutdown(wait=False)


def _application() -> ASGIApp:
    from django.conf import settings

    django.setup(set_prefix=False)
    django_app = SyncChainASGIHandler()
    from inbox.services.uploads import UPLOAD_MAX_BYTES  # after setup: it imports models

    return BodyLimit(
        cast(ASGIApp, django_app),
        rules=[
            (r"^/webhooks/", settings.WEBHOOK_MAX_BODY_BYTES),
            # A reply with an attachment: the file's limit plus room for the form fields.
            (r"^/s/\d+/send/$", UPLOAD_MAX_BYTES + 64 * 1024),
        ],
    )


application = _application()
