"""The MessageWhiz sandbox as an ASGI app (run under uvicorn by `manage.py mwsandbox`).

Routes:
  /api/...        the omni API as the spec documents it (§2): every route but `POST /api/auth`
                  wants `Authorization: <token>` (or `Bearer <token>`, G9), media included (G11);
                  every refusal is the §1.4 error shape. Faults apply to every call.
  /_sandbox/...   control for tests, demos and benchmarks, no auth: state, faults, inbound,
                  customers/bulk, customers/<id or phone>, sent, calls, calls/reset,
                  tokens/revoke.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from integrations.mwsandbox import catalog, media
from integrations.mwsandbox.state import ApiError, Message, MessageWhizPlatform

logger = logging.getLogger("mwsandbox")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_TYPE = "application/json; charset=utf-8"
# A body bigger than this is refused before it is read whole (a 50 MB file plus its form).
MAX_BODY_BYTES = media.MAX_UPLOAD_BYTES + 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the parsed body (None when empty); raise ApiError 400 when it is not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Invalid request payload JSON format") from None

    def params(self) -> dict[str, str]:
        return {key: values[0] for key, values in self.query.items() if values}


@dataclass
class Response:
    status: int
    body: Any = None
    content_type: str = JSON_TYPE
    raw: bytes | None = None


def error(status: int, message: str, reason: str = "") -> Response:
    """Answer in the §1.4 error shape."""
    return Response(status, ApiError(status, message, reason).body())


Handler = Callable[[Request, dict[str, str]], Response]


def _listing(method: Callable[[dict[str, str]], Any]) -> Handler:
    """Answer a list operation from the query's parameters."""
    return lambda request, _: Response(200, method(request.params()))


@dataclass(frozen=True)
class Route:
    """One API operation: its methods, its path template (as the spec writes it) and handler."""

    methods: tuple[str, ...]
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool = True
    # The ambiguous fault applies (sends), or the upstream 502 fault (WhatsApp templates).
    send: bool = False
    upstream: bool = False

    @classmethod
    def make(
        cls, methods: str, template: str, handler: Handler, *, pattern: str = "", **flags: bool
    ) -> Route:
        regex = pattern or re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        return cls(tuple(methods.split()), template, re.compile(f"^{regex}/?$"), handler, **flags)


class MessageWhizServer:
    """Serve the omni API and the control API; simulate customers writing in."""

    def __init__(
        self,
        platform: MessageWhizPlatform,
        *,
        rng: random.Random | None = None,
        simulate: bool = True,
        rate_per_minute: float = 6.0,
        reply_rate: float = 0.6,
    ) -> None:
        self.platform = platform
        self.rng = rng or random.Random()  # noqa: S311 (fault rolls, not secrets)
        self.simulate = simulate
        self.rate_per_minute = rate_per_minute
        self.reply_rate = reply_rate
        self.tasks: set[asyncio.Task[Any]] = set()
        self.started = time.monotonic()
        self.routes = self._routes()

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                too_big = error(
                    400,
                    f"Payload content length greater than maximum allowed: {media.MAX_UPLOAD_BYTES}",
                )
                await self._respond(too_big, scope["method"], send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True),
            headers={k.decode().lower(): v.decode() for k, v in scope.get("headers", [])},
            body=b"".join(chunks),
        )
        try:
            response = await self.handle(request)
        except ApiError as exc:
            response = Response(exc.status, exc.body())
        except Exception:
            logger.exception("sandbox error on %s %s", request.method, request.path)
            response = error(500, "An internal server error occurred")
        await self._respond(response, request.method, send)

    async def _respond(self, response: Response, method: str, send: Send) -> None:
        if response.raw is not None:
            payload = response.raw
        elif response.body is None:
            payload = b""
        else:
            payload = json.dumps(response.body).encode()
        headers = [(b"content-length", str(len(payload)).encode())]
        if payload or response.raw is not None:
            headers.insert(0, (b"content-type", response.content_type.encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.simulate:
                    self._spawn(self.simulate_customers())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in list(self.tasks):
                    task.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- Routing ------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/api/"):
            return await self.api(request)
        if path.startswith("/_sandbox/"):
            return self.control(request, path[len("/_sandbox/") :].strip("/"))
        if path in ("/", "/healthz"):
            return Response(200, {"status": "ok", "service": "MessageWhiz sandbox"})
        return error(404, "Not Found")

    def _match(self, request: Request) -> tuple[Route | None, dict[str, str]]:
        method = "GET" if request.method == "HEAD" else request.method
        for route in self.routes:
            found = route.pattern.match(request.path)
            if found and method in route.methods:
                return route, found.groupdict()
        return None, {}

    async def api(self, request: Request) -> Response:
        """Answer an API call: count it, inject faults, check the token, then handle it."""
        platform, faults = self.platform, self.platform.faults
        route, params = self._match(request)
        if route is None:
            platform.count_call(f"{request.method} (no route)")
            return error(404, "Not Found")
        platform.count_call(f"{request.method} {route.template}")
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        roll = self.rng.random()
        if roll < faults.error_rate:
            platform.count("fault_503")
            return error(503, "Service unavailable (injected fault)")
        if roll < faults.error_rate + faults.timeout_rate:
            # Not processed: the answer just never comes in time.
            platform.count("fault_timeout")
            await asyncio.sleep(faults.timeout_seconds)
            return error(504, "Gateway timeout (injected fault)")
        if route.upstream and self.rng.random() < faults.upstream_error_rate:
            platform.count("fault_502")
            return error(502, "Received an invalid response from the upstream server")
        if route.auth:
            platform.authenticate(request.headers.get("authorization"))
        response = route.handler(request, params)
        ambiguous = faults.error_rate + faults.timeout_rate + faults.ambiguous_rate
        if route.send and response.status == 200 and roll < ambiguous:
            # Accepted and recorded, but the answer never comes: the client cannot tell whether
            # to send again (§4.6, G6).
            platform.count("fault_ambiguous")
            await asyncio.sleep(faults.timeout_seconds)
            return error(504, "Gateway timeout (injected fault)")
        return response

    def _routes(self) -> list[Route]:
        p, r = self.platform, Route.make
        routes = [
            r("POST", "/api/auth", lambda q, _: Response(200, p.login(q.json())), auth=False),
            r("GET", "/api/channels", _listing(p.list_channels)),
            r(
                "GET",
                "/api/channels/{channel_id}",
                lambda _, a: Response(200, p.get_channel(a["channel_id"])),
            ),
            r(
                "GET",
                "/api/channels/{channel_id}/agents/{agent_id}",
                lambda _, a: Response(200, p.get_agent(a["channel_id"], a["agent_id"])),
            ),
        ]
        return routes + self._customer_routes() + self._media_routes() + self._agent_routes()

    def _customer_routes(self) -> list[Route]:
        p, r = self.platform, Route.make
        return [
            r("GET", "/api/customers", _listing(p.list_customers)),
            r("POST", "/api/customers", lambda q, _: Response(201, p.create_customer(q.json()))),
            r(
                "GET",
                "/api/customers/{identifier}",
                lambda _, a: Response(200, p.get_customer(a["identifier"])),
            ),
            r("PATCH", "/api/customers/{customer_id}", self._patch_customer),
            r(
                "DELETE",
                "/api/customers/{customer_id}",
                lambda _, a: Response(200, p.delete_customer(a["customer_id"])),
            ),
            r("GET", "/api/keyword_events", _listing(p.list_keyword_events)),
            r(
                "GET",
                "/api/keyword_events/{event_id}",
                lambda _, a: Response(200, p.get_keyword_event(a["event_id"])),
            ),
            r(
                "GET",
                "/api/messages/{identifier}",
                lambda q, a: Response(200, p.history(a["identifier"], q.params())),
            ),
            r("DELETE", "/api/messages/{messageID}", self._delete_message),
            r("GET", "/api/settings", lambda _, __: Response(200, p.settings())),
            r("GET", "/api/templates", _listing(p.list_generic_templates)),
        ]

    def _media_routes(self) -> list[Route]:
        r, sizes = Route.make, "|".join(media.RENDITION_SIZES)
        return [
            r("GET", "/api/media", _listing(self.platform.list_media)),
            r("POST", "/api/media", self._upload),
            r("DELETE", "/api/media", self._delete_media),
            r("GET", "/api/media/{media_id}", self._media_file),
            r(
                "GET",
                "/api/media/{media_id}/{size_type}",
                self._media_file,
                pattern=rf"/api/media/(?P<media_id>[^/]+)/(?P<size_type>{sizes})",
            ),
            r("GET", "/api/media/{enterprise_id}/{media_id}", self._media_file),
            r("GET", "/api/media/{enterprise_id}/{media_id}/{size_type}", self._media_file),
        ]

    def _agent_routes(self) -> list[Route]:
        p, r = self.platform, Route.make
        routes = [
            r(
                "GET",
                "/api/agents/whatsapp/{agent_id}/templates",
                lambda q, a: Response(200, p.list_wa_templates(a["agent_id"], q.params())),
                upstream=True,
            ),
            r(
                "GET",
                "/api/agents/whatsapp/{agent_id}/templates/active-broadcast",
                lambda _, a: Response(200, p.wa_template_active_broadcast(a["agent_id"])),
            ),
            r(
                "GET",
                "/api/agents/whatsapp/{agent_id}/templates/{template_id}",
                lambda _, a: Response(200, p.get_wa_template(a["agent_id"], a["template_id"])),
                upstream=True,
            ),
        ]
        for medium in catalog.TYPE_BY_MEDIUM:
            routes.append(
                r(
                    "POST",
                    f"/api/agents/{medium}/{{agent_id}}/send",
                    self._sender(medium),
                    send=True,
                )
            )
        return routes

    # --- API handlers that are more than one call ---------------------------------------------

    def _patch_customer(self, request: Request, args: dict[str, str]) -> Response:
        self.platform.patch_customer(args["customer_id"], request.json())
        return Response(204)

    def _delete_message(self, request: Request, args: dict[str, str]) -> Response:
        self.platform.delete_message(args["messageID"])
        return Response(204)

    def _upload(self, request: Request, args: dict[str, str]) -> Response:
        try:
            parts = media.parse_multipart(request.body, request.headers.get("content-type", ""))
        except ValueError as exc:
            raise ApiError(
                400, f'{exc}: upload the file as multipart/form-data field "file"'
            ) from None
        return Response(200, self.platform.upload(parts, request.params().get("messageID")))

    def _delete_media(self, request: Request, args: dict[str, str]) -> Response:
        ids = request.query.get("media_ids", []) + request.query.get("media_ids[]", [])
        return Response(200, self.platform.delete_media([i for i in ids if i]))

    def _media_file(self, request: Request, args: dict[str, str]) -> Response:
        """Serve a file or an image's rendition, under any of its four paths (E27, E28, G13)."""
        media_id, size_type = self.platform.media_ref(request.path)
        content_type, data = self.platform.media_bytes(media_id, size_type)
        return Response(200, content_type=content_type, raw=data)

    def _sender(self, medium: str) -> Handler:
        def send(request: Request, args: dict[str, str]) -> Response:
            message = self.platform.send(medium, args["agent_id"], request.json())
            if self.simulate and self.rng.random() < self.reply_rate:
                self._spawn(self._reply_later(message))
            return Response(200, {"message_id": message.message_id})

        return send

    async def _reply_later(self, message: Message) -> None:
        """A customer answers a while after reading what the agent sent."""
        await asyncio.sleep(self.platform.status_delays[2] + self.rng.uniform(2.0, 6.0))
        self.platform.reply(message.customer_id, message.agent_id)

    # --- Control API --------------------------------------------------------------------------

    def control(self, request: Request, route: str) -> Response:
        """Answer the control API (no auth): {"error": ...} with 400/404 when refused."""
        platform = self.platform
        try:
            body = request.json() if request.body else {}
        except ApiError:
            return Response(400, {"error": "the body is not JSON"})
        method = request.method
        try:
            if route == "state" and method == "GET":
                state = platform.summary()
                state["simulate"] = self.simulate
                state["rate_per_minute"] = self.rate_per_minute
                state["reply_rate"] = self.reply_rate
                state["uptime_seconds"] = round(time.monotonic() - self.started, 1)
                return Response(200, state)
            if route == "faults" and method in ("POST", "PUT", "PATCH"):
                if not isinstance(body, dict):
                    return Response(400, {"error": "faults take a JSON object"})
                unknown = platform.faults.update(body)
                if unknown:
                    return Response(400, {"error": f"unknown fault settings: {', '.join(unknown)}"})
                return Response(200, asdict(platform.faults))
            if route == "inbound" and method == "POST":
                if isinstance(body, dict) and "messages" in body:
                    items = body["messages"]
                    if not isinstance(items, list):
                        return Response(400, {"error": '"messages" must be a list'})
                    return Response(200, {"messages": platform.inbound(items)})
                return Response(200, platform.inbound([body])[0])
            if route == "customers/bulk" and method == "POST":
                if not isinstance(body, dict):
                    return Response(400, {"error": 'give {"count": n, "prefix": "digits"}'})
                return Response(200, platform.bulk_customers(body.get("count"), body.get("prefix")))
            if route.startswith("customers/") and method == "GET":
                return Response(200, platform.customer_detail(route.removeprefix("customers/")))
            if route == "sent" and method == "GET":
                return Response(200, platform.sent_log(request.params().get("customer", "")))
            if route == "calls" and method == "GET":
                return Response(200, platform.calls_summary())
            if route == "calls/reset" and method == "POST":
                return Response(200, platform.calls_reset())
            if route == "tokens/revoke" and method == "POST":
                return Response(200, {"revoked": platform.revoke_tokens()})
        except ValueError as exc:
            return Response(400, {"error": str(exc)})
        except ApiError as exc:
            return Response(exc.status, {"error": exc.message})
        return Response(404, {"error": f"no control route {method} /_sandbox/{route}"})

    # --- Simulated customers ------------------------------------------------------------------

    async def simulate_customers(self) -> None:
        """Customers write in at `rate_per_minute` on average (a Poisson stream)."""
        if self.rate_per_minute <= 0:
            return
        while True:
            await asyncio.sleep(self.rng.expovariate(self.rate_per_minute / 60))
            try:
                self.platform.simulate_inbound()
            except Exception:
                logger.exception("a simulated customer message failed")
