"""The integrator API: token auth, who sees what, sending exactly once, actions, and its schema."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import responses
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AgentProfile, User
from accounts.services import api_token_create
from inbox.models import Message, Session, SessionAction, TimelineEntry
from inbox.services.timeline import timeline_add
from inbox.window import session_window
from integrations.models import Channel, ProviderAccount
from tests.factories import (
    AgentProfileFactory,
    ChannelFactory,
    ContactFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
    ProviderAccountFactory,
    TeamFactory,
    TemplateApprovalFactory,
    TemplateFactory,
    UserFactory,
    make_session,
)

pytestmark = pytest.mark.django_db

BASE = "https://api.mehery.example/xms/api/v1"
SEND = f"{BASE}/message/send"
RESOLVE = f"{BASE}/session/resolve"
ROUTE = f"{BASE}/session/routing"
SUCCESS_LIST = {"results": [], "statusKey": "SUCCESS", "status": 200}


def accepted(message_id: str = "abc") -> dict[str, Any]:
    return {"data": {"id": message_id}, "statusKey": "SUCCESS", "status": 200, "errors": []}


def client_for(user: User) -> APIClient:
    """Return an API client that authenticates as `user` with a token."""
    _, key = api_token_create(user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def sent_bodies() -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in responses.calls if c.request.url == SEND]


@pytest.fixture
def channel(account: ProviderAccount) -> Channel:
    return ChannelFactory(account=account, external_id="wa360:918828218374", medium="whatsapp")


@pytest.fixture
def other_channel(account: ProviderAccount) -> Channel:
    return ChannelFactory(account=account, medium="telegram", name="Telegram bot")


@pytest.fixture
def agent(channel: Channel) -> User:
    """An agent in a team that serves `channel` (and nothing else)."""
    profile = AgentProfileFactory(role=AgentProfile.Role.AGENT)
    team = TeamFactory(name="Support")
    team.members.add(profile.user)
    team.channels.add(channel)
    return profile.user


@pytest.fixture
def supervisor() -> User:
    return AgentProfileFactory(role=AgentProfile.Role.SUPERVISOR).user


@pytest.fixture
def session(account: ProviderAccount, channel: Channel) -> Session:
    return make_session(account, channel, external_id="xsds34434")


@pytest.fixture
def foreign_session(account: ProviderAccount, other_channel: Channel) -> Session:
    """A session on a channel the agent's teams do not serve."""
    return make_session(account, other_channel)


# --- Authentication and visibility ------------------------------------------------------------


def test_a_request_without_a_token_is_refused_with_401_json(session):
    response = APIClient().get("/api/v1/sessions/")

    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


def test_a_wrong_token_is_refused_with_401_json(session):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.get(f"/api/v1/sessions/{session.pk}/")

    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


@responses.activate
def test_an_agent_can_neither_see_nor_act_on_another_teams_session(
    agent, session, foreign_session, django_capture_on_commit_callbacks
):
    failed = OutboundMessageFactory(session=foreign_session, status=Message.Status.FAILED)
    action = SessionAction.objects.create(session=foreign_session, kind=SessionAction.Kind.CLOSE)
    client = client_for(agent)
    sid = foreign_session.pk

    with django_capture_on_commit_callbacks(execute=True):
        answers = [
            client.get(f"/api/v1/sessions/{sid}/"),
            client.get(f"/api/v1/sessions/{sid}/messages/"),
            client.post(f"/api/v1/sessions/{sid}/messages/", {"body": "hi"}, format="json"),
            client.post(f"/api/v1/sessions/{sid}/resolve/", format="json"),
            client.post(f"/api/v1/sessions/{sid}/close/", format="json"),
            client.post(f"/api/v1/sessions/{sid}/route/", {"queue": "sales"}, format="json"),
            client.post(f"/api/v1/sessions/{sid}/assign/", {"assignee": agent.pk}, format="json"),
            client.get(f"/api/v1/messages/{failed.pk}/"),
            client.post(f"/api/v1/messages/{failed.pk}/retry/", format="json"),
            client.get(f"/api/v1/actions/{action.pk}/"),
        ]

    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all(a.json()["error"] == "not_found" for a in answers)
    # A session that does not exist answers exactly the same: ids cannot be probed.
    assert client.get("/api/v1/sessions/999999/").json() == answers[0].json()
    listed = client.get("/api/v1/sessions/").json()
    assert [s["id"] for s in listed["results"]] == [session.pk]
    assert len(responses.calls) == 0
    foreign_session.refresh_from_db()
    assert foreign_session.assignee is None
    assert foreign_session.messages.count() == 1
    assert SessionAction.objects.filter(session=foreign_session).count() == 1


def test_an_agent_in_two_teams_serving_one_channel_sees_each_session_once(agent, channel, session):
    second = TeamFactory()
    second.members.add(agent)
    second.channels.add(channel)

    listed = client_for(agent).get("/api/v1/sessions/").json()

    assert listed["count"] == 1
    assert [s["id"] for s in listed["results"]] == [session.pk]


def test_an_agent_without_a_team_sees_nothing(session):
    loner = AgentProfileFactory().user

    assert client_for(loner).get("/api/v1/sessions/").json()["count"] == 0
    assert client_for(loner).get(f"/api/v1/sessions/{session.pk}/").status_code == 404


def test_supervisors_staff_and_superusers_see_every_session(supervisor, session, foreign_session):
    staff = UserFactory(is_staff=True)
    superuser = UserFactory(is_superuser=True)

    for user in (supervisor, staff, superuser):
        listed = client_for(user).get("/api/v1/sessions/").json()
        assert {s["id"] for s in listed["results"]} == {session.pk, foreign_session.pk}
        assert client_for(user).get(f"/api/v1/sessions/{foreign_session.pk}/").status_code == 200


def test_an_agent_lists_only_the_channels_their_teams_serve(
    agent, supervisor, channel, other_channel
):
    mine = client_for(agent).get("/api/v1/channels/").json()["results"]
    every = client_for(supervisor).get("/api/v1/channels/").json()["results"]

    assert [c["id"] for c in mine] == [channel.pk]
    assert mine[0]["window_hours"] == 24
    assert {c["id"] for c in every} == {channel.pk, other_channel.pk}


# --- The session list -------------------------------------------------------------------------


def test_a_session_in_the_list_carries_contact_channel_owner_window_and_last_message(
    supervisor, session
):
    team = TeamFactory(name="Billing")
    message = InboundMessageFactory(session=session, body="Where is my order?")
    Session.objects.filter(pk=session.pk).update(
        last_message=message, assignee=supervisor, team=team, platform_queue="support"
    )

    item = client_for(supervisor).get("/api/v1/sessions/").json()["results"][0]

    assert item["id"] == session.pk
    assert item["external_id"] == "xsds34434"
    assert item["channel"] == {
        "id": session.channel_id,
        "name": session.channel.name,
        "medium": "whatsapp",
    }
    assert item["contact"] == {
        "id": session.contact_id,
        "name": session.contact.name,
        "phone": session.contact.phone,
    }
    assert item["assignee"] == {"id": supervisor.pk, "name": str(supervisor)}
    assert item["team"] == {"id": team.pk, "name": "Billing"}
    assert item["platform_queue"] == "support"
    assert item["window"]["applies"] is True
    assert item["window"]["open"] is True
    assert item["last_message"]["preview"] == "Where is my order?"
    assert item["last_message"]["direction"] == "in"


def test_the_window_in_the_list_agrees_with_the_send_service_across_a_contacts_sessions(
    supervisor, account, channel
):
    old = make_session(account, channel, inbound_ago=timedelta(hours=30))
    make_session(account, channel, contact=old.contact, inbound_ago=timedelta(hours=1))

    listed = client_for(supervisor).get("/api/v1/sessions/", {"page_size": 10}).json()
    window = next(s["window"] for s in listed["results"] if s["id"] == old.pk)

    assert window["open"] is session_window(old).is_open is True


def test_the_list_filters_by_status_channel_medium_assignee_team_and_text(
    supervisor, agent, account, channel, other_channel
):
    team = TeamFactory()
    open_mine = make_session(account, channel, assignee=agent, team=team)
    pending = make_session(account, channel, status=Session.Status.PENDING)
    closed = make_session(account, other_channel, status=Session.Status.CLOSED)
    Session.objects.filter(pk=open_mine.pk).update(
        contact=ContactFactory(account=account, name="Amélie Durand", phone="33612345678")
    )
    InboundMessageFactory(session=pending, body="My parcel never arrived")
    client = client_for(supervisor)

    def ids(**params: Any) -> set[int]:
        answer = client.get("/api/v1/sessions/", params)
        assert answer.status_code == 200, answer.json()
        return {s["id"] for s in answer.json()["results"]}

    assert ids(status=["open", "pending"]) == {open_mine.pk, pending.pk}
    assert ids(status="closed") == {closed.pk}
    assert ids(channel=other_channel.pk) == {closed.pk}
    assert ids(medium="whatsapp") == {open_mine.pk, pending.pk}
    assert ids(assignee=agent.pk) == {open_mine.pk}
    assert ids(assignee="none") == {pending.pk, closed.pk}
    assert ids(team=team.pk) == {open_mine.pk}
    assert ids(q="amélie") == {open_mine.pk}
    assert ids(q="3361234") == {open_mine.pk}
    assert ids(q="PARCEL") == {pending.pk}
    assert client_for(agent).get("/api/v1/sessions/", {"assignee": "me"}).json()["count"] == 1
    bad = client.get("/api/v1/sessions/", {"status": "lost"})
    assert bad.status_code == 400
    assert "status" in bad.json()["fields"]


def test_the_waiting_order_puts_the_longest_unanswered_session_first(supervisor, account, channel):
    answered = make_session(account, channel, inbound_ago=timedelta(hours=5))
    waiting_long = make_session(account, channel, inbound_ago=timedelta(hours=3))
    waiting_short = make_session(account, channel, inbound_ago=timedelta(minutes=10))
    for s in (waiting_long, waiting_short):
        Session.objects.filter(pk=s.pk).update(last_message=InboundMessageFactory(session=s))
    Session.objects.filter(pk=answered.pk).update(
        last_message=OutboundMessageFactory(session=answered, status=Message.Status.SENT)
    )
    client = client_for(supervisor)

    ordered = client.get("/api/v1/sessions/", {"ordering": "waiting"}).json()["results"]
    unanswered = client.get("/api/v1/sessions/", {"unanswered": "true"}).json()["results"]

    assert [s["id"] for s in ordered] == [waiting_long.pk, waiting_short.pk, answered.pk]
    assert {s["id"] for s in unanswered} == {waiting_long.pk, waiting_short.pk}


def test_the_session_list_makes_as_many_queries_for_30_sessions_as_for_3(agent, account, channel):
    team = TeamFactory()

    def add_sessions(n: int) -> None:
        for _ in range(n):
            s = make_session(account, channel, assignee=agent, team=team)
            Session.objects.filter(pk=s.pk).update(last_message=InboundMessageFactory(session=s))

    def queries() -> int:
        client = client_for(agent)
        with CaptureQueriesContext(connection) as captured:
            answer = client.get("/api/v1/sessions/", {"page_size": 100, "q": "Customer"})
        assert answer.status_code == 200
        return len(captured.captured_queries), answer.json()["count"]

    add_sessions(3)
    few, count_few = queries()
    add_sessions(27)
    many, count_many = queries()

    assert (count_few, count_many) == (3, 30)
    assert few == many


def test_the_session_detail_shows_identities_recent_timeline_and_unfinished_actions(
    supervisor, session
):
    for i in range(55):
        timeline_add(
            session.account,
            session=session,
            kind=TimelineEntry.Kind.EVENT,
            summary=f"event {i}",
            occurred_at=timezone.now() - timedelta(minutes=60 - i),
        )
    failed = SessionAction.objects.create(
        session=session, kind="resolve", state="failed", error="The platform refused: nope"
    )
    SessionAction.objects.create(session=session, kind="route", state="done")

    detail = client_for(supervisor).get(f"/api/v1/sessions/{session.pk}/").json()

    assert [i["external_id"] for i in detail["contact"]["identities"]] == [
        session.identity.external_id
    ]
    assert len(detail["timeline"]) == 50
    assert detail["timeline"][-1]["summary"] == "event 54"
    assert [a["id"] for a in detail["actions"]] == [failed.pk]
    assert detail["actions"][0]["error"] == "The platform refused: nope"


# --- Sending ----------------------------------------------------------------------------------


@responses.activate
def test_sending_a_text_queues_it_and_the_delivery_marks_it_sent(
    agent, session, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=accepted("abc"))

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(agent).post(
            f"/api/v1/sessions/{session.pk}/messages/",
            {"body": "Your order shipped."},
            format="json",
        )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["direction"] == "out"
    assert body["type"] == "text"
    assert body["author"] == {"id": agent.pk, "name": str(agent)}
    message = Message.objects.get(pk=body["id"])
    assert message.status == Message.Status.SENT
    assert message.external_id == "abc"
    [sent] = sent_bodies()
    assert sent["type"] == "text"
    assert sent["text"] == {"body": "Your order shipped."}
    assert sent["to"]["contactId"] == session.identity.external_id
    polled = client_for(agent).get(f"/api/v1/messages/{message.pk}/").json()
    assert (polled["status"], polled["external_id"]) == ("sent", "abc")


@responses.activate
def test_the_same_idempotency_key_twice_is_one_message_and_one_platform_call(
    agent, session, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=accepted("abc"))
    client = client_for(agent)
    url = f"/api/v1/sessions/{session.pk}/messages/"

    answers = []
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            answers.append(
                client.post(url, {"body": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
            )

    assert [a.status_code for a in answers] == [201, 200]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert Message.objects.filter(session=session).count() == 1
    assert len(responses.calls) == 1


@responses.activate
def test_an_idempotency_key_in_the_body_works_like_the_header(
    agent, session, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=accepted("abc"))
    client = client_for(agent)
    url = f"/api/v1/sessions/{session.pk}/messages/"
    payload = {"body": "Once", "idempotency_key": "k-1"}

    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(url, payload, format="json")
        second = client.post(url, payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
        conflict = client.post(url, payload, format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert (first.status_code, second.status_code) == (201, 200)
    assert conflict.status_code == 400
    assert "idempotency_key" in conflict.json()["fields"]
    assert len(responses.calls) == 1


@responses.activate
def test_a_free_form_message_outside_the_window_is_refused_with_422(
    agent, account, channel, django_capture_on_commit_callbacks
):
    late = make_session(account, channel, inbound_ago=timedelta(hours=25))

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(agent).post(
            f"/api/v1/sessions/{late.pk}/messages/", {"body": "Still there?"}, format="json"
        )

    assert response.status_code == 422
    assert response.json()["error"] == "window_closed"
    assert "only an approved template" in response.json()["detail"]
    assert len(responses.calls) == 0
    assert not Message.objects.filter(session=late).exists()


@responses.activate
def test_a_template_outside_the_window_goes_out(
    agent, account, channel, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=accepted("tmpl-1"))
    late = make_session(account, channel, inbound_ago=timedelta(hours=25))
    template = TemplateApprovalFactory(template__account=account, channel=channel).template

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(agent).post(
            f"/api/v1/sessions/{late.pk}/messages/",
            {"template_id": template.pk, "template_data": {"name": "Anna"}},
            format="json",
        )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["type"] == "template"
    assert body["body"] == "Hi Anna"
    assert body["template"] == {"id": template.pk, "code": template.code, "lang": "en_US"}
    assert Message.objects.get(pk=body["id"]).status == Message.Status.SENT
    [sent] = sent_bodies()
    assert sent["type"] == "template"


@responses.activate
def test_a_template_with_a_missing_placeholder_is_refused_with_422(
    agent, account, channel, session
):
    template = TemplateApprovalFactory(template__account=account, channel=channel).template

    response = client_for(agent).post(
        f"/api/v1/sessions/{session.pk}/messages/",
        {"type": "template", "template_id": template.pk, "template_data": {}},
        format="json",
    )

    assert response.status_code == 422
    assert response.json()["error"] == "template_data"
    assert "name" in response.json()["detail"]
    assert len(responses.calls) == 0


def test_a_template_of_another_account_is_a_400_naming_the_field(agent, session):
    elsewhere = TemplateFactory(account=ProviderAccountFactory())

    response = client_for(agent).post(
        f"/api/v1/sessions/{session.pk}/messages/",
        {"template_id": elsewhere.pk, "template_data": {"name": "x"}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert "template_id" in response.json()["fields"]


def test_a_malformed_message_is_a_400_with_the_fields(agent, session):
    response = client_for(agent).post(
        f"/api/v1/sessions/{session.pk}/messages/",
        {"type": "hologram", "latitude": "north", "buttons": [{"type": "URL"}]},
        format="json",
    )

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"type", "latitude", "buttons"}
    assert not Message.objects.exists()


def test_an_empty_text_is_refused_by_the_service_with_422(agent, session):
    response = client_for(agent).post(
        f"/api/v1/sessions/{session.pk}/messages/", {"body": "   "}, format="json"
    )

    assert response.status_code == 422
    assert response.json() == {"error": "empty", "detail": "The message is empty."}


@responses.activate
def test_a_failed_message_can_be_retried(agent, session, django_capture_on_commit_callbacks):
    responses.post(SEND, json=accepted("retried-1"))
    failed = OutboundMessageFactory(
        session=session, status=Message.Status.FAILED, error_code="503", error_title="Down"
    )
    client = client_for(agent)

    assert client.get(f"/api/v1/messages/{failed.pk}/").json()["error"] == {
        "code": "503",
        "title": "Down",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/messages/{failed.pk}/retry/", format="json")
        again = client.post(f"/api/v1/messages/{failed.pk}/retry/", format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert response.json()["error"] is None
    failed.refresh_from_db()
    assert (failed.status, failed.external_id) == (Message.Status.SENT, "retried-1")
    assert again.status_code == 422
    assert again.json()["error"] == "not_failed"


@responses.activate
def test_a_message_the_window_refused_is_resent_as_a_template(
    agent, account, channel, session, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=accepted("tmpl-2"))
    failed = OutboundMessageFactory(session=session, status=Message.Status.FAILED, error_code="470")
    template = TemplateApprovalFactory(template__account=account, channel=channel).template
    client = client_for(agent)

    refused = client.post(f"/api/v1/messages/{failed.pk}/retry/", format="json")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/api/v1/messages/{failed.pk}/resend-as-template/",
            {"template_id": template.pk, "template_data": {"name": "Anna"}},
            format="json",
        )

    assert refused.status_code == 422
    assert refused.json()["error"] == "window_closed"
    assert response.status_code == 201, response.json()
    assert response.json()["replaces"] == failed.pk
    assert response.json()["body"] == "Hi Anna"
    assert Message.objects.get(pk=response.json()["id"]).external_id == "tmpl-2"


# --- Messages, page by page -------------------------------------------------------------------


def test_the_messages_of_a_session_page_by_cursor_without_gaps_or_duplicates(agent, session):
    same_moment = timezone.now() - timedelta(minutes=30)
    expected = [
        InboundMessageFactory(
            session=session,
            sent_at=same_moment if i in (2, 3, 4) else same_moment + timedelta(seconds=i),
        ).pk
        for i in range(9)
    ]
    expected = list(
        Message.objects.filter(pk__in=expected)
        .order_by("sent_at", "id")
        .values_list("pk", flat=True)
    )
    client = client_for(agent)

    seen: list[int] = []
    url: str | None = f"/api/v1/sessions/{session.pk}/messages/?page_size=2"
    pages = 0
    while url:
        page = client.get(url).json()
        seen += [m["id"] for m in page["results"]]
        url = page["next"]
        pages += 1

    assert seen == expected
    assert pages == 5


def test_a_message_carries_media_location_and_no_error_unless_failed(agent, session):
    image = InboundMessageFactory(
        session=session,
        type="image",
        body="",
        caption="The broken part",
        media_url="https://cdn.example/part.jpg",
        media_mime_type="image/jpeg",
        media_filename="part.jpg",
        media_size=2048,
    )
    place = InboundMessageFactory(
        session=session,
        type="location",
        body="",
        latitude=48.85,
        longitude=2.35,
        location_name="Here",
    )

    results = client_for(agent).get(f"/api/v1/sessions/{session.pk}/messages/").json()["results"]
    by_id = {m["id"]: m for m in results}

    # Not stored yet (no file row): nothing to link to, and never the platform's link.
    assert by_id[image.pk]["media"] is None
    assert "cdn.example" not in str(results)
    assert by_id[image.pk]["location"] is None
    assert by_id[image.pk]["error"] is None
    assert by_id[place.pk]["location"]["name"] == "Here"
    assert by_id[place.pk]["media"] is None


# --- Assigning --------------------------------------------------------------------------------


def test_an_agent_may_take_a_session_and_give_it_up(agent, session):
    client = client_for(agent)
    url = f"/api/v1/sessions/{session.pk}/assign/"

    taken = client.post(url, {"assignee": agent.pk}, format="json")
    given_up = client.post(url, {"assignee": None}, format="json")

    assert taken.status_code == 200
    assert taken.json()["assignee"]["id"] == agent.pk
    assert given_up.status_code == 200
    assert given_up.json()["assignee"] is None
    assert session.timeline.filter(kind=TimelineEntry.Kind.ASSIGNED).count() == 2


def test_an_agent_may_not_assign_a_session_to_someone_else(agent, channel, session):
    colleague = AgentProfileFactory().user
    channel.teams.get().members.add(colleague)
    Session.objects.filter(pk=session.pk).update(assignee=colleague)
    client = client_for(agent)
    url = f"/api/v1/sessions/{session.pk}/assign/"

    give = client.post(url, {"assignee": colleague.pk}, format="json")
    drop = client.post(url, {"assignee": None}, format="json")

    assert give.status_code == 403
    assert give.json() == {
        "error": "forbidden",
        "detail": "Only a supervisor can assign a session to someone else.",
    }
    assert drop.status_code == 403
    session.refresh_from_db()
    assert session.assignee == colleague


def test_a_supervisor_assigns_anyone_who_serves_the_channel(supervisor, agent, session):
    outsider = AgentProfileFactory().user
    team = TeamFactory()
    client = client_for(supervisor)
    url = f"/api/v1/sessions/{session.pk}/assign/"

    assigned = client.post(url, {"assignee": agent.pk, "team": team.pk}, format="json")
    refused = client.post(url, {"assignee": outsider.pk}, format="json")
    unknown = client.post(url, {"assignee": 999999}, format="json")

    assert assigned.status_code == 200
    assert assigned.json()["assignee"]["id"] == agent.pk
    assert assigned.json()["team"]["id"] == team.pk
    assert refused.status_code == 400
    assert "assignee" in refused.json()["fields"]
    assert unknown.status_code == 400


# --- Session actions at the platform ----------------------------------------------------------


@responses.activate
def test_resolving_answers_202_with_an_action_and_the_worker_resolves_the_session(
    agent, session, django_capture_on_commit_callbacks
):
    responses.post(RESOLVE, json=SUCCESS_LIST)
    client = client_for(agent)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/sessions/{session.pk}/resolve/", format="json")

    assert response.status_code == 202
    action = response.json()
    assert (action["kind"], action["state"], action["session"]) == (
        "resolve",
        "pending",
        session.pk,
    )
    assert json.loads(responses.calls[0].request.body) == {"sessionId": "xsds34434"}
    session.refresh_from_db()
    assert session.status == Session.Status.RESOLVED
    polled = client.get(f"/api/v1/actions/{action['id']}/").json()
    assert polled["state"] == "done"
    again = client.post(f"/api/v1/sessions/{session.pk}/resolve/", format="json")
    assert again.status_code == 422
    assert again.json()["error"] == "resolved"


@responses.activate
def test_routing_answers_202_and_the_worker_routes_the_session(
    agent, session, django_capture_on_commit_callbacks
):
    responses.post(ROUTE, json=SUCCESS_LIST)

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(agent).post(
            f"/api/v1/sessions/{session.pk}/route/",
            {"queue": "billing", "skills": ["fr", "refunds"]},
            format="json",
        )

    assert response.status_code == 202
    assert response.json()["params"]["queue"] == "billing"
    assert response.json()["params"]["skills"] == ["fr", "refunds"]
    session.refresh_from_db()
    assert session.platform_queue == "billing"
    assert SessionAction.objects.get().state == SessionAction.State.DONE


def test_routing_without_a_queue_is_a_400(agent, session):
    response = client_for(agent).post(f"/api/v1/sessions/{session.pk}/route/", {}, format="json")

    assert response.status_code == 400
    assert "queue" in response.json()["fields"]


def test_closing_a_session_the_platform_does_not_know_is_refused_with_422(agent, account, channel):
    local = make_session(account, channel, external_id="")

    response = client_for(agent).post(f"/api/v1/sessions/{local.pk}/close/", format="json")

    assert response.status_code == 422
    assert response.json()["error"] == "no_platform_session"
    assert not SessionAction.objects.exists()


# --- Templates --------------------------------------------------------------------------------


def test_templates_are_listed_with_placeholders_and_only_those_approved_on_a_channel(
    agent, account, channel, other_channel
):
    approved = TemplateApprovalFactory(template__account=account, channel=channel).template
    TemplateApprovalFactory(template=approved, channel=other_channel, status="APPROVED")
    pending = TemplateApprovalFactory(
        template__account=account, template__lang="fr_FR", channel=channel, status="PENDING"
    ).template
    TemplateFactory(account=account, is_active=False)
    client = client_for(agent)

    everything = client.get("/api/v1/templates/").json()["results"]
    on_channel = client.get("/api/v1/templates/", {"channel": channel.pk}).json()["results"]
    french = client.get("/api/v1/templates/", {"lang": "fr_fr"}).json()["results"]
    hidden_channel = client.get("/api/v1/templates/", {"channel": other_channel.pk})

    assert {t["id"] for t in everything} == {approved.pk, pending.pk}
    assert [t["id"] for t in on_channel] == [approved.pk]
    assert on_channel[0]["placeholders"][0]["name"] == "name"
    assert on_channel[0]["text"] == "Hi {{name}}"
    # Only the approvals on channels the agent can see.
    assert on_channel[0]["approvals"] == [
        {"channel": channel.pk, "status": "APPROVED", "approved": True}
    ]
    assert [t["id"] for t in french] == [pending.pk]
    assert hidden_channel.status_code == 400


# --- The schema and the docs ------------------------------------------------------------------


def test_the_schema_and_the_docs_are_served_without_a_cdn(client):
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")
    docs_script = client.get("/api/docs/?script=")
    redoc = client.get("/api/redoc/")

    assert schema.status_code == 200
    assert b"/api/v1/sessions/{session_id}/messages/" in schema.content
    assert b"/webhooks/" not in schema.content
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "drf_spectacular_sidecar" in html
    assert "cdn." not in html and "unpkg" not in html
    # The init script is a file of its own (the Content-Security-Policy refuses inline ones).
    assert '<script src="/api/docs/?script="></script>' in html
    assert docs_script.status_code == 200
    assert "SwaggerUIBundle" in docs_script.content.decode()
    # ReDoc loaded its logo from cdn.redoc.ly and needs inline styles: its address leads to
    # Swagger UI now.
    assert redoc.status_code == 302 and redoc["Location"] == "/api/docs/"


def test_the_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    assert "Switchboard API" in target.read_text()


def test_an_unknown_api_address_is_a_json_404(agent):
    response = client_for(agent).get("/api/v1/sessions/not-a-number/messages/")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@responses.activate
def test_an_unconfirmed_message_says_it_may_not_have_been_delivered_and_can_be_sent_again(
    agent, session, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=accepted("again-1"))
    unconfirmed = OutboundMessageFactory(
        session=session,
        status=Message.Status.UNCONFIRMED,
        error_code="unconfirmed",
        error_title="No answer.\n\nDetail: POST https://x.example/api: ReadTimeout",
    )
    client = client_for(agent)

    shown = client.get(f"/api/v1/messages/{unconfirmed.pk}/").json()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/messages/{unconfirmed.pk}/retry/", format="json")

    assert (shown["status"], shown["copies"]) == ("unconfirmed", 0)
    assert shown["error"]["code"] == "unconfirmed"
    assert "may not have been delivered" in shown["error"]["title"]
    assert "twice" in shown["error"]["title"] and "ReadTimeout" not in shown["error"]["title"]
    assert response.status_code == 200
    unconfirmed.refresh_from_db()
    assert (unconfirmed.status, unconfirmed.external_id) == (Message.Status.SENT, "again-1")
