"""MessageWhiz conversations in a real browser (Debian's Chromium driven by Playwright): the
composer offers what the customer's medium carries, a reply's ticks move to read in the open
page by themselves (statuses looked up at the platform, which calls nobody), and an opted-out
customer's conversation says so.

Screenshots of each state at 1440x900 and 390x844 go to test-artifacts/screenshots/
(`messagewhiz-*`), besides the ones the signed-in page takes when a test ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.models import AgentProfile, Team, User
from devstack import Stack
from inbox.models import Message, Session
from integrations.models import Channel
from tests.e2e import test_browser as browser_tests
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, DESKTOP, PASSWORD, PHONE, open_session
from tests.e2e.test_messagewhiz_e2e import arrived, platform_sends, writes

# The browser and the signed-in page of the other browser tests; the world is this module's.
chromium = browser_tests.chromium
page = browser_tests.page
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")


@pytest.fixture
def world(stack: Stack, transactional_db: None, settings: Any) -> dict[str, Any]:
    """A MessageWhiz account at a fresh sandbox, its channels active; an agent serving them all."""
    # The web process checks passwords with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    settings.PUBLIC_BASE_URL = stack.web_url
    stack.start_mw_sandbox()
    account = stack.mw_account("E2E MessageWhiz")
    agent = User.objects.create_user("agent.ann", password=PASSWORD, display_name="Ann Agent")
    AgentProfile.objects.create(user=agent, role=AgentProfile.Role.AGENT)
    team = Team.objects.create(name="Front line", slug="front-line")
    team.members.add(agent)
    team.channels.add(*Channel.objects.filter(account=account, is_active=True))
    return {"agent": agent, "team": team, "account": account}


def shoot(page: Any, name: str) -> None:
    """Save the page as it is now at both sizes, then go back to the desktop size."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("1440x900", DESKTOP), ("390x844", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(150)  # a layout pass; nothing is asserted on it
        page.screenshot(path=str(ARTIFACTS / f"messagewhiz-{name}-{label}.png"))
    page.set_viewport_size(DESKTOP)


def conversation_of(stack: Stack, phone: str, medium: str, text: str, **more: Any) -> Session:
    """A customer writes at the sandbox; return the session a poll brought it into."""
    session: Session = arrived(writes(stack, phone, medium, text, **more)["message_id"]).session
    return session


def opened(page: Any, session: Session) -> None:
    page.reload()  # (the row arrives live too; the reload makes the list current at once)
    open_session(page, session)


def test_an_sms_conversation_is_text_only_and_a_reply_ticks_to_read_in_the_open_page(page, stack):
    phone = "15550007001"
    session = conversation_of(stack, phone, "sms", "Hi! Is my order on its way?", name="Dana Reyes")
    opened(page, session)

    page.locator("[data-testid=thread-message]", has_text="Is my order on its way?").wait_for()
    text_only = page.locator("[data-testid=composer-text-only]")
    assert text_only.is_visible()
    assert text_only.inner_text().strip() == "SMS: text only"
    assert page.locator("[data-testid=composer-attach]").count() == 0
    assert page.locator("[data-testid=composer-file]").count() == 0
    shoot(page, "sms-text-only")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

    page.fill("[data-testid=composer-text]", "Yes, it ships today 📦")
    page.click("[data-testid=composer-send]")

    reply = page.locator(
        "[data-testid=thread-message][data-direction=out]", has_text="it ships today"
    )
    reply.wait_for()
    reply.locator("[data-testid=delivery-state][data-state=read]").wait_for()
    assert page.evaluate("window.__sameDocument") is True  # read arrived live
    shoot(page, "sms-reply-read")
    (send,) = platform_sends(stack, phone)
    assert send["medium"] == "sms"
    assert send["payload"] == {"type": "TEXT", "text": "Yes, it ships today 📦"}
    message = Message.objects.get(session=session, direction="out")
    assert (message.status, message.external_id) == ("read", send["message_id"])


def test_a_viber_conversation_offers_attach_for_pictures_only(page, stack):
    session = conversation_of(
        stack, "380500007002", "viber", "Can I send you a photo of it?", name="Taras Bondar"
    )
    opened(page, session)

    page.locator("[data-testid=thread-message]", has_text="photo of it").wait_for()
    attach = page.locator("[data-testid=composer-attach]")
    assert attach.is_visible()
    assert page.locator("[data-testid=composer-file]").get_attribute("accept") == "image/*"
    assert page.locator("[data-testid=composer-text-only]").count() == 0
    shoot(page, "viber-attach-pictures")


def test_an_opted_out_customer_shows_the_opted_out_notice_and_no_reply(page, stack):
    phone = "15550007003"
    session = conversation_of(stack, phone, "sms", "Hello there", name="Eli Brooks")
    stop = writes(stack, phone, "sms", "STOP")
    arrived(stop["message_id"])
    opened(page, session)

    notice = page.locator("[data-testid=composer-opted-out]")
    notice.wait_for()
    assert "Opted out." in notice.inner_text()
    assert "until they write again" in notice.inner_text()
    assert page.locator("[data-testid=composer-mode-reply]").is_disabled()
    page.locator("[data-testid=thread-message]", has_text="STOP").wait_for()
    shoot(page, "opted-out")
    assert platform_sends(stack, phone) == []
