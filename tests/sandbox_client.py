"""Call the sandbox's ASGI app in-process, for fast tests of its HTTP surface."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from integrations.sandbox.server import SandboxServer


def call(
    server: SandboxServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> tuple[int, Any]:
    """Send one request through the ASGI app; return (status, parsed JSON or bytes)."""
    raw = json.dumps(body).encode() if body is not None else b""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await server(scope, receive, send)
        # Let scheduled callbacks start, then stop them: these tests look at responses only.
        for task in list(server.tasks):
            task.cancel()

    asyncio.run(run())
    status = sent[0]["status"]
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    content_type = dict(sent[0]["headers"]).get(b"content-type", b"")
    return status, json.loads(payload) if content_type == b"application/json" else payload
