"""A customer's next session soon after the last keeps its owner and labels, and the thread
shows the previous session's messages above a separator."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from accounts.models import AgentProfile
from inbox.models import Message, Session, TimelineEntry
from inbox.services.contacts import identities_create_new
from inbox.services.sessions import sessions_open_new
from integrations.base import ContactProfile, SessionRef
from integrations.models import ProviderAccount, WebhookEvent
from integrations.services import webhooks
from integrations.services.webhooks import webhook_events_drain
from tests.conftest import Poster, load_fixture
from tests.factories import (
    AgentProfileFactory,
    InboundMessageFactory,
    LabelFactory,
    ProviderAccountFactory,
    TeamFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def post_callback(post_callback_each_path: Poster) -> Poster:
    """Each behaviour here holds on both paths: one task per callback, and the drain."""
    return post_callback_each_path


T0 = 1_790_000_000_000  # ms


def _message(number: int, *, session: str, at_ms: int) -> dict[str, Any]:
    body = copy.deepcopy(load_fixture("xms", "inbound-message-text"))
    message = body["messages"][0]
    message.update(id=f"carry-{number}", messageIdExt=f"carry-{number}", timestamp=at_ms)
    message["text"]["body"] = f"message {number}"
    message["session"]["sessionId"] = session
    return body


def _hours(hours: float) -> int:
    return int(hours * 3600 * 1000)


def _first_session_handled(account: ProviderAccount, post_callback: Any, *, status: str) -> Session:
    """The customer's first session: answered by Ana of Support, labelled, then ended."""
    post_callback(account, _message(0, session="first", at_ms=T0))
    first = Session.objects.get(account=account, external_id="first")
    ana = AgentProfileFactory(role=AgentProfile.Role.AGENT, user__display_name="Ana Agent").user
    team = TeamFactory(name="Support")
    first.assignee, first.team = ana, team
    ended = datetime.fromtimestamp((T0 + _hours(1)) / 1000, tz=UTC)
    first.status = status
    first.resolved_at = ended if status == Session.Status.RESOLVED else None
    first.closed_at = ended if status == Session.Status.CLOSED else None
    first.save()
    first.labels.add(LabelFactory(name="vip"), LabelFactory(name="billing"))
    return first


@pytest.mark.parametrize("status", [Session.Status.RESOLVED, Session.Status.CLOSED])
def test_a_new_session_soon_after_the_last_keeps_its_assignee_team_and_labels_and_says_so(
    account, post_callback, status
):
    first = _first_session_handled(account, post_callback, status=status)

    post_callback(account, _message(1, session="second", at_ms=T0 + _hours(6)))

    second = Session.objects.get(account=account, external_id="second")
    assert second.assignee == first.assignee and second.team == first.team
    assert sorted(second.labels.values_list("name", flat=True)) == ["billing", "vip"]
    line = TimelineEntry.objects.get(session=second, dedupe_key=f"carried:{second.pk}")
    assert line.summary == (
        "Kept from the previous session, which ended 5 h before: assigned to Ana Agent; "
        "team Support; labels billing, vip"
    )


@pytest.mark.parametrize(("hours", "carry_over_hours"), [(26, 24), (6, 0), (3, 2)])
def test_a_new_session_long_after_the_last_starts_afresh(
    account, post_callback, settings, hours, carry_over_hours
):
    settings.SESSION_CARRY_OVER_HOURS = carry_over_hours
    _first_session_handled(account, post_callback, status=Session.Status.CLOSED)

    post_callback(account, _message(1, session="second", at_ms=T0 + _hours(hours)))

    second = Session.objects.get(account=account, external_id="second")
    assert second.assignee is None and second.team is None and not second.labels.exists()
    assert not TimelineEntry.objects.filter(session=second, summary__startswith="Kept").exists()


def test_an_open_session_that_went_quiet_long_ago_is_not_carried_over(account, post_callback):
    post_callback(account, _message(0, session="first", at_ms=T0))
    first = Session.objects.get(account=account, external_id="first")
    first.team = TeamFactory()
    first.save()

    post_callback(account, _message(1, session="second", at_ms=T0 + _hours(48)))

    assert Session.objects.get(account=account, external_id="second").team is None


def test_what_the_platform_assigned_to_the_new_session_wins_over_what_is_carried(
    account, post_callback
):
    _first_session_handled(account, post_callback, status=Session.Status.RESOLVED)
    bob = AgentProfileFactory(platform_code="BOB", user__display_name="Bob").user
    body = _message(1, session="second", at_ms=T0 + _hours(2))
    body["messages"][0]["session"]["assignedToAgent"] = "BOB"

    post_callback(account, body)

    second = Session.objects.get(account=account, external_id="second")
    assert second.assignee == bob
    assert second.team is not None and second.labels.count() == 2


def test_sessions_opened_in_bulk_follow_the_same_rule(account, post_callback):
    """The bulk path opens sessions for brand-new identities; one that joins a contact who
    had a session on the channel (a case the bulk run leaves alone today) is still judged by
    the same rule, since `sessions_open_new` calls it."""
    first = _first_session_handled(account, post_callback, status=Session.Status.CLOSED)
    profile = ContactProfile(
        external_id="second-identity", phone="", channel_external_id=first.channel.external_id
    )
    (identity,) = identities_create_new(account, [(profile, first.channel)])
    identity.contact = first.contact  # as if it had joined the contact by phone
    identity.save(update_fields=["contact"])
    at = datetime.fromtimestamp((T0 + _hours(3)) / 1000, tz=UTC)

    (second,) = sessions_open_new(
        account, [(identity, first.channel, SessionRef(external_id="bulk-second"), at)]
    )

    second.refresh_from_db()
    assert second.assignee == first.assignee and second.team == first.team
    assert second.labels.count() == 2
    assert TimelineEntry.objects.filter(session=second, dedupe_key__startswith="carried:").exists()


def test_bulk_and_one_by_one_carry_over_alike(post_callback):
    bodies = [
        _message(0, session="first", at_ms=T0),
        _message(1, session="first", at_ms=T0 + 1000),
        _message(2, session="second", at_ms=T0 + _hours(5)),
        _message(3, session="second", at_ms=T0 + _hours(5) + 1000),
    ]
    one, bulk = ProviderAccountFactory(), ProviderAccountFactory()
    team = TeamFactory(name="Support")

    def handle_first(account: ProviderAccount) -> None:
        Session.objects.filter(account=account, external_id="first").update(
            team=team,
            status=Session.Status.RESOLVED,
            resolved_at=datetime.fromtimestamp((T0 + _hours(1)) / 1000, tz=UTC),
        )

    for event in _store(one, bodies[:2]):
        webhooks.webhook_event_process(event.pk)
    handle_first(one)
    for event in _store(one, bodies[2:]):
        webhooks.webhook_event_process(event.pk)
    _store(bulk, bodies[:2])
    webhook_events_drain()
    handle_first(bulk)
    _store(bulk, bodies[2:])
    webhook_events_drain()

    def state(account: ProviderAccount) -> Any:
        sessions = Session.objects.filter(account=account).order_by("opened_at")
        return [
            (s.external_id, s.status, s.team_id, s.unread_count, s.messages.count())
            for s in sessions
        ], sorted(TimelineEntry.objects.filter(account=account).values_list("kind", "summary"))

    assert state(bulk) == state(one)
    assert Session.objects.get(account=bulk, external_id="second").team == team


def _store(account: ProviderAccount, bodies: list[dict[str, Any]]) -> list[WebhookEvent]:
    from django.utils import timezone

    now = timezone.now()
    return [
        WebhookEvent.objects.create(
            account=account, body=json.dumps(body), received_at=now, enqueued_at=now, headers={}
        )
        for body in bodies
    ]


# --- The thread: the previous session above a separator ------------------------------------------


@pytest.fixture
def as_supervisor() -> Client:
    client = Client()
    client.force_login(AgentProfileFactory(role=AgentProfile.Role.SUPERVISOR).user)
    return client


def test_the_thread_shows_the_previous_sessions_messages_above_a_separator_on_scroll(
    account, post_callback, as_supervisor
):
    _first_session_handled(account, post_callback, status=Session.Status.CLOSED)
    post_callback(account, _message(1, session="second", at_ms=T0 + _hours(6)))
    second = Session.objects.get(account=account, external_id="second")

    page = as_supervisor.get(f"/s/{second.pk}/").content.decode()
    link = re.search(r'hx-get="([^"]+)"[^>]*data-testid="load-older"', page)
    assert link, "no way to scroll up into the previous session"
    older = as_supervisor.get(link.group(1).replace("&amp;", "&")).content.decode()

    assert "message 0" in older  # the previous session's message
    assert 'data-testid="session-separator"' in older
    assert older.index("message 0") < older.index('data-testid="session-separator"')
    assert "message 1" not in older  # already on the page, below the separator
    assert "message 0" not in page


def test_a_long_previous_session_pages_back_and_then_reaches_the_one_before(
    account, post_callback, as_supervisor
):
    post_callback(account, _message(0, session="one", at_ms=T0))
    one = Session.objects.get(account=account, external_id="one")
    post_callback(account, _message(1, session="two", at_ms=T0 + _hours(50)))
    two = Session.objects.get(account=account, external_id="two")
    for n in range(45):  # more than a page of the second session
        InboundMessageFactory(
            session=two,
            body=f"older {n}",
            sent_at=datetime.fromtimestamp((T0 + _hours(50) + 1000 + n) / 1000, tz=UTC),
        )
    post_callback(account, _message(2, session="three", at_ms=T0 + _hours(100)))
    three = Session.objects.get(account=account, external_id="three")

    seen: list[str] = []
    html = as_supervisor.get(f"/s/{three.pk}/").content.decode()
    for _ in range(6):
        link = re.search(r'hx-get="([^"]+)"[^>]*data-testid="load-older"', html)
        if not link:
            break
        html = as_supervisor.get(link.group(1).replace("&amp;", "&")).content.decode()
        seen.append(html)

    everything = "".join(reversed(seen))
    assert everything.count('data-testid="session-separator"') == 2
    assert all(f"older {n}<" in everything for n in range(45))
    assert "message 0" in everything and "message 1" in everything
    assert one.pk != two.pk
    assert Message.objects.filter(session=three).count() == 1
