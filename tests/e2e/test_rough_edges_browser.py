"""The rough edges a new agent hit, in a real browser: search, the language picker, selects,
toasts, a resolved session leaving the list and an imported old conversation.

Screenshots of each state at 1440x900 and 390x844 go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack import Stack, wait_for
from inbox.models import Contact, Message, Session
from integrations.models import Channel
from tests.conftest import load_fixture
from tests.e2e import test_browser as browser_tests
from tests.e2e.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    DESKTOP,
    PHONE,
    customer_writes,
    open_session,
    session_of,
)
from tests.factories import make_session
from tests.patience import PATIENCE_SECONDS

# The browser, the synced world and the signed-in page of the other browser tests.
chromium = browser_tests.chromium
world = browser_tests.world
page = browser_tests.page
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")


def shoot(page: Any, name: str) -> None:
    """Save the page as it is now at both sizes, then go back to the desktop size."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("1440x900", DESKTOP), ("390x844", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(150)  # a layout pass; nothing is asserted on it
        page.screenshot(path=str(ARTIFACTS / f"edges-{name}-{label}.png"))
    page.set_viewport_size(DESKTOP)


def row(page: Any, session: Session) -> Any:
    return page.locator(f"[data-testid=session-row][data-session-id='{session.pk}']")


def search_for(page: Any, text: str) -> None:
    page.fill("[data-testid=search-input]", text)
    page.press("[data-testid=search-input]", "Enter")


def test_a_phone_typed_with_spaces_finds_the_contact(page, stack):
    lucas = session_of(customer_writes(stack, "lucas", text="Ma facture ?"))
    yossi = session_of(customer_writes(stack, "yossi", text="שלום"))
    page.reload()

    search_for(page, "+33 6 12 34 56 78")

    wait_for(lambda: row(page, lucas).count() == 1 and row(page, yossi).count() == 0, what="lucas")
    shoot(page, "search-phone-with-spaces")


def test_with_a_conversation_open_a_search_that_misses_it_says_nothing_matches(page, stack):
    lucas = session_of(customer_writes(stack, "lucas", text="Bonjour"))
    page.reload()
    open_session(page, lucas)

    search_for(page, "nobody-by-this-name")

    page.locator("[data-testid=list-empty]", has_text="Nothing matches").wait_for()
    assert row(page, lucas).count() == 0
    assert page.locator("[data-testid=thread]").is_visible()  # the conversation stays open
    shoot(page, "nothing-matches-with-a-conversation-open")


def test_the_language_picker_saves_a_language_the_platform_takes(page, stack):
    priya = session_of(customer_writes(stack, "priya", text="Hello"))
    page.reload()
    open_session(page, priya)

    picker = page.locator("[data-testid=contact-language]")
    assert picker.evaluate("el => el.tagName") == "SELECT"
    picker.select_option("de_DE")
    page.click("[data-testid=contact-language-save]")

    wait_for(
        lambda: Contact.objects.get(pk=priya.contact_id).language == "de_DE",
        what="the language saved at the platform and here",
    )
    shoot(page, "language-picker")


# A select's content box against the line box of its font (ascent + descent, from the font's
# own metrics, and the computed line height when one is set), at its own font size and at a
# quarter larger (a bigger default font, or a font with taller metrics than this machine's).
SELECT_FITS = """(el, scale) => {
  const base = parseFloat(getComputedStyle(el).fontSize);
  el.style.fontSize = (base * scale) + "px";
  const style = getComputedStyle(el);
  const context = document.createElement("canvas").getContext("2d");
  context.font = style.font;
  const text = (el.options[el.selectedIndex] || {}).text || "g_";
  const metrics = context.measureText(text + "_g");
  let line = metrics.fontBoundingBoxAscent + metrics.fontBoundingBoxDescent;
  if (style.lineHeight !== "normal") line = Math.max(line, parseFloat(style.lineHeight));
  const inner = el.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
  el.style.fontSize = "";
  return {id: el.id || el.name, text: text, scale: scale, line: line, inner: inner};
}"""


def test_native_selects_show_their_whole_text_underscores_included(page, stack):
    anna = session_of(customer_writes(stack, "anna", text="Rücksendung?", hoursAgo=30))
    page.reload()
    open_session(page, anna)
    page.locator("[data-testid=contact-language]").select_option("de_DE")
    page.locator("[data-testid=composer-window-closed]").wait_for()
    page.locator("[data-testid=filter-more]").click()

    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        selects = page.locator("select:visible")
        # The list's filters and the template picker; on a phone the open conversation only.
        assert selects.count() >= (6 if size is DESKTOP else 1)
        for i in range(selects.count()):
            for scale in (1, 1.25):
                measured = selects.nth(i).evaluate(SELECT_FITS, scale)
                assert measured["inner"] >= measured["line"], measured
        # Nothing wider than the pane it is in (the language picker in the contact panel).
        for i in range(selects.count()):
            box = selects.nth(i).bounding_box()
            assert box is not None and box["x"] + box["width"] <= size["width"], (i, box)
    page.set_viewport_size(DESKTOP)
    shoot(page, "selects-with-underscores")


def _overlap(a: dict[str, float] | None, b: dict[str, float] | None) -> bool:
    if not a or not b:
        return False
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def test_a_toast_covers_neither_the_attach_button_nor_the_list_rows(page, stack, e2e_account):
    support = Channel.objects.get(account=e2e_account, name="Customer Support")
    for _ in range(14):  # a list that reaches the bottom of the window
        make_session(e2e_account, support)
    priya = session_of(customer_writes(stack, "priya", text="One more thing"))
    page.reload()
    open_session(page, priya)

    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        page.locator("[data-testid=composer-attach]").wait_for()
        if size is DESKTOP:
            # A long toast: the language is saved at the platform, "…waiting for it to confirm".
            page.locator("[data-testid=contact-language]").select_option("fr_FR")
            page.click("[data-testid=contact-language-save]")
        else:
            page.locator(
                "[data-testid=action-assign-me], [data-testid=action-unassign]"
            ).first.click()
        toast = page.locator("[data-testid=flash]").last
        toast.wait_for()
        box = toast.bounding_box()
        attach = page.locator("[data-testid=composer-attach]").bounding_box()
        assert not _overlap(box, attach), (size, box, attach)
        rows = page.locator("[data-testid=session-row]:visible")
        for i in range(rows.count()):
            assert not _overlap(box, rows.nth(i).bounding_box()), (size, i, box)
        page.screenshot(path=str(ARTIFACTS / f"edges-toast-next-to-attach-{size['width']}.png"))
        toast.click()  # a click dismisses it
        wait_for(lambda: page.locator("[data-testid=flash]").count() == 0, what="toast gone")
    page.set_viewport_size(DESKTOP)


def test_a_resolved_session_leaves_the_open_and_pending_list_without_a_reload(page, stack):
    mei_free = session_of(customer_writes(stack, "lucas", text="Merci, c'est réglé"))
    page.reload()
    open_session(page, mei_free)

    page.click("[data-testid=action-resolve]")

    page.locator("[data-testid=thread-event]", has_text="Resolved").wait_for()
    wait_for(lambda: row(page, mei_free).count() == 0, what="the row gone from Open & pending")
    assert page.locator("[data-testid=thread]").is_visible()


def _post_event(stack: Stack, account: Any, body: dict[str, Any]) -> None:
    answer = requests.post(
        f"{stack.web_url}/webhooks/xms/{account.pk}/",
        json=body,
        headers={"x-verify-token": account.verify_token},
        timeout=PATIENCE_SECONDS,
    )
    answer.raise_for_status()


def test_an_imported_30_hour_old_conversation_shows_its_age(page, stack, e2e_account):
    # The message callback is lost (the sandbox drops every callback for a moment); the
    # platform then announces the session with an event, and its history is imported.
    dropped = stack.sandbox("GET", "state")["deliveries"]["dropped"]
    stack.sandbox("POST", "faults", {"drop_rate": 1.0})
    try:
        sent = customer_writes(stack, "anna", text="Frage zur Rücksendung", hoursAgo=30)
        wait_for(
            lambda: stack.sandbox("GET", "state")["deliveries"]["dropped"] > dropped,
            what="the message callback dropped",
        )
    finally:
        stack.sandbox("POST", "faults", {"drop_rate": 0})
    customer = next(c for c in stack.sandbox("GET", "state")["customers"] if c["key"] == "anna")
    event = copy.deepcopy(load_fixture("xms", "inbound-event-session-routed"))
    routed = event["events"][0]
    routed["sessionId"] = sent["sessionId"]
    routed["contactId"] = sent["contactId"]
    routed["contact"].update(
        contactId=sent["contactId"],
        lane=re.sub(r"^\w+:", "", customer["channelId"]),
        name=customer["name"],
        phone=customer.get("phone", ""),
    )
    routed["eventId"] = f"e2e-{sent['sessionId']}"
    _post_event(stack, e2e_account, event)

    session = session_of(sent)
    wait_for(
        lambda: Message.objects.filter(session=session, body="Frage zur Rücksendung").exists(),
        what="the history import",
    )
    page.goto(f"/?status=any&q={customer['name'].split()[0]}")
    wait_for(lambda: row(page, session).count() == 1, what="the imported session's row")
    time_text = row(page, session).locator("[data-testid=row-time]").inner_text()
    assert "just now" not in time_text and ("1 d" in time_text or "30 h" in time_text), time_text
    open_session(page, session)
    page.locator("[data-testid=thread-message]", has_text="Frage zur Rücksendung").wait_for()
    shoot(page, "imported-30-hour-old-thread")
