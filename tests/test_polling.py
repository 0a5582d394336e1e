"""Polling ingest: a platform that does not call us is asked, page by page, from a durable
cursor; each page is stored raw and applied like a callback, once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from inbox.models import Message
from integrations.base import TransientError
from integrations.fake.provider import FakePlatform
from integrations.models import PollCursor, ProviderAccount, WebhookEvent
from integrations.services import polling

pytestmark = pytest.mark.django_db


@pytest.fixture
def polled(fake_account: ProviderAccount) -> ProviderAccount:
    return fake_account


@pytest.fixture
def platform(fake_platform: FakePlatform) -> FakePlatform:
    return fake_platform


def poll(account: ProviderAccount, capture: Any) -> int:
    with capture(execute=True):  # the stored pages are applied as callbacks are
        return polling.account_poll(str(account.pk))


def test_polled_pages_are_stored_raw_and_applied_like_callbacks_each_message_once(
    polled, platform, django_capture_on_commit_callbacks
):
    for n in range(5):
        platform.customer_writes(f"c{n % 2}", f"message {n}")

    stored = poll(polled, django_capture_on_commit_callbacks)

    assert stored == 3  # pages of 2, 2 and 1, fetched while the platform said more
    events = WebhookEvent.objects.filter(account=polled)
    assert sorted(e.path for e in events) == ["poll"] * 3
    assert {e.state for e in events} == {WebhookEvent.State.PROCESSED}
    bodies = sorted(Message.objects.filter(account=polled).values_list("body", flat=True))
    assert bodies == [f"message {n}" for n in range(5)]
    cursor = PollCursor.objects.get(account=polled)
    assert (cursor.cursor, cursor.pages, cursor.error, cursor.claimed_at) == ("5", 3, "", None)


def test_the_next_poll_starts_at_the_cursor_and_stores_only_what_is_new(
    polled, platform, django_capture_on_commit_callbacks
):
    platform.customer_writes("c1", "first")
    poll(polled, django_capture_on_commit_callbacks)

    nothing_new = poll(polled, django_capture_on_commit_callbacks)
    platform.customer_writes("c1", "second")
    one_new = poll(polled, django_capture_on_commit_callbacks)

    assert (nothing_new, one_new) == (0, 1)
    assert Message.objects.filter(account=polled).count() == 2
    assert PollCursor.objects.get(account=polled).cursor == "2"


def test_a_failing_platform_is_shown_on_the_cursor_and_the_account_and_nothing_is_skipped(
    polled, platform, django_capture_on_commit_callbacks
):
    platform.customer_writes("c1", "before the outage")
    platform.failing = TransientError("The platform is down (HTTP 503).")

    assert poll(polled, django_capture_on_commit_callbacks) == 0
    cursor = PollCursor.objects.get(account=polled)
    polled.refresh_from_db()
    assert "HTTP 503" in cursor.error and cursor.failed_at is not None
    assert "Polling the platform failed" in polled.last_error
    assert cursor.claimed_at is None  # the next poll may start

    platform.failing = None
    assert poll(polled, django_capture_on_commit_callbacks) == 1
    assert Message.objects.filter(account=polled, body="before the outage").exists()
    assert PollCursor.objects.get(account=polled).error == ""


def test_polls_of_one_account_run_one_at_a_time_and_a_dead_pollers_claim_is_taken_over(
    polled, platform, django_capture_on_commit_callbacks, settings
):
    platform.customer_writes("c1", "hello")
    PollCursor.objects.create(account=polled, claimed_at=timezone.now())

    assert poll(polled, django_capture_on_commit_callbacks) == 0
    assert platform.polls == 0  # another worker is polling it

    dead = timezone.now() - timedelta(seconds=settings.CLAIM_LEASE_SECONDS + 1)
    PollCursor.objects.filter(account=polled).update(claimed_at=dead)
    assert poll(polled, django_capture_on_commit_callbacks) == 1


def test_the_beat_queues_a_poll_of_each_polling_account_and_of_no_other(polled, account):
    with mock.patch.object(polling, "enqueue_once", return_value=True) as queued:
        assert polling.accounts_poll_due() == 1

    assert [c.args for c in queued.call_args_list] == [(polling.POLL_TASK, str(polled.pk))]


def test_the_account_admin_shows_where_polling_stands_and_why_it_failed(
    polled, platform, admin_client, django_capture_on_commit_callbacks
):
    platform.customer_writes("c1", "hello")
    poll(polled, django_capture_on_commit_callbacks)
    platform.failing = TransientError("The platform is down (HTTP 503).")
    poll(polled, django_capture_on_commit_callbacks)

    page = admin_client.get(f"/admin/integrations/provideraccount/{polled.pk}/change/")

    text = page.content.decode()
    assert page.status_code == 200
    assert "1 pages stored; next poll from &#x27;1&#x27;" in text
    assert "FAILED" in text and "HTTP 503" in text
