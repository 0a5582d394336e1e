"""Nothing stored is ever forgotten, and nothing is applied twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connections, transaction
from django.test import Client
from django.utils import timezone

from config.celery import app as celery_app
from inbox.models import Contact, Message, Session
from integrations.models import WebhookEvent
from integrations.services import webhooks
from integrations.services.webhooks import (
    webhook_event_process,
    webhook_events_replay,
    webhook_events_sweep,
)
from tests.conftest import load_fixture
from tests.patience import PATIENCE_SECONDS

TEXT = load_fixture("xms", "inbound-message-text")


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point Celery at a port where no broker listens, as when Redis is stopped."""
    # Celery reads CELERY_BROKER_URL from the environment before its config, so set both.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    conf = celery_app.conf
    saved = (conf.broker_url, conf.task_always_eager, conf.broker_transport_options)
    conf.broker_url = "redis://127.0.0.1:1/0"
    conf.task_always_eager = False
    conf.broker_transport_options = {"socket_connect_timeout": 1}
    _reset_broker_connections()
    try:
        yield
    finally:
        conf.broker_url, conf.task_always_eager, conf.broker_transport_options = saved
        _reset_broker_connections()


def _reset_broker_connections() -> None:
    # Forget the app's pools so the next publish connects to the (new) broker URL. Kombu keeps
    # pools in a registry keyed by URL, so the old ones stay usable for the tests after this.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.mark.django_db
def test_with_the_broker_down_a_callback_is_still_stored_and_answered(
    account, post_callback, broker_down
):
    response = post_callback(account, TEXT)

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.PENDING
    assert event.enqueued_at is None  # the sweep will pick it up
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_once_the_broker_is_back_the_sweep_processes_a_stored_callback_exactly_once(
    account, post_callback, broker_down, django_capture_on_commit_callbacks
):
    post_callback(account, TEXT)
    post_callback(account, TEXT)
    assert WebhookEvent.objects.filter(enqueued_at__isnull=True).count() == 2

    # The broker comes back (the eager test broker stands in for it).
    celery_app.conf.task_always_eager = True
    swept = webhook_events_sweep()
    again = webhook_events_sweep()

    assert swept == 2
    assert again == 0
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}
    assert Message.objects.count() == 1
    assert WebhookEvent.objects.get(pk=WebhookEvent.objects.first().pk).attempts == 1


@pytest.mark.django_db
def test_the_sweep_leaves_recently_enqueued_events_alone(account):
    WebhookEvent.objects.create(
        account=account,
        received_at=timezone.now(),
        body=json.dumps(TEXT),
        enqueued_at=timezone.now(),
    )

    assert webhook_events_sweep() == 0


@pytest.mark.django_db
def test_the_sweep_re_enqueues_an_event_whose_task_was_lost(account, settings):
    long_ago = timezone.now() - timedelta(seconds=settings.WEBHOOK_REENQUEUE_AFTER_SECONDS + 5)
    WebhookEvent.objects.create(
        account=account, received_at=long_ago, body=json.dumps(TEXT), enqueued_at=long_ago
    )

    assert webhook_events_sweep() == 1
    assert WebhookEvent.objects.get().state == WebhookEvent.State.PROCESSED


@pytest.mark.django_db
def test_callbacks_whose_drain_was_lost_are_drained_by_the_next_sweep_not_after_minutes(
    account, settings
):
    settings.WEBHOOK_DRAIN = True
    lost = timezone.now() - timedelta(seconds=settings.WEBHOOK_DRAIN_LOST_SECONDS + 1)
    recent = timezone.now()
    for at in (lost, recent):
        WebhookEvent.objects.create(
            account=account, received_at=at, body=json.dumps(TEXT), enqueued_at=at
        )

    with mock.patch("integrations.tasks.webhook_events_drain.apply_async") as drain:
        webhook_events_sweep()
        assert drain.call_count == 1  # one drain takes them all
        WebhookEvent.objects.filter(enqueued_at=lost).update(enqueued_at=recent)
        webhook_events_sweep()
        assert drain.call_count == 1  # none waits: no drain


@pytest.mark.django_db
def test_a_claim_left_by_a_killed_worker_is_reclaimed_after_the_stale_timeout(account, settings):
    stale = timezone.now() - timedelta(seconds=settings.WEBHOOK_STALE_CLAIM_SECONDS + 5)
    event = WebhookEvent.objects.create(
        account=account,
        received_at=stale,
        body=json.dumps(TEXT),
        state=WebhookEvent.State.PROCESSING,
        claimed_at=stale,
        attempts=1,
        enqueued_at=stale,
    )

    webhook_events_sweep()

    event.refresh_from_db()
    assert event.state == WebhookEvent.State.PROCESSED
    assert event.attempts == 2
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_a_task_delivered_twice_processes_the_event_once(account):
    event = WebhookEvent.objects.create(
        account=account, received_at=timezone.now(), body=json.dumps(TEXT)
    )

    first = webhook_event_process(event.pk)
    second = webhook_event_process(event.pk)

    assert first == WebhookEvent.State.PROCESSED
    assert second is None
    event.refresh_from_db()
    assert event.attempts == 1


@pytest.mark.django_db
def test_a_fresh_claim_is_not_stolen_by_a_second_task(account):
    event = WebhookEvent.objects.create(
        account=account,
        received_at=timezone.now(),
        body=json.dumps(TEXT),
        state=WebhookEvent.State.PROCESSING,
        claimed_at=timezone.now(),
    )

    assert webhook_event_process(event.pk) is None
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_a_processing_error_marks_the_event_failed_with_the_reason_and_keeps_the_body(
    account, post_callback
):
    with mock.patch("inbox.services.inbound.identity_upsert", side_effect=ValueError("no way")):
        post_callback(account, TEXT)

    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.FAILED
    assert "ValueError: no way" in event.error
    assert json.loads(event.body) == TEXT
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_a_malformed_item_is_skipped_with_a_warning_and_the_rest_still_lands(
    account, post_callback
):
    body = json.loads(json.dumps(TEXT))
    body["statuses"] = [{"id": "x", "status": "READ", "errors": ["oops"]}]
    body["events"] = "not-a-list"

    post_callback(account, body)

    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.PROCESSED
    assert Message.objects.count() == 1
    assert any("statuses[0]: skipped" in w for w in event.warnings)
    assert any("events: skipped: should be an array" in w for w in event.warnings)


@pytest.mark.django_db
def test_a_callback_of_nothing_but_malformed_items_is_ignored_with_the_reasons(
    account, post_callback
):
    post_callback(account, {"messages": [{"id": "1", "type": "text", "text": "not an object"}]})

    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.IGNORED
    assert "messages[0]" in event.error


@pytest.mark.django_db
def test_nul_characters_are_replaced_rather_than_failing_on_postgresql(account, post_callback):
    body = json.loads(json.dumps(TEXT))
    body["messages"][0]["text"]["body"] = "nul\u0000here".encode().decode("unicode_escape")
    body["contacts"][0]["profile"]["name"] = "Jo\u0000hn".encode().decode("unicode_escape")

    post_callback(account, body)

    assert WebhookEvent.objects.get().state == WebhookEvent.State.PROCESSED
    assert Message.objects.get().body == "nul\ufffdhere"
    assert Contact.objects.get().identities.get().profile_name == "Jo\ufffdhn"


@pytest.mark.django_db
def test_an_event_whose_body_kills_the_worker_every_time_is_given_up(account, settings):
    stale = timezone.now() - timedelta(seconds=settings.WEBHOOK_STALE_CLAIM_SECONDS + 5)
    event = WebhookEvent.objects.create(
        account=account,
        received_at=stale,
        body=json.dumps(TEXT),
        enqueued_at=stale,
        state=WebhookEvent.State.PROCESSING,
        claimed_at=stale,
        attempts=settings.WEBHOOK_MAX_ATTEMPTS,
    )

    assert webhook_event_process(event.pk) is None

    event.refresh_from_db()
    assert event.state == WebhookEvent.State.FAILED
    assert "gave up" in event.error


@pytest.mark.django_db
def test_a_failure_half_way_rolls_back_everything_the_event_did(account, post_callback):
    with mock.patch(
        "inbox.services.inbound._session_note_inbound", side_effect=RuntimeError("boom")
    ):
        post_callback(account, TEXT)

    assert WebhookEvent.objects.get().state == WebhookEvent.State.FAILED
    assert not Message.objects.exists()
    assert not Session.objects.exists()
    assert not Contact.objects.exists()


@pytest.mark.django_db
def test_a_failed_event_replayed_after_the_fix_is_processed(
    account, post_callback, django_capture_on_commit_callbacks
):
    with mock.patch(
        "inbox.services.inbound._session_note_inbound", side_effect=RuntimeError("bug")
    ):
        post_callback(account, TEXT)
    assert WebhookEvent.objects.get().state == WebhookEvent.State.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        replayed = webhook_events_replay(WebhookEvent.objects.all())

    assert replayed == 1
    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.PROCESSED
    assert event.error == ""
    assert event.attempts == 2
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_replaying_a_processed_event_does_nothing(account, post_callback):
    post_callback(account, TEXT)

    assert webhook_events_replay(WebhookEvent.objects.all()) == 0


@pytest.mark.django_db
def test_the_replay_command_replays_failed_events(
    account, post_callback, capsys, django_capture_on_commit_callbacks
):
    with mock.patch(
        "inbox.services.inbound._session_note_inbound", side_effect=RuntimeError("bug")
    ):
        post_callback(account, TEXT)

    with django_capture_on_commit_callbacks(execute=True):
        call_command("webhook_events_replay")

    assert "Replaying 1 event(s)." in capsys.readouterr().out
    assert WebhookEvent.objects.get().state == WebhookEvent.State.PROCESSED
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_a_database_outage_during_processing_leaves_the_event_pending_for_a_retry(account):
    from django.db import OperationalError

    event = WebhookEvent.objects.create(
        account=account, received_at=timezone.now(), body=json.dumps(TEXT)
    )
    with (
        mock.patch(
            "inbox.services.inbound.messages_apply_bulk", side_effect=OperationalError("db gone")
        ),
        pytest.raises(OperationalError),
    ):
        webhook_event_process(event.pk)

    event.refresh_from_db()
    assert event.state == WebhookEvent.State.PENDING


@pytest.mark.django_db
def test_an_enqueue_failure_part_way_marks_only_the_unsent_events(account):
    events = [
        WebhookEvent.objects.create(
            account=account, received_at=timezone.now(), body="{}", enqueued_at=timezone.now()
        )
        for _ in range(3)
    ]
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise ConnectionError("broker went away")

    with mock.patch("integrations.tasks.webhook_event_process.apply_async", side_effect=flaky):
        sent = webhooks.webhook_events_enqueue([e.pk for e in events])

    assert sent == 1
    assert [e.enqueued_at is None for e in WebhookEvent.objects.order_by("pk")] == [
        False,
        True,
        True,
    ]


# --- Concurrency, on PostgreSQL --------------------------------------------------------------


def _post_concurrently(account, bodies: list[dict]) -> list[int]:
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(body: dict) -> None:
        try:
            client = Client()
            barrier.wait(timeout=PATIENCE_SECONDS)
            response = client.post(
                account.webhook_path,
                data=json.dumps(body),
                content_type="application/json",
                HTTP_X_VERIFY_TOKEN=account.verify_token,
            )
            with lock:
                statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=PATIENCE_SECONDS)
    return statuses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_callback_posted_concurrently_is_one_message(account):
    statuses = _post_concurrently(account, [TEXT] * 8)

    assert statuses == [200] * 8
    assert WebhookEvent.objects.count() == 8
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}
    assert Message.objects.count() == 1
    assert Session.objects.count() == 1
    assert Session.objects.get().unread_count == 1
    assert Contact.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_receipt_posted_concurrently_is_one_receipt(account):
    from inbox.models import MessageReceipt
    from tests.factories import OutboundMessageFactory, SessionFactory

    message = OutboundMessageFactory(session=SessionFactory(account=account), external_id="1234567")
    statuses = _post_concurrently(account, [load_fixture("xms", "inbound-status-read")] * 6)

    assert statuses == [200] * 6
    assert MessageReceipt.objects.count() == 1
    message.refresh_from_db()
    assert message.status == Message.Status.READ
    assert message.status_changes.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_messages_from_a_new_customer_make_one_contact_and_one_session(account):
    bodies = []
    for i in range(6):
        body = json.loads(json.dumps(TEXT))
        body["messages"][0]["id"] = f"msg-{i}"
        bodies.append(body)

    statuses = _post_concurrently(account, bodies)

    assert statuses == [200] * 6
    assert Message.objects.count() == 6
    assert Contact.objects.count() == 1
    assert Session.objects.count() == 1
    assert Session.objects.get().unread_count == 6


@pytest.mark.django_db(transaction=True)
def test_a_callback_is_enqueued_only_after_its_row_is_committed(account):
    seen: list[bool] = []

    def check(*args: object, **kwargs: object) -> None:
        event_id = kwargs["args"][0]  # type: ignore[index]

        def look() -> None:
            try:
                seen.append(WebhookEvent.objects.filter(pk=event_id).exists())
            finally:
                connections.close_all()

        other = threading.Thread(target=look)
        other.start()
        other.join()

    with (
        mock.patch("integrations.tasks.webhook_event_process.apply_async", side_effect=check),
        transaction.atomic(),
    ):
        webhooks.webhook_event_receive(account, body=json.dumps(TEXT), headers={})
        assert seen == []
    # Checked from the enqueue callback on a connection of its own: the row was committed.
    assert seen == [True]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_messages_without_a_session_id_share_one_session(account):
    bodies = []
    for i in range(6):
        body = json.loads(json.dumps(TEXT))
        body["messages"][0]["id"] = f"no-session-{i}"
        del body["messages"][0]["session"]
        bodies.append(body)

    assert _post_concurrently(account, bodies) == [200] * 6

    assert Message.objects.count() == 6
    assert Session.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_new_sessions_for_one_customer_leave_only_the_newest_open(account):
    bodies = []
    for i in range(5):
        body = json.loads(json.dumps(TEXT))
        body["messages"][0].update(id=f"m{i}", timestamp=1700000000000 + i * 60_000)
        body["messages"][0]["session"]["sessionId"] = f"session-{i}"
        bodies.append(body)

    assert _post_concurrently(account, bodies) == [200] * 5

    open_sessions = list(
        Session.objects.exclude(status=Session.Status.CLOSED).values_list("external_id", flat=True)
    )
    assert open_sessions == ["session-4"]


def test_every_event_goes_to_the_workers_and_the_web_process_only_waits_as_a_fallback(
    settings, monkeypatch
):
    from integrations.services import webhooks

    settings.WEBHOOK_PROCESS_IN_WEB = True
    settings.WEBHOOK_INLINE_BACKLOG = 1
    settings.WEBHOOK_INLINE_DELAY_SECONDS = 1.0
    submitted: list[tuple[int, float]] = []
    enqueued: list[list[int]] = []
    monkeypatch.setattr(
        webhooks._inline_pool, "submit", lambda fn, event_id, due: submitted.append((event_id, due))
    )
    monkeypatch.setattr(webhooks, "webhook_events_enqueue", lambda ids: enqueued.append(list(ids)))
    monkeypatch.setattr(webhooks, "_inline_backlog", 0)
    monkeypatch.setattr(webhooks.time, "monotonic", lambda: 100.0)

    webhooks._dispatch(101)  # room in this process: a fallback is scheduled a second later
    webhooks._dispatch(102)  # backlog full: the workers alone

    assert enqueued == [[101], [102]]
    assert submitted == [(101, 101.0)]


@pytest.mark.django_db(transaction=True)
def test_the_web_fallback_leaves_an_event_a_worker_processed_alone(account, monkeypatch):
    from integrations.services import webhooks

    event = WebhookEvent.objects.create(
        account=account, received_at=timezone.now(), body=json.dumps(TEXT), headers={}
    )
    assert webhook_event_process(event.pk) == WebhookEvent.State.PROCESSED  # the worker
    calls: list[int] = []
    monkeypatch.setattr(webhooks, "_inline_backlog", 1)
    real = webhooks.webhook_event_process
    monkeypatch.setattr(webhooks, "webhook_event_process", lambda pk: calls.append(pk) or real(pk))

    webhooks._process_inline(event.pk, due=0.0)  # the fallback, its delay over

    event.refresh_from_db()
    assert calls == [event.pk]
    assert event.attempts == 1
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_message_whose_insert_loses_a_race_is_applied_again_and_counted_once(account):
    from django.db.models import QuerySet

    first = WebhookEvent.objects.create(
        account=account, received_at=timezone.now(), body=json.dumps(TEXT), headers={}
    )
    assert webhook_event_process(first.pk) == WebhookEvent.State.PROCESSED
    second = WebhookEvent.objects.create(
        account=account, received_at=timezone.now(), body=json.dumps(TEXT), headers={}
    )
    real_exists = QuerySet.exists
    checks: list[bool] = []

    def raced(self: QuerySet[Any]) -> bool:
        answer = real_exists(self)
        if self.model is Message and not checks:
            checks.append(answer)
            return False  # as if the other delivery had not committed yet
        return answer

    with mock.patch.object(QuerySet, "exists", raced):
        state = webhook_event_process(second.pk)

    assert checks == [True]  # the race happened: the insert hit the unique constraint
    assert state == WebhookEvent.State.PROCESSED
    assert Message.objects.count() == 1
    assert Session.objects.get().unread_count == 1


@pytest.mark.django_db
def test_an_identity_inserted_by_another_worker_meanwhile_is_taken_and_our_contact_dropped(account):
    from inbox.models import ContactIdentity
    from inbox.services.contacts import _identity_create
    from integrations.base import ContactProfile

    theirs = ContactIdentity.objects.create(
        account=account,
        external_id="wa1_2",
        contact=Contact.objects.create(account=account, phone="4400"),
        medium="whatsapp",
    )
    profile = ContactProfile(external_id="wa1_2", phone="5500", medium="whatsapp")

    ours = _identity_create(account, profile, channel=None, phone="5500")

    assert ours.pk == theirs.pk
    assert not Contact.objects.filter(phone="5500").exists()  # the one made for it is gone


@pytest.mark.django_db
def test_a_session_opened_by_another_worker_meanwhile_is_taken_not_duplicated(account):
    from inbox.services.sessions import _session_open
    from integrations.base import SessionRef
    from tests.factories import ContactIdentityFactory, SessionFactory

    theirs = SessionFactory(account=account, external_id="s-race")
    identity = ContactIdentityFactory(account=account, contact=theirs.contact)

    ours = _session_open(
        account,
        channel=theirs.channel,
        identity=identity,
        ref=SessionRef(external_id="s-race"),
        at=timezone.now(),
    )

    assert ours.pk == theirs.pk
    assert Session.objects.filter(external_id="s-race").count() == 1
