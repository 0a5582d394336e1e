"""A reply reaches the customer once: an ambiguous send is settled by evidence, never re-sent
blindly, our own sends are recognized wherever the platform names them, and replies keep their
order (spec §5.0, §5.12, §6.7, §7)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import requests
import responses
from django.utils import timezone

from inbox import send_failures
from inbox.models import Message, MessageCopy, MessageReceipt, Session
from inbox.services import deliver, history, reconcile, send
from inbox.services.deliver import DeliveryDeferred
from inbox.services.messages import receipt_record
from inbox.services.send import Draft
from integrations.base import DeliveryStatus, Receipt
from tests.factories import ContactFactory, make_session

pytestmark = pytest.mark.django_db
SEND = "https://api.mehery.example/xms/api/v1/message/send"
HISTORY = "https://api.mehery.example/xms/api/v1/session/messages"
CONTACT = "wa919988776655_918828218374"


def accepted(message_id: str) -> dict[str, Any]:
    return {"data": {"id": message_id}, "status": 200, "statusKey": "SUCCESS", "errors": []}


def listed(*items: tuple[str, str, datetime]) -> dict[str, Any]:
    """A session history answer listing our sends: (platform id, text, when)."""
    return {
        "status": 200,
        "statusKey": "SUCCESS",
        "results": [
            {
                "messageId": "in-1",
                "type": "text",
                "text": "Hello",
                "status": "RECEIVD",
                "sender": CONTACT,
                "timestamp": 1,
            },
            *(
                {
                    "messageId": message_id,
                    "messageIdExt": f"wamid.{message_id}",
                    "type": "text",
                    "text": text,
                    "status": "SENT",
                    "sender": "app",
                    "timestamp": int(at.timestamp() * 1000),
                }
                for message_id, text, at in items
            ),
        ],
    }


@pytest.fixture
def session(xms_session: Session) -> Session:
    return xms_session


def send_calls() -> int:
    return len([c for c in responses.calls if c.request.url == SEND])


def ambiguous(session: Session, body: str, *, first_attempt: datetime, **fields: Any) -> Message:
    """A send that reached the point of no answer `first_attempt` ago."""
    values: dict[str, Any] = {
        "status": Message.Status.SENDING,
        "outcome_unknown": True,
        "attempts": 1,
        "claimed_at": first_attempt,
        "first_attempt_at": first_attempt,
        **fields,
    }
    return Message.objects.create(
        account=session.account,
        session=session,
        direction="out",
        type="text",
        body=body,
        sent_at=first_attempt,
        **values,
    )


def queued(session: Session, body: str, *, written: datetime | None = None) -> Message:
    """A reply waiting for delivery, written `written` (default: now)."""
    message = Message.objects.create(
        account=session.account,
        session=session,
        direction="out",
        type="text",
        body=body,
        status=Message.Status.QUEUED,
        sent_at=written or timezone.now(),
    )
    if written is not None:
        Message.objects.filter(pk=message.pk).update(created_at=written)
    return message


# --- 1. No blind re-send -------------------------------------------------------------------------


@responses.activate
def test_a_timeout_the_history_never_lists_becomes_unconfirmed_and_is_sent_once(
    session, send, settings
):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 0
    responses.post(SEND, body=requests.ReadTimeout("no answer"))
    responses.post(SEND, json=accepted("second-copy"))
    responses.post(HISTORY, json=listed())

    message = send(session, Draft(body="Are you there?"))

    assert message.status == Message.Status.UNCONFIRMED
    assert send_calls() == 1
    assert message.external_id == ""
    assert "may not have been delivered" in send_failures.send_failure_text(
        message.error_code, message.error_title
    )


@pytest.mark.parametrize("status", [500, 502, 504])
@responses.activate
def test_a_server_error_from_a_platform_that_had_the_send_is_settled_by_evidence_not_sent_again(
    session, send, status
):
    responses.post(SEND, status=status, json={"status": status, "message": "failed"})
    responses.post(SEND, json=accepted("second-copy"))
    responses.post(HISTORY, json=listed(("first-copy", "Did it go?", timezone.now())))

    message = send(session, Draft(body="Did it go?"))

    assert send_calls() == 1
    assert (message.status, message.external_id) == (Message.Status.SENT, "first-copy")


@pytest.mark.parametrize("status", [408, 429, 503])
@responses.activate
def test_an_answer_that_says_the_platform_did_not_take_the_send_is_retried(session, send, status):
    responses.post(SEND, status=status, json={"status": status, "message": "not now"})
    responses.post(SEND, json=accepted("only-copy"))

    message = send(session, Draft(body="Try again"))

    assert send_calls() == 2
    assert (message.status, message.external_id) == (Message.Status.SENT, "only-copy")


@responses.activate
def test_within_the_window_a_send_without_evidence_waits_and_is_not_sent_again(
    session, send, settings
):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 600
    responses.post(SEND, body=requests.ReadTimeout("no answer"))
    responses.post(SEND, json=accepted("second-copy"))
    responses.post(HISTORY, json=listed())

    message = send(session, Draft(body="Are you there?"))

    assert (message.status, message.outcome_unknown) == (Message.Status.SENDING, True)
    assert send_calls() == 1
    assert message.first_attempt_at is not None
    assert message.next_attempt_at is not None and message.next_attempt_at > timezone.now()


@responses.activate
def test_resending_after_an_ambiguous_send_is_an_account_option_that_respects_the_limit(
    session, send, settings
):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 0
    settings.SEND_MAX_ATTEMPTS = 3
    session.account.options = {"resend_unconfirmed": True}
    session.account.save()
    responses.post(SEND, body=requests.ReadTimeout("no answer"))
    responses.post(HISTORY, json=listed())

    message = send(session, Draft(body="Are you there?"))

    assert send_calls() == 3
    assert message.attempts == 3
    assert message.status == Message.Status.UNCONFIRMED


@responses.activate
def test_a_history_that_cannot_be_read_until_the_window_ends_leaves_the_message_unconfirmed(
    session, send, settings
):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 0
    responses.post(SEND, body=requests.ReadTimeout("no answer"))
    responses.post(HISTORY, status=503)

    message = send(session, Draft(body="Are you there?"))

    assert message.status == Message.Status.UNCONFIRMED
    assert send_calls() == 1


@responses.activate
def test_the_reaper_seeks_evidence_from_the_first_attempt_not_from_when_it_reclaimed_the_row(
    session, settings
):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 600
    first = timezone.now() - timedelta(seconds=settings.SEND_STALE_SECONDS + 80)
    responses.post(SEND, json=accepted("second-copy"))
    responses.post(HISTORY, json=listed(("found-id", "Lost", first + timedelta(seconds=2))))
    message = ambiguous(session, "Lost", first_attempt=first, outcome_unknown=False)

    assert reconcile.messages_reap().stale_claims == 1

    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.external_id == "found-id"
    assert send_calls() == 0


@responses.activate
def test_a_failed_or_ambiguous_answer_never_makes_a_path_beyond_the_attempt_limit(
    session, settings
):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 0
    settings.SEND_MAX_ATTEMPTS = 2
    session.account.options = {"resend_unconfirmed": True}
    session.account.save()
    responses.post(SEND, json=accepted("never"))
    responses.post(HISTORY, json=listed())
    message = ambiguous(session, "Twice at most", first_attempt=timezone.now(), attempts=2)

    reconcile.message_reconcile(message.pk)

    message.refresh_from_db()
    assert message.status == Message.Status.UNCONFIRMED
    assert send_calls() == 0


@responses.activate
def test_send_again_queues_an_unconfirmed_message_once_more(
    session, settings, django_capture_on_commit_callbacks
):
    responses.post(SEND, json=accepted("again"))
    message = ambiguous(session, "Hello?", first_attempt=timezone.now())
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.UNCONFIRMED, outcome_unknown=False
    )
    message.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        send.message_retry(message)

    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.external_id == "again"
    assert send_calls() == 1


# --- 2. Correlation of what we sent --------------------------------------------------------------


@responses.activate
def test_the_history_import_adopts_our_ambiguous_send_instead_of_adding_an_authorless_row(
    session,
):
    now = timezone.now()
    message = ambiguous(session, "Your order shipped", first_attempt=now)
    responses.post(HISTORY, json=listed(("platform-id", "Your order shipped", now)))

    added = history.session_history_import(session.pk)

    message.refresh_from_db()
    assert added == 1  # the customer's message only
    assert Message.objects.filter(direction="out").count() == 1
    assert message.external_id == "platform-id"
    assert message.status == Message.Status.SENT
    assert not message.outcome_unknown


@responses.activate
def test_an_unconfirmed_message_the_history_lists_later_becomes_sent(session):
    now = timezone.now()
    message = ambiguous(session, "Late but there", first_attempt=now)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.UNCONFIRMED)
    responses.post(HISTORY, json=listed(("platform-id", "Late but there", now)))

    history.session_history_import(session.pk)

    message.refresh_from_db()
    assert (message.status, message.external_id) == (Message.Status.SENT, "platform-id")


@responses.activate
def test_an_import_racing_a_slow_send_adopts_it_and_the_answer_lands_without_a_crash(session):
    now = timezone.now()
    message = ambiguous(session, "Slow but fine", first_attempt=now, outcome_unknown=False)
    responses.post(HISTORY, json=listed(("slow-id", "Slow but fine", now)))

    history.session_history_import(session.pk)
    deliver._accepted([(message, "slow-id")], start_next=True)

    message.refresh_from_db()
    assert Message.objects.filter(direction="out").count() == 1
    assert (message.status, message.external_id) == (Message.Status.SENT, "slow-id")


def test_a_send_answer_naming_a_row_the_history_imported_merges_it_instead_of_crashing(session):
    now = timezone.now()
    message = ambiguous(session, "Raced", first_attempt=now, outcome_unknown=False)
    imported = Message.objects.create(
        account=session.account,
        session=session,
        direction="out",
        type="text",
        body="Raced",
        external_id="raced-id",
        status=Message.Status.READ,
        sent_at=now,
    )

    deliver._accepted([(message, "raced-id")], start_next=True)

    message.refresh_from_db()
    assert not Message.objects.filter(pk=imported.pk).exists()
    assert (message.external_id, message.status) == ("raced-id", Message.Status.READ)


def test_a_receipt_for_an_unknown_id_settles_the_contacts_only_ambiguous_send(session):
    message = ambiguous(session, "Hung", first_attempt=timezone.now())

    receipt_record(
        session.account,
        Receipt(
            external_id="hung-id",
            status=DeliveryStatus.DELIVERED,
            contact_external_id=CONTACT,
            occurred_at=timezone.now(),
        ),
        received_at=timezone.now(),
    )

    message.refresh_from_db()
    assert (message.external_id, message.status) == ("hung-id", Message.Status.DELIVERED)
    assert not message.outcome_unknown


def test_a_receipt_long_after_the_window_is_not_taken_for_an_unconfirmed_send(session, settings):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 60
    message = ambiguous(session, "Hung", first_attempt=timezone.now() - timedelta(hours=2))
    Message.objects.filter(pk=message.pk).update(status=Message.Status.UNCONFIRMED)

    receipt_record(
        session.account,
        Receipt(
            external_id="a-bot-message",
            status=DeliveryStatus.DELIVERED,
            contact_external_id=CONTACT,
            occurred_at=timezone.now(),
        ),
        received_at=timezone.now(),
    )

    message.refresh_from_db()
    assert (message.external_id, message.status) == ("", Message.Status.UNCONFIRMED)
    assert MessageReceipt.objects.get().message_id is None


@responses.activate
def test_receipts_that_came_while_the_send_hung_settle_it_when_the_timeout_is_reconciled(
    session, settings
):
    settings.SEND_CONFIRM_WINDOW_SECONDS = 600
    message = ambiguous(session, "Hung", first_attempt=timezone.now(), outcome_unknown=False)
    for status in (DeliveryStatus.SENT, DeliveryStatus.READ):
        receipt_record(
            session.account,
            Receipt(
                external_id="hung-id",
                status=status,
                contact_external_id=CONTACT,
                occurred_at=timezone.now(),
            ),
            received_at=timezone.now(),
        )
    assert MessageReceipt.objects.filter(message__isnull=True).count() == 2
    responses.post(HISTORY, json=listed())
    Message.objects.filter(pk=message.pk).update(outcome_unknown=True)

    reconcile.message_reconcile(message.pk)

    message.refresh_from_db()
    assert (message.external_id, message.status) == ("hung-id", Message.Status.READ)
    assert not MessageReceipt.objects.filter(message__isnull=True).exists()


@responses.activate
def test_a_copy_the_platform_accepted_twice_is_kept_on_the_message_with_its_receipts(session):
    now = timezone.now()
    message = ambiguous(session, "Twice", first_attempt=now)
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENT, outcome_unknown=False, external_id="first-id"
    )
    responses.post(
        HISTORY,
        json=listed(("first-id", "Twice", now), ("second-id", "Twice", now + timedelta(seconds=9))),
    )

    added = history.session_history_import(session.pk)
    receipt_record(
        session.account,
        Receipt(external_id="second-id", status=DeliveryStatus.READ, occurred_at=now),
        received_at=now,
    )

    assert added == 1  # the customer's message only
    assert Message.objects.filter(direction="out").count() == 1
    assert list(MessageCopy.objects.values_list("message_id", "external_id")) == [
        (message.pk, "second-id")
    ]
    assert MessageReceipt.objects.get(external_id="second-id").message_id == message.pk


@responses.activate
def test_two_identical_replies_each_adopt_their_own_platform_id(session):
    now = timezone.now()
    first = ambiguous(session, "ok", first_attempt=now)
    second = ambiguous(session, "ok", first_attempt=now + timedelta(seconds=1))
    responses.post(
        HISTORY,
        json=listed(("id-1", "ok", now), ("id-2", "ok", now + timedelta(seconds=1))),
    )

    history.session_history_import(session.pk)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.external_id, second.external_id) == ("id-1", "id-2")
    assert not MessageCopy.objects.exists()


# --- 5. The customer's order ---------------------------------------------------------------------


def test_a_reply_waits_while_an_earlier_one_in_its_conversation_is_unsettled(session, settings):
    earlier = ambiguous(session, "First", first_attempt=timezone.now(), outcome_unknown=False)
    Message.objects.filter(pk=earlier.pk).update(status=Message.Status.QUEUED, attempts=1)
    later = queued(session, "Second")

    with pytest.raises(DeliveryDeferred):
        deliver.message_deliver(later.pk)

    later.refresh_from_db()
    assert (later.status, later.attempts) == (Message.Status.QUEUED, 0)


@responses.activate
def test_replies_in_other_conversations_and_after_an_unconfirmed_one_go_at_once(session, account):
    responses.post(SEND, json=accepted("x-1"))
    responses.post(SEND, json=accepted("x-2"))
    blocked = ambiguous(session, "Unconfirmed", first_attempt=timezone.now())
    Message.objects.filter(pk=blocked.pk).update(status=Message.Status.UNCONFIRMED)
    channel = session.channel
    other = make_session(
        account,
        channel,
        contact=ContactFactory(account=account, name="Ana", phone="34600111222"),
        identity_external_id="wa34600111222_918828218374",
        external_id="other-session",
    )
    ambiguous(other, "Pending elsewhere", first_attempt=timezone.now())
    mine = queued(session, "After the unconfirmed one")

    assert deliver.message_deliver(mine.pk) == "sent"
    assert json.loads(responses.calls[0].request.body)["text"]["body"] == mine.body


def test_the_wait_for_an_earlier_reply_is_bounded(session, settings):
    settings.SEND_ORDER_WAIT_SECONDS = 5
    earlier = ambiguous(session, "Stuck", first_attempt=timezone.now())
    later = queued(session, "Second", written=timezone.now() - timedelta(seconds=6))

    with responses.RequestsMock() as mock:
        mock.post(SEND, json=accepted("late"))
        assert deliver.message_deliver(later.pk) == "sent"
    assert earlier.pk < later.pk


@responses.activate
def test_a_burst_of_replies_to_one_customer_starts_one_at_a_time_in_order(
    session, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    for index in range(3):
        responses.post(SEND, json=accepted(f"burst-{index}"))
    started: list[int] = []

    def start(message_id: int, channel_id: int) -> None:
        started.append(message_id)

    with (  # (a send starts its delivery; a settled one starts the next in line)
        mock.patch.object(send, "delivery_start", side_effect=start),
        mock.patch.object(deliver, "delivery_start", side_effect=start),
    ):
        with django_capture_on_commit_callbacks(execute=True):  # one transaction, committed
            burst = [
                send.message_send(session, Draft(body=f"Part {index}"))[0] for index in range(3)
            ]
        assert started == [burst[0].pk]  # only the head of the line is started

        for index, message in enumerate(burst):
            with django_capture_on_commit_callbacks(execute=True):  # its successor starts at commit
                assert deliver.message_deliver(message.pk) == "sent"
            assert started == [m.pk for m in burst[: index + 2]][:3]

    texts = [json.loads(c.request.body)["text"]["body"] for c in responses.calls]
    assert texts == ["Part 0", "Part 1", "Part 2"]


def test_the_reaper_leaves_a_reply_waiting_in_line_and_restarts_a_lost_head(session, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    long_ago = timezone.now() - timedelta(seconds=settings.SEND_REQUEUE_AFTER_SECONDS + 5)
    head = queued(session, "Head", written=long_ago)
    behind = queued(session, "Behind", written=long_ago)
    started: list[tuple[object, ...]] = []
    with (
        mock.patch.object(reconcile, "enqueue", side_effect=lambda *a, **k: started.append(a)),
        mock.patch.object(reconcile, "queue_length", return_value=0),
    ):
        assert reconcile.messages_reap().requeued == 1
    # A drain of the channel is started, and it finds the head due and the other in line.
    assert started == [(deliver.DRAIN_TASK, session.channel_id)]
    assert [m.pk for m in deliver._due(session.channel_id, timezone.now())] == [head.pk]
    behind.refresh_from_db()
    assert behind.next_attempt_at is None  # not taken for lost


def test_behind_a_backlog_in_the_platform_lane_a_queued_reply_is_not_taken_for_lost(
    session, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    waited = settings.SEND_REQUEUE_AFTER_SECONDS + 5
    message = queued(
        session, "Waiting its turn", written=timezone.now() - timedelta(seconds=waited)
    )
    started: list[tuple[object, ...]] = []
    with (
        mock.patch.object(reconcile, "enqueue", side_effect=lambda *a, **k: started.append(a)),
        mock.patch.object(reconcile, "queue_length", return_value=1500),
    ):
        assert reconcile.messages_reap().requeued == 0
        assert started == []
        settings.SEND_REQUEUE_BEHIND_BACKLOG_SECONDS = waited - 1
        assert reconcile.messages_reap().requeued == 1
    assert started == [(deliver.DRAIN_TASK, message.session.channel_id)]


@responses.activate
def test_a_connection_dropped_after_the_request_was_sent_is_ambiguous_not_retried(
    session, send, settings
):
    from http.client import RemoteDisconnected

    from urllib3.exceptions import ProtocolError

    settings.SEND_CONFIRM_WINDOW_SECONDS = 0
    dropped = ProtocolError("Connection aborted.", RemoteDisconnected("closed without response"))
    responses.post(SEND, body=requests.ConnectionError(dropped))
    responses.post(SEND, json=accepted("second-copy"))
    responses.post(HISTORY, json=listed())

    message = send(session, Draft(body="Did it arrive?"))

    assert message.status == Message.Status.UNCONFIRMED
    assert send_calls() == 1


def test_no_attempt_is_made_beyond_the_limit_whoever_queued_the_message(session, settings):
    settings.SEND_MAX_ATTEMPTS = 2
    message = ambiguous(session, "Once more?", first_attempt=timezone.now(), attempts=2)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.QUEUED)

    with responses.RequestsMock():  # any platform call fails the test
        assert deliver.message_deliver(message.pk) == "failed"

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.attempts == 2


@responses.activate
def test_a_send_settled_by_the_history_starts_the_next_reply_of_its_conversation(
    session, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    now = timezone.now()
    first = ambiguous(session, "First", first_attempt=now)
    second = queued(session, "Second")
    responses.post(HISTORY, json=listed(("id-first", "First", now)))
    started: list[int] = []

    def start(message_id: int, channel_id: int) -> None:
        started.append(message_id)

    with (
        mock.patch.object(deliver, "delivery_start", side_effect=start),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert reconcile.message_reconcile(first.pk) == "found (history)"

    assert started == [second.pk]  # not left for the reaper to find
