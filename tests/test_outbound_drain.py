"""A channel's replies go out in claimed batches (`deliver.messages_drain`): each once, each
conversation in order, within the rate limit, and a slow answer holds no other reply."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from django.utils import timezone

from inbox.models import Message, MessageStatusChange, Session
from inbox.services import deliver, send
from inbox.services.send import Draft
from integrations import ratelimit
from tests.factories import make_session
from tests.test_outbound_once import SEND, accepted, queued

pytestmark = pytest.mark.django_db


@pytest.fixture
def sessions(xms_session: Session) -> list[Session]:
    """Three customers on the same channel."""
    others = [
        make_session(xms_session.account, xms_session.channel, external_id=f"drain-{n}")
        for n in range(2)
    ]
    return [xms_session, *others]


def text_of(call: Any) -> str:
    return str(json.loads(call.request.body)["text"]["body"])


def answer_by_text(request: Any) -> tuple[int, dict[str, str], str]:
    text = json.loads(request.body)["text"]["body"]
    return 200, {}, json.dumps(accepted(f"id-{text}"))


@pytest.mark.parametrize("batch", [1, 2, 25])
@responses.activate
def test_a_drain_sends_every_reply_of_the_channel_once_and_each_conversation_in_order(
    sessions, batch
):
    responses.add_callback(responses.POST, SEND, callback=answer_by_text)
    written = [
        queued(session, f"{index}-{part}")
        for part in range(3)
        for index, session in enumerate(sessions)
    ]

    assert deliver.messages_drain(sessions[0].channel_id, batch=batch) == len(written)

    texts = [text_of(call) for call in responses.calls]
    assert sorted(texts) == sorted(m.body for m in written)  # each once
    for index in range(len(sessions)):
        mine = [t for t in texts if t.startswith(f"{index}-")]
        assert mine == [f"{index}-0", f"{index}-1", f"{index}-2"]
    for message in written:
        message.refresh_from_db()
        assert (message.status, message.external_id, message.attempts) == (
            Message.Status.SENT,
            f"id-{message.body}",
            1,
        )
        assert message.accepted_at is not None
    assert MessageStatusChange.objects.filter(message__in=written, status="sent").count() == 9


def test_two_drains_at_once_claim_different_replies_and_only_the_first_of_a_conversation(sessions):
    first = [queued(session, "First") for session in sessions]
    later = [queued(session, "Later") for session in sessions]
    now = timezone.now()

    one = deliver._claim_due(sessions[0].channel_id, 2, now)
    other = deliver._claim_due(sessions[0].channel_id, 25, now)

    assert {m.pk for m in one} | {m.pk for m in other} == {m.pk for m in first}
    assert not {m.pk for m in one} & {m.pk for m in other}
    assert Message.objects.filter(pk__in=[m.pk for m in later], status="queued").count() == 3


@responses.activate
def test_a_drain_sends_no_more_than_the_rate_limit_allows_and_queues_itself_for_later(
    sessions, settings
):
    responses.add_callback(responses.POST, SEND, callback=answer_by_text)
    written = [queued(session, f"r{index}") for index, session in enumerate(sessions)]
    grants = iter([ratelimit.Grant(slots=2, wait=0.0, second=0)])

    def take(key: str, per_second: int, wanted: int) -> ratelimit.Grant:
        return next(grants, ratelimit.Grant(slots=0, wait=0.4, second=0))

    with (
        mock.patch.object(ratelimit, "take", side_effect=take),
        mock.patch.object(deliver, "enqueue_once_later") as later,
    ):
        assert deliver.messages_drain(sessions[0].channel_id) == 2

    assert len(responses.calls) == 2
    later.assert_called_once()
    assert later.call_args.args == (deliver.DRAIN_TASK, sessions[0].channel_id)
    assert later.call_args.kwargs["countdown"] == 0.4
    left = Message.objects.get(pk=written[2].pk)
    assert (left.status, left.attempts) == (Message.Status.QUEUED, 0)  # no attempt used


@responses.activate
def test_a_slow_answer_holds_no_other_reply_of_the_batch_and_another_drain_carries_on(
    sessions, settings
):
    settings.SEND_COLLECT_SECONDS = 0
    recorded: list[list[str]] = []
    others_recorded = threading.Event()
    real_accepted = deliver._accepted

    def accepted_spy(pairs: list[tuple[Message, str]], **kwargs: Any) -> None:
        real_accepted(pairs, **kwargs)
        recorded.append([m.body for m, _ in pairs])
        if sum(len(r) for r in recorded) == 2 and "slow" not in recorded[-1]:
            others_recorded.set()

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        if json.loads(request.body)["text"]["body"] == "slow":
            # The platform answers this one only after the others were recorded.
            assert others_recorded.wait(30), "the other replies waited for the slow one"
        return answer_by_text(request)

    responses.add_callback(responses.POST, SEND, callback=answer)
    queued(sessions[0], "slow")
    queued(sessions[1], "fast-1")
    queued(sessions[2], "fast-2")

    with (
        mock.patch.object(deliver, "_accepted", side_effect=accepted_spy),
        mock.patch.object(deliver, "_drain_successor") as kick,
    ):
        assert deliver.messages_drain(sessions[0].channel_id) == 3

    assert sorted(b for r in recorded[:-1] for b in r) == ["fast-1", "fast-2"]
    assert recorded[-1] == ["slow"]
    kick.assert_called_with(sessions[0].channel_id)  # the channel's queue was not left waiting
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.SENT}


@responses.activate
def test_a_refused_send_in_a_batch_fails_alone_and_the_others_are_sent(sessions):
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        if json.loads(request.body)["text"]["body"] == "refused":
            return 400, {}, json.dumps({"status": 400, "message": "Invalid recipient"})
        return answer_by_text(request)

    responses.add_callback(responses.POST, SEND, callback=answer)
    refused = queued(sessions[0], "refused")
    sent = [queued(sessions[1], "one"), queued(sessions[2], "two")]

    deliver.messages_drain(sessions[0].channel_id)

    refused.refresh_from_db()
    assert refused.status == Message.Status.FAILED and refused.error_title
    assert [Message.objects.get(pk=m.pk).status for m in sent] == [Message.Status.SENT] * 2


def test_a_call_waiting_behind_the_workers_other_calls_is_not_taken_for_a_slow_platform(
    settings, monkeypatch
):
    settings.SEND_COLLECT_SECONDS = 0.05
    pool = ThreadPoolExecutor(max_workers=1)
    monkeypatch.setattr(deliver, "_call_pool", lambda: pool)
    clock = [1000.0]
    monkeypatch.setattr(deliver.time, "monotonic", lambda: clock[0])
    release = threading.Event()
    pool.submit(release.wait, 30)  # another drain's call holds the only thread
    calls = [(Message(pk=1), lambda: "a"), (Message(pk=2), lambda: "b")]
    rounds: list[list[Any]] = []
    waits: list[int] = []
    consumer = threading.Thread(
        target=lambda: rounds.extend(deliver._answers(calls, on_wait=lambda: waits.append(1)))
    )
    consumer.start()

    clock[0] += 60  # a minute with both calls still queued behind it
    consumer.join(0.2)  # (and longer than SEND_COLLECT_SECONDS by the wall clock too)
    release.set()
    consumer.join(30)

    assert waits == []  # no second drain: it would only have queued behind the same calls
    assert [sorted(answer for _, answer in r) for r in rounds] == [["a", "b"]]  # one round
    pool.shutdown()


@responses.activate
def test_a_drain_that_finds_nothing_more_lets_go_and_starts_one_for_a_reply_that_came_meanwhile(
    sessions,
):
    responses.add_callback(responses.POST, SEND, callback=answer_by_text)
    late = queued(sessions[0], "late")
    with (
        # Its last claim found nothing: the reply committed just after it.
        mock.patch.object(deliver, "_claim_due", return_value=[]),
        mock.patch.object(deliver, "enqueue_once_release") as released,
        mock.patch.object(deliver, "_drain_kick") as kick,
    ):
        assert deliver.messages_drain(sessions[0].channel_id) == 0

    released.assert_called_once_with(deliver._drain_key(sessions[0].channel_id))
    kick.assert_called_once_with(sessions[0].channel_id)  # the late reply does not wait
    assert Message.objects.get(pk=late.pk).status == Message.Status.QUEUED


def test_a_reply_is_started_by_a_drain_of_its_channel_one_per_burst(
    sessions, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with (
        mock.patch.object(deliver, "enqueue_once", return_value=True) as kick,
        mock.patch.object(deliver, "delivery_enqueue") as own_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        for session in sessions:
            send.message_send(session, Draft(body="Hi"))

    assert {c.args for c in kick.call_args_list} == {(deliver.DRAIN_TASK, sessions[0].channel_id)}
    own_task.assert_not_called()


def test_without_a_way_to_queue_a_drain_each_reply_gets_a_task_of_its_own(
    sessions, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with (
        mock.patch.object(deliver, "enqueue_once", return_value=False),
        mock.patch.object(deliver, "delivery_enqueue") as own_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        message, _ = send.message_send(sessions[0], Draft(body="Hi"))

    own_task.assert_called_once_with(message.pk)


def test_the_rate_limit_grants_what_is_left_of_the_second_and_takes_back_what_was_not_used():
    key = f"test:take:{timezone.now().timestamp()}"
    with mock.patch("integrations.ratelimit.time.time", return_value=1_000_000.25):
        first = ratelimit.take(key, 5, 3)
        second = ratelimit.take(key, 5, 3)
        ratelimit.give_back(key, second, 2)
        third = ratelimit.take(key, 5, 3)

    assert (first.slots, first.wait) == (3, 0)
    assert (second.slots, second.wait) == (2, 0.76)  # the rest of the second, then the next
    assert third.slots == 2  # the two given back


@responses.activate
def test_a_backlog_older_than_the_order_wait_still_goes_out_in_order(sessions, settings):
    responses.add_callback(responses.POST, SEND, callback=answer_by_text)
    long_ago = timezone.now() - timedelta(seconds=settings.SEND_ORDER_WAIT_SECONDS + 120)
    backlog = [queued(sessions[0], f"old-{part}", written=long_ago) for part in range(3)]

    claimed = deliver._claim_due(sessions[0].channel_id, 25, timezone.now())
    assert [m.pk for m in claimed] == [backlog[0].pk]  # one at a time, the first first
    Message.objects.filter(pk=backlog[0].pk).update(status=Message.Status.QUEUED, attempts=0)

    deliver.messages_drain(sessions[0].channel_id)

    assert [text_of(call) for call in responses.calls] == ["old-0", "old-1", "old-2"]
