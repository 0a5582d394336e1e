"""The API answers bad input with a 4xx and a reason, never a 500, and renders what it stored.

The bodies below are valid requests of every operation that takes one; the tests generate the
class from them: every string and every key, at any depth, in turn carries a character
PostgreSQL refuses (NUL, a lone UTF-16 surrogate), and each variant must be a 400 that stores
nothing. Ids, query parameters, cursors and numbers get the same treatment.
"""

from __future__ import annotations

import base64
import copy
import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import responses
from rest_framework.test import APIClient

from accounts.models import AgentProfile, User
from accounts.services import api_token_create
from inbox.models import Message, Note, Session, SessionAction
from integrations.models import Channel, ProviderAccount, Template
from tests.factories import (
    AgentProfileFactory,
    ChannelFactory,
    ContactIdentityFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
    TeamFactory,
    TemplateApprovalFactory,
    make_session,
)

pytestmark = pytest.mark.django_db

REFUSED_TEXT = ["\x00", "\ud800"]  # NUL and a lone surrogate: PostgreSQL text stores neither
HUGE = "99999999999999999999999999"


def client_for(user: User) -> APIClient:
    """Return an API client that authenticates as `user` and answers a crash as a 500."""
    _, key = api_token_create(user, name="hostile input")
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def post_json(client: APIClient, url: str, body: Any, **extra: Any) -> Any:
    """Post `body` as JSON text (lone surrogates escaped, as any JSON encoder writes them)."""
    return client.generic("POST", url, json.dumps(body), content_type="application/json", **extra)


def poisoned(value: Any, bad: str) -> Iterator[tuple[str, Any]]:
    """Yield (path, copy of `value`) with `bad` added to one string or one key at a time."""
    if isinstance(value, str):
        yield "", value + bad
        yield "", bad + value
    elif isinstance(value, dict):
        for key, item in value.items():
            renamed = {(k + bad if k == key else k): v for k, v in value.items()}
            yield f"{{{key}}}", renamed
            for path, variant in poisoned(item, bad):
                changed = copy.copy(value)
                changed[key] = variant
                yield f".{key}{path}", changed
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for path, variant in poisoned(item, bad):
                changed = list(value)
                changed[index] = variant
                yield f"[{index}]{path}", changed


@pytest.fixture
def account() -> ProviderAccount:
    from tests.factories import ProviderAccountFactory

    return ProviderAccountFactory()


@pytest.fixture
def channel(account: ProviderAccount) -> Channel:
    return ChannelFactory(account=account, external_id="wa360:918828218374", medium="whatsapp")


@pytest.fixture
def other_channel(account: ProviderAccount) -> Channel:
    return ChannelFactory(account=account, medium="telegram", name="Telegram bot")


@pytest.fixture
def agent(channel: Channel) -> User:
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
def template(account: ProviderAccount, channel: Channel) -> Template:
    return TemplateApprovalFactory(template__account=account, channel=channel).template


def valid_requests(session: Session, template: Template) -> list[tuple[str, dict[str, Any]]]:
    """Return a valid body for every operation that takes one, with nested JSON where it may."""
    failed = OutboundMessageFactory(session=session, status=Message.Status.FAILED, error_code="470")
    messages = f"/api/v1/sessions/{session.pk}/messages/"
    return [
        (messages, {"type": "text", "body": "Hello", "idempotency_key": "key-1"}),
        (
            messages,
            {
                "template_id": template.pk,
                "template_data": {"name": "Anna", "extra": {"deep": ["x", {"y": "z"}]}},
            },
        ),
        (
            messages,
            {
                "type": "contacts",
                "contact_cards": [
                    {"name": {"formatted_name": "Anna"}, "phones": [{"phone": "+33 6 12"}]}
                ],
            },
        ),
        (
            messages,
            {
                "type": "location",
                "latitude": 48.8584,
                "longitude": 2.2945,
                "location_name": "Tower",
                "location_address": "Paris",
            },
        ),
        (
            messages,
            {
                "type": "image",
                "media_url": "https://example.org/a.png",
                "media_filename": "a.png",
                "media_mime_type": "image/png",
                "caption": "Look",
                "buttons": [{"type": "QUICK_REPLY", "label": "Yes", "code": "y"}],
            },
        ),
        (
            f"/api/v1/sessions/{session.pk}/route/",
            {
                "queue": "sales",
                "agent": "a1",
                "team": "t1",
                "skills": ["fr"],
                "params": {"priority": "high", "tags": ["vip", {"k": "v"}]},
            },
        ),
        (
            f"/api/v1/messages/{failed.pk}/resend-as-template/",
            {
                "template_id": template.pk,
                "template_data": {"name": "Anna"},
                "idempotency_key": "key-2",
            },
        ),
    ]


def stored() -> tuple[int, int, int]:
    return (Message.objects.count(), SessionAction.objects.count(), Note.objects.count())


@pytest.mark.parametrize("bad", REFUSED_TEXT, ids=["nul", "lone-surrogate"])
@responses.activate
def test_a_character_postgresql_refuses_anywhere_in_a_body_is_a_400_that_stores_nothing(
    agent, session, template, bad
):
    client = client_for(agent)
    requests = valid_requests(session, template)
    before = stored()
    answers = []
    for url, body in requests:
        for path, variant in poisoned(body, bad):
            response = post_json(client, url, variant)
            answers.append((url, path, response.status_code, response.content[:300]))

    assert len(answers) > 60
    wrong = [a for a in answers if a[2] != 400]
    assert wrong == []
    assert stored() == before
    assert len(responses.calls) == 0


@pytest.mark.parametrize("bad", REFUSED_TEXT, ids=["nul", "lone-surrogate"])
def test_the_refusal_names_the_field_and_says_what_is_wrong(agent, session, bad):
    response = post_json(
        client_for(agent),
        f"/api/v1/sessions/{session.pk}/route/",
        {"queue": "sales", "params": {"note": {"text": f"a{bad}b"}}},
    )

    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "invalid"
    [problem] = answer["fields"]["params"]
    assert "note.text" in problem
    assert ("NUL" if bad == "\x00" else "surrogate") in problem


def test_nul_in_the_idempotency_key_header_is_a_400(agent, session):
    response = post_json(
        client_for(agent),
        f"/api/v1/sessions/{session.pk}/messages/",
        {"body": "Hello"},
        HTTP_IDEMPOTENCY_KEY="key\x00one",
    )

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["fields"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "query",
    [
        {"q": "a\x00b"},
        {"assignee": "\x00"},
        {"assignee": "²"},
        {"assignee": HUGE},
        {"channel": "abc"},
        {"channel": HUGE},
        {"team": "-1"},
        {"team": HUGE},
        {"status": "\x00"},
        {"medium": "\x00"},
        {"ordering": "id"},
        {"ordering": "\x00"},
        {"unanswered": "maybe"},
        {"page": "0"},
        {"page": "abc"},
        {"page": HUGE},
        {"page_size": "-5"},
        {"page_size": HUGE},
        {"x\x00": "1"},
    ],
    ids=repr,
)
def test_a_bad_query_parameter_on_the_session_list_is_a_4xx(agent, session, query):
    response = client_for(agent).get(f"/api/v1/sessions/?{urlencode(query)}")

    assert response.status_code < 500, response.content[:300]
    assert response.status_code in (200, 400, 404)
    if response.status_code != 200:
        assert response.json()["error"]


@pytest.mark.parametrize(
    "query",
    [{"lang": "\x00"}, {"channel": "abc"}, {"channel": HUGE}, {"channel": "\x00"}],
    ids=repr,
)
def test_a_bad_query_parameter_on_the_template_list_is_a_4xx(agent, template, query):
    response = client_for(agent).get(f"/api/v1/templates/?{urlencode(query)}")

    assert response.status_code in (200, 400), response.content[:300]


def _cursor(**tokens: str) -> str:
    return base64.b64encode(urlencode(tokens).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "\x00",
        _cursor(p="not-a-date"),
        _cursor(p="\x00"),
        _cursor(o=HUGE, p="2024-01-01 00:00:00+00:00"),
        _cursor(r="1", p="9999-99-99"),
    ],
    ids=repr,
)
def test_a_bad_cursor_on_the_message_list_is_a_4xx(agent, session, cursor):
    InboundMessageFactory(session=session)

    response = client_for(agent).get(
        f"/api/v1/sessions/{session.pk}/messages/?{urlencode({'cursor': cursor})}"
    )

    assert response.status_code in (200, 400, 404), response.content[:300]


@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", HUGE, "1e3", "%00", "²"])
def test_an_id_in_the_url_that_names_nothing_is_a_json_404(agent, session, bad_id):
    client = client_for(agent)
    urls = [
        f"/api/v1/sessions/{bad_id}/",
        f"/api/v1/sessions/{bad_id}/messages/",
        f"/api/v1/messages/{bad_id}/",
        f"/api/v1/actions/{bad_id}/",
    ]
    posts = [
        f"/api/v1/sessions/{bad_id}/resolve/",
        f"/api/v1/messages/{bad_id}/retry/",
    ]

    answers = [client.get(u) for u in urls] + [post_json(client, u, {}) for u in posts]

    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all(a.json()["error"] == "not_found" for a in answers)


@pytest.mark.parametrize(
    "body",
    [
        {"template_id": int(HUGE), "template_data": {"name": "x"}},
        {"template_id": -1, "template_data": {"name": "x"}},
        {"template_id": "abc"},
        {"type": "location", "latitude": 1e300, "longitude": 2.0},
        {"type": "location", "latitude": 91, "longitude": 2.0},
        {"type": "location", "latitude": 48.0, "longitude": -181},
        {"type": "location", "latitude": "NaN", "longitude": 2.0},
        {"type": "location", "latitude": "Infinity", "longitude": 2.0},
        {"body": ["a"]},
        {"body": {"a": 1}},
        {"template_data": "text"},
        {"contact_cards": "text"},
        {"contact_cards": [1, 2]},
        {"buttons": [{"label": "x" * 101}]},
        {"idempotency_key": "k" * 101, "body": "Hello"},
        {"media_url": "x" * 2001, "type": "image"},
    ],
    ids=repr,
)
def test_a_body_with_wrong_types_or_values_out_of_range_is_a_4xx(agent, session, body):
    response = post_json(client_for(agent), f"/api/v1/sessions/{session.pk}/messages/", body)

    assert response.status_code in (400, 422), response.content[:300]
    assert response.json()["error"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"body": NaN}',
        b'{"body": "x", "latitude": Infinity}',
        b'{"latitude": 1e999, "longitude": 1, "type": "location"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"template_data": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}",
        b'{"template_id": ' + b"9" * 5000 + b"}",
        b"\xff\xfe not utf-8",
        b'{"body": "unterminated',
    ],
    ids=lambda raw: repr(raw[:30]),
)
def test_a_body_that_is_not_sane_json_is_a_400_with_the_reason(agent, session, raw):
    response = client_for(agent).generic(
        "POST",
        f"/api/v1/sessions/{session.pk}/messages/",
        raw,
        content_type="application/json",
    )

    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] in ("parse_error", "invalid")
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"queue": "q" * 256},
        {"queue": "sales", "agent": "a" * 256},
        {"queue": "sales", "skills": "fr"},
        {"queue": "sales", "skills": ["s" * 121]},
        {"queue": "sales", "params": "text"},
        {"queue": ["sales"]},
        {"queue": ""},
    ],
    ids=repr,
)
def test_a_route_with_wrong_types_or_over_long_values_is_a_400(agent, session, body):
    response = post_json(client_for(agent), f"/api/v1/sessions/{session.pk}/route/", body)

    assert response.status_code == 400, response.content[:300]
    assert not SessionAction.objects.exists()


@pytest.mark.parametrize("body", [{"assignee": int(HUGE)}, {"team": -1}, {"assignee": "me"}])
def test_an_assignment_naming_no_such_user_or_team_is_a_400(supervisor, session, body):
    response = post_json(client_for(supervisor), f"/api/v1/sessions/{session.pk}/assign/", body)

    assert response.status_code == 400, response.content[:300]


# --- What was stored renders ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_stored_non_finite_coordinate_renders_as_a_null_location(agent, session, bad):
    message = InboundMessageFactory(
        session=session, type="location", latitude=bad, longitude=2.29, location_name="Tower"
    )
    client = client_for(agent)

    listed = client.get(f"/api/v1/sessions/{session.pk}/messages/")
    one = client.get(f"/api/v1/messages/{message.pk}/")

    assert listed.status_code == 200, listed.content[:300]
    assert one.status_code == 200, one.content[:300]
    assert listed.json()["results"][0]["location"] is None
    assert one.json()["location"] is None


def test_a_finite_location_still_renders(agent, session):
    message = InboundMessageFactory(
        session=session, type="location", latitude=48.8584, longitude=2.2945, location_name="T"
    )

    location = client_for(agent).get(f"/api/v1/messages/{message.pk}/").json()["location"]

    assert (location["latitude"], location["longitude"], location["name"]) == (
        48.8584,
        2.2945,
        "T",
    )


# --- Who sees what in a session's detail ------------------------------------------------------


def test_a_session_detail_lists_only_the_identities_on_channels_the_agent_can_see(
    agent, supervisor, session, other_channel
):
    hidden = ContactIdentityFactory(
        contact=session.contact, channel=other_channel, medium="telegram", address="@anna"
    )

    as_agent = client_for(agent).get(f"/api/v1/sessions/{session.pk}/").json()
    as_supervisor = client_for(supervisor).get(f"/api/v1/sessions/{session.pk}/").json()

    assert [i["id"] for i in as_agent["contact"]["identities"]] == [session.identity_id]
    assert {i["id"] for i in as_supervisor["contact"]["identities"]} == {
        session.identity_id,
        hidden.pk,
    }


@responses.activate
def test_an_assignment_answer_lists_only_the_identities_the_agent_can_see(
    agent, session, other_channel
):
    ContactIdentityFactory(contact=session.contact, channel=other_channel, medium="telegram")

    response = post_json(
        client_for(agent), f"/api/v1/sessions/{session.pk}/assign/", {"assignee": agent.pk}
    )

    assert response.status_code == 200, response.content[:300]
    assert [i["id"] for i in response.json()["contact"]["identities"]] == [session.identity_id]


# --- The schema says what the API answers -----------------------------------------------------


def test_the_schema_documents_the_errors_every_operation_gives_with_their_shapes():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    operations = [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]

    assert len(operations) == 14
    for method, path, operation in operations:
        codes = set(operation["responses"])
        assert {"400", "401", "404", "406"} <= codes, (method, path)
        if method == "POST":
            assert "403" in codes, path
        if "requestBody" in operation:
            assert "415" in codes, path
        for code in codes - {"200", "201", "202"}:
            content = operation["responses"][code]["content"]["application/json"]
            assert content["schema"]["$ref"] in (
                "#/components/schemas/Error",
                "#/components/schemas/ValidationError",
            ), (method, path, code)
    assert set(components["Error"]["required"]) == {"error", "detail"}
    assert set(components["ValidationError"]["required"]) == {"error", "detail"}
    assert "fields" in components["ValidationError"]["properties"]
    refusing = {p for m, p, o in operations if "422" in o["responses"]}
    assert "/api/v1/sessions/{session_id}/messages/" in refusing
    assert "/api/v1/sessions/{id}/route/" in refusing
