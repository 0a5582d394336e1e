"""The one enqueue helper: the broker refusing a task is logged, never an error for the caller."""

from __future__ import annotations

from unittest import mock

import pytest

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
