"""The web server: oversized webhook bodies refused before Django reads them; one sync chain."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

from config.asgi import BodyLimit
from tests.patience import PATIENCE_SECONDS


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


_threads: list[tuple[str, int]] = []


class _RecordThread(MiddlewareMixin):
    """A middleware like Django's own (sync and async capable) that notes its thread."""

    def process_request(self, request: Any) -> None:
        import threading

        _threads.append(("middleware", threading.get_ident()))


def _asgi_get(path: str, handler: Any = None) -> list[dict[str, Any]]:
    return asyncio.run(_asgi_get_async(path, handler))


async def _asgi_get_async(path: str, handler: Any = None) -> list[dict[str, Any]]:
    from config.asgi import SyncChainASGIHandler

    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received > 1:  # the client stays connected until the response is sent
            await asyncio.sleep(3600)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    await (handler or SyncChainASGIHandler())(scope, receive, send)
    return sent


def _view(request: Any) -> Any:

    from django.http import HttpResponse

    _threads.append(("view", threading.get_ident()))
    return HttpResponse("ok")


_both_in_flight = threading.Barrier(2, timeout=PATIENCE_SECONDS)


def _meet(request: Any) -> Any:
    from django.http import HttpResponse

    _threads.append(("view", threading.get_ident()))
    _both_in_flight.wait()  # only passes if the other request runs at the same time
    return HttpResponse("ok")


urlpatterns = [path("probe/", _view), path("meet/", _meet)]


@pytest.mark.django_db(transaction=True)
def test_the_asgi_handler_runs_the_middleware_and_a_sync_view_in_one_thread_without_hops(
    settings,
):

    from asgiref.sync import AsyncToSync

    settings.ROOT_URLCONF = "tests.test_asgi"
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.test_asgi._RecordThread"]
    _threads.clear()
    back_to_the_loop = 0
    real = AsyncToSync.__call__

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal back_to_the_loop
        back_to_the_loop += 1
        return real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AsyncToSync, "__call__", counted)
        sent = _asgi_get("/probe/")

    assert sent[0]["status"] == 200
    assert [where for where, _ in _threads] == ["middleware", "view"]
    assert len({thread for _, thread in _threads}) == 1
    assert _threads[0][1] != threading.get_ident()  # not on the event loop's thread
    # Django's stock handler goes back to the event loop and out again around each sync-only
    # middleware; this one enters the sync chain once and stays there.
    assert back_to_the_loop == 0


@pytest.mark.django_db(transaction=True)
def test_requests_reuse_idle_threads_and_concurrent_requests_get_their_own(settings):
    from config.asgi import SyncChainASGIHandler

    settings.ROOT_URLCONF = "tests.test_asgi"
    handler = SyncChainASGIHandler()
    _threads.clear()

    _asgi_get("/probe/", handler)
    _asgi_get("/probe/", handler)
    assert _threads[0][1] == _threads[1][1]  # the second request started no thread

    _threads.clear()

    async def two_at_once() -> list[list[dict[str, Any]]]:
        return list(
            await asyncio.gather(
                _asgi_get_async("/meet/", handler), _asgi_get_async("/meet/", handler)
            )
        )

    answers = asyncio.run(two_at_once())
    assert [sent[0]["status"] for sent in answers] == [200, 200]
    assert len({thread for _, thread in _threads}) == 2
