"""Media end to end, through real processes: the sandbox's media server (slow, failing, expiring
links, as a platform's can be) -> the media lane's worker -> our storage (the S3-compatible
server when .ci/run started one) -> the media view and the API. Downloads are counted at the
sandbox, the far end."""

from __future__ import annotations

import hashlib
from typing import Any

import requests
from django.test import Client

from accounts.models import User
from devstack import wait_for
from inbox.models import MediaFile
from tests.patience import PATIENCE_SECONDS

KINDS = ("image", "voice", "document", "video")


def link_of(stack: Any, message_id: str) -> dict[str, Any]:
    """What the sandbox says of the media link it made for a message (served counts too)."""
    links = stack.sandbox("GET", "media")["links"]
    return next(link for link in links if link["message_id"] == message_id)


def media_of(message_id: str) -> MediaFile | None:
    return (
        MediaFile.objects.select_related("message").filter(message__external_id=message_id).first()
    )


def settled(message_id: str, *states: str) -> MediaFile | None:
    media = media_of(message_id)
    return media if media is not None and media.state in states else None


def test_every_media_message_is_served_from_our_storage_within_seconds(stack, e2e_account, api):
    sent = [stack.sandbox("POST", "inbound", {"customer": "priya", "type": k}) for k in KINDS]

    stored = [
        wait_for(lambda s=s: settled(s["id"], "stored"), what=f"{s['id']} stored") for s in sent
    ]

    session_id = stored[0].message.session_id
    listed = api.get(f"sessions/{session_id}/messages/").json()["results"]
    by_external = {m["external_id"]: m for m in listed}
    for message, media in zip(sent, stored, strict=True):
        link = link_of(stack, message["id"])
        assert link["served"] == 1, "downloaded once, counted at the sandbox"
        item = by_external[message["id"]]["media"]
        assert item["state"] == "stored"
        assert stack.sandbox_url not in str(item)
        response = requests.get(item["url"], timeout=PATIENCE_SECONDS)  # (S3: a redirect)
        assert response.ok
        assert hashlib.sha256(response.content).hexdigest() == link["sha256"] == media.sha256
        assert response.headers["content-type"].split(";")[0] == media.content_type
    # The thread shows our copies only: nothing links to the platform's media server.
    browser = Client()
    browser.force_login(User.objects.create_superuser("media-e2e", password="not-used-0123"))
    page = browser.get(f"/s/{session_id}/").content.decode()
    assert f"/media/{stored[0].pk}/thumbnail/" in page
    assert "/media/" in page and stack.sandbox_url not in page


def test_with_the_platforms_media_down_for_a_while_every_file_arrives_once_it_is_back(
    stack, e2e_account
):
    stack.sandbox("POST", "faults", {"media_error_rate": 1.0})
    sent = [
        stack.sandbox("POST", "inbound", {"customer": "lucas", "type": "image"}) for _ in range(3)
    ]

    def retried(message_id: str) -> bool:
        media = media_of(message_id)
        return media is not None and media.state == "pending" and media.attempts >= 2

    for message in sent:
        wait_for(lambda m=message: retried(m["id"]), what="a download retried while it fails")
    stack.sandbox("POST", "faults", {"media_error_rate": 0})

    for message in sent:
        media = wait_for(lambda m=message: settled(m["id"], "stored"), what="stored once back")
        link = link_of(stack, message["id"])
        assert link["refused_5xx"] >= 1
        assert link["served"] == 1
        assert media.sha256 == link["sha256"]


def test_a_link_that_expires_while_the_media_service_is_down_ends_expired_not_pending(
    stack, e2e_account
):
    stack.sandbox("POST", "faults", {"media_error_rate": 1.0, "media_ttl_seconds": 60})
    sent = stack.sandbox("POST", "inbound", {"customer": "amira", "type": "document"})
    wait_for(lambda: settled(sent["id"], "pending") and media_of(sent["id"]).attempts >= 1)
    link = link_of(stack, sent["id"])

    stack.sandbox("POST", f"media/{link['id']}", {"age_seconds": 120})
    stack.sandbox("POST", "faults", {"media_error_rate": 0})

    media = wait_for(lambda: settled(sent["id"], "expired", "failed", "stored"), what="settled")
    assert media.state == "expired"
    assert "no longer has" in media.error
    assert link_of(stack, sent["id"])["gone_404"] >= 1


def test_a_corrupted_download_is_caught_by_its_checksum_and_fetched_again(stack, e2e_account):
    stack.sandbox("POST", "faults", {"media_corrupt_rate": 1.0})
    sent = stack.sandbox("POST", "inbound", {"customer": "yossi", "type": "image"})
    wait_for(lambda: settled(sent["id"], "pending") and "checksum" in media_of(sent["id"]).error)

    stack.sandbox("POST", "faults", {"media_corrupt_rate": 0})

    media = wait_for(lambda: settled(sent["id"], "stored"), what="the good copy stored")
    link = link_of(stack, sent["id"])
    assert link["corrupted"] >= 1
    assert media.sha256 == link["sha256"]


def test_a_download_whose_worker_is_killed_is_taken_up_again_and_stored_once(stack, e2e_account):
    # The sandbox holds the download (longer than the whole run) until the worker is killed:
    # the download is in flight at the kill, its claim outlives the worker, and the answer it
    # waited for never comes (MEDIA_READ_TIMEOUT_SECONDS is 30 s by default).
    stack.sandbox("POST", "faults", {"media_latency_ms": 3_600_000})
    sent = stack.sandbox("POST", "inbound", {"customer": "priya", "type": "voice"})

    def in_flight() -> bool:
        return link_of(stack, sent["id"])["requests"] >= 1

    wait_for(in_flight, what="the download under way")
    stack.stop_worker(["media"], kill=True)
    stack.sandbox("POST", "faults", {"media_latency_ms": 0})
    stack.start_worker(["media"])

    media = wait_for(lambda: settled(sent["id"], "stored"), what="stored after the kill")
    assert media.attempts >= 2
    assert link_of(stack, sent["id"])["served"] == 1
