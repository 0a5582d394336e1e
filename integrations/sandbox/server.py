"""The sandbox as an ASGI app (run under uvicorn by `manage.py sandbox`).

Routes:
  /xms/api/v1/...            the platform API (also without the /xms prefix), x-api-key checked
  /media/<id>/<name>         one message's media link: per message, may expire, with the media_*
                             faults (slow, 503, 404 once older than the ttl, corrupted bytes)
  /media/<name>              the media files themselves, always served (templates link to them)
  /media/generated/<size>/<name>
                             <size> bytes of a repeating pattern, streamed (up to 200 MiB)
  /_sandbox/...              control for tests and demos: state, inbound, faults, templates,
                             sessions/end, media (every link) and media/<id> (one link's counts;
                             POST {"age_seconds": n} to make it that old)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import requests

from integrations.sandbox import envelopes, media
from integrations.sandbox.media import media_files
from integrations.sandbox.state import MediaLink, Outgoing, SandboxPlatform, now_ms

logger = logging.getLogger("sandbox")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MESSAGE_KINDS = ("text", "image", "video", "audio", "voice", "document", "location")
KIND_WEIGHTS = (55, 12, 5, 5, 10, 7, 6)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)

    def param(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int
    body: Any = None
    content_type: str = "application/json"
    raw: bytes | None = None
    # A body sent chunk by chunk as it is made, `length` bytes in all (a big file is never
    # held whole); with no stream, `length` alone answers a HEAD.
    stream: AsyncGenerator[bytes, None] | None = None
    length: int | None = None


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    duplicated: int = 0
    retries: int = 0
    last_error: str = ""
    by_status: dict[str, int] = field(default_factory=dict)


class SandboxServer:
    """Serve the platform API and deliver its callbacks to the registered webhook."""

    def __init__(
        self,
        platform: SandboxPlatform,
        *,
        rng: random.Random | None = None,
        append_paths: bool = True,
        max_attempts: int = 6,
        simulate: bool = True,
        rate_per_minute: float = 6.0,
        scenario: list[dict[str, Any]] | None = None,
    ) -> None:
        self.platform = platform
        self.rng = rng or random.Random()
        self.append_paths = append_paths
        self.max_attempts = max_attempts
        self.simulate = simulate
        self.rate_per_minute = rate_per_minute
        self.scenario = scenario
        self.stats = DeliveryStats()
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="deliver")
        self.http = requests.Session()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.started = time.monotonic()
        self.scenario_done = asyncio.Event() if scenario is not None else None
        # Callbacks scheduled and not yet delivered (or given up on): 0 when the far end is quiet.
        self.pending = 0
        # Callbacks scheduled before the control API last ended every session are dropped: a
        # test's late receipts must not reach the next test's account.
        self.generation = 0
        # Sends waiting while the hold_sends fault is on, and what lets them go (set: no hold).
        self.held_sends = 0
        self._sends_released: asyncio.Event | None = None

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(scope.get("query_string", b"").decode()),
            headers={k.decode().lower(): v.decode() for k, v in scope.get("headers", [])},
            body=body,
        )
        try:
            response = await self.handle(request)
        except Exception:
            logger.exception("sandbox error on %s %s", request.method, request.path)
            response = Response(500, {"error": "sandbox error"})
        await self._respond(response, request.method, receive, send)

    async def _respond(self, response: Response, method: str, receive: Receive, send: Send) -> None:
        payload = b""
        if response.stream is None and response.length is None:
            payload = (
                response.raw if response.raw is not None else json.dumps(response.body).encode()
            )
        length = len(payload) if response.length is None else response.length
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type.encode()),
                    (b"content-length", str(length).encode()),
                ],
            }
        )
        if response.stream is None or method == "HEAD":
            if response.stream is not None:
                await response.stream.aclose()
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})
            return
        await self._stream(response.stream, receive, send)

    async def _stream(
        self, chunks: AsyncGenerator[bytes, None], receive: Receive, send: Send
    ) -> None:
        """Send the chunks as the client takes them; stop making them once it has gone."""
        gone = asyncio.Event()

        async def watch() -> None:
            # The request body is read, so the next message is the client disconnecting.
            if (await receive())["type"] == "http.disconnect":
                gone.set()

        watcher = asyncio.ensure_future(watch())
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if gone.is_set():
                    break
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            await chunks.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.scenario is not None:
                    self._spawn(self.play_scenario(self.scenario))
                elif self.simulate:
                    self._spawn(self.simulate_customers())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in list(self.tasks):
                    task.cancel()
                self.pool.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- Routing ------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/xms/"):
            path = path[len("/xms") :]
        if path.startswith("/api/v1/"):
            return await self.api(request, path[len("/api/v1/") :].rstrip("/"))
        if path.startswith("/media/") and request.method in ("GET", "HEAD"):
            return await self.media(request, path[len("/media/") :])
        if path.startswith("/_sandbox/"):
            return await self.control(request, path[len("/_sandbox/") :].rstrip("/"))
        if path in ("/", "/healthz"):
            return Response(
                200,
                {
                    "status": "ok",
                    "service": "Mehery XMS sandbox",
                    "webhook": self.platform.webhook_url,
                },
            )
        return Response(404, {"error": f"no route {request.method} {request.path}"})

    async def api(self, request: Request, route: str) -> Response:
        faults = self.platform.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if not self.platform.authorized(request.headers):
            return Response(
                401,
                envelopes.full(
                    path=f"/api/v1/{route}",
                    status=401,
                    status_key="UNAUTHORIZED",
                    message="Missing or wrong x-api-key",
                ),
            )
        roll = self.rng.random()
        injected = await self._injected_fault(roll)
        if injected is not None:
            return injected
        try:
            body = request.json() if request.method == "POST" else None
        except ValueError:
            return Response(
                400,
                envelopes.full(
                    path=f"/api/v1/{route}",
                    status=400,
                    status_key="BAD_JSON",
                    errors=[envelopes.field_error("", "Body is not JSON")],
                ),
            )
        if route == "message/send" and request.method == "POST":
            if faults.hold_sends:
                await self._held()
            return await self._send(body, roll)
        answer = self._answer(request, route, body)
        if answer is None:
            return Response(
                404, {"status": 404, "message": f"No endpoint {request.method} /api/v1/{route}"}
            )
        status, envelope, callbacks = answer
        self.schedule(callbacks)
        return Response(status, envelope)

    def _release(self) -> asyncio.Event:
        if self._sends_released is None:
            self._sends_released = asyncio.Event()
            self._sends_released.set()
        return self._sends_released

    async def _held(self) -> None:
        """Wait, unanswered, until the hold_sends fault is switched off."""
        release = self._release()
        self.held_sends += 1
        try:
            await release.wait()
        finally:
            self.held_sends -= 1

    async def _injected_fault(self, roll: float) -> Response | None:
        """Answer with an injected 503 or timeout before the request is processed, or None."""
        faults = self.platform.faults
        if roll < faults.error_rate:
            self.platform._count("fault_5xx")
            return Response(
                503,
                {
                    "status": 503,
                    "statusKey": "SERVICE_UNAVAILABLE",
                    "message": "Injected fault: service unavailable",
                },
            )
        if roll < faults.error_rate + faults.timeout_rate:
            # The request is not processed; the answer just never comes in time.
            self.platform._count("fault_timeout")
            await asyncio.sleep(faults.timeout_seconds)
            return Response(
                504,
                {
                    "status": 504,
                    "statusKey": "GATEWAY_TIMEOUT",
                    "message": "Injected fault: timeout",
                },
            )
        return None

    async def _send(self, body: Any, roll: float) -> Response:
        """Take a send; with the accept faults, answer it with an error or too late."""
        faults, platform = self.platform.faults, self.platform
        status, envelope, callbacks = platform.send(body)
        hang = faults.error_rate + faults.timeout_rate + faults.accept_hang_rate
        fail = hang + faults.accept_error_rate
        if status == 200 and not envelope.get("errors") and hang <= roll < fail:
            # Accepted and stored, then answered with a server error.
            platform._count("fault_accept_error")
            self.schedule(callbacks)
            return Response(
                500,
                {"status": 500, "statusKey": "ERROR", "message": "Injected fault: failed"},
            )
        if status == 200 and not envelope.get("errors") and roll < hang:
            # Accepted and stored, but the answer comes after the client gave up.
            platform._count("fault_accept_hang")
            if faults.hang_receipts:
                self.schedule(callbacks)
            await asyncio.sleep(faults.timeout_seconds)
            return Response(status, envelope)
        self.schedule(callbacks)
        return Response(status, envelope)

    def _answer(
        self, request: Request, route: str, body: Any
    ) -> tuple[int, Any, list[Outgoing]] | None:
        """Answer every route but sends: (status, envelope, callbacks), or None for no route."""
        platform, method = self.platform, request.method
        if route == "config/channels" and method == "GET":
            include = "true" in (request.param("sabdnox"), request.param("sandbox"))
            return 200, platform.list_channels(include), []
        if route == "config/tmpl/hsm" and method == "GET":
            templates = platform.list_templates(
                request.param("channelId"), request.param("channelStatus")
            )
            return 200, templates, []
        if route == "config/global/vars" and method == "GET":
            return 200, platform.global_vars(), []
        if route == "config/webhook" and method == "POST":
            return (*platform.set_webhook(body), [])
        if route == "session/routing" and method == "POST":
            return platform.session_routing(body)
        if route == "session/resolve" and method == "POST":
            return platform.session_resolve(body)
        if route == "session/close" and method == "POST":
            return platform.session_close(body)
        if route == "session/messages" and method in ("POST", "GET"):
            if method == "GET":  # the 2022 form (spec §2.10)
                body = {"sessionId": request.param("sessionId")}
            return platform.session_messages(body)
        if route == "contact/prefs/lang" and method == "POST":
            return (*platform.set_contact_lang(body), [])
        if route in ("data/push", "event/push") and method == "POST":
            return (*platform.echo(body, f"/api/v1/{route}"), [])
        return None

    # --- Media ----------------------------------------------------------------------------------

    async def media(self, request: Request, route: str) -> Response:
        parts = route.split("/")
        if len(parts) == 1:
            item = media_files().get(parts[0])
            if item is None:
                return Response(404, {"error": "no such media"})
            return Response(200, content_type=item[0], raw=item[1])
        if len(parts) == 3 and parts[0] == "generated":
            return self._generated(parts[1], parts[2])
        if len(parts) == 2:
            return await self._media_link(request, parts[0], parts[1])
        return Response(404, {"error": "no such media"})

    def _generated(self, size_text: str, name: str) -> Response:
        """Answer `size` bytes of a repeating pattern, streamed: a big file, never held whole."""
        size = int(size_text) if size_text.isdigit() else -1
        if not 0 <= size <= media.MAX_GENERATED_BYTES:
            return Response(
                400, {"error": f"size must be 0..{media.MAX_GENERATED_BYTES} bytes, in digits"}
            )
        return Response(
            200,
            content_type=media.content_type_for(name),
            stream=self._chunks(media.generated_chunks(size)),
            length=size,
        )

    async def _media_link(self, request: Request, link_id: str, name: str) -> Response:
        """Serve one message's media link, with the media faults; count what happened."""
        platform, faults = self.platform, self.platform.faults
        link = platform.media_links.get(link_id)
        if link is None or link.name != name:
            platform.media_count(None, "unknown_404")
            return Response(404, {"error": "no such media"})
        platform.media_count(link, "requests")
        if faults.media_latency_ms:
            platform.media_count(link, "delayed")
            await asyncio.sleep(faults.media_latency_ms / 1000)
        if link.expired(faults.media_ttl_seconds, now_ms()):
            platform.media_count(link, "gone_404")
            return Response(404, {"error": "media link expired"})
        if faults.media_error_rate and self.rng.random() < faults.media_error_rate:
            platform.media_count(link, "refused_5xx")
            return Response(503, {"error": "Injected fault: media service unavailable"})
        if request.method == "HEAD":
            return Response(200, content_type=link.mime_type, length=link.size)
        corrupt = bool(faults.media_corrupt_rate) and self.rng.random() < faults.media_corrupt_rate
        platform.media_count(link, "served")
        if corrupt:
            platform.media_count(link, "corrupted")
        return Response(
            200,
            content_type=link.mime_type,
            stream=self._chunks(link.chunks(corrupt=corrupt), link),
            length=link.size,
        )

    async def _chunks(
        self, chunks: Iterator[bytes], link: MediaLink | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Hand the chunks over one at a time, counting the bytes against the link."""
        for chunk in chunks:
            if link is not None:
                self.platform.media_count(link, "bytes_sent", len(chunk))
            yield chunk
            await asyncio.sleep(0)  # a big file must not keep the other requests waiting

    # --- Control API --------------------------------------------------------------------------

    async def control(self, request: Request, route: str) -> Response:
        platform = self.platform
        body = request.json() if request.body else {}
        if route == "state" and request.method == "GET":
            state = platform.summary()
            state["deliveries"] = self.stats.__dict__
            state["uptimeSeconds"] = round(time.monotonic() - self.started, 1)
            state["scenarioDone"] = self.scenario_done.is_set() if self.scenario_done else None
            state["pendingCallbacks"] = self.pending
            state["heldSends"] = self.held_sends
            return Response(200, state)
        if route == "inbound" and request.method == "POST":
            return self._control_inbound(body)
        if route == "faults" and request.method in ("POST", "PUT"):
            if not isinstance(body, dict):
                return Response(400, {"error": "faults take a JSON object"})
            try:
                unknown = platform.faults.update(body)
            except ValueError as exc:
                return Response(400, {"error": str(exc)})
            if unknown:
                return Response(400, {"error": f"unknown fault settings: {', '.join(unknown)}"})
            if platform.faults.hold_sends:
                self._release().clear()
            else:
                self._release().set()  # the held sends are taken now
            return Response(200, platform.faults.__dict__)
        if route == "media" or route.startswith("media/"):
            return self._control_media(request, route.removeprefix("media").strip("/"), body)
        if route == "sessions/end" and request.method == "POST":
            self.generation += 1  # callbacks not yet delivered are dropped too
            return Response(200, {"ended": platform.sessions_end_quietly()})
        if route == "templates/remove" and request.method == "POST":
            removed = platform.remove_template(str(body.get("code", "")), str(body.get("lang", "")))
            return Response(200 if removed else 404, {"removed": removed})
        if route == "customers" and request.method == "POST":
            try:
                customer = platform.add_customer(
                    str(body["key"]),
                    name=str(body.get("name") or body["key"]),
                    channel_id=str(body["channelId"]),
                    phone=str(body.get("phone") or ""),
                    lines=list(body.get("lines") or []),
                )
            except (KeyError, ValueError) as exc:
                return Response(400, {"error": str(exc)})
            return Response(200, {"key": customer.key, "contactId": customer.contact_id})
        return Response(404, {"error": f"no control route {request.method} /_sandbox/{route}"})

    def _control_media(self, request: Request, link_id: str, body: Any) -> Response:
        """List the media links, or show one; POST {"age_seconds": n} makes one n seconds old."""
        platform = self.platform
        if not link_id and request.method == "GET":
            return Response(
                200, {"links": [platform.media_describe(x) for x in platform.media_links.values()]}
            )
        link = platform.media_links.get(link_id)
        if link is None:
            return Response(404, {"error": f"no media link {link_id!r}"})
        if request.method == "POST":
            try:
                age = float(body["age_seconds"])
            except (KeyError, TypeError, ValueError):
                age = math.nan
            if not math.isfinite(age) or age < 0:
                return Response(400, {"error": "give age_seconds, a number from 0 up"})
            link.issued_ms = now_ms() - int(age * 1000)
        elif request.method != "GET":
            return Response(405, {"error": f"{request.method} /_sandbox/media/{link_id}"})
        return Response(200, platform.media_describe(link))

    def _control_inbound(self, body: dict[str, Any]) -> Response:
        platform = self.platform
        key = str(body.get("customer", ""))
        if key not in platform.customers:
            return Response(
                400, {"error": f"unknown customer {key!r}", "customers": sorted(platform.customers)}
            )
        kind = str(body.get("type", "text"))
        if kind not in (*MESSAGE_KINDS, "system"):
            return Response(400, {"error": f"unknown type {kind!r}"})
        at_ms = int(body["timestamp"]) if body.get("timestamp") else None
        if body.get("hoursAgo"):
            at_ms = now_ms() - int(float(body["hoursAgo"]) * 3600 * 1000)
        try:
            callbacks, summary = platform.customer_message(
                key,
                kind=kind,
                text=body.get("text"),
                at_ms=at_ms,
                message_id=body.get("id"),
                media_size=int(body["mediaSize"]) if body.get("mediaSize") else None,
            )
        except ValueError as exc:
            return Response(400, {"error": str(exc)})
        self.schedule(callbacks, copies=int(body.get("copies", 1)))
        return Response(200, summary)

    # --- Delivery -----------------------------------------------------------------------------

    def schedule(self, callbacks: list[Outgoing], *, copies: int = 1) -> None:
        for callback in callbacks:
            self.pending += 1
            self._spawn(
                self._later(callback, copies if callback.kind == "message" else 1, self.generation)
            )

    async def _later(self, callback: Outgoing, copies: int, generation: int) -> None:
        try:
            if callback.delay:
                await asyncio.sleep(callback.delay)
            if generation != self.generation:
                self.stats.dropped += 1  # every session was ended meanwhile
                return
            if callback.make is not None:
                self.schedule(callback.make())
                return
            await self.deliver(callback, copies=copies, generation=generation)
        finally:
            self.pending -= 1

    async def deliver(
        self, callback: Outgoing, *, copies: int = 1, generation: int | None = None
    ) -> None:
        if not self.platform.webhook_url or callback.body is None:
            self.stats.dropped += 1
            return
        faults = self.platform.faults
        if callback.path != "api/v1/contact/info" and self.rng.random() < faults.drop_rate:
            self.stats.dropped += 1
            return
        if self.rng.random() < faults.duplicate_rate:
            copies += 1
        if copies > 1:
            self.stats.duplicated += copies - 1
        url = self.platform.webhook_url
        if self.append_paths:
            url = url.rstrip("/") + "/" + callback.path
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            reply = await loop.run_in_executor(
                self.pool, self._post_with_retries, url, callback.body, generation
            )
            if reply is not None and callback.on_reply is not None:
                callback.on_reply(reply)

    def _post_with_retries(
        self, url: str, body: dict[str, Any], generation: int | None = None
    ) -> Any:
        delay = 0.5
        for attempt in range(1, self.max_attempts + 1):
            if generation is not None and generation != self.generation:
                self.stats.dropped += 1  # every session was ended between two attempts
                return None
            try:
                response = self.http.post(
                    url,
                    json=body,
                    headers={"x-verify-token": self.platform.verify_token},
                    timeout=(3, 10),
                )
                self.stats.by_status[str(response.status_code)] = (
                    self.stats.by_status.get(str(response.status_code), 0) + 1
                )
                if response.status_code < 500:
                    if response.status_code >= 400:
                        self.stats.failed += 1
                        self.stats.last_error = f"{response.status_code}: {response.text[:200]}"
                        return None
                    self.stats.delivered += 1
                    try:
                        return response.json()
                    except ValueError:
                        return None
                self.stats.last_error = f"{response.status_code}: {response.text[:200]}"
            except requests.RequestException as exc:
                self.stats.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
            if attempt < self.max_attempts:
                self.stats.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 16)
        self.stats.failed += 1
        logger.warning("gave up delivering a callback to %s: %s", url, self.stats.last_error)
        return None

    # --- Customers ----------------------------------------------------------------------------

    async def _wait_for_webhook(self) -> None:
        while not self.platform.webhook_url:
            await asyncio.sleep(0.2)

    def _send_inbound(
        self, key: str, kind: str, text: str | None = None, at_ms: int | None = None
    ) -> None:
        callbacks, _ = self.platform.customer_message(key, kind=kind, text=text, at_ms=at_ms)
        self.schedule(callbacks)

    async def simulate_customers(self) -> None:
        """Customers on every channel write in: a warm-up burst, then at `rate_per_minute`."""
        await self._wait_for_webhook()
        platform = self.platform
        for customer, hours in platform.dormant_personas():
            self._send_inbound(customer.key, "text", at_ms=now_ms() - int(hours * 3600 * 1000))
        active = [
            k
            for k in platform.customers
            if k not in {c.key for c, _ in platform.dormant_personas()}
        ]
        # Within seconds of start: every channel, and every kind of message.
        opening = ["text", "image", "text", "location", "voice", "document", "video", "audio"]
        for i, key in enumerate(active):
            self._send_inbound(key, "text")
            await asyncio.sleep(0.6)
            if i < len(opening) - 1:
                kind = opening[i + 1]
                self._send_inbound(key, kind)
                await asyncio.sleep(0.6)
        if self.rate_per_minute <= 0:
            return
        while True:
            await asyncio.sleep(self.rng.expovariate(self.rate_per_minute / 60))
            key = self.rng.choice(active)
            kind = self.rng.choices(MESSAGE_KINDS, weights=KIND_WEIGHTS)[0]
            self._send_inbound(key, kind)

    async def play_scenario(self, steps: list[dict[str, Any]]) -> None:
        """Play a scenario: who says what, when (seconds after the webhook is registered)."""
        await self._wait_for_webhook()
        started = time.monotonic()
        for step in sorted(steps, key=lambda s: float(s.get("at", 0))):
            wait = float(step.get("at", 0)) - (time.monotonic() - started)
            if wait > 0:
                await asyncio.sleep(wait)
            at_ms = None
            if step.get("hoursAgo"):
                at_ms = now_ms() - int(float(step["hoursAgo"]) * 3600 * 1000)
            callbacks, _ = self.platform.customer_message(
                str(step["customer"]),
                kind=str(step.get("type", "text")),
                text=step.get("text"),
                at_ms=at_ms,
                message_id=step.get("id"),
                media_size=int(step["mediaSize"]) if step.get("mediaSize") else None,
            )
            self.schedule(callbacks, copies=int(step.get("copies", 1)))
        if self.scenario_done is not None:
            self.scenario_done.set()
