"""Schemathesis against the OpenAPI schema the app serves: no request to any operation, however
malformed, gets a 5xx, and every answer is one the schema documents (status, content type,
shape).

In process: the schema and the requests go through the WSGI application, signed in as an
ordinary agent with an API token, against real rows the agent can see (sessions, messages, a
failed message, an action, a template) and rows they cannot. Generated ids are steered to those
rows part of the time, so the examples reach the views' logic and not only their 404s. The run
is deterministic (derandomized, no example database) and bounded by `MAX_EXAMPLES`. Sends stay
queued: the test's transaction never commits, so no delivery task runs, and `responses` would
answer any platform call that slipped through (the network is never reached).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import responses
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import AgentProfile, User
from accounts.services import api_token_create
from config.wsgi import application
from inbox.models import Message, SessionAction
from tests.factories import (
    AgentProfileFactory,
    ChannelFactory,
    ContactIdentityFactory,
    InboundMessageFactory,
    OutboundMessageFactory,
    ProviderAccountFactory,
    TeamFactory,
    TemplateApprovalFactory,
    make_session,
)

# Enough to find the classes of fault this file was written for (NUL, huge numbers, wrong
# types, ids out of range) in each operation, in about a minute on a busy two-core machine.
MAX_EXAMPLES = 100
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    application,
    config=schemathesis.Config.from_dict(
        {
            "seed": 12,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


def api_token_for(user: User) -> str:
    """Return an API token for `user` (the one place this file makes one)."""
    _, key = api_token_create(user, name="schemathesis")
    return key


@pytest.fixture
def no_connection_recycling() -> Iterator[None]:
    """Keep the test's transaction across requests, as Django's test client does: the WSGI
    handler would otherwise close the connection at the end of each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(db: None, no_connection_recycling: None) -> dict[str, Any]:
    """Return the agent's token and the ids of rows they can see, and of some they cannot."""
    account = ProviderAccountFactory()
    channel = ChannelFactory(account=account, medium="whatsapp")
    hidden_channel = ChannelFactory(account=account, medium="telegram")
    profile = AgentProfileFactory(role=AgentProfile.Role.AGENT)
    team = TeamFactory()
    team.members.add(profile.user)
    team.channels.add(channel)
    session = make_session(account, channel, external_id="s-1")
    late = make_session(account, channel, external_id="s-2", inbound_ago=timedelta(hours=30))
    hidden = make_session(account, hidden_channel, external_id="s-3")
    ContactIdentityFactory(contact=session.contact, channel=hidden_channel, medium="telegram")
    inbound = InboundMessageFactory(session=session, type="location", latitude=48.85, longitude=2.3)
    failed = OutboundMessageFactory(session=session, status=Message.Status.FAILED, error_code="470")
    other = InboundMessageFactory(session=hidden)
    action = SessionAction.objects.create(session=session, kind=SessionAction.Kind.RESOLVE)
    hidden_action = SessionAction.objects.create(session=hidden, kind=SessionAction.Kind.CLOSE)
    # A template without placeholders: any template_data sends it, so generated data is stored.
    template = TemplateApprovalFactory(
        template__account=account,
        template__text="Hello",
        template__placeholders=[],
        channel=channel,
    ).template
    return {
        "token": api_token_for(profile.user),
        # By the collection an id names (the path's first part): mostly rows the agent sees.
        "ids": {
            "sessions": [session.pk, late.pk, session.pk, hidden.pk],
            "messages": [inbound.pk, failed.pk, failed.pk, other.pk],
            "actions": [action.pk, action.pk, action.pk, hidden_action.pk],
        },
        "template": template.pk,
    }


def steer(case: schemathesis.Case, world: dict[str, Any]) -> None:
    """Point generated ids at real rows three times in four; which row, and whether, follows
    from the case itself, so a failing example replays the same."""
    digest = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    if digest % 4 == 0:
        return
    collection = case.operation.path.removeprefix("/api/v1/").split("/")[0]
    for name, value in list((case.path_parameters or {}).items()):
        known = world["ids"].get(collection)
        # The coverage phase sends ids as text ("0"); its non-numeric ones stay as they are.
        if known and (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
            case.path_parameters[name] = known[digest % len(known)]  # type: ignore[index]
    if isinstance(case.body, dict) and isinstance(case.body.get("template_id"), int):
        case.body["template_id"] = world["template"]


@schema.parametrize()
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_request_to_any_operation_gets_a_server_error_or_an_undocumented_answer(
    case: schemathesis.Case, world: dict[str, Any]
) -> None:
    steer(case, world)
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        case.call_and_validate(headers={"Authorization": f"Token {world['token']}"}, checks=CHECKS)
