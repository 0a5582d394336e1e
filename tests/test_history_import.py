"""Messages imported from the platform's history show and sort by when they were sent.

A session the platform announces with an event (no message yet) opens when the event arrives;
its earlier messages come from `session/messages` a few seconds later. Those messages, not the
moment of the import, say how old the conversation is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from django.test import Client
from django.utils import timezone

from accounts.models import User
from inbox.models import Message, Session, TimelineEntry
from inbox.services.history import session_history_import
from integrations.xms.outbound import history_message
from tests.conftest import load_fixture
from tests.factories import ChannelFactory, make_session

pytestmark = pytest.mark.django_db
API = "https://api.mehery.example/xms/api/v1"
CUSTOMER = "wa919988776655_918828218374"


def compact(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"results": results, "status": 200, "statusKey": "SUCCESS", "message": "ok"}


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def item(message_id: str, at: datetime | None, *, text: str, outbound: bool = False) -> dict:
    body: dict[str, Any] = {
        "messageId": message_id,
        "type": "text",
        "text": text,
        "status": "READ" if outbound else "RECEIVD",
        "sender": "console-agent" if outbound else CUSTOMER,
    }
    if at is not None:
        body["timestamp"] = ms(at)
    return body


@pytest.fixture
def announced(account, post_callback) -> Session:
    """A session the platform announced with an event: opened now, no message yet."""
    ChannelFactory(account=account, external_id="wa360:918828218374", lane="918828218374")
    post_callback(account, load_fixture("xms", "inbound-event-session-routed"))
    session = Session.objects.get(external_id="xsds34434")
    assert session.last_message_id is None
    return session


@pytest.fixture
def as_admin(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="x-long-password-1"))
    return client


@responses.activate
def test_an_imported_30_hour_old_conversation_shows_and_sorts_by_when_it_was_sent(
    account, announced, as_admin
):
    now = timezone.now()
    first, answer, last = (
        now - timedelta(hours=31),
        now - timedelta(hours=30, minutes=30),
        now - timedelta(hours=30),
    )
    responses.post(
        f"{API}/session/messages",
        json=compact(
            [
                item("h-1", first, text="Hallo, eine Frage zur Rücksendung"),
                item("h-2", answer, text="Gern, welche Bestellung?", outbound=True),
                item("h-3", last, text="Bestellung 4821"),
            ]
        ),
    )
    fresh = make_session(account, announced.channel, last_activity_at=now - timedelta(hours=1))

    assert session_history_import(announced.pk) == 3

    announced.refresh_from_db()
    newest = Message.objects.get(external_id="h-3")
    assert announced.last_message_id == newest.pk
    assert (
        announced.last_activity_at
        == newest.sent_at
        == datetime.fromtimestamp(ms(last) / 1000, tz=UTC)
    )
    assert announced.opened_at <= Message.objects.get(external_id="h-1").sent_at
    # The list: an hour-old conversation first, this one "1 d ago" with its last message.
    html = as_admin.get("/list/", {"status": "any"}).content.decode()
    order = [int(i) for i in re.findall(r'data-session-id="(\d+)"', html)]
    assert order.index(fresh.pk) < order.index(announced.pk)
    row = html.split(f'data-session-id="{announced.pk}"', 1)[1].split("</li>", 1)[0]
    assert "1 d ago" in row and "just now" not in row
    assert "Bestellung 4821" in row
    # The thread: the messages in the order they were sent, the opening line above them.
    page = as_admin.get(f"/s/{announced.pk}/").content.decode()
    page = page.split('data-testid="thread"', 1)[1]
    positions = [
        page.index(text)
        for text in ("Session opened", "zur Rücksendung", "welche Bestellung", "Bestellung 4821")
    ]
    assert positions == sorted(positions)
    opened = TimelineEntry.objects.get(session=announced, kind=TimelineEntry.Kind.OPENED)
    assert opened.occurred_at <= Message.objects.get(external_id="h-1").sent_at


@responses.activate
def test_an_import_never_moves_a_livelier_session_back_in_time(account, announced):
    now = timezone.now()
    responses.post(
        f"{API}/session/messages",
        json=compact([item("h-old", now - timedelta(hours=30), text="Earlier question")]),
    )
    live = Message.objects.create(
        account=account,
        session=announced,
        direction="in",
        type="text",
        body="Are you there?",
        status="received",
        external_id="live-1",
        sent_at=now - timedelta(minutes=2),
    )
    Session.objects.filter(pk=announced.pk).update(
        last_message=live, last_activity_at=live.sent_at, last_inbound_at=live.sent_at
    )

    assert session_history_import(announced.pk) == 1

    announced.refresh_from_db()
    assert (announced.last_message_id, announced.last_activity_at) == (live.pk, live.sent_at)
    assert announced.last_inbound_at == live.sent_at


@responses.activate
def test_a_history_message_without_a_time_does_not_claim_to_be_new(account, announced):
    responses.post(
        f"{API}/session/messages",
        json=compact([item("h-undated", None, text="Undated")]),
    )
    opened = announced.opened_at

    session_history_import(announced.pk)

    message = Message.objects.get(external_id="h-undated")
    assert message.sent_at <= opened


def test_a_history_message_without_timestamp_takes_its_earliest_stamp():
    at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    parsed = history_message(
        {
            "messageId": "m1",
            "type": "text",
            "text": "hi",
            "status": "READ",
            "timestamp": 0,
            "stamps": {"READ": ms(at) + 60_000, "SENT": ms(at), "DLVRD": ms(at) + 5_000},
        }
    )

    assert parsed is not None and parsed.sent_at == at


def test_a_sessions_first_message_dates_it_even_when_the_event_announcing_it_came_first(
    account, announced, post_callback
):
    # The platform's routed event overtook the customer's 30-hour-old message (they travel
    # separately): the message, not the event's arrival, says how old the conversation is.
    sent = timezone.now() - timedelta(hours=30)
    body = load_fixture("xms", "inbound-message-text")
    body["messages"][0]["timestamp"] = ms(sent)

    post_callback(account, body)

    announced.refresh_from_db()
    message = Message.objects.get(external_id="1234567")
    assert announced.last_message_id == message.pk
    assert announced.last_activity_at == message.sent_at
    assert timezone.now() - announced.last_activity_at > timedelta(hours=29)
