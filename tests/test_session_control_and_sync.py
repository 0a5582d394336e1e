"""Route, resolve and close reach the platform first; templates and history stay in sync."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from django.utils import timezone

from inbox.models import Message, Session, SessionAction, TimelineEntry
from inbox.services.history import session_history_import
from inbox.services.refusals import SendRefused
from inbox.services.session_actions import session_action_request, session_assign
from integrations.models import Channel, SyncRun, Template, TemplateApproval
from integrations.sandbox import catalog, envelopes
from integrations.services.templates import templates_sync
from tests.conftest import load_fixture
from tests.factories import ChannelFactory, TeamFactory, UserFactory

pytestmark = pytest.mark.django_db
API = "https://api.mehery.example/xms/api/v1"


@pytest.fixture
def session(xms_session: Session) -> Session:
    return xms_session


@pytest.fixture
def act(django_capture_on_commit_callbacks):
    def run(session: Session, kind: str, params: dict[str, Any] | None = None) -> SessionAction:
        with django_capture_on_commit_callbacks(execute=True):
            action = session_action_request(session, kind, params)
        action.refresh_from_db()
        return action

    return run


def compact(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"results": results, "status": 200, "statusKey": "SUCCESS", "message": "ok"}


# --- Session control ------------------------------------------------------------------------------


@responses.activate
def test_routing_posts_the_documented_body_then_applies_the_events_and_the_timeline(session, act):
    routed = load_fixture("xms", "inbound-event-session-routed")["events"][0]
    routed["sessionRouted"]["targetQueue"] = "billing"
    responses.post(f"{API}/session/routing", json=compact([routed]))

    action = act(session, "route", {"queue": "billing", "agent": "ag1", "skills": "fr, vip"})

    body = json.loads(responses.calls[0].request.body)
    assert body == {
        "sessionId": "xsds34434",
        "queue": "billing",
        "params": {},
        "agent": "ag1",
        "skills": ["fr", "vip"],
    }
    assert action.state == SessionAction.State.DONE
    session.refresh_from_db()
    assert session.platform_queue == "billing"
    routed = list(
        session.timeline.filter(kind=TimelineEntry.Kind.ROUTED).values_list("summary", flat=True)
    )
    assert len(routed) == 1  # the action and the platform's event for it are one line
    assert routed[0].startswith("Routed to queue billing")


@responses.activate
def test_resolving_reaches_the_platform_and_then_resolves_locally(session, act):
    responses.post(f"{API}/session/resolve", json=compact([]))

    action = act(session, "resolve")

    assert json.loads(responses.calls[0].request.body) == {"sessionId": "xsds34434"}
    session.refresh_from_db()
    assert action.state == SessionAction.State.DONE
    assert session.status == Session.Status.RESOLVED
    assert session.timeline.filter(kind=TimelineEntry.Kind.RESOLVED).exists()


@responses.activate
def test_closing_reaches_the_platform_and_then_closes_locally(session, act):
    responses.post(f"{API}/session/close", json=compact([]))

    act(session, "close")

    session.refresh_from_db()
    assert session.status == Session.Status.CLOSED
    assert session.closed_at is not None


@responses.activate
def test_a_refused_call_leaves_the_session_unchanged_and_says_why(session, act):
    responses.post(
        f"{API}/session/resolve",
        status=200,
        json={
            "status": 409,
            "statusKey": "SESSION_CLOSED",
            "message": "Session xsds34434 is closed",
            "results": [],
        },
    )

    action = act(session, "resolve")

    session.refresh_from_db()
    assert action.state == SessionAction.State.FAILED
    assert "Session xsds34434 is closed" in action.error
    assert session.status == Session.Status.OPEN
    assert session.timeline.filter(summary__startswith="Resolve failed").exists()


@responses.activate
def test_a_transient_failure_is_retried(session, act):
    responses.post(f"{API}/session/close", body=requests.ConnectionError("down"))
    responses.post(f"{API}/session/close", json=compact([]))

    action = act(session, "close")

    assert action.state == SessionAction.State.DONE
    assert action.attempts == 2


@responses.activate
def test_setting_the_language_reaches_the_platform_and_the_contact(session, act):
    responses.post(f"{API}/contact/prefs/lang", json=compact([]))

    act(session, "language", {"lang": "fr_FR"})

    assert json.loads(responses.calls[0].request.body) == {
        "contactId": "wa919988776655_918828218374",
        "lang": "fr_FR",
    }
    session.contact.refresh_from_db()
    assert session.contact.language == "fr_FR"


def test_routing_without_a_queue_is_refused(session):
    with pytest.raises(SendRefused, match="queue"):
        session_action_request(session, "route", {"agent": "x"})


def test_a_double_click_asks_once(session):
    first = session_action_request(session, "resolve")
    second = session_action_request(session, "resolve")

    assert first.pk == second.pk


def test_assigning_inside_switchboard_needs_no_platform_call_and_shows_on_the_timeline(session):
    agent = UserFactory(username="ann")
    team = TeamFactory(name="Billing")

    session_assign(session, assignee=agent, team=team)

    session.refresh_from_db()
    assert (session.assignee, session.team) == (agent, team)
    assert (
        session.timeline.get(kind=TimelineEntry.Kind.ASSIGNED).summary
        == "Assigned to ann, team Billing"
    )


# --- Template sync -----------------------------------------------------------------------------------


def template_list(templates: list[dict[str, Any]]) -> dict[str, Any]:
    return envelopes.full(results=templates, path="/api/v1/config/tmpl/hsm")


@pytest.fixture
def channels(account) -> list[Channel]:
    return [
        ChannelFactory(account=account, external_id=c["channelId"], medium="whatsapp")
        for c in catalog.CHANNELS
        if c["contactType"] == "WHATSAPP"
    ]


@responses.activate
def test_template_sync_asks_per_channel_and_records_approvals_per_channel(account, channels):
    responses.get(f"{API}/config/tmpl/hsm", json=template_list(catalog.base_templates()))

    run = templates_sync(account)

    assert run.state == SyncRun.State.SUCCEEDED
    asked = sorted(c.request.params["channelId"] for c in responses.calls)
    assert asked == sorted(c.external_id for c in channels)
    assert Template.objects.count() == len(catalog.base_templates())
    promo = Template.objects.get(code="SUMMER_PROMO")
    assert set(promo.approvals.values_list("status", flat=True)) == {"PENDING"}
    order = Template.objects.get(code="ORDER_UPDATE", lang="en_US")
    assert [p["name"] for p in order.placeholders] == ["order_id", "name", "eta"]
    assert order.placeholders[1]["label"] == "Customer name"
    assert order.buttons[0]["code"] == "track"
    assert TemplateApproval.objects.filter(template=order, status="APPROVED").count() == 2
    assert run.processed == run.total == len(catalog.base_templates())
    account.refresh_from_db()
    assert account.last_success_at is not None


@responses.activate
def test_a_template_gone_from_the_platform_becomes_inactive_not_deleted(account, channels):
    templates = catalog.base_templates()
    responses.get(f"{API}/config/tmpl/hsm", json=template_list(templates))
    templates_sync(account)
    responses.replace(
        responses.GET,
        f"{API}/config/tmpl/hsm",
        json=template_list([t for t in templates if t["code"] != "FEEDBACK"]),
    )

    run = templates_sync(account)

    feedback = Template.objects.filter(code="FEEDBACK")
    assert feedback.count() == 2
    assert not any(feedback.values_list("is_active", flat=True))
    assert run.deactivated == 2
    assert run.created == 0


@responses.activate
def test_a_template_that_comes_back_is_active_again(account, channels):
    templates = catalog.base_templates()
    responses.get(f"{API}/config/tmpl/hsm", json=template_list(templates[1:]))
    templates_sync(account)
    Template.objects.update(is_active=False)
    responses.replace(responses.GET, f"{API}/config/tmpl/hsm", json=template_list(templates))

    run = templates_sync(account)

    assert Template.objects.filter(is_active=False).count() == 0
    assert run.created == 1


@responses.activate
def test_a_failed_template_sync_is_recorded_and_shown_on_the_account(account, channels):
    responses.get(f"{API}/config/tmpl/hsm", status=500)

    run = templates_sync(account)

    assert run.state == SyncRun.State.FAILED
    assert "HTTP 500" in run.error
    account.refresh_from_db()
    assert "Template sync failed" in account.last_error


@responses.activate
def test_syncing_two_thousand_templates_takes_a_bounded_number_of_queries(
    account, channels, django_assert_max_num_queries
):
    responses.get(
        f"{API}/config/tmpl/hsm",
        json=template_list(catalog.base_templates() + catalog.bulk_templates(2000)),
    )

    with django_assert_max_num_queries(120):
        run = templates_sync(account)

    assert run.processed == 2011
    assert Template.objects.count() == 2011


# --- History import ----------------------------------------------------------------------------------


@responses.activate
def test_history_import_adds_what_we_missed_without_duplicates(session, account, post_callback):
    post_callback(account, load_fixture("xms", "inbound-message-text"))
    responses.post(
        f"{API}/session/messages",
        json=compact(
            [
                {
                    "messageId": "1234567",
                    "type": "text",
                    "text": "your-text-message-content",
                    "status": "RECEIVD",
                    "sender": "wa919988776655_918828218374",
                    "timestamp": 1700000000000,
                },
                {
                    "messageId": "earlier-1",
                    "type": "text",
                    "text": "Earlier question",
                    "status": "RECEIVD",
                    "sender": "wa919988776655_918828218374",
                    "timestamp": 1699990000000,
                },
                {
                    "messageId": "agent-1",
                    "messageIdExt": "wamid.A",
                    "type": "text",
                    "text": "Earlier answer",
                    "status": "READ",
                    "sender": "console-agent",
                    "timestamp": 1699995000000,
                },
            ]
        ),
    )
    session_pk = Session.objects.get(external_id="xsds34434").pk

    first = session_history_import(session_pk)
    second = session_history_import(session_pk)

    assert (first, second) == (2, 0)
    assert Message.objects.filter(session_id=session_pk).count() == 3
    answer = Message.objects.get(external_id="agent-1")
    assert (answer.direction, answer.status) == ("out", "read")
    assert Message.objects.get(external_id="earlier-1").direction == "in"


def test_a_new_session_schedules_its_history_import(account, post_callback, settings, monkeypatch):
    settings.IMPORT_SESSION_HISTORY = True
    calls: list[int] = []
    monkeypatch.setattr(
        "inbox.tasks.session_history_import.apply_async",
        lambda args, **kwargs: calls.append(args[0]),
    )

    post_callback(account, load_fixture("xms", "inbound-message-text"))

    assert calls == [Session.objects.get().pk]


def test_no_history_import_is_scheduled_when_it_is_turned_off(
    account, post_callback, settings, monkeypatch
):
    settings.IMPORT_SESSION_HISTORY = False
    calls: list[int] = []
    monkeypatch.setattr(
        "inbox.tasks.session_history_import.apply_async",
        lambda args, **kwargs: calls.append(args[0]),
    )

    post_callback(account, load_fixture("xms", "inbound-message-text"))

    assert calls == []


def test_an_unexpected_error_fails_the_action_with_its_reason_instead_of_looping(
    session, act, monkeypatch
):
    monkeypatch.setattr(
        "integrations.xms.provider.XmsProvider.session_resolve",
        lambda *a, **k: (_ for _ in ()).throw(KeyError("surprise")),
    )

    action = act(session, "resolve")

    assert action.state == SessionAction.State.FAILED
    assert "KeyError" in action.error
    session.refresh_from_db()
    assert session.status == Session.Status.OPEN


def test_the_reaper_fails_an_action_whose_worker_died_rather_than_calling_again(session):
    from datetime import timedelta

    from inbox.services.session_actions import session_actions_reap

    action = SessionAction.objects.create(
        session=session,
        kind="close",
        state=SessionAction.State.RUNNING,
        attempts=1,
        claimed_at=timezone.now() - timedelta(minutes=6),
    )

    session_actions_reap()

    action.refresh_from_db()
    assert action.state == SessionAction.State.FAILED
    assert "worker stopped" in action.error


@responses.activate
def test_the_reaper_enqueues_an_overdue_pending_action_but_not_one_waiting_for_its_retry(
    session, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from inbox.services.session_actions import session_actions_reap

    responses.post(f"{API}/session/close", json=compact([]))
    old = timezone.now() - timedelta(minutes=3)
    lost = SessionAction.objects.create(session=session, kind="close")
    waiting = SessionAction.objects.create(
        session=session, kind="resolve", next_attempt_at=timezone.now() + timedelta(minutes=1)
    )
    SessionAction.objects.filter(pk__in=[lost.pk, waiting.pk]).update(created_at=old)

    assert session_actions_reap() == 1

    lost.refresh_from_db()
    waiting.refresh_from_db()
    assert lost.state == SessionAction.State.DONE
    assert waiting.state == SessionAction.State.PENDING
