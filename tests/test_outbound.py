"""Replies leave exactly once, in the shape the platform documents, and failures say why."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from django.utils import timezone

from inbox.models import Message, Session
from inbox.services import deliver, reconcile
from inbox.services.refusals import SendRefused
from inbox.services.send import (
    Draft,
    message_resend_as_template,
    message_retry,
    message_send,
)
from inbox.window import session_window
from integrations import ratelimit
from integrations.models import Channel, Template, TemplateApproval
from tests.conftest import load_fixture
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db
SEND = "https://api.mehery.example/xms/api/v1/message/send"
HISTORY = "https://api.mehery.example/xms/api/v1/session/messages"


def accepted(message_id: str = "gBEGkYiEB1VXAglK1ZEqA1YKPrU") -> dict[str, Any]:
    return {
        "data": {"id": message_id},
        "results": [{"id": message_id}],
        "status": 200,
        "statusKey": "SUCCESS",
        "errors": [],
    }


@pytest.fixture
def session(xms_session: Session) -> Session:
    return xms_session


@pytest.fixture
def template(account, session) -> Template:
    template = Template.objects.create(
        account=account,
        external_id="60d236c6142e53561cb7716c",
        code="FEEDBACK",
        lang="en_US",
        text="Thank you for your payment of {{amount}} {{currency}}.",
        placeholders=[
            {"name": "amount", "label": "Amount"},
            {"name": "currency", "label": "Currency"},
        ],
    )
    TemplateApproval.objects.create(template=template, channel=session.channel, status="APPROVED")
    return template


def sent_bodies() -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in responses.calls if c.request.url == SEND]


# --- The request shape (spec §5) ----------------------------------------------------------------


@responses.activate
def test_a_text_reply_is_sent_with_contact_id_phone_and_only_the_text_object(session, send):
    responses.post(SEND, json=accepted())

    message = send(session, Draft(body="Hello John"))

    assert sent_bodies() == [
        {
            "channelId": "wa360:918828218374",
            "mask": False,
            "to": {
                "contactId": "wa919988776655_918828218374",
                "phone": "919988776655",
                "name": "John Doe",
            },
            "type": "text",
            "text": {"body": "Hello John"},
        }
    ]
    headers = responses.calls[0].request.headers
    assert headers["x-api-key"] == "test-api-key-0123456789"
    assert headers["x-api-id"] == "61ec7d9c2ce85742b201c5ab"
    assert message.status == Message.Status.SENT
    assert message.external_id == "gBEGkYiEB1VXAglK1ZEqA1YKPrU"
    assert message.accepted_at is not None


@pytest.mark.parametrize(
    ("draft", "expected"),
    [
        (
            Draft(type="image", media_url="https://cdn.example/a.jpg", caption="Receipt"),
            {"image": {"link": "https://cdn.example/a.jpg", "caption": "Receipt"}},
        ),
        (
            Draft(
                type="document",
                media_url="https://cdn.example/i.pdf",
                media_filename="invoice.pdf",
                caption="Your invoice",
            ),
            {
                "document": {
                    "link": "https://cdn.example/i.pdf",
                    "caption": "Your invoice",
                    "filename": "invoice.pdf",
                }
            },
        ),
        (
            Draft(type="voice", media_url="https://cdn.example/v.ogg"),
            {"audio": {"link": "https://cdn.example/v.ogg"}, "type": "audio"},
        ),
        (
            Draft(
                type="location", latitude=12.90909, longitude=6.90808, location_name="Main Building"
            ),
            {"location": {"latitude": "12.90909", "longitude": "6.90808", "name": "Main Building"}},
        ),
        (
            Draft(
                body="Pick one", buttons=[{"type": "QUICK_REPLY", "label": "Yes", "code": "yes"}]
            ),
            {
                "text": {"body": "Pick one"},
                "options": {
                    "buttons": [
                        {"type": "QUICK_REPLY", "label": "Yes", "name": "yes", "code": "yes"}
                    ]
                },
            },
        ),
    ],
)
@responses.activate
def test_each_message_type_is_sent_with_its_documented_object(session, send, draft, expected):
    responses.post(SEND, json=accepted())

    send(session, draft)

    body = sent_bodies()[0]
    for key, value in expected.items():
        assert body[key] == value
    objects = {"text", "image", "video", "audio", "document", "location", "contacts", "template"}
    assert set(body) & objects == set(expected) & objects


@responses.activate
def test_a_template_is_sent_with_code_id_language_and_placeholder_data(session, send, template):
    responses.post(SEND, json=accepted())

    message = send(
        session,
        Draft(type="template", template=template, template_data={"amount": 10, "currency": "INR"}),
    )

    assert sent_bodies()[0]["template"] == {
        "code": "FEEDBACK",
        "id": "60d236c6142e53561cb7716c",
        "lang": "en_US",
        "data": {"amount": "10", "currency": "INR"},
    }
    assert message.body == "Thank you for your payment of 10 INR."


# --- Exactly once --------------------------------------------------------------------------------


@responses.activate
def test_the_same_idempotency_key_twice_is_one_message_and_one_platform_call(session, send):
    responses.post(SEND, json=accepted())

    first = send(session, Draft(body="Once"), idempotency_key="key-1")
    second = send(session, Draft(body="Once"), idempotency_key="key-1")

    assert first.pk == second.pk
    assert Message.objects.filter(direction="out").count() == 1
    assert len(responses.calls) == 1


@responses.activate
def test_an_idempotency_key_reused_in_another_session_is_refused(session, account, send):
    responses.post(SEND, json=accepted())
    send(session, Draft(body="Once"), idempotency_key="key-1")
    other = SessionFactory(
        account=account,
        channel=session.channel,
        contact=session.contact,
        identity=session.identity,
        last_inbound_at=timezone.now(),
    )

    with pytest.raises(SendRefused) as refused:
        message_send(other, Draft(body="Twice"), idempotency_key="key-1")

    assert refused.value.code == "idempotency_conflict"


@responses.activate
def test_a_delivery_task_run_twice_sends_once(session, send):
    responses.post(SEND, json=accepted())
    message = send(session, Draft(body="Hi"))

    assert deliver.message_deliver(message.pk) == "not claimable"
    assert len(responses.calls) == 1


# --- Errors people can act on --------------------------------------------------------------------


@responses.activate
def test_a_5xx_is_retried_with_backoff_and_then_sent(session, send):
    responses.post(SEND, status=503)
    responses.post(SEND, json=accepted())

    message = send(session, Draft(body="Hi"))

    assert message.status == Message.Status.SENT
    assert message.attempts == 2
    assert len(responses.calls) == 2


@responses.activate
def test_a_connection_error_and_a_429_are_retried(session, send):
    responses.post(SEND, body=requests.ConnectionError("refused"))
    responses.post(SEND, status=429)
    responses.post(SEND, json=accepted())

    message = send(session, Draft(body="Hi"))

    assert message.status == Message.Status.SENT
    assert message.attempts == 3


@responses.activate
def test_a_platform_down_for_every_attempt_fails_the_message_with_the_reason(
    session, send, settings
):
    settings.SEND_MAX_ATTEMPTS = 3
    responses.post(SEND, status=503)

    message = send(session, Draft(body="Hi"))

    assert message.status == Message.Status.FAILED
    assert len(responses.calls) == 3
    assert "unavailable for 3 attempts" in message.error_title
    assert message.error_code == "503"


@responses.activate
def test_a_401_fails_at_once_and_marks_the_account_unhealthy(session, send, account):
    responses.post(SEND, status=401, json={"status": 401})

    message = send(session, Draft(body="Hi"))

    assert message.status == Message.Status.FAILED
    assert "credentials" in message.error_title
    assert len(responses.calls) == 1
    account.refresh_from_db()
    assert not account.is_healthy


@responses.activate
def test_an_error_envelope_fails_the_message_with_the_platforms_field_and_code(session, send):
    responses.post(
        SEND,
        json={
            "status": 400,
            "statusKey": "VALIDATION_ERROR",
            "errors": [
                {
                    "code": "INVALID_URL",
                    "field": "image.link",
                    "description": "must be http(s)",
                    "obzect": "OutBoundMsg",
                }
            ],
        },
    )

    message = send(session, Draft(body="Hi"))

    assert message.status == Message.Status.FAILED
    assert message.error_code == "INVALID_URL"
    assert "image.link: must be http(s)" in message.error_title
    assert len(responses.calls) == 1


@responses.activate
def test_a_failed_receipt_after_sending_marks_the_message_failed(
    session, send, account, post_callback
):
    responses.post(SEND, json=accepted("1234567"))
    message = send(session, Draft(body="Hi"))

    post_callback(account, load_fixture("xms", "inbound-status-failed"))

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error_code == "470"


# --- The ambiguous case --------------------------------------------------------------------------


def history_with(message_id: str, body: str) -> dict[str, Any]:
    return {
        "status": 200,
        "statusKey": "SUCCESS",
        "results": [
            {
                "messageId": "in-1",
                "type": "text",
                "text": "Hello",
                "status": "RECEIVD",
                "sender": "wa919988776655_918828218374",
                "timestamp": 1,
            },
            {
                "messageId": message_id,
                "messageIdExt": "wamid.X",
                "type": "text",
                "text": body,
                "status": "SENT",
                "sender": "app",
                "timestamp": int(timezone.now().timestamp() * 1000),
            },
        ],
    }


@responses.activate
def test_a_timeout_is_settled_from_the_history_without_sending_again(session, send):
    responses.post(SEND, body=requests.ReadTimeout("no answer"))
    responses.post(HISTORY, json=history_with("found-id", "Are you there?"))

    message = send(session, Draft(body="Are you there?"))

    assert message.status == Message.Status.SENT
    assert message.external_id == "found-id"
    assert message.external_id_ext == "wamid.X"
    assert not message.outcome_unknown
    assert len([c for c in responses.calls if c.request.url == SEND]) == 1


@responses.activate
def test_a_timeout_the_history_does_not_show_is_sent_again_when_the_account_allows_it(
    session, send, settings
):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 0
    session.account.options = {"resend_unconfirmed": True}
    session.account.save()
    responses.post(SEND, body=requests.ReadTimeout("no answer"))
    responses.post(SEND, json=accepted("second-try"))
    responses.post(HISTORY, json=history_with("someone-else", "Another text"))

    message = send(session, Draft(body="Are you there?"))

    assert message.status == Message.Status.SENT
    assert message.external_id == "second-try"
    assert len(sent_bodies()) == 2


@responses.activate
def test_a_timeout_whose_history_cannot_be_read_is_unconfirmed_with_a_warning_not_a_duplicate(
    session, send, settings
):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 0
    responses.post(SEND, body=requests.ReadTimeout("no answer"))
    responses.post(HISTORY, status=503)

    message = send(session, Draft(body="Are you there?"))

    assert message.status == Message.Status.UNCONFIRMED
    assert "twice" in message.error_title
    assert len(sent_bodies()) == 1


@responses.activate
def test_the_reaper_settles_a_send_cut_short_by_a_killed_worker(session, settings):
    responses.post(HISTORY, json=history_with("found-id", "Lost"))
    message = Message.objects.create(
        account=session.account,
        session=session,
        direction="out",
        type="text",
        body="Lost",
        status=Message.Status.SENDING,
        sent_at=timezone.now(),
        attempts=1,
        claimed_at=timezone.now() - timedelta(seconds=settings.SEND_STALE_SECONDS + 5),
    )

    result = reconcile.messages_reap()

    message.refresh_from_db()
    assert result.stale_claims == 1
    assert message.status == Message.Status.SENT
    assert message.external_id == "found-id"


@responses.activate
def test_the_reaper_enqueues_a_queued_message_whose_task_was_lost(session):
    responses.post(SEND, json=accepted())
    message = Message.objects.create(
        account=session.account,
        session=session,
        direction="out",
        type="text",
        body="Lost task",
        status=Message.Status.QUEUED,
        sent_at=timezone.now(),
    )
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    assert reconcile.messages_reap().requeued == 1

    message.refresh_from_db()
    assert message.status == Message.Status.SENT


# --- The 24-hour window and templates -----------------------------------------------------------


@responses.activate
def test_a_free_form_message_outside_the_window_is_refused_before_any_call(session):
    Session.objects.filter(pk=session.pk).update(
        last_inbound_at=timezone.now() - timedelta(hours=25)
    )
    session.refresh_from_db()

    with pytest.raises(SendRefused) as refused:
        message_send(session, Draft(body="Late"))

    assert refused.value.code == "window_closed"
    assert "only an approved template" in refused.value.reason
    assert not Message.objects.filter(direction="out").exists()
    assert len(responses.calls) == 0


@responses.activate
def test_a_template_outside_the_window_goes_out(session, send, template):
    Session.objects.filter(pk=session.pk).update(
        last_inbound_at=timezone.now() - timedelta(hours=25)
    )
    session.refresh_from_db()
    responses.post(SEND, json=accepted())

    message = send(
        session,
        Draft(type="template", template=template, template_data={"amount": "5", "currency": "EUR"}),
    )

    assert message.status == Message.Status.SENT


def test_the_window_counts_from_the_last_inbound_message_on_any_session_of_that_channel(session):
    Session.objects.filter(pk=session.pk).update(last_inbound_at=None)
    session.refresh_from_db()
    SessionFactory(
        account=session.account,
        channel=session.channel,
        contact=session.contact,
        last_inbound_at=timezone.now() - timedelta(hours=1),
    )

    window = session_window(session)

    assert window.is_open
    assert window.closes_at is not None


def test_a_channel_without_a_window_always_allows_free_form(session):
    Channel.objects.filter(pk=session.channel_id).update(medium="sms")  # (XMS: WhatsApp only)
    Session.objects.filter(pk=session.pk).update(
        last_inbound_at=timezone.now() - timedelta(days=30)
    )
    session.refresh_from_db()

    window = session_window(session)

    assert window.is_open and not window.applies


def test_a_template_not_approved_on_the_channel_is_refused(session, template):
    TemplateApproval.objects.filter(template=template).update(status="PENDING")

    with pytest.raises(SendRefused, match="pending"):
        message_send(
            session,
            Draft(
                type="template", template=template, template_data={"amount": "1", "currency": "INR"}
            ),
        )


def test_a_template_with_an_empty_placeholder_is_refused_naming_it(session, template):
    with pytest.raises(SendRefused, match="currency"):
        message_send(
            session, Draft(type="template", template=template, template_data={"amount": "1"})
        )


@responses.activate
def test_a_message_refused_for_the_window_is_resent_as_a_template(
    session, send, template, account, post_callback, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=accepted("1234567"))
    responses.post(SEND, json=accepted("template-id"))
    failed = send(session, Draft(body="Hi"))
    post_callback(account, load_fixture("xms", "inbound-status-failed"))
    failed.refresh_from_db()

    with pytest.raises(SendRefused, match="template"):
        message_retry(failed)
    with django_capture_on_commit_callbacks(execute=True):
        replacement = message_resend_as_template(
            failed, template, {"amount": "1", "currency": "INR"}
        )

    replacement.refresh_from_db()
    assert replacement.replaces == failed
    assert replacement.status == Message.Status.SENT
    assert replacement.type == "template"


@responses.activate
def test_a_failed_message_can_be_retried(
    session, send, settings, django_capture_on_commit_callbacks
):
    settings.SEND_MAX_ATTEMPTS = 1
    responses.post(SEND, status=503)
    responses.post(SEND, json=accepted())
    failed = send(session, Draft(body="Hi"))
    assert failed.status == Message.Status.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        message_retry(failed)

    failed.refresh_from_db()
    assert failed.status == Message.Status.SENT
    assert failed.error_title == ""


def test_an_inactive_channel_refuses_to_send(session):
    session.channel.is_active = False
    session.channel.save()

    with pytest.raises(SendRefused, match="not active"):
        message_send(session, Draft(body="Hi"))


# --- Throughput guard ----------------------------------------------------------------------------


def test_the_rate_limit_allows_its_budget_per_second_and_then_says_how_long_to_wait():
    key = f"test:{timezone.now().timestamp()}"
    waits = [ratelimit.acquire(key, 2) for _ in range(3)]

    assert waits[0] == waits[1] == 0
    assert 0 < waits[2] <= 1.01


def test_a_rate_limit_of_zero_means_no_limit():
    assert all(ratelimit.acquire("test:off", 0) == 0 for _ in range(100))


@responses.activate
def test_a_rate_limited_send_waits_without_using_an_attempt(session, send, monkeypatch):
    calls = iter([0.2, 0.0])
    monkeypatch.setattr(ratelimit, "acquire", lambda key, per_second: next(calls))
    responses.post(SEND, json=accepted())

    message = send(session, Draft(body="Hi"))

    assert message.status == Message.Status.SENT
    assert message.attempts == 1


def test_failing_a_message_never_overwrites_a_delivery_the_platform_confirmed(session):
    message = Message.objects.create(
        account=session.account,
        session=session,
        direction="out",
        type="text",
        body="Hi",
        status=Message.Status.DELIVERED,
        sent_at=timezone.now(),
    )

    deliver.message_fail(message, code="unknown_outcome", title="not sure")

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.error_title == ""


def test_the_wait_between_two_attempts_never_exceeds_the_configured_maximum(settings):
    from inbox.services.deliver import backoff_seconds

    settings.SEND_BACKOFF_BASE_SECONDS = 2.0
    settings.SEND_BACKOFF_MAX_SECONDS = 5.0

    waits = [backoff_seconds(attempt) for attempt in range(1, 30) for _ in range(5)]

    assert max(waits) <= 5.0
    assert min(backoff_seconds(1) for _ in range(20)) >= 1.0  # base 2 s, times 0.5 to 1
