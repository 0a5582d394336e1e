"""The one enqueue helper: the broker refusing a task is logged, never an error for the caller;
and `enqueue_once`, which lets a burst of calls start one task."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest

from config import queue
from config.queue import enqueue


def test_an_accepted_task_is_handed_over_once_without_retries_and_with_its_arguments():
    with mock.patch("inbox.tasks.message_deliver.apply_async") as apply_async:
        assert enqueue("inbox.tasks.message_deliver", 12, countdown=3, what="delivery of 12")

    apply_async.assert_called_once_with(args=(12,), countdown=3, retry=False)


def test_a_task_the_broker_refuses_is_logged_and_left_for_the_sweeps(caplog):
    with mock.patch(
        "inbox.tasks.message_deliver.apply_async", side_effect=ConnectionError("broker down")
    ):
        assert not enqueue("inbox.tasks.message_deliver", 12, what="delivery of message 12")

    assert "could not enqueue delivery of message 12: broker down" in caplog.text


def test_a_task_name_that_names_no_task_is_a_bug_not_an_outage():
    with pytest.raises(ImportError):
        enqueue("inbox.tasks.no_such_task", 1)


def test_calls_ride_along_on_a_held_task_until_it_lets_go(test_redis):
    key = f"test:once:{uuid.uuid4()}"
    with mock.patch.object(queue, "enqueue", return_value=True) as sent:
        queue.enqueue_once_hold(key, 10)  # a drain that runs
        during = [queue.enqueue_once("t", key=key, ttl_seconds=10) for _ in range(3)]
        queue.enqueue_once_release(key)  # found no work left
        after = queue.enqueue_once("t", key=key, ttl_seconds=10)

    assert during == [True] * 3 and after is True
    sent.assert_called_once()  # one task, after the release; none while the drain ran
    test_redis.delete(key)


def test_a_held_key_expires_so_a_lost_task_holds_no_call_for_long(test_redis):
    key = f"test:once:{uuid.uuid4()}"
    queue.enqueue_once_hold(key, 30)

    assert 0 < test_redis.pttl(key) <= 30_000
    test_redis.delete(key)
