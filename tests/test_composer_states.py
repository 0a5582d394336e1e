"""The composer comes back in the state the session allows: reply, template only, or closed."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.test import Client
from django.utils import timezone

from accounts.models import AgentProfile, User
from inbox.models import Message, Session
from integrations.models import Channel, ProviderAccount
from tests.factories import (
    AgentProfileFactory,
    ChannelFactory,
    ContactFactory,
    TeamFactory,
    TemplateApprovalFactory,
    make_session,
)

pytestmark = pytest.mark.django_db

SEND = "https://api.mehery.example/xms/api/v1/message/send"
ACCEPTED = {"data": {"id": "abc"}, "statusKey": "SUCCESS", "status": 200, "errors": []}


def htmx() -> dict[str, str]:
    return {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def channel(account: ProviderAccount) -> Channel:
    return ChannelFactory(account=account, medium="whatsapp", name="Support")


@pytest.fixture
def agent(channel: Channel) -> User:
    team = TeamFactory(name="Support team")
    team.channels.add(channel)
    profile = AgentProfileFactory(role=AgentProfile.Role.AGENT, user__display_name="Ana Agent")
    team.members.add(profile.user)
    return profile.user


@pytest.fixture
def as_agent(agent: User) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def _composer(html: str) -> str:
    start = html.index('<div id="composer"')
    return html[start : html.index("</form>", html.index('id="template-form"', start))]


def _mode(html: str) -> str:
    match = re.search(r'<div id="composer"[^>]*data-mode="(\w+)"', html)
    assert match, "no composer in the answer"
    return match.group(1)


def _checked_mode(html: str) -> str:
    match = re.search(r'name="mode" value="(\w+)"[^>]*\schecked', _composer(html))
    assert match, "no mode is checked"
    return match.group(1)


@pytest.mark.parametrize("with_htmx", [True, False])
def test_after_a_template_sent_outside_the_window_the_composer_comes_back_template_only(
    as_agent, account, channel, with_htmx, django_capture_on_commit_callbacks
):
    session = make_session(account, channel, inbound_ago=timedelta(hours=30))
    approval = TemplateApprovalFactory(template__account=account, channel=channel)

    with responses.RequestsMock() as stub:
        stub.post(SEND, json=ACCEPTED)
        with django_capture_on_commit_callbacks(execute=True):
            response = as_agent.post(
                f"/s/{session.pk}/send-template/",
                {"template": approval.template.pk, "ph:name": "Anna", "idempotency_key": "t-a"},
                **(htmx() if with_htmx else {}),
                follow=not with_htmx,
            )

    html = response.content.decode()
    assert response.status_code == 200
    assert _mode(html) == "template"
    assert _checked_mode(html) == "template"
    assert 'data-testid="composer-window-closed"' in html
    # What the composer offers works: the reply mode is not the one it came back in.
    assert re.search(r'value="reply" form="reply-form" disabled', html)


@pytest.mark.parametrize(
    ("asked", "window_open", "expected"),
    [
        ("", True, "reply"),
        ("reply", True, "reply"),
        ("note", True, "note"),
        ("template", True, "template"),
        ("nonsense", True, "reply"),
        ("", False, "template"),
        ("reply", False, "template"),
        ("note", False, "note"),
        ("template", False, "template"),
        ("nonsense", False, "template"),
    ],
)
def test_every_way_of_opening_the_composer_lands_in_a_mode_that_can_send(
    as_agent, account, channel, asked, window_open, expected
):
    ago = timedelta(minutes=5) if window_open else timedelta(hours=30)
    session = make_session(account, channel, inbound_ago=ago)

    page = as_agent.get(f"/s/{session.pk}/?compose={asked}").content.decode()
    note = as_agent.post(
        f"/s/{session.pk}/send/",
        {"mode": asked, "body": "internal", "idempotency_key": f"n-{asked}-{window_open}"},
        **htmx(),
    ).content.decode()

    assert _mode(page) == expected
    assert _checked_mode(page) == expected
    if asked != "note":
        # Anything sent from the reply form that is not a note comes back as what it can be.
        assert _mode(note) == expected


def _closed(account: ProviderAccount, channel: Channel, **kw: Any) -> Session:
    return make_session(
        account, channel, status=Session.Status.CLOSED, closed_at=timezone.now(), **kw
    )


def test_a_closed_session_does_not_take_a_reply_and_offers_a_template_to_start_again(
    as_agent, account, channel
):
    contact = ContactFactory(account=account, name="Lucas Petit")
    session = _closed(account, channel, contact=contact)  # the window is still open
    TemplateApprovalFactory(template__account=account, template__code="WELCOME", channel=channel)

    html = as_agent.get(f"/s/{session.pk}/").content.decode()
    response = as_agent.post(
        f"/s/{session.pk}/send/",
        {"mode": "reply", "body": "Still there?", "idempotency_key": "c1"},
        **htmx(),
    )

    composer = _composer(html)
    assert 'data-testid="composer-session-closed"' in composer
    assert "This session is closed" in composer
    assert "start a new conversation with Lucas Petit" in composer
    assert _mode(html) == "template" and "WELCOME" in composer
    assert re.search(r'value="reply" form="reply-form" disabled', composer)
    assert response.status_code == 422
    assert "This session is closed" in response.content.decode()
    assert not Message.objects.filter(session=session).exists()


def test_a_closed_session_that_a_newer_one_replaced_points_to_it(as_agent, account, channel):
    contact = ContactFactory(account=account)
    old = _closed(account, channel, contact=contact, opened_at=timezone.now() - timedelta(days=2))
    newer = make_session(account, channel, contact=contact, opened_at=timezone.now())

    composer = _composer(as_agent.get(f"/s/{old.pk}/").content.decode())

    assert f'href="/s/{newer.pk}/"' in composer
    assert 'data-testid="composer-newer-session"' in composer


def test_a_private_note_can_still_be_added_to_a_closed_session(as_agent, account, channel):
    session = _closed(account, channel)

    response = as_agent.post(
        f"/s/{session.pk}/send/",
        {"mode": "note", "body": "Customer called by phone", "idempotency_key": "n1"},
        **htmx(),
    )

    assert response.status_code == 200
    assert session.notes.count() == 1


def test_reopen_is_offered_on_resolved_sessions_only_and_refused_on_closed_ones(
    as_agent, account, channel
):
    resolved = make_session(account, channel, status=Session.Status.RESOLVED)
    closed = _closed(account, channel)

    resolved_page = as_agent.get(f"/s/{resolved.pk}/").content.decode()
    closed_page = as_agent.get(f"/s/{closed.pk}/").content.decode()
    refused = as_agent.post(f"/s/{closed.pk}/reopen/", **htmx())

    assert 'data-testid="action-reopen"' in resolved_page
    assert 'data-testid="action-reopen"' not in closed_page
    assert refused.status_code == 422
    assert "next message starts a new one" in refused.content.decode()
    closed.refresh_from_db()
    assert closed.status == Session.Status.CLOSED
    assert as_agent.post(f"/s/{resolved.pk}/reopen/", **htmx()).status_code == 200
    resolved.refresh_from_db()
    assert resolved.status == Session.Status.OPEN


def test_the_composer_is_refreshed_when_the_session_closes_while_it_is_open(
    as_agent, account, channel
):
    session = make_session(account, channel)
    page = as_agent.get(f"/s/{session.pk}/").content.decode()
    state = re.search(r'<div id="composer"[^>]*data-state="([\w-]+)"', page)
    assert state is not None and state.group(1) == "open"
    Session.objects.filter(pk=session.pk).update(status=Session.Status.CLOSED)

    updates = as_agent.get(f"/s/{session.pk}/updates/?w=open").content.decode()

    assert '<template data-part="composer">' in updates
    assert 'data-testid="composer-session-closed"' in updates
