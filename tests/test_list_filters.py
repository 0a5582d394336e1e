"""One filter grammar (`inbox.filters`) for the inbox pages and the API's session list.

Each test asks the same question of the real page (`/list/`) and the real API endpoint
(`/api/v1/sessions/`) and expects the same sessions, in the same order.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import api_token_create
from inbox.models import Message, Session
from tests.factories import (
    InboundMessageFactory,
    LabelFactory,
    OutboundMessageFactory,
    make_session,
)

pytestmark = pytest.mark.django_db


def api_client(user: User) -> APIClient:
    _, key = api_token_create(user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def page_rows(user: User, query: dict[str, Any]) -> list[int]:
    client = Client()
    client.force_login(user)
    response = client.get("/list/", query)
    assert response.status_code == 200
    html = response.content.decode()
    return [int(i) for i in re.findall(r'data-testid="session-row" data-session-id="(\d+)"', html)]


def api_rows(user: User, query: dict[str, Any]) -> list[int]:
    response = api_client(user).get("/api/v1/sessions/", {**query, "page_size": 100})
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def same_rows(user: User, query: dict[str, Any]) -> list[int]:
    """Return the rows the page lists for `query`, after checking the API lists the same."""
    on_page = page_rows(user, query)
    assert api_rows(user, query) == on_page, query
    return on_page


def test_a_label_filter_lists_the_same_sessions_on_the_page_and_in_the_api(agent, account, channel):
    vip = LabelFactory(name="vip")
    labelled = make_session(account, channel)
    labelled.labels.add(vip)
    make_session(account, channel)

    assert same_rows(agent, {"status": "any", "label": vip.pk}) == [labelled.pk]


def test_a_status_filter_with_several_values_lists_the_same_sessions_on_both(
    agent, account, channel
):
    open_ = make_session(account, channel)
    resolved = make_session(account, channel, status=Session.Status.RESOLVED)
    make_session(account, channel, status=Session.Status.CLOSED)
    make_session(account, channel, status=Session.Status.PENDING)

    rows = same_rows(agent, {"status": ["open", "resolved"]})

    assert sorted(rows) == sorted([open_.pk, resolved.pk])
    assert len(same_rows(agent, {"status": "active"})) == 2
    assert len(same_rows(agent, {"status": "any"})) == 4


def test_an_assignee_filter_lists_the_same_sessions_on_both_by_id_me_or_none(
    agent, account, channel
):
    mine = make_session(account, channel, assignee=agent)
    nobodys = make_session(account, channel)

    assert same_rows(agent, {"assignee": "me"}) == [mine.pk]
    assert same_rows(agent, {"assignee": agent.pk}) == [mine.pk]
    assert same_rows(agent, {"assignee": "none"}) == [nobodys.pk]
    assert same_rows(agent, {"view": "mine"}) == [mine.pk]
    assert same_rows(agent, {"view": "unassigned"}) == [nobodys.pk]


def test_the_unanswered_filter_and_the_waiting_order_agree_on_both(agent, account, channel):
    answered = make_session(account, channel, inbound_ago=timedelta(hours=5))
    waiting_long = make_session(account, channel, inbound_ago=timedelta(hours=3))
    waiting_short = make_session(account, channel, inbound_ago=timedelta(minutes=10))
    for s in (waiting_long, waiting_short):
        Session.objects.filter(pk=s.pk).update(last_message=InboundMessageFactory(session=s))
    Session.objects.filter(pk=answered.pk).update(
        last_message=OutboundMessageFactory(session=answered, status=Message.Status.SENT)
    )

    assert same_rows(agent, {"sort": "waiting"}) == [
        waiting_long.pk,
        waiting_short.pk,
        answered.pk,
    ]
    assert api_rows(agent, {"ordering": "waiting"}) == same_rows(agent, {"sort": "waiting"})
    assert sorted(same_rows(agent, {"unanswered": "true"})) == sorted(
        [waiting_long.pk, waiting_short.pk]
    )
    assert same_rows(agent, {"unanswered": "false"}) == [answered.pk]


def test_the_api_keeps_its_v1_orderings_and_default_of_every_status(agent, account, channel):
    older = make_session(account, channel, inbound_ago=timedelta(hours=2))
    newer = make_session(account, channel)
    closed = make_session(account, channel, status=Session.Status.CLOSED)
    Session.objects.filter(pk=closed.pk).update(last_activity_at=older.last_activity_at)

    assert set(api_rows(agent, {})) == {older.pk, newer.pk, closed.pk}
    newest_first = api_rows(agent, {"ordering": "-last_activity_at"})
    assert api_rows(agent, {"ordering": "last_activity_at"}) == newest_first[::-1]
    assert newest_first[0] == newer.pk


@pytest.mark.parametrize(
    "query",
    [
        {"status": "lost"},
        {"view": "everything"},
        {"label": "abc"},
        {"assignee": "someone"},
        {"sort": "random"},
        {"ordering": "id"},
    ],
    ids=repr,
)
def test_a_bad_value_is_the_default_on_the_page_and_a_400_naming_it_in_the_api(
    agent, account, channel, query
):
    session = make_session(account, channel)

    assert page_rows(agent, query) == [session.pk]
    response = api_client(agent).get("/api/v1/sessions/", query)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == list(query)


def test_the_pages_links_keep_several_statuses_and_the_assignee(agent, account, channel):
    make_session(account, channel, assignee=agent)
    client = Client()
    client.force_login(agent)

    html = client.get("/list/", {"status": ["open", "closed"], "assignee": "none"}).content
    page = html.decode()

    assert "status=open&amp;status=closed" in page
    assert "assignee=none" in page


def test_the_api_schema_describes_every_list_parameter(agent):
    schema = api_client(agent).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/sessions/"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}

    assert {
        "status",
        "view",
        "channel",
        "medium",
        "assignee",
        "team",
        "label",
        "unanswered",
        "q",
        "sort",
        "ordering",
    } <= names
