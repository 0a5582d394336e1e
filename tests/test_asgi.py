"""The web server refuses oversized webhook bodies before Django reads them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from config.asgi import BodyLimit


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def call(
    path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, bytes, int]:
    pending = list(chunks)
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": headers or []}
    rules = [(r"^/webhooks/", 1000), (r"^/s/\d+/send/$", 2000)]
    asyncio.run(BodyLimit(_app, rules=rules)(scope, receive, send))
    return sent[0]["status"], sent[1]["body"], reads


def test_a_streamed_body_without_content_length_is_cut_off_at_the_limit():
    status, body, reads = call("/webhooks/xms/x/", [b"a" * 600] * 100)

    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"
    assert reads == 2  # it stopped reading as soon as the limit was passed


def test_a_declared_length_over_the_limit_is_refused_without_reading():
    status, _, reads = call("/webhooks/xms/x/", [b"{}"], headers=[(b"content-length", b"5000")])

    assert (status, reads) == (413, 0)


def test_a_lying_content_length_does_not_get_past_the_limit():
    status, _, _ = call(
        "/webhooks/xms/x/", [b"a" * 700, b"a" * 700], headers=[(b"content-length", b"10")]
    )

    assert status == 413


@pytest.mark.parametrize("path", ["/webhooks/xms/x/", "/admin/"])
def test_bodies_within_the_limit_reach_the_app_whole(path):
    status, body, _ = call(path, [b"a" * 400, b"a" * 400])

    assert (status, body) == (200, b"800")


def test_the_reply_form_has_its_own_larger_limit():
    assert call("/s/12/send/", [b"a" * 1500])[0] == 200
    assert call("/s/12/send/", [b"a" * 1500, b"a" * 1500])[0] == 413
