"""Call the MessageWhiz sandbox's ASGI app in-process, for fast tests of its HTTP surface."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from integrations.mwsandbox.server import MessageWhizServer


@dataclass
class Answer:
    """What the app answered: the status, headers and the body (parsed when JSON)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""


def call(
    server: MessageWhizServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
    raw: bytes | None = None,
) -> Answer:
    """Send one request through the ASGI app; return its answer.

    `body` is sent as JSON, `raw` as it is; `token` becomes the raw `Authorization` header.
    """
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    all_headers = dict(headers or {})
    if token is not None:
        all_headers.setdefault("Authorization", token)
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await server(scope, receive, send)
        # Let spawned work (customer replies) start, then stop it: tests look at answers only.
        for task in list(server.tasks):
            task.cancel()

    asyncio.run(run())
    response_headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    parsed: Any = payload
    if payload and response_headers.get("content-type", "").startswith("application/json"):
        parsed = json.loads(payload)
    return Answer(sent[0]["status"], parsed, response_headers, payload)


def multipart(
    fields: list[tuple[str, str | None, str, bytes]], boundary: str = "sandboxBoundary7MA4YWxk"
) -> tuple[bytes, dict[str, str]]:
    """Build a multipart/form-data body from (field, filename, content type, bytes) parts."""
    body = b""
    for name, filename, content_type, data in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += (
            (
                f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
