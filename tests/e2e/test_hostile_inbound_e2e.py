"""End to end: a hostile callback posted at the same moment as ordinary ones holds none of them."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from devstack import Stack, wait_for
from inbox.models import Message
from integrations.models import ProviderAccount, WebhookEvent
from tests.conftest import load_fixture
from tests.e2e.test_browser import ARTIFACTS, chromium, page, world  # noqa: F401 (fixtures)
from tests.patience import PATIENCE_SECONDS

TEXT = load_fixture("xms", "inbound-message-text")


def _callback(tag: str, number: int, **hostile: str) -> dict[str, Any]:
    body = copy.deepcopy(TEXT)
    contact, message = body["contacts"][0], body["messages"][0]
    contact["contactId"] = message["contactId"] = f"wa-{tag}-{number}"
    contact["profile"]["phone"] = message["from"] = f"4479{number:08d}"
    contact["businessProfile"]["phone"] = f"4479{number:08d}"
    contact["profile"]["name"] = hostile.get("name", f"Customer {number}")
    message["id"] = message["messageIdExt"] = hostile.get("id", f"{tag}-{number}")
    message["session"]["sessionId"] = f"session-{tag}-{number}"
    message["text"]["body"] = hostile.get("text", f"ordinary {number}")
    message["timestamp"] = 1_790_000_000_000 + number * 1000
    return body


def test_a_hostile_callback_posted_with_twenty_ordinary_ones_holds_none_of_them(
    stack: Stack, e2e_account: ProviderAccount
) -> None:
    tag = uuid.uuid4().hex[:8]
    hostile_id = f"{tag}-" + "i" * 300
    bodies = [_callback(tag, n) for n in range(20)]
    bodies.insert(
        7, _callback(tag, 99, name="N" * 300, id=hostile_id, text="half a smiley \ud83d!")
    )
    url = f"{stack.web_url}{e2e_account.webhook_path}"
    start = threading.Barrier(len(bodies))

    def post(body: dict[str, Any]) -> int:
        data = json.dumps(body).encode()  # (the surrogate goes as the escape \ud83d)
        start.wait(timeout=PATIENCE_SECONDS)
        response = requests.post(
            url,
            data=data,
            headers={"content-type": "application/json", "x-verify-token": stack.verify_token},
            timeout=PATIENCE_SECONDS,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        statuses = list(pool.map(post, bodies))
    assert statuses == [200] * 21

    ids = {body["messages"][0]["id"] for body in bodies}
    events = WebhookEvent.objects.filter(account=e2e_account, body__contains=tag)

    def all_in_the_inbox() -> bool:
        landed = Message.objects.filter(account=e2e_account, external_id__in=ids).count()
        unsettled = events.filter(
            state__in=[WebhookEvent.State.PENDING, WebhookEvent.State.PROCESSING]
        )
        return landed == 21 and not unsettled.exists()

    wait_for(all_in_the_inbox, what="all 21 messages in the inbox")
    assert set(events.values_list("state", flat=True)) == {WebhookEvent.State.PROCESSED}
    hostile = Message.objects.select_related("session__identity").get(external_id=hostile_id)
    assert hostile.body == "half a smiley \ufffd!"
    assert hostile.session.identity is not None
    assert hostile.session.identity.profile_name.startswith("N" * 200)


def test_a_contact_with_a_5000_character_name_shows_shortened_without_breaking_the_inbox(
    stack: Stack,
    e2e_account: ProviderAccount,
    page: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    from integrations.models import Channel

    channel = Channel.objects.get(account=e2e_account, name="Customer Support")
    name = ("Wolfeschlegelsteinhausenbergerdorff" * 150)[:5000]  # one word: nowhere to wrap
    body = _callback(uuid.uuid4().hex[:8], 5000, name=name)
    body["contacts"][0].update(channelId=channel.external_id, lane=channel.lane)
    body["contacts"][0]["businessProfile"]["name"] = name
    response = requests.post(
        f"{stack.web_url}{e2e_account.webhook_path}",
        json=body,
        headers={"x-verify-token": stack.verify_token},
        timeout=PATIENCE_SECONDS,
    )
    assert response.status_code == 200
    message = wait_for(
        lambda: (
            Message.objects.select_related("session__contact")
            .filter(external_id=body["messages"][0]["id"])
            .first()
        ),
        what="the message of the customer with a long name",
    )
    shown = message.session.contact.name
    assert shown.startswith(name[:200]) and shown.endswith("…") and len(shown) <= 255
    event = WebhookEvent.objects.get(account=e2e_account, body__contains=name)
    assert any("5000 characters" in warning for warning in event.warnings)

    for size in ({"width": 1440, "height": 900}, {"width": 390, "height": 844}):
        page.set_viewport_size(size)
        page.goto("/")
        row = page.locator("[data-testid=session-list]").get_by_text(name[:30]).first
        row.wait_for()
        box = row.bounding_box()
        assert box is not None and box["x"] + min(box["width"], size["width"]) <= size["width"]
        assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
        row.click()
        page.locator("[data-testid=conversation-title]").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]
        if size["width"] >= 1200:  # the contact panel is beside the thread: the name stays in it
            panel = page.locator("[data-testid=contact-panel]").bounding_box()
            shown_name = page.locator("[data-testid=contact-name]").bounding_box()
            assert panel is not None and shown_name is not None
            assert shown_name["x"] + shown_name["width"] <= panel["x"] + panel["width"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        label = f"{size['width']}x{size['height']}"
        page.screenshot(path=str(ARTIFACTS / f"long-name-conversation-{label}.png"))
