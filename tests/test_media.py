"""Media as its own lifecycle (issue 15): every file a customer sends is fetched into our storage
by the production path (the callback, its task, the fetch task on commit), served only to those
who may see its session, retried when the platform stumbles, and never left pending.

The platform's media server is stubbed with `responses`, and every test counts the downloads it
saw: "once" is checked at the far end, not in our rows.
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import io
import re
import threading
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone
from PIL import Image

from inbox.models import MediaFile, Message
from inbox.services import media as media_service
from tests.conftest import load_fixture
from tests.factories import AgentProfileFactory, ChannelFactory, TeamFactory
from tests.test_api import client_for

ASSETS = Path(__file__).resolve().parent.parent / "integrations" / "sandbox" / "assets"
LINK = "https://media.xms.example/files/"


def png(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


def wav(seconds: float = 2.0, rate: int = 8000) -> bytes:
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

_counter = iter(range(1, 1_000_000))


def media_callback(
    kind: str, link: str, *, mime: str, sha256: str = "", filename: str = ""
) -> dict[str, Any]:
    """An XMS inbound media callback (the documented example) naming our stubbed link."""
    fixture = "voice" if kind == "voice" else kind
    body = copy.deepcopy(load_fixture("xms", f"inbound-message-{fixture}"))
    message = body["messages"][0]
    number = next(_counter)
    message["id"] = message["messageIdExt"] = f"media-{kind}-{number}"
    item = message[kind]
    item.update({"link": link, "linkSecure": link, "mime_type": mime, "id": f"m{number}"})
    item["sha256"] = sha256 or "m3232kaoe4belrr"
    if filename:
        item["filename"] = filename
    return body


def serve(link: str, content: bytes, *, status: int = 200, content_type: str = "") -> None:
    responses.add(
        responses.GET,
        link,
        body=content,
        status=status,
        content_type=content_type or "application/octet-stream",
    )


def downloads(link: str) -> int:
    """How many times the platform's media server was asked for `link`."""
    return sum(1 for call in responses.calls if call.request.url == link)


def only_media() -> MediaFile:
    return MediaFile.objects.select_related("message").get()


def retry_due(media: MediaFile) -> None:
    """Let the clock reach the next attempt (the test moves the row, not the time)."""
    MediaFile.objects.filter(pk=media.pk).update(next_attempt_at=timezone.now())


@pytest.fixture
def agent_client(xms_session: Any) -> Client:
    team = TeamFactory()
    team.channels.add(xms_session.channel)
    profile = AgentProfileFactory()
    team.members.add(profile.user)
    client = Client()
    client.force_login(profile.user)
    return client


@pytest.fixture
def outsider_client(account: Any) -> Client:
    """An agent whose team serves another channel of the same account."""
    team = TeamFactory()
    team.channels.add(ChannelFactory(account=account, medium="whatsapp"))
    profile = AgentProfileFactory()
    team.members.add(profile.user)
    client = Client()
    client.force_login(profile.user)
    return client


# --- Stored and served, each type -------------------------------------------------------------

CASES = [
    ("image", png(), "image/jpeg", "image/png", True),
    ("document", PDF, "application/pdf", "application/pdf", False),
    ("voice", (ASSETS / "voice.ogg").read_bytes(), "audio/ogg; codecs=opus", "audio/ogg", True),
    ("audio", wav(), "audio/wav", "audio/x-wav", True),
    ("video", (ASSETS / "clip.mp4").read_bytes(), "video/mp4", "video/mp4", True),
]


@pytest.mark.parametrize(("kind", "content", "declared", "sniffed", "inline"), CASES)
@responses.activate
def test_each_kind_of_media_is_stored_and_served_with_the_type_its_bytes_show(
    xms_session, post_callback, agent_client, kind, content, declared, sniffed, inline
):
    link = f"{LINK}{kind}"
    serve(link, content, content_type="application/octet-stream")
    body = media_callback(kind, link, mime=declared, sha256=hashlib.sha256(content).hexdigest())

    assert post_callback(xms_session.account, body).status_code == 200

    media = only_media()
    assert media.state == MediaFile.State.STORED, media.error
    assert (media.content_type, media.inline, media.size) == (sniffed, inline, len(content))
    assert downloads(link) == 1
    response = agent_client.get(f"/media/{media.pk}/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == content
    assert response["Content-Type"] == sniffed
    assert response["Content-Disposition"].startswith("inline" if inline else "attachment")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"


@responses.activate
def test_a_picture_gets_a_thumbnail_and_the_thread_never_links_to_the_platform(
    xms_session, post_callback, agent_client
):
    link = f"{LINK}photo.png"
    serve(link, png(1600, 1200))

    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))

    media = only_media()
    assert (media.width, media.height) == (1600, 1200)
    thumbnail = agent_client.get(f"/media/{media.pk}/thumbnail/")
    assert thumbnail["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(b"".join(thumbnail.streaming_content))) as picture:
        assert max(picture.size) == 480
    page = agent_client.get(f"/s/{xms_session.pk}/").content.decode()
    assert f"/media/{media.pk}/thumbnail/" in page
    assert "media.xms.example" not in page
    assert 'width="480" height="360"' in page


@responses.activate
def test_audio_durations_are_read_and_the_list_says_what_a_message_carries(
    xms_session, post_callback, agent_client
):
    link = f"{LINK}note.wav"
    serve(link, wav(seconds=12.4))

    post_callback(xms_session.account, media_callback("voice", link, mime="audio/wav"))

    media = only_media()
    assert media.duration_seconds == pytest.approx(12.4, abs=0.05)
    page = agent_client.get("/").content.decode()
    assert "🎤 Voice note 0:12" in page


@responses.activate
def test_a_file_whose_bytes_contradict_its_declared_type_is_kept_but_offered_as_a_download(
    xms_session, post_callback, agent_client
):
    link = f"{LINK}not-a-photo.jpg"
    serve(link, PDF, content_type="image/jpeg")

    post_callback(xms_session.account, media_callback("image", link, mime="image/jpeg"))

    media = only_media()
    assert (media.state, media.content_type, media.inline) == ("stored", "application/pdf", False)
    response = agent_client.get(f"/media/{media.pk}/")
    assert response["Content-Disposition"].startswith("attachment")
    assert response["Content-Type"] == "application/pdf"
    page = agent_client.get(f"/s/{xms_session.pk}/").content.decode()
    assert 'data-testid="media-mislabelled"' in page
    assert f'src="/media/{media.pk}/' not in page


@responses.activate
def test_a_redelivered_callback_never_downloads_the_file_twice(xms_session, post_callback):
    link = f"{LINK}once.png"
    serve(link, png())
    body = media_callback("image", link, mime="image/png")

    post_callback(xms_session.account, body)
    post_callback(xms_session.account, body)
    media_service.media_fetch(only_media().pk)  # a task run twice, as a redelivery would

    assert MediaFile.objects.count() == 1
    assert downloads(link) == 1


# --- Failures ----------------------------------------------------------------------------------


@responses.activate
def test_a_transient_failure_is_retried_with_backoff_and_then_stored(xms_session, post_callback):
    link = f"{LINK}flaky.png"
    serve(link, b"busy", status=503)
    serve(link, b"still busy", status=502)
    serve(link, png())

    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))

    media = only_media()
    assert (media.state, media.attempts) == ("pending", 1)
    assert "HTTP 503" in media.error
    first_wait = media.next_attempt_at - timezone.now()
    retry_due(media)
    media_service.media_fetch(media.pk)
    media.refresh_from_db()
    assert (media.state, media.attempts) == ("pending", 2)
    assert media.next_attempt_at - timezone.now() > first_wait  # the wait doubled
    retry_due(media)
    media_service.media_fetch(media.pk)
    media.refresh_from_db()
    assert (media.state, media.attempts, media.error) == ("stored", 3, "")
    assert downloads(link) == 3


@responses.activate
def test_a_fetch_is_not_run_before_its_time_nor_by_two_workers_at_once(xms_session, post_callback):
    link = f"{LINK}early.png"
    serve(link, b"", status=503)
    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))
    media = only_media()

    assert media_service.media_fetch(media.pk) == "nothing to do"  # the backoff is not over
    retry_due(media)
    MediaFile.objects.filter(pk=media.pk).update(claimed_at=timezone.now())  # another worker
    assert media_service.media_fetch(media.pk) == "nothing to do"
    assert downloads(link) == 1


@responses.activate
def test_a_checksum_that_does_not_match_is_retried_as_a_broken_transfer(xms_session, post_callback):
    link = f"{LINK}checked.png"
    good = png()
    serve(link, good[:-10] + b"0123456789")
    serve(link, good)

    post_callback(
        xms_session.account,
        media_callback("image", link, mime="image/png", sha256=hashlib.sha256(good).hexdigest()),
    )
    media = only_media()
    assert media.state == "pending"
    assert "checksum" in media.error
    retry_due(media)
    media_service.media_fetch(media.pk)

    media.refresh_from_db()
    assert media.state == "stored"
    assert media.sha256 == hashlib.sha256(good).hexdigest()


@responses.activate
def test_a_file_the_platform_no_longer_has_is_marked_expired(
    xms_session, post_callback, agent_client
):
    link = f"{LINK}gone.png"
    serve(link, b"not found", status=404)

    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))

    media = only_media()
    assert media.state == "expired"
    page = agent_client.get(f"/s/{xms_session.pk}/").content.decode()
    assert 'data-testid="media-expired"' in page
    assert agent_client.get(f"/media/{media.pk}/").status_code == 404


@responses.activate
def test_a_refused_download_fails_with_the_reason_and_an_agent_can_retry_it(
    xms_session, post_callback, agent_client, django_capture_on_commit_callbacks
):
    link = f"{LINK}refused.png"
    serve(link, b"bad request", status=400)
    serve(link, png())

    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))
    media = only_media()
    assert media.state == "failed"
    assert "HTTP 400" in media.error
    page = agent_client.get(f"/s/{xms_session.pk}/").content.decode()
    assert 'data-testid="media-retry"' in page
    assert "HTTP 400" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.post(f"/s/{xms_session.pk}/media/{media.pk}/retry/")

    assert response.status_code == 302
    media.refresh_from_db()
    assert (media.state, media.attempts) == ("stored", 1)
    assert downloads(link) == 2


@responses.activate
def test_after_the_last_attempt_a_fetch_fails_in_words_it_does_not_stay_pending(
    xms_session, post_callback, settings
):
    settings.MEDIA_FETCH_ATTEMPTS = 3
    link = f"{LINK}down.png"
    for _ in range(3):
        serve(link, b"", status=503)
    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))
    media = only_media()

    for _ in range(2):
        retry_due(media)
        media_service.media_fetch(media.pk)

    media.refresh_from_db()
    assert media.state == "failed"
    assert media.error.startswith("Gave up after 3 attempts")
    assert downloads(link) == 3


@responses.activate
def test_the_sweep_finds_a_fetch_whose_worker_died_and_gives_up_on_one_out_of_attempts(
    xms_session, post_callback, settings
):
    link = f"{LINK}orphan.png"
    serve(link, b"", status=503)
    serve(link, png())
    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))
    media = only_media()
    long_ago = timezone.now() - timedelta(seconds=settings.MEDIA_FETCH_LEASE_SECONDS + 1)
    # A worker took the retry and died: its claim is older than the lease.
    MediaFile.objects.filter(pk=media.pk).update(claimed_at=long_ago, next_attempt_at=long_ago)

    assert media_service.media_sweep() == 1
    media.refresh_from_db()
    assert media.state == "stored"

    # One whose worker died on its last attempt is given up on, in words.
    dead = media_callback("image", f"{LINK}dead.png", mime="image/png")
    serve(f"{LINK}dead.png", b"", status=503)
    post_callback(xms_session.account, dead)
    last = MediaFile.objects.exclude(pk=media.pk).get()
    MediaFile.objects.filter(pk=last.pk).update(
        claimed_at=long_ago, next_attempt_at=long_ago, attempts=settings.MEDIA_FETCH_ATTEMPTS
    )
    media_service.media_sweep()
    last.refresh_from_db()
    assert last.state == "failed"
    assert "Gave up" in last.error


# --- Size: streamed, and refused past the limit ------------------------------------------------


@responses.activate
def test_a_file_over_the_size_limit_fails_cleanly(xms_session, post_callback, settings):
    settings.MEDIA_MAX_BYTES = 1024 * 1024
    link = f"{LINK}big.bin"
    serve(link, b"\0" * (settings.MEDIA_MAX_BYTES + 1))

    post_callback(xms_session.account, media_callback("document", link, mime="application/pdf"))

    media = only_media()
    assert media.state == "failed"
    assert "larger than 1 MiB" in media.error
    assert not media.path


# --- Who may see it ----------------------------------------------------------------------------


@responses.activate
def test_an_agent_who_cannot_see_the_session_gets_404_for_its_files_also_by_guessing(
    xms_session, post_callback, agent_client, outsider_client
):
    link = f"{LINK}private.png"
    serve(link, png())
    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))
    media = only_media()

    assert agent_client.get(f"/media/{media.pk}/").status_code == 200
    for url in (f"/media/{media.pk}/", f"/media/{media.pk}/thumbnail/", f"/media/{media.pk + 1}/"):
        assert outsider_client.get(url).status_code == 404
        assert Client().get(url).status_code == 404
    assert outsider_client.post(f"/s/{xms_session.pk}/media/{media.pk}/retry/").status_code == 404


@responses.activate
def test_the_api_gives_the_state_and_a_link_signed_for_the_caller_never_the_platforms(
    xms_session, post_callback
):
    link = f"{LINK}api.png"
    serve(link, png())
    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))
    media = only_media()
    team = TeamFactory()
    team.channels.add(xms_session.channel)
    profile = AgentProfileFactory()
    team.members.add(profile.user)
    data = client_for(profile.user).get(f"/api/v1/sessions/{xms_session.pk}/messages/").json()

    item = data["results"][0]["media"]
    assert item["state"] == "stored"
    assert item["mime_type"] == "image/png"
    assert "media.xms.example" not in str(data)
    signed = item["url"].removeprefix("http://testserver")
    assert re.match(rf"^/media/{media.pk}/\?token=", signed)
    assert Client().get(signed).status_code == 200  # no browser session needed
    thumbnail = signed.replace(f"/media/{media.pk}/", f"/media/{media.pk}/thumbnail/")
    assert Client().get(thumbnail).status_code == 200
    other = Client().get(signed[:-3] + "abc")
    assert other.status_code == 404


# --- Retention -----------------------------------------------------------------------------------


@responses.activate
def test_retention_deletes_old_files_and_the_thread_says_so(
    xms_session, post_callback, agent_client
):
    link = f"{LINK}old.png"
    serve(link, png())
    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))
    media = only_media()
    xms_session.channel.media_retention_days = 30
    xms_session.channel.save()
    MediaFile.objects.filter(pk=media.pk).update(stored_at=timezone.now() - timedelta(days=29))

    assert media_service.media_retention_apply() == 0
    MediaFile.objects.filter(pk=media.pk).update(stored_at=timezone.now() - timedelta(days=31))
    assert media_service.media_retention_apply() == 1

    media.refresh_from_db()
    assert media.state == "deleted"
    assert not default_storage.exists(media.path)
    assert not default_storage.exists(media.thumbnail_path)
    assert agent_client.get(f"/media/{media.pk}/").status_code == 404
    page = agent_client.get(f"/s/{xms_session.pk}/").content.decode()
    assert "this channel keeps files for 30 days" in page
    assert Message.objects.filter(pk=media.message_id).exists()


class _Streaming(http.server.BaseHTTPRequestHandler):
    """A media server that streams a large file in chunks, never holding it whole."""

    size = 50 * 1024 * 1024
    chunk = b"\x5a" * (256 * 1024)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if self.path.endswith("/declared"):
            self.send_header("Content-Length", str(self.size))
        self.end_headers()
        sent = 0
        try:
            while sent < self.size:
                self.wfile.write(self.chunk)
                sent += len(self.chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading at its limit

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def streaming_server() -> Any:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Streaming)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("length", ["declared", "chunked"])
def test_a_50_mib_file_over_the_limit_fails_cleanly_without_filling_memory(
    xms_session, post_callback, streaming_server, settings, length
):
    settings.MEDIA_MAX_BYTES = 32 * 1024 * 1024
    link = f"{streaming_server}/big/{length}"

    tracemalloc.start()
    try:
        post_callback(xms_session.account, media_callback("document", link, mime="video/mp4"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    media = only_media()
    assert media.state == "failed"
    assert "larger than 32 MiB" in media.error
    assert not media.path
    # (Reading it whole would take 32 MiB at least; the pipeline itself takes a few.)
    assert peak < 16 * 1024 * 1024, f"{peak / 1024 / 1024:.1f} MiB held while downloading"


@responses.activate
def test_with_object_storage_an_allowed_agent_is_sent_to_a_signed_url_that_serves_the_file(
    xms_session, post_callback, agent_client, outsider_client, s3_storage, settings
):
    settings.MEDIA_SERVE_REDIRECT = True
    endpoint = s3_storage.endpoint_url
    responses.add_passthru(endpoint)
    link = f"{LINK}s3.png"
    content = png(800, 600)
    serve(link, content)

    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))

    media = only_media()
    assert media.state == "stored"
    assert s3_storage.exists(media.path) and s3_storage.exists(media.thumbnail_path)
    response = agent_client.get(f"/media/{media.pk}/")
    assert response.status_code == 302
    signed = response["Location"]
    assert signed.startswith(endpoint) and "X-Amz-Signature=" in signed
    fetched = requests.get(signed, timeout=10)
    assert fetched.status_code == 200 and fetched.content == content
    assert fetched.headers["Content-Type"] == "image/png"
    assert fetched.headers["Content-Disposition"].startswith("inline")
    assert requests.get(signed.split("?", 1)[0], timeout=10).status_code == 403
    thumbnail = requests.get(
        agent_client.get(f"/media/{media.pk}/thumbnail/")["Location"], timeout=10
    )
    assert thumbnail.headers["Content-Type"] == "image/webp"
    # No redirect, and so no signed URL, for someone who may not see the session.
    assert outsider_client.get(f"/media/{media.pk}/").status_code == 404

    settings.MEDIA_SERVE_REDIRECT = False  # a bucket browsers cannot reach: the app streams it
    streamed = agent_client.get(f"/media/{media.pk}/")
    assert streamed.status_code == 200
    assert b"".join(streamed.streaming_content) == content


@responses.activate
def test_an_open_thread_is_told_when_a_file_on_its_way_arrives(
    xms_session, post_callback, agent_client
):
    link = f"{LINK}later.png"
    serve(link, b"", status=503)
    serve(link, png())
    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))
    media = only_media()
    page = agent_client.get(f"/s/{xms_session.pk}/").content.decode()
    shown = re.search(rf'id="message-{media.message_id}"[^>]*data-shown="([^"]+)"', page)
    assert shown is not None and 'data-media="pending"' in page
    updates = f"/s/{xms_session.pk}/updates/?m={media.message_id}&n=0&t=0"
    query = f"{updates}&st={media.message_id}.{shown.group(1)}"

    assert f"/media/{media.pk}/" not in agent_client.get(query).content.decode()  # unchanged
    retry_due(media)
    media_service.media_fetch(media.pk)

    changed = agent_client.get(query).content.decode()
    assert f'src="/media/{media.pk}/thumbnail/"' in changed


@responses.activate
def test_while_the_media_lane_has_a_backlog_the_sweep_requeues_only_fetches_whose_worker_died(
    xms_session, post_callback, settings, monkeypatch
):
    for name in ("waiting.png", "orphan.png"):
        serve(f"{LINK}{name}", b"", status=503)
        post_callback(
            xms_session.account, media_callback("image", f"{LINK}{name}", mime="image/png")
        )
    waiting, orphan = MediaFile.objects.order_by("pk")
    long_ago = timezone.now() - timedelta(seconds=settings.MEDIA_FETCH_LEASE_SECONDS + 60)
    MediaFile.objects.filter(pk=waiting.pk).update(next_attempt_at=long_ago)  # queued, not run
    MediaFile.objects.filter(pk=orphan.pk).update(claimed_at=long_ago, next_attempt_at=long_ago)
    monkeypatch.setattr(media_service, "queue_length", lambda queue: 120)
    enqueued: list[int] = []
    monkeypatch.setattr(
        media_service, "_fetches_enqueue", lambda ids, countdown=0: enqueued.extend(ids)
    )

    assert media_service.media_sweep() == 1
    assert enqueued == [orphan.pk]
    orphan.refresh_from_db()
    assert orphan.claimed_at is None  # the dead worker's claim is let go
    assert media_service.media_sweep() == 0  # and it is not enqueued again at once

    monkeypatch.setattr(media_service, "queue_length", lambda queue: 0)
    assert media_service.media_sweep() == 1  # no backlog: the one merely due is enqueued too
    assert enqueued == [orphan.pk, waiting.pk]


@responses.activate
def test_a_download_waits_while_callbacks_are_applied_then_trickles_one_at_a_time(
    xms_session, post_callback, settings, monkeypatch, test_redis
):
    link = f"{LINK}patient.png"
    serve(link, b"", status=503)
    serve(link, png())
    serve(link, png())
    post_callback(xms_session.account, media_callback("image", link, mime="image/png"))
    media = only_media()
    retry_due(media)
    settings.MEDIA_YIELD_MAX_SECONDS = 30
    busy = iter([True, True, True, False])
    monkeypatch.setattr(media_service, "inbound_busy", lambda: next(busy))
    waits: list[float] = []
    monkeypatch.setattr(media_service.time, "sleep", waits.append)

    media_service.media_fetch(media.pk)

    assert len(waits) == 2  # (the first look decides to wait; two more, then free)
    media.refresh_from_db()
    assert media.state == "stored"
    # A file already as old as the bound waits only for the one download at a time that may
    # run meanwhile, however busy the inbound side is.
    test_redis.delete(media_service.TRICKLE_KEY)
    MediaFile.objects.filter(pk=media.pk).update(
        state="pending", created_at=timezone.now() - timedelta(seconds=31), claimed_at=None
    )
    monkeypatch.setattr(media_service, "inbound_busy", lambda: True)
    media_service.media_fetch(media.pk)
    assert len(waits) == 2
    assert not test_redis.exists(media_service.TRICKLE_KEY)  # given back
    # While another holds that turn, it waits (until the drains are done, here).
    MediaFile.objects.filter(pk=media.pk).update(state="pending", claimed_at=None)
    test_redis.set(media_service.TRICKLE_KEY, "another")
    busy = iter([True, True, False])
    monkeypatch.setattr(media_service, "inbound_busy", lambda: next(busy))
    media_service.media_fetch(media.pk)
    assert len(waits) == 3
    assert test_redis.get(media_service.TRICKLE_KEY) == b"another"  # not ours to give back
    media.refresh_from_db()
    assert media.state == "stored"


def test_a_drain_says_callbacks_are_being_applied_for_a_moment(test_redis):
    from integrations.services import webhooks

    test_redis.delete(webhooks.KICK_KEY, webhooks.INBOUND_BUSY_KEY)  # (an earlier test's drain)
    assert not webhooks.inbound_busy()
    webhooks._inbound_busy_mark()
    assert webhooks.inbound_busy()
    assert 0 < test_redis.pttl(webhooks.INBOUND_BUSY_KEY) <= webhooks.INBOUND_BUSY_SECONDS * 1000


def test_pages_load_media_from_our_own_origin_and_only_the_bucket_they_are_sent_on_to(client):
    from config.settings.base import media_sources

    assert media_sources("", s3=False, redirect=True) == []
    assert media_sources("http://127.0.0.1:9310", s3=True, redirect=False) == []
    assert media_sources("http://127.0.0.1:9310/", s3=True, redirect=True) == [
        "http://127.0.0.1:9310"
    ]
    assert media_sources("", s3=True, redirect=True) == ["https://*.amazonaws.com"]
    policy = client.get("/login/")["Content-Security-Policy"]
    img_src = next(d for d in policy.split(";") if d.strip().startswith("img-src"))
    assert img_src.split()[1:] == ["'self'", "data:", "blob:"]  # (no S3 in the test settings)
