"""Media in the thread, in a real browser: a file on its way shows a placeholder, then the picture
arrives in the open page by itself; a failed one says why and *Retry* brings it; a page left
open never loads anything from the platform's media server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack import Stack, wait_for
from inbox.models import MediaFile
from tests.e2e import test_browser as browser_tests
from tests.e2e.test_browser import CHROMIUM, customer_writes, open_session, session_of
from tests.e2e.test_rough_edges_browser import shoot

chromium = browser_tests.chromium
world = browser_tests.world
page = browser_tests.page
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")


def platform_requests(page: Any, stack: Stack) -> list[str]:
    """Record every request the page makes to the platform (the sandbox) from now on."""
    urls: list[str] = []
    page.on(
        "request", lambda r: urls.append(r.url) if r.url.startswith(stack.sandbox_url) else None
    )
    return urls


def media_of(sent: dict[str, Any]) -> MediaFile | None:
    return MediaFile.objects.filter(message__external_id=sent["id"]).first()


def test_a_picture_on_its_way_shows_a_placeholder_then_arrives_in_the_open_page(page, stack):
    to_platform = platform_requests(page, stack)
    stack.sandbox("POST", "faults", {"media_error_rate": 1.0})
    sent = customer_writes(stack, "lucas", type="image")
    session = session_of(sent)
    page.reload()
    open_session(page, session)
    message = page.locator(
        "[data-testid=thread-message][data-message-id]",
        has=page.locator("[data-testid=media-pending]"),
    )
    message.wait_for()
    assert "Downloading the photo" in message.inner_text()
    shoot(page, "media-on-its-way")

    stack.sandbox("POST", "faults", {"media_error_rate": 0})

    picture = page.locator("[data-testid=thread-message] [data-testid=message-image]")
    picture.wait_for()  # without a reload
    wait_for(lambda: picture.evaluate("img => img.complete && img.naturalWidth > 0"))
    media = media_of(sent)
    assert media is not None
    assert picture.get_attribute("src") == f"/media/{media.pk}/thumbnail/"
    assert to_platform == []


def test_a_failed_download_says_why_and_retry_brings_the_file(page, stack, settings):
    stack.sandbox("POST", "faults", {"media_ttl_seconds": 3600})
    sent = customer_writes(stack, "priya", type="document")
    media = wait_for(lambda: media_of(sent), what="the file row")
    # A refusal that will not pass by waiting: what agents see is its reason and Retry.
    MediaFile.objects.filter(pk=media.pk).update(
        state="failed", error="The platform refused the download: HTTP 400", attempts=1
    )
    session = session_of(sent)
    page.reload()
    open_session(page, session)
    failed = page.locator("[data-testid=media-failed]")
    failed.wait_for()
    assert "HTTP 400" in failed.inner_text()
    shoot(page, "media-failed-with-retry")

    page.click("[data-testid=media-retry]")

    page.locator("[data-testid=thread-message] [data-testid=message-document]").wait_for()
    wait_for(lambda: media_of(sent).state == "stored", what="stored after Retry")
