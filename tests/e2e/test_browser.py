"""Agents work the inbox in a real browser (Debian's Chromium driven by Playwright).

Each test runs against the real processes (uvicorn, a Celery worker, the sandbox) and saves
screenshots at 1440x900 and 390x844 under test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import AgentProfile, Team, User
from devstack import ROOT, Stack, wait_for
from inbox.models import Message, Session
from integrations.models import Channel
from integrations.services.channels import channels_sync
from integrations.services.templates import templates_sync
from tests.patience import PATIENCE_MS

playwright_api = pytest.importorskip("playwright.sync_api")
# Playwright's sync API keeps an event loop in this thread; the ORM calls these tests make
# between browser steps are ordinary blocking calls (test code only).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "a-long-test-password-42"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():  # (for the modules that borrow this fixture)
        pytest.skip(f"needs Chromium at {CHROMIUM}")
    # Module scope: Playwright's sync API runs an event loop in this thread while it lives,
    # which later tests calling asyncio.run() must not find.
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def world(stack: Stack, e2e_account: Any, settings: Any) -> dict[str, Any]:
    """Channels and templates synced and active; an agent serving Customer Support and Sales."""
    # The web process checks passwords with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    channels_sync(e2e_account)
    templates_sync(e2e_account)
    Channel.objects.filter(account=e2e_account).update(is_active=True)
    agent = User.objects.create_user("agent.ann", password=PASSWORD, display_name="Ann Agent")
    AgentProfile.objects.create(user=agent, role=AgentProfile.Role.AGENT)
    team = Team.objects.create(name="Front line", slug="front-line")
    team.members.add(agent)
    team.channels.add(
        *Channel.objects.filter(account=e2e_account, name__in=["Customer Support", "Sales"])
    )
    return {"agent": agent, "team": team}


@pytest.fixture
def page(
    chromium: Any, stack: Stack, world: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A signed-in agent's page; screenshots at both sizes when the test ends."""
    context = chromium.new_context(viewport=DESKTOP, base_url=stack.web_url)
    agent_page = context.new_page()
    agent_page.set_default_timeout(PATIENCE_MS)
    live_log: list[str] = []
    agent_page.on(
        "response", lambda r: live_log.append(f"{r.status} {r.url}") if "/live/" in r.url else None
    )
    agent_page.on("console", lambda m: live_log.append(f"console {m.type}: {m.text}"))
    response = agent_page.goto("/login/")
    if agent_page.locator("input[name=username]").count() == 0:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        agent_page.screenshot(path=str(ARTIFACTS / "login-failed.png"))
        status = response.status if response else "no response"
        raise AssertionError(
            f"no sign-in form at {agent_page.url} ({status}): {agent_page.content()[:2000]}"
        )
    agent_page.fill("input[name=username]", "agent.ann")
    agent_page.fill("input[name=password]", PASSWORD)
    agent_page.click("[data-testid=login-submit]")
    try:
        agent_page.wait_for_selector("[data-testid=session-list]")
    except playwright_api.TimeoutError:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        agent_page.screenshot(path=str(ARTIFACTS / "after-sign-in-failed.png"))
        raise
    yield agent_page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^a-z0-9_]+", "-", request.node.name.lower())
    (ARTIFACTS / f"{name}-live.log").write_text("\n".join(live_log))
    for label, size in (("1440x900", DESKTOP), ("390x844", PHONE)):
        agent_page.set_viewport_size(size)
        agent_page.wait_for_timeout(200)
        agent_page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"))
    context.close()


def customer_writes(stack: Stack, customer: str, **body: Any) -> dict[str, Any]:
    return stack.sandbox("POST", "inbound", {"customer": customer, "type": "text", **body})


def session_of(sent: dict[str, Any]) -> Session:
    return wait_for(
        lambda: Session.objects.filter(external_id=sent["sessionId"]).first(),
        what="the session row",
    )


def open_session(page: Any, session: Session) -> None:
    page.click(f"[data-testid=session-row][data-session-id='{session.pk}'] a")
    # This conversation's thread, not the one that was open before the click.
    page.wait_for_selector(f"#conversation[data-session-id='{session.pk}'] [data-testid=thread]")


def test_a_customer_message_appears_live_in_the_list_and_the_open_thread(page, stack):
    first = customer_writes(stack, "lucas", text="Bonjour, ma commande ?")
    session = session_of(first)
    row = page.locator(f"[data-testid=session-row][data-session-id='{session.pk}']")
    row.wait_for()  # arrived without a reload
    assert "Bonjour, ma commande" in row.inner_text()

    open_session(page, session)
    customer_writes(stack, "lucas", text="Vous êtes là ? 👋")

    page.locator("[data-testid=thread-message]", has_text="Vous êtes là").wait_for()


def test_an_agent_replies_and_the_ticks_go_to_read(page, stack):
    session = session_of(customer_writes(stack, "priya", text="Is premium 5 users?"))
    page.reload()
    open_session(page, session)

    page.fill("[data-testid=composer-text]", "Yes, premium includes five users 🙂")
    page.click("[data-testid=composer-send]")

    reply = page.locator(
        "[data-testid=thread-message][data-direction=out]", has_text="premium includes five users"
    )
    reply.wait_for()
    reply.locator("[data-testid=delivery-state][data-state=read]").wait_for()
    sent = [s for s in stack.sandbox("GET", "state")["outbound"] if s["customer"] == "priya"]
    assert [s["text"] for s in sent] == ["Yes, premium includes five users 🙂"]


def test_outside_the_window_the_composer_offers_templates_and_one_goes_out(page, stack):
    session = session_of(customer_writes(stack, "anna", text="Rücksendung?", hoursAgo=30))
    page.reload()
    open_session(page, session)

    page.locator("[data-testid=composer-window-closed]").wait_for()
    option = page.locator("[data-testid=template-select] option", has_text="WELCOME_BACK").first
    page.select_option("[data-testid=template-select]", value=option.get_attribute("value"))
    page.locator("[data-testid=template-field]").first.wait_for()
    preview = page.locator("[data-testid=template-preview]")
    assert "Anna" in preview.inner_text()  # prefilled from the contact
    page.click("[data-testid=template-send]")

    sent = page.locator("[data-testid=thread-message][data-type=template]")
    sent.wait_for()
    sent.locator("[data-testid=delivery-state][data-state=read]").wait_for()
    assert Message.objects.filter(session=session, direction="out", type="template").count() == 1


def test_route_resolve_and_reopen_show_in_the_thread_and_the_list(page, stack):
    session = session_of(customer_writes(stack, "yossi", text="שלום"))
    page.reload()
    open_session(page, session)

    page.click("[data-testid=action-route-menu]")
    page.fill("[data-testid=route-queue]", "billing")
    page.fill("[data-testid=route-skills]", "hebrew, billing")
    page.click("[data-testid=action-route]")
    page.locator("[data-testid=thread-event]", has_text="Routed to queue billing").wait_for()

    page.click("[data-testid=action-resolve]")
    page.locator("[data-testid=thread-event]", has_text="Resolved").wait_for()
    # Resolved, it leaves "Open & pending" without a reload; the conversation stays open.
    row = page.locator(f"[data-testid=session-row][data-session-id='{session.pk}']")
    wait_for(lambda: row.count() == 0, what="the resolved session gone from the list")

    page.click("[data-testid=action-reopen]")
    page.locator("[data-testid=thread-event]", has_text="Reopened").wait_for()
    session.refresh_from_db()
    assert session.status == Session.Status.OPEN
    platform = next(
        s for s in stack.sandbox("GET", "state")["sessions"] if s["id"] == session.external_id
    )
    assert platform["queue"] == "billing"


def test_an_agent_cannot_open_another_teams_session(page, stack):
    telegram = session_of(customer_writes(stack, "mei", text="你好"))
    page.reload()

    assert page.locator(f"[data-testid=session-row][data-session-id='{telegram.pk}']").count() == 0
    response = page.goto(f"/s/{telegram.pk}/")
    assert response is not None and response.status == 404
    assert "你好" not in page.content()


# The figure: a stream quiet this long died after 5 s and never came back.
QUIET_SECONDS = 30
RECORD_LIVE_STATES = """() => {
  window.__liveStates = [];
  const el = document.querySelector("[data-live-status]");
  new MutationObserver(() => window.__liveStates.push(el.dataset.state))
    .observe(el, {attributes: true, attributeFilter: ["data-state"]});
}"""


def live_state(page: Any) -> str | None:
    state: str | None = page.locator("[data-testid=live-status]").get_attribute("data-state")
    return state


def stream_requests(page: Any) -> list[str]:
    """Record the live stream requests the page makes from now on."""
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url) if "/live/events/" in r.url else None)
    return urls


def test_an_inbox_left_quiet_still_shows_the_next_customer_message_live(page, stack):
    wait_for(lambda: live_state(page) == "live", what="the page to go live")
    page.evaluate(RECORD_LIVE_STATES)
    reconnects = stream_requests(page)
    began = time.monotonic()

    wait_for(
        lambda: live_state(page) and time.monotonic() - began >= QUIET_SECONDS,
        timeout=QUIET_SECONDS + 30,
        interval=1,
        what="the quiet period",
    )
    # The same stream all along: it never dropped, reconnected or fell back to polling.
    assert page.evaluate("window.__liveStates") == []
    assert reconnects == []
    session = session_of(customer_writes(stack, "amira", text="Ainda aí?"))

    row = page.locator(f"[data-testid=session-row][data-session-id='{session.pk}']")
    row.wait_for()
    assert "Ainda aí?" in row.inner_text()
    assert live_state(page) == "live"
    assert reconnects == []


def test_after_the_web_server_restarts_the_page_goes_live_again_by_itself(page, stack):
    wait_for(lambda: live_state(page) == "live", what="the page to go live")
    page.evaluate(RECORD_LIVE_STATES)
    reconnects = stream_requests(page)

    stack.restart_web()

    # Playwright hands events over during its calls: ask the page first, then look.
    wait_for(lambda: live_state(page) == "live" and reconnects, what="live again")
    states = page.evaluate("window.__liveStates")
    assert "reconnecting" in states and states[-1] == "live", states
    session = session_of(customer_writes(stack, "priya", text="Back again"))
    row = page.locator(f"[data-testid=session-row][data-session-id='{session.pk}']")
    row.wait_for()
    assert live_state(page) == "live"


def test_after_a_live_error_the_page_reconnects_and_goes_live_again(page, stack):
    wait_for(lambda: live_state(page) == "live", what="the page to go live")
    failed: list[str] = []

    def first_fails(route: Any) -> None:
        if not failed:
            failed.append(route.request.url)
            # What the server sends when Redis stays down; the browser alone would wait a minute.
            route.fulfill(
                status=200,
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                body="retry: 60000\n\nevent: live.error\ndata: {}\n\n",
            )
        else:
            route.continue_()

    streams = stream_requests(page)
    page.route("**/live/events/**", first_fails)
    page.reload()

    wait_for(lambda: live_state(page) == "live" and len(streams) >= 2, what="live")
    assert failed == streams[:1]
    session = session_of(customer_writes(stack, "anna", text="Noch da?"))
    page.locator(f"[data-testid=session-row][data-session-id='{session.pk}']").wait_for()
    assert live_state(page) == "live"


def test_a_reply_the_platform_never_confirms_is_shown_unconfirmed_with_send_again(page, stack):
    key = "unconfirmed-olga"
    stack.sandbox(
        "POST",
        "customers",
        {"key": key, "name": "Olga", "channelId": "wa360:918828218374", "phone": "4915155500011"},
    )
    session = session_of(customer_writes(stack, key, text="Did you get my photo?"))
    page.reload()
    open_session(page, session)
    stack.sandbox(
        "POST",
        "faults",
        {
            "accept_hang_rate": 1,
            "timeout_seconds": 3,
            "hang_receipts": False,
            "history_omit_rate": 1,
        },
    )

    page.fill("[data-testid=composer-text]", "Yes, thank you! We are checking it now.")
    page.click("[data-testid=composer-send]")

    reply = page.locator("[data-testid=thread-message][data-direction=out]", has_text="checking it")
    reply.locator("[data-testid=message-unconfirmed]").wait_for()
    stack.sandbox("POST", "faults", {"accept_hang_rate": 0, "history_omit_rate": 0})
    assert "may not have been delivered" in reply.inner_text()
    assert reply.locator("[data-testid=message-send-again]").is_visible()
    sent = [s for s in stack.sandbox("GET", "state")["outbound"] if s["customer"] == key]
    assert [s["text"] for s in sent] == ["Yes, thank you! We are checking it now."]
    row = page.locator(f"[data-testid=session-row][data-session-id='{session.pk}']")
    page.reload()
    row.locator("[data-testid=row-unconfirmed]").wait_for()
    reply = page.locator("[data-testid=thread-message][data-direction=out]", has_text="checking it")
    reply.scroll_into_view_if_needed()


def test_the_filters_panel_narrows_the_list_and_keeps_what_was_chosen(page, stack):
    support = session_of(customer_writes(stack, "lucas", text="Où est mon colis ?"))
    sales = session_of(customer_writes(stack, "priya", text="Do you ship to Pune?"))
    rows = page.locator("[data-testid=session-row]")
    for session in (support, sales):  # both arrive live, unfiltered
        page.locator(f"[data-testid=session-row][data-session-id='{session.pk}']").wait_for()

    page.click("[data-testid=filter-more]")
    page.select_option("[data-testid=filter-channel]", label="Sales")  # applies at once (htmx)

    page.locator(f"[data-testid=session-row][data-session-id='{support.pk}']").wait_for(
        state="detached"
    )
    assert [rows.nth(i).get_attribute("data-session-id") for i in range(rows.count())] == [
        str(sales.pk)
    ]
    # The same grammar reads the choice back: the panel shows it and the page's address holds it.
    assert page.locator("[data-testid=filter-channel] option:checked").inner_text() == "Sales"
    assert page.locator("[data-testid=filter-status]").input_value() == "active"
    assert f"channel={sales.channel_id}" in page.url
