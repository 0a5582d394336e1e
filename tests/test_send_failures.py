"""A send that fails or is being retried says so where the agent looks, in words without
internals: the conversation list, the thread and the API. The whole detail stays in admin."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from django.test import Client
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import AgentProfile, User
from inbox.models import Message, Session
from inbox.send_failures import send_failure_text
from inbox.services import deliver
from inbox.services.deliver import DeliveryDeferred
from inbox.services.send import Draft, message_send
from inbox.templatetags.inbox_tags import iso
from tests.factories import (
    AgentProfileFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
    TeamFactory,
    UserFactory,
)

INTERNAL_BASE = "http://xms-gateway.corp.internal:8443/xms"
SEND = f"{INTERNAL_BASE}/api/v1/message/send"
INTERNALS = ("xms-gateway", "corp.internal", "8443", "://", "/api/v1", "10.20.30.40")

# --- The one function: whatever a stored reason holds, agents read no internals -------------

_hosts = st.sampled_from(
    ["xms-gateway.corp.internal:8443", "10.20.30.40", "localhost:8001", "api.mehery.xyz"]
)
_urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https", "redis", "postgres"]),
    _hosts,
    st.from_regex(r"[a-z0-9/_.?=&-]{0,30}", fullmatch=True),
)
_internals = st.one_of(
    _urls,
    st.builds(lambda m, u: f"{m} {u}", st.sampled_from(["GET", "POST", "PUT"]), _urls),
    st.builds(lambda u: f"({u})", _urls),
    st.builds(lambda u: f"(POST {u}: HTTP 503 (not followed; see {u}))", _urls),
    st.sampled_from(["(ConnectionError)", "requests.exceptions.ReadTimeout", "10.20.30.40:6379"]),
)
_words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="()"), max_size=40
)


@given(
    parts=st.lists(st.one_of(_words, _internals), min_size=1, max_size=6),
    code=st.sampled_from(["", "503", "401", "470", "INVALID_URL", "unknown_outcome"]),
)
def test_the_agent_text_of_any_failure_holds_no_url_address_or_exception_name(parts, code):
    title = " ".join(parts)

    text = send_failure_text(code, title)

    assert text.strip()
    assert "://" not in text
    for internal in ("xms-gateway", "10.20.30.40", "localhost:8001", "corp.internal", "POST /"):
        assert internal not in text
    assert "ConnectionError" not in text and "requests.exceptions" not in text


def test_the_platforms_own_words_reach_the_agent():
    assert send_failure_text(
        "INVALID_URL", "The platform refused the message: image.link: must be http(s)"
    ) == ("The platform refused the message: image.link: must be http(s)")
    assert send_failure_text(
        "470", "Message failed to send because more than 24 hours have passed"
    ) == ("Message failed to send because more than 24 hours have passed")


# --- Through the production path ----------------------------------------------------------------


@pytest.fixture
def session(xms_session: Session) -> Session:
    account = xms_session.account
    account.base_url = INTERNAL_BASE
    account.save(update_fields=["base_url"])
    return xms_session


@pytest.fixture
def agent(session: Session) -> User:
    team = TeamFactory()
    team.channels.add(session.channel)
    profile = AgentProfileFactory(role=AgentProfile.Role.AGENT)
    team.members.add(profile.user)
    return profile.user


@pytest.fixture
def as_agent(agent: User) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def _failure_shown(html: str, message: Message) -> str:
    start = html.index(f'id="message-{message.pk}"')
    item = html[start : html.index("</li>", start)]
    match = re.search(r'data-testid="failure-reason">(.*?)</span>', item, re.S)
    assert match, "the thread shows no reason"
    return match.group(1)


FAILURES: dict[str, Any] = {
    "platform down": lambda stub: stub.post(SEND, body=requests.ConnectionError("refused")),
    "a 5xx": lambda stub: stub.post(SEND, status=503, body="<html>upstream 10.20.30.40</html>"),
    "a 400 without an envelope": lambda stub: stub.post(SEND, status=400, body="bad"),
    "a redirect": lambda stub: stub.post(
        SEND, status=302, headers={"Location": "http://10.20.30.40/login"}
    ),
    "bad credentials": lambda stub: stub.post(SEND, status=401, json={"status": 401}),
}


@pytest.mark.django_db
@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_send_explains_itself_to_agents_without_internals_and_in_full_in_admin(
    session, as_agent, failure, settings, django_capture_on_commit_callbacks
):
    settings.SEND_MAX_ATTEMPTS = 2
    with responses.RequestsMock() as stub:
        FAILURES[failure](stub)
        with django_capture_on_commit_callbacks(execute=True):
            message, _ = message_send(session, Draft(body="Hello"))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED

    page = as_agent.get(f"/s/{session.pk}/").content.decode()
    api = as_agent.get(f"/api/v1/sessions/{session.pk}/messages/").json()
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))
    detail = admin.get(f"/admin/inbox/message/{message.pk}/change/").content.decode()

    shown = _failure_shown(page, message)
    (api_message,) = [m for m in api["results"] if m["id"] == message.pk]
    for text in (shown, api_message["error"]["title"]):
        assert text.strip()
        for internal in INTERNALS:
            assert internal not in text, f"{internal!r} shown to agents: {text}"
    assert "xms-gateway.corp.internal" in detail  # the whole detail, for whoever fixes it


@pytest.mark.django_db
def test_a_send_being_retried_says_which_attempt_failed_and_when_the_next_one_is(
    session, as_agent, settings, django_capture_on_commit_callbacks
):
    settings.SEND_MAX_ATTEMPTS = 5
    with django_capture_on_commit_callbacks(execute=False):
        message, _ = message_send(session, Draft(body="Hello"))
    with responses.RequestsMock() as stub:
        stub.post(SEND, status=503)
        with pytest.raises(DeliveryDeferred):
            deliver.message_deliver(message.pk)
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED and message.attempts == 1

    page = as_agent.get(f"/s/{session.pk}/").content.decode()
    start = page.index(f'id="message-{message.pk}"')
    item = page[start : page.index("</li>", start)]

    retrying = re.search(r'data-testid="message-retrying"[^>]*>(.*?)</p>', item, re.S)
    assert retrying, "the thread does not say the send is being retried"
    text = retrying.group(1)
    assert "Attempt 1 of 5" in text
    assert f'datetime="{iso(message.next_attempt_at)}"' in text
    assert 'data-format="countdown"' in text
    for internal in INTERNALS:
        assert internal not in item


@pytest.mark.django_db
def test_a_live_refresh_brings_the_retry_line_of_each_new_attempt(session, as_agent):
    message = OutboundMessageFactory(
        session=session,
        status=Message.Status.QUEUED,
        attempts=2,
        next_attempt_at=timezone.now() + timedelta(seconds=8),
    )

    same = as_agent.get(f"/s/{session.pk}/updates/?st={message.pk}.queued-2").content.decode()
    moved = as_agent.get(f"/s/{session.pk}/updates/?st={message.pk}.queued-1").content.decode()

    changed = '<template data-part="changed">'
    assert f'id="message-{message.pk}"' not in same.split(changed)[1].split("</template>")[0]
    assert f'id="message-{message.pk}"' in moved.split(changed)[1].split("</template>")[0]
    assert 'data-shown="queued-2"' in moved


@pytest.mark.django_db
def test_a_failed_send_shows_in_the_conversation_list_row_until_it_is_dealt_with(
    session, as_agent, django_capture_on_commit_callbacks
):
    failed = OutboundMessageFactory(
        session=session,
        status=Message.Status.FAILED,
        error_code="503",
        error_title=f"The platform was unavailable (POST {SEND}: HTTP 503).",
        sent_at=timezone.now() - timedelta(minutes=3),
    )
    # The customer wrote after it: the row's preview is theirs, the failure still shows.
    inbound = InboundMessageFactory(session=session, body="Hello?", sent_at=timezone.now())
    Session.objects.filter(pk=session.pk).update(last_message=inbound)

    def row() -> str:
        html = as_agent.get("/").content.decode()
        start = html.index(f'data-session-id="{session.pk}"')
        return html[start : html.index("</li>", start)]

    shown = row()
    assert 'data-testid="row-failed"' in shown and "Not delivered" in shown
    assert "xms-gateway" not in shown

    Message.objects.filter(pk=failed.pk).update(status=Message.Status.QUEUED)  # retried
    assert 'data-testid="row-failed"' not in row()
    Message.objects.filter(pk=failed.pk).update(status=Message.Status.FAILED)
    OutboundMessageFactory(session=session, replaces=failed, type="template")  # re-sent
    assert 'data-testid="row-failed"' not in row()


@pytest.mark.django_db
def test_the_list_marks_failed_sends_in_a_constant_number_of_queries(session, as_agent):
    from tests.factories import make_session

    def count() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            as_agent.get("/")
        return len(queries)

    OutboundMessageFactory(session=session, status=Message.Status.FAILED)
    few = count()
    for _ in range(5):
        other = make_session(session.account, session.channel)
        OutboundMessageFactory(session=other, status=Message.Status.FAILED)
    assert count() == few
