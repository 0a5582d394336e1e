"""The sandbox serves media the way the platform may: per-message links that expire, slow or
failing or corrupted downloads, mislabelled files and big ones, each counted at the far end."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
import requests
import uvicorn

from integrations.sandbox import media
from integrations.sandbox.media import media_files
from integrations.sandbox.server import SandboxServer
from integrations.sandbox.state import Outgoing, SandboxPlatform
from tests import test_sandbox as sandbox_tests

BASE = "http://127.0.0.1:8001"
MEDIA_KINDS = ("image", "video", "audio", "voice", "document")
# What the first bytes of each kind of file are, whatever the name or the declared type says.
MAGIC = {
    "image/png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "audio/wav": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE",
    "audio/ogg; codecs=opus": lambda b: b.startswith(b"OggS") and b"OpusHead" in b[:64],
    "video/mp4": lambda b: b[4:8] == b"ftyp",
    "application/pdf": lambda b: b.startswith(b"%PDF-"),
}
FIFTY_MIB = 50 * 1024 * 1024


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    chunks: list[bytes]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(
    server: SandboxServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    leave_after_chunks: int | None = None,
) -> Answer:
    """Send one request through the ASGI app; keep every body chunk as it was sent.

    With `leave_after_chunks`, the client disconnects once it has that many chunks.
    """
    raw = json.dumps(body).encode() if body is not None else b""
    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": []}
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        asked = False
        left = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if leave_after_chunks is not None and len(sent) - 1 >= leave_after_chunks:
                left.set()

        await server(scope, receive, send)
        for task in list(server.tasks):  # callbacks are not what these tests look at
            task.cancel()

    asyncio.run(run())
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return Answer(sent[0]["status"], headers, [m.get("body", b"") for m in sent[1:]])


# The sandbox's own tests' platform and server (seeded, no simulated traffic).
platform = sandbox_tests.platform
server = sandbox_tests.server


def media_in(callbacks: list[Outgoing], kind: str) -> dict[str, Any]:
    """Return the media object of the message callback among `callbacks`."""
    message = next(c for c in callbacks if c.kind == "message")
    assert message.body is not None
    media_object: dict[str, Any] = message.body["messages"][0][kind]
    return media_object


def media_of(
    platform: SandboxPlatform, kind: str, *, media_size: int | None = None
) -> dict[str, Any]:
    """Make a customer send a `kind` message; return its media object."""
    callbacks, _ = platform.customer_message("priya", kind=kind, media_size=media_size)
    return media_in(callbacks, kind)


def path_of(link: str) -> str:
    return link.removeprefix(BASE)


def link_id(link: str) -> str:
    return path_of(link).split("/")[2]


def set_faults(server: SandboxServer, **values: Any) -> None:
    answer = fetch(server, "POST", "/_sandbox/faults", values)
    assert answer.status == 200, answer.json()


def counts(server: SandboxServer, link: str) -> dict[str, Any]:
    answer = fetch(server, "GET", f"/_sandbox/media/{link_id(link)}")
    assert answer.status == 200
    result: dict[str, Any] = answer.json()
    return result


# --- Links --------------------------------------------------------------------------------------


def test_every_media_message_gets_a_link_of_its_own_with_an_opaque_id_and_the_file_name(
    platform: SandboxPlatform,
) -> None:
    links = [media_of(platform, "document")["link"] for _ in range(3)]

    for link in links:
        assert re.fullmatch(rf"{BASE}/media/[A-Za-z0-9_-]{{16,}}/invoice\.pdf", link), link
    assert len(set(links)) == 3


def test_the_session_history_lists_the_same_link_the_callback_gave(
    platform: SandboxPlatform,
) -> None:
    callbacks, summary = platform.customer_message("priya", kind="voice")
    link = media_in(callbacks, "voice")["link"]

    _, envelope, _ = platform.session_messages({"sessionId": summary["sessionId"]})

    attachment = envelope["results"][-1]["attachments"][0]
    assert attachment["mediaURL"] == attachment["mediaSrc"] == link


@pytest.mark.parametrize("kind", MEDIA_KINDS)
def test_each_media_kind_is_served_with_its_declared_type_and_bytes_of_that_type(
    server: SandboxServer, platform: SandboxPlatform, kind: str
) -> None:
    media_object = media_of(platform, kind)

    answer = fetch(server, "GET", path_of(media_object["link"]))

    assert answer.status == 200
    assert answer.headers["content-type"] == media_object["mime_type"]
    assert MAGIC[media_object["mime_type"]](answer.body)
    assert int(answer.headers["content-length"]) == len(answer.body)


@pytest.mark.parametrize("kind", MEDIA_KINDS)
def test_the_callback_sha256_is_the_lowercase_hex_digest_of_the_bytes_served(
    server: SandboxServer, platform: SandboxPlatform, kind: str
) -> None:
    media_object = media_of(platform, kind)

    answer = fetch(server, "GET", path_of(media_object["link"]))

    assert re.fullmatch(r"[0-9a-f]{64}", media_object["sha256"])
    assert hashlib.sha256(answer.body).hexdigest() == media_object["sha256"]


def test_the_plain_file_route_still_serves_every_file_without_faults(
    server: SandboxServer,
) -> None:
    set_faults(server, media_error_rate=1.0, media_corrupt_rate=1.0)

    for name, (mime, data) in media_files().items():
        answer = fetch(server, "GET", f"/media/{name}")
        assert (answer.status, answer.headers["content-type"], answer.body) == (200, mime, data)


def test_an_unknown_link_or_a_known_id_with_another_name_is_404_and_counted_apart(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    link = media_of(platform, "image")["link"]

    unknown = fetch(server, "GET", "/media/no-such-id/photo.png")
    renamed = fetch(server, "GET", f"/media/{link_id(link)}/other.png")

    assert (unknown.status, renamed.status) == (404, 404)
    state = fetch(server, "GET", "/_sandbox/state").json()
    assert state["media"]["unknown_404"] == 2
    assert state["media"]["requests"] == 0


def test_a_link_counts_each_time_it_was_served_and_the_state_gives_the_total(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    once, twice = media_of(platform, "image")["link"], media_of(platform, "audio")["link"]

    for link in (once, twice, twice):
        assert fetch(server, "GET", path_of(link)).status == 200

    assert counts(server, once)["served"] == 1
    assert counts(server, twice)["served"] == 2
    assert counts(server, twice)["bytes_sent"] == 2 * len(media_files()["audio.wav"][1])
    totals = fetch(server, "GET", "/_sandbox/state").json()["media"]
    assert (totals["issued"], totals["served"], totals["requests"]) == (2, 3, 3)


def test_the_control_api_describes_a_link_and_lists_them_all(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    callbacks, summary = platform.customer_message("priya", kind="document")
    link = media_in(callbacks, "document")

    described = counts(server, link["link"])
    listed = fetch(server, "GET", "/_sandbox/media").json()["links"]

    assert described["link"] == link["link"]
    assert described["message_id"] == summary["id"]
    assert described["sha256"] == link["sha256"]
    assert described["mime_type"] == "application/pdf"
    assert described["expires_ms"] is None
    assert described["served"] == 0
    assert listed == [described]
    assert fetch(server, "GET", "/_sandbox/media/nope").status == 404


def test_a_head_answers_the_type_and_size_without_a_body_and_is_not_served(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    link = media_of(platform, "document")["link"]

    answer = fetch(server, "HEAD", path_of(link))

    assert answer.status == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert int(answer.headers["content-length"]) == len(media_files()["invoice.pdf"][1])
    assert answer.body == b""
    assert (counts(server, link)["requests"], counts(server, link)["served"]) == (1, 0)


# --- Faults -------------------------------------------------------------------------------------


def test_media_faults_are_set_through_the_control_route_like_the_others(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    values = {
        "media_latency_ms": 250,
        "media_error_rate": 0.25,
        "media_ttl_seconds": 300,
        "media_corrupt_rate": 0.1,
        "media_mislabel_rate": 0.05,
    }

    answer = fetch(server, "POST", "/_sandbox/faults", values)

    assert answer.status == 200
    assert {k: answer.json()[k] for k in values} == values
    assert fetch(server, "GET", "/_sandbox/state").json()["faults"]["media_ttl_seconds"] == 300
    assert platform.faults.media_latency_ms == 250


@pytest.mark.parametrize(
    "values",
    [
        {"media_error_rate": 1.5},
        {"media_corrupt_rate": -0.1},
        {"media_ttl_seconds": -1},
        {"media_latency_ms": "slow"},
        {"media_mislabel_rate": True},
        {"hang_receipts": "no"},
        {"media_error_rate": 1.0, "media_ttl_seconds": "never"},
    ],
)
def test_a_fault_value_out_of_range_is_refused_and_changes_nothing(
    server: SandboxServer, platform: SandboxPlatform, values: dict[str, Any]
) -> None:
    answer = fetch(server, "POST", "/_sandbox/faults", values)

    assert answer.status == 400
    assert any(name in answer.json()["error"] for name in values)
    assert platform.faults.media_error_rate == 0.0
    assert platform.faults.hang_receipts is True


def test_media_latency_makes_every_media_request_wait_and_is_counted(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    link = media_of(platform, "image")["link"]
    set_faults(server, media_latency_ms=250)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with mock.patch("asyncio.sleep", sleep):
        answer = fetch(server, "GET", path_of(link))

    assert answer.status == 200
    assert 0.25 in waits
    assert counts(server, link)["delayed"] == 1
    assert fetch(server, "GET", "/_sandbox/state").json()["media"]["delayed"] == 1


def test_a_media_service_that_is_down_refuses_every_get_with_503_until_it_is_back(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    link = media_of(platform, "video")["link"]
    set_faults(server, media_error_rate=1.0)

    refused = [fetch(server, "GET", path_of(link)).status for _ in range(5)]
    set_faults(server, media_error_rate=0.0)
    after = fetch(server, "GET", path_of(link))

    assert refused == [503] * 5
    assert after.status == 200
    assert hashlib.sha256(after.body).hexdigest() == counts(server, link)["sha256"]
    described = counts(server, link)
    assert (described["refused_5xx"], described["served"], described["requests"]) == (5, 1, 6)


def test_every_refused_and_every_corrupted_answer_is_counted_exactly(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    link = media_of(platform, "image")
    set_faults(server, media_error_rate=0.4, media_corrupt_rate=0.5)

    answers = [fetch(server, "GET", path_of(link["link"])) for _ in range(40)]

    refused = sum(a.status == 503 for a in answers)
    corrupted = sum(
        a.status == 200 and hashlib.sha256(a.body).hexdigest() != link["sha256"] for a in answers
    )
    totals = fetch(server, "GET", "/_sandbox/state").json()["media"]
    assert refused > 0
    assert corrupted > 0
    assert (totals["refused_5xx"], totals["corrupted"]) == (refused, corrupted)
    assert totals["served"] == 40 - refused


def test_a_corrupted_file_keeps_its_length_and_type_but_fails_the_checksum(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    link = media_of(platform, "image")
    set_faults(server, media_corrupt_rate=1.0)

    answer = fetch(server, "GET", path_of(link["link"]))

    assert answer.status == 200
    assert len(answer.body) == int(answer.headers["content-length"])
    assert MAGIC["image/png"](answer.body)
    assert hashlib.sha256(answer.body).hexdigest() != link["sha256"]
    assert counts(server, link["link"])["corrupted"] == 1


def test_a_link_older_than_the_ttl_is_gone_for_good_with_404(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    old, young = media_of(platform, "document")["link"], media_of(platform, "image")["link"]
    set_faults(server, media_ttl_seconds=60)

    aged = fetch(server, "POST", f"/_sandbox/media/{link_id(old)}", {"age_seconds": 61})

    assert aged.json()["expired"] is True
    assert aged.json()["expires_ms"] == aged.json()["issued_ms"] + 60_000
    assert [fetch(server, "GET", path_of(old)).status for _ in range(2)] == [404, 404]
    assert fetch(server, "GET", path_of(young)).status == 200
    assert counts(server, old)["gone_404"] == 2
    assert counts(server, old)["served"] == 0
    assert fetch(server, "GET", "/_sandbox/state").json()["media"]["gone_404"] == 2


@pytest.mark.parametrize("body", [{}, {"age_seconds": "old"}, {"age_seconds": -5}, []])
def test_aging_a_link_needs_an_age_of_zero_or_more_seconds(
    server: SandboxServer, platform: SandboxPlatform, body: Any
) -> None:
    link = media_of(platform, "image")["link"]

    assert fetch(server, "POST", f"/_sandbox/media/{link_id(link)}", body).status == 400


def test_with_no_ttl_a_link_never_expires(server: SandboxServer, platform: SandboxPlatform) -> None:
    link = media_of(platform, "audio")["link"]

    fetch(server, "POST", f"/_sandbox/media/{link_id(link)}", {"age_seconds": 10 * 365 * 86400})

    assert fetch(server, "GET", path_of(link)).status == 200


def test_an_expired_link_is_gone_even_while_the_media_service_is_failing(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    link = media_of(platform, "image")["link"]
    set_faults(server, media_ttl_seconds=60, media_error_rate=1.0)
    fetch(server, "POST", f"/_sandbox/media/{link_id(link)}", {"age_seconds": 3600})

    assert fetch(server, "GET", path_of(link)).status == 404


def test_a_mislabeled_image_declares_jpeg_but_its_bytes_are_a_pdf(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    set_faults(server, media_mislabel_rate=1.0)
    image = media_of(platform, "image")
    document = media_of(platform, "document")

    answer = fetch(server, "GET", path_of(image["link"]))

    assert image["mime_type"] == answer.headers["content-type"] == "image/jpeg"
    assert image["link"].endswith("/photo.jpg")
    assert MAGIC["application/pdf"](answer.body)
    assert hashlib.sha256(answer.body).hexdigest() == image["sha256"]
    assert document["mime_type"] == "application/pdf"  # only images are mislabeled
    assert counts(server, image["link"])["mislabeled"] is True
    assert fetch(server, "GET", "/_sandbox/state").json()["media"]["mislabeled"] == 1


def test_without_the_fault_no_image_is_mislabeled(platform: SandboxPlatform) -> None:
    images = [media_of(platform, "image") for _ in range(20)]

    assert {i["mime_type"] for i in images} == {"image/png"}
    assert platform.media_counts["mislabeled"] == 0


# --- Big files ----------------------------------------------------------------------------------


def test_a_generated_big_file_streams_exactly_its_size_in_chunks(server: SandboxServer) -> None:
    answer = fetch(server, "GET", f"/media/generated/{FIFTY_MIB + 7}/big.pdf")

    assert answer.status == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert int(answer.headers["content-length"]) == FIFTY_MIB + 7
    assert sum(len(c) for c in answer.chunks) == FIFTY_MIB + 7
    assert max(len(c) for c in answer.chunks) <= media.CHUNK_BYTES
    assert hashlib.sha256(answer.body).hexdigest() == media.generated_sha256(FIFTY_MIB + 7)


@pytest.mark.parametrize("size", [str(media.MAX_GENERATED_BYTES + 1), "-1", "lots"])
def test_a_generated_file_over_the_cap_or_of_no_size_is_refused(
    server: SandboxServer, size: str
) -> None:
    assert fetch(server, "GET", f"/media/generated/{size}/big.bin").status == 400


def test_an_empty_generated_file_is_a_valid_answer(server: SandboxServer) -> None:
    answer = fetch(server, "GET", "/media/generated/0/empty.bin")

    assert (answer.status, answer.headers["content-length"], answer.body) == (200, "0", b"")
    assert answer.headers["content-type"] == "application/octet-stream"


def test_a_customer_can_send_a_big_file_whose_link_streams_it_and_counts_the_bytes(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    sent = fetch(
        server,
        "POST",
        "/_sandbox/inbound",
        {"customer": "priya", "type": "document", "mediaSize": FIFTY_MIB},
    ).json()
    link = next(x for x in platform.media_links.values() if x.message_id == sent["id"])

    answer = fetch(server, "GET", f"/media/{link.id}/{link.name}")

    assert link.name == f"large-{FIFTY_MIB}.pdf"
    assert int(answer.headers["content-length"]) == FIFTY_MIB == len(answer.body)
    assert hashlib.sha256(answer.body).hexdigest() == link.sha256
    assert link.counts["bytes_sent"] == FIFTY_MIB


@pytest.mark.parametrize(
    "body",
    [
        {"customer": "priya", "type": "text", "mediaSize": 10},
        {"customer": "priya", "type": "image", "mediaSize": media.MAX_GENERATED_BYTES + 1},
    ],
)
def test_a_media_size_on_a_text_message_or_over_the_cap_is_refused(
    server: SandboxServer, body: dict[str, Any]
) -> None:
    assert fetch(server, "POST", "/_sandbox/inbound", body).status == 400


def test_a_client_that_stops_reading_a_big_file_stops_the_sandbox_making_it(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    link = platform.media_links[link_id(media_of(platform, "video", media_size=FIFTY_MIB)["link"])]

    answer = fetch(server, "GET", f"/media/{link.id}/{link.name}", leave_after_chunks=3)

    assert int(answer.headers["content-length"]) == FIFTY_MIB
    assert link.counts["served"] == 1
    assert link.counts["bytes_sent"] <= 5 * media.CHUNK_BYTES
    assert len(answer.body) == link.counts["bytes_sent"]


def test_over_real_http_a_client_can_read_the_size_and_drop_a_big_file_unread(
    server: SandboxServer, platform: SandboxPlatform
) -> None:
    big = media_of(platform, "document", media_size=FIFTY_MIB)
    link = platform.media_links[link_id(big["link"])]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    http = uvicorn.Server(
        uvicorn.Config(server, lifespan="off", log_level="warning", timeout_graceful_shutdown=10)
    )
    thread = threading.Thread(target=http.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        with (
            requests.Session() as client,
            client.get(
                f"http://127.0.0.1:{port}/media/{link.id}/{link.name}", stream=True, timeout=30
            ) as response,
        ):
            length = int(response.headers["content-length"])
            first = response.raw.read(1024)
    finally:
        http.should_exit = True
        thread.join(timeout=60)
        listener.close()

    assert not thread.is_alive()
    assert length == FIFTY_MIB
    assert first == bytes(range(256)) * 4
    assert link.counts["served"] == 1
    assert link.counts["bytes_sent"] < FIFTY_MIB
