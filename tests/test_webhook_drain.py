"""Fresh callbacks are applied in batches by drain tasks, one Redis kick per burst."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import redis
from django.db import OperationalError
from django.utils import timezone

from config.redis import redis_client
from inbox.models import Message, Session
from integrations.models import ProviderAccount, WebhookEvent
from integrations.services import webhooks
from integrations.services.webhooks import webhook_events_drain, webhook_events_kick
from tests.conftest import TEST_REDIS_URL, load_fixture, redis_up
from tests.inbox_state import (
    inbox_state,
    live_events_named,
    live_events_published,
    state_differences,
)

TEXT = load_fixture("xms", "inbound-message-text")
KICK_REDIS = TEST_REDIS_URL


def _text(number: int) -> str:
    body = copy.deepcopy(TEXT)
    message = body["messages"][0]
    message["id"] = message["messageIdExt"] = f"drain-{number}"
    message["text"]["body"] = f"message {number}"
    return json.dumps(body)


def _stored(account: ProviderAccount, number: int, **fields: Any) -> WebhookEvent:
    now = timezone.now()
    values: dict[str, Any] = {"received_at": now, "enqueued_at": now, "headers": {}}
    values.update(fields)
    return WebhookEvent.objects.create(account=account, body=_text(number), **values)


def _spy_one_at_a_time() -> Any:
    """Watch the callbacks the inbox applies one at a time (not in bulk)."""
    from inbox.services import inbound

    return mock.patch.object(inbound, "_one_apply", side_effect=inbound._one_apply)


@pytest.fixture
def kicks(settings: Any) -> Iterator[redis.Redis]:
    if not redis_up(KICK_REDIS):
        pytest.skip(f"needs Redis at {KICK_REDIS}")
    settings.REDIS_URL = KICK_REDIS
    redis_client.cache_clear()
    client = redis.Redis.from_url(KICK_REDIS)
    client.delete(webhooks.KICK_KEY)
    yield client
    client.delete(webhooks.KICK_KEY)
    redis_client.cache_clear()


@pytest.mark.django_db
def test_a_drain_applies_every_fresh_event_in_the_order_received(account):
    events = [_stored(account, n) for n in range(5)]

    assert webhook_events_drain(batch=2) == 5

    assert {e.state for e in WebhookEvent.objects.all()} == {WebhookEvent.State.PROCESSED}
    assert list(Message.objects.order_by("id").values_list("body", flat=True)) == [
        f"message {n}" for n in range(5)
    ]
    assert [e.attempts for e in WebhookEvent.objects.filter(pk__in=[e.pk for e in events])] == [
        1
    ] * 5


@pytest.mark.django_db
def test_a_drain_leaves_deferred_synchronous_and_unenqueued_events_to_their_own_paths(account):
    deferred = _stored(account, 1, attempts=1, error="Deferred: not known yet")
    synchronous = _stored(account, 2, enqueued_at=None)  # its request is processing it
    taken = _stored(account, 3, state=WebhookEvent.State.PROCESSING, attempts=1)

    assert webhook_events_drain() == 0

    for event in (deferred, synchronous, taken):
        before = event.state
        event.refresh_from_db()
        assert event.state == before
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_a_drain_hands_back_what_it_did_not_try_when_the_database_fails(account):
    from inbox.services import inbound
    from tests.factories import ProviderAccountFactory

    failing, later = ProviderAccountFactory(), ProviderAccountFactory()
    events = [_stored(account, 0), _stored(failing, 1), _stored(failing, 2), _stored(later, 3)]
    real = inbound.callbacks_apply

    def outage_for_one_account(on: ProviderAccount, run: Any, settle: Any) -> None:
        if on.pk == failing.pk:
            raise OperationalError("server closed the connection unexpectedly")
        real(on, run, settle)

    with (
        mock.patch.object(inbound, "callbacks_apply", side_effect=outage_for_one_account),
        pytest.raises(OperationalError),
    ):
        webhook_events_drain(batch=4)

    first, *untried = (WebhookEvent.objects.get(pk=e.pk) for e in events)
    assert first.state == WebhookEvent.State.PROCESSED  # its account's run committed
    # The failed run and the runs after it go back fresh, untried.
    assert [(e.state, e.attempts) for e in untried] == [(WebhookEvent.State.PENDING, 0)] * 3
    assert webhook_events_drain() == 3  # the drain's retry takes them all
    assert Message.objects.filter(account__in=[failing, later]).count() == 3


@pytest.mark.django_db
def test_the_event_applied_alone_when_the_database_failed_gets_its_own_retrying_task(account):
    from inbox.services import inbound

    events = [_stored(account, n) for n in range(3)]
    real = inbound._callback_apply
    calls: list[int] = []

    def second_fails(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    with (
        mock.patch.object(inbound, "messages_apply_bulk", return_value=set()),  # all alone
        mock.patch.object(inbound, "_callback_apply", side_effect=second_fails),
        mock.patch.object(webhooks, "webhook_events_enqueue") as enqueue,
        pytest.raises(OperationalError),
    ):
        webhook_events_drain(batch=3)

    first, failed, untried = (WebhookEvent.objects.get(pk=e.pk) for e in events)
    assert first.state == WebhookEvent.State.PROCESSED
    assert (failed.state, failed.attempts) == (WebhookEvent.State.PENDING, 1)
    enqueue.assert_called_once_with([failed.pk])  # its own task retries it with backoff
    assert (untried.state, untried.attempts) == (WebhookEvent.State.PENDING, 0)
    assert webhook_events_drain() == 1  # the next drain takes the untried one


@pytest.mark.django_db
def test_each_drain_over_its_time_budget_hands_over_to_a_successor_of_its_own(account, kicks):
    for n in range(3):
        _stored(account, n)
    # Both drains started a while ago, and since then a callback has queued another drain.
    kicks.set(webhooks.KICK_KEY, b"1")

    with (
        mock.patch.object(webhooks, "enqueue_once_started"),
        mock.patch("integrations.tasks.webhook_events_drain.apply_async") as enqueue,
    ):
        assert webhook_events_drain(batch=1, budget_seconds=0) == 1
        assert webhook_events_drain(batch=1, budget_seconds=0) == 1

    assert enqueue.call_count == 2  # two drains out of budget leave two drains behind
    assert WebhookEvent.objects.filter(state=WebhookEvent.State.PENDING).count() == 1


@pytest.mark.django_db
def test_one_drain_task_is_queued_per_burst_and_the_next_callback_after_it_starts_queues_another(
    account, kicks
):
    with mock.patch("integrations.tasks.webhook_events_drain.apply_async") as enqueue:
        assert webhook_events_kick()
        assert webhook_events_kick()
        assert webhook_events_kick()
        assert enqueue.call_count == 1  # the queued drain will find all three

        webhook_events_drain()  # it starts: the next callback needs a new one
        assert webhook_events_kick()
        assert enqueue.call_count == 2

    assert 0 < kicks.pttl(webhooks.KICK_KEY) <= 10_000  # a lost task cannot block kicks for long


@pytest.mark.django_db
def test_a_kick_the_broker_refuses_falls_back_to_a_task_per_event(account, kicks):
    with mock.patch(
        "integrations.tasks.webhook_events_drain.apply_async", side_effect=OSError("refused")
    ):
        assert not webhook_events_kick()
    assert not kicks.exists(webhooks.KICK_KEY)  # the next callback tries again


@pytest.mark.django_db
def test_without_redis_there_is_no_kick_and_each_callback_gets_its_own_task(settings):
    settings.REDIS_URL = ""
    redis_client.cache_clear()
    try:
        assert not webhook_events_kick()
    finally:
        redis_client.cache_clear()


def test_the_webhook_kicks_a_drain_when_draining_is_on_and_enqueues_per_event_otherwise(
    settings, monkeypatch
):
    settings.WEBHOOK_PROCESS_IN_WEB = False
    enqueued: list[list[int]] = []
    monkeypatch.setattr(webhooks, "webhook_events_enqueue", lambda ids: enqueued.append(list(ids)))
    monkeypatch.setattr(webhooks, "webhook_events_kick", lambda: True)

    settings.WEBHOOK_DRAIN = True
    webhooks._dispatch(1)
    assert enqueued == []

    settings.WEBHOOK_DRAIN = False
    webhooks._dispatch(2)
    assert enqueued == [[2]]


@pytest.mark.django_db
def test_an_event_stuck_in_an_old_drain_is_swept_like_any_other(account, settings):
    stale = timezone.now() - timedelta(seconds=settings.WEBHOOK_STALE_CLAIM_SECONDS + 1)
    event = _stored(account, 1, state=WebhookEvent.State.PROCESSING, attempts=1, claimed_at=stale)

    with mock.patch.object(webhooks, "webhook_events_enqueue", return_value=1) as enqueue:
        assert webhooks.webhook_events_sweep() == 1
    enqueue.assert_called_once_with([event.pk])


@pytest.mark.django_db
def test_a_channel_found_by_its_id_is_kept_for_a_few_seconds_and_forgotten_on_demand(
    account, settings, django_assert_num_queries
):
    from integrations.models import Channel
    from integrations.services.channels import channel_resolve, channels_cache_clear

    settings.CHANNEL_CACHE_SECONDS = 5.0
    channels_cache_clear()
    channel = Channel.objects.create(account=account, external_id="wa:1", medium="whatsapp")
    try:
        with django_assert_num_queries(1):
            assert channel_resolve(account, external_id="wa:1") == channel
        with django_assert_num_queries(0):
            assert channel_resolve(account, external_id="wa:1") == channel
        channels_cache_clear()
        with django_assert_num_queries(1):
            assert channel_resolve(account, external_id="wa:1") == channel
    finally:
        channels_cache_clear()


# --- Runs of everyday messages, applied in bulk ------------------------------------------------


def _plain(number: int, *, at_ms: int, session: str = "xsds34434", **ref: str) -> str:
    """A customer message with a valid timestamp (the fixture's draws a warning)."""
    body = json.loads(_text(number))
    message = body["messages"][0]
    message["timestamp"] = at_ms
    message["session"].update(sessionId=session, **ref)
    return json.dumps(body)


def _store_bodies(account: ProviderAccount, bodies: list[str]) -> list[WebhookEvent]:
    now = timezone.now()
    return [
        WebhookEvent.objects.create(
            account=account, body=body, received_at=now, enqueued_at=now, headers={}
        )
        for body in bodies
    ]


def _session_state(account: ProviderAccount) -> list[tuple[Any, ...]]:
    from inbox.models import Session

    return list(
        Session.objects.filter(account=account)
        .order_by("external_id")
        .values_list(
            "external_id",
            "status",
            "unread_count",
            "last_inbound_at",
            "last_activity_at",
            "last_message__external_id",
            "routing_id",
            "platform_agent",
        )
    )


def _messages(account: ProviderAccount) -> list[tuple[Any, ...]]:
    return list(
        Message.objects.filter(account=account)
        .order_by("id")
        .values_list("external_id", "body", "session__external_id", "sent_at", "status")
    )


@pytest.mark.django_db
def test_a_run_of_messages_from_a_returning_customer_is_applied_in_a_few_statements(
    account, django_assert_max_num_queries
):
    base = 1_790_000_000_000
    webhook_events_drain(batch=1)  # nothing yet
    _store_bodies(account, [_plain(0, at_ms=base)])
    webhook_events_drain()  # the first message opens the session, one by one
    _store_bodies(account, [_plain(n, at_ms=base + n * 1000) for n in range(1, 21)])

    with (
        _spy_one_at_a_time() as one_by_one,
        # One by one takes about nine statements a message; here about 17 in all: claiming,
        # channel, identities, sessions, stored ids, one insert, one update of each table.
        django_assert_max_num_queries(20),
    ):
        assert webhook_events_drain(batch=20) == 20

    one_by_one.assert_not_called()
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}
    (session,) = _session_state(account)
    assert session[2] == 21  # unread
    assert session[5] == "drain-20"  # the newest is the last message
    assert [m[1] for m in _messages(account)] == [f"message {n}" for n in range(21)]


@pytest.mark.django_db
def test_bulk_and_one_by_one_leave_the_inbox_in_the_same_state(django_assert_max_num_queries):
    from tests.factories import ProviderAccountFactory

    base = 1_790_000_000_000
    bodies = [
        _plain(0, at_ms=base),
        _plain(1, at_ms=base + 1000),
        _plain(2, at_ms=base + 500),  # arrived late: older than the one before
        _plain(3, at_ms=base + 2000),
        _plain(4, at_ms=base + 3000, routingId="r-2", assignedToAgent="ann"),  # reassigned
        _plain(5, at_ms=base + 4000, routingId="r-2", assignedToAgent="ann"),
        _plain(2, at_ms=base + 500),  # a redelivery
        _plain(6, at_ms=base + 5000, session="another"),  # a new session for the customer
        _plain(7, at_ms=base + 6000, session="another"),
        _plain(8, at_ms=base + 7000),  # the old session's late message: stays where it is
    ]
    one, bulk = ProviderAccountFactory(), ProviderAccountFactory()
    for event in _store_bodies(one, bodies):
        webhooks.webhook_event_process(event.pk)
    _store_bodies(bulk, bodies)
    webhook_events_drain(batch=4)

    assert _session_state(bulk) == _session_state(one)
    assert _messages(bulk) == _messages(one)
    assert state_differences(inbox_state(bulk), inbox_state(one)) == {}
    states = {"one": [], "bulk": []}
    for name, acc in (("one", one), ("bulk", bulk)):
        states[name] = list(
            WebhookEvent.objects.filter(account=acc).order_by("id").values_list("state", "kind")
        )
    assert states["bulk"] == states["one"]


@pytest.mark.django_db
def test_a_message_to_a_resolved_session_is_applied_alone_and_reopens_it(account):
    from inbox.models import Session

    base = 1_790_000_000_000
    _store_bodies(account, [_plain(0, at_ms=base)])
    webhook_events_drain()
    Session.objects.update(status=Session.Status.RESOLVED)
    _store_bodies(account, [_plain(1, at_ms=base + 1000), _plain(2, at_ms=base + 2000)])

    with _spy_one_at_a_time() as one_by_one:
        assert webhook_events_drain() == 2

    # The reopening message, and the next one for the same session after it, in order.
    assert one_by_one.call_count == 2
    session = Session.objects.get()
    assert (session.status, session.unread_count) == (Session.Status.OPEN, 3)
    assert session.timeline.filter(kind="reopened").count() == 1


@pytest.mark.django_db
def test_a_run_that_loses_an_insert_race_is_applied_one_by_one_instead(account):
    from django.db import IntegrityError

    base = 1_790_000_000_000
    _store_bodies(account, [_plain(0, at_ms=base)])
    webhook_events_drain()
    _store_bodies(account, [_plain(1, at_ms=base + 1000), _plain(2, at_ms=base + 2000)])

    with mock.patch(
        "inbox.services.inbound_bulk.Message.objects.bulk_create", side_effect=IntegrityError("dup")
    ):
        assert webhook_events_drain() == 2

    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}
    assert Message.objects.count() == 3


def _customer(number: int, who: str, at_ms: int, *, contact_id: str = "", name: str = "") -> str:
    """A plain message from customer `who` (their phone) in their own session."""
    body = json.loads(_plain(number, at_ms=at_ms, session=f"s-{contact_id or who}"))
    contact_id = contact_id or f"wa{who}_918828218374"
    body["contacts"][0]["contactId"] = body["messages"][0]["contactId"] = contact_id
    body["contacts"][0]["profile"]["phone"] = who
    if name:
        body["contacts"][0]["profile"]["name"] = name
    body["messages"][0]["from"] = who
    return json.dumps(body)


@pytest.mark.django_db
def test_a_customer_applied_alone_holds_up_only_messages_of_their_ids_and_phone():
    from inbox.models import Contact
    from tests.factories import ProviderAccountFactory

    base = 1_790_000_000_000
    first = [_customer(0, "111", base), _customer(1, "333", base + 1)]
    later = [
        # A new identity with 111's phone joins that contact (and may close its session on
        # the same channel), which is done one by one...
        _customer(2, "111", base + 1000, contact_id="sms111"),
        _customer(3, "111", base + 2000),  # ...so 111's own next message waits for it
        _customer(4, "333", base + 3000),  # someone else's does not
        _customer(5, "111", base + 4000, contact_id="sms111"),
    ]
    one, bulk = ProviderAccountFactory(), ProviderAccountFactory()
    for event in _store_bodies(one, first + later):
        webhooks.webhook_event_process(event.pk)
    _store_bodies(bulk, first)
    webhook_events_drain()  # returning customers from here on
    alone, owner, _other, alone_again = _store_bodies(bulk, later)

    with _spy_one_at_a_time() as one_by_one:
        assert webhook_events_drain() == 4

    assert [call.args[1].key for call in one_by_one.call_args_list] == [
        alone.pk,
        owner.pk,
        alone_again.pk,
    ]
    assert _customers_state(bulk) == _customers_state(one)
    assert state_differences(inbox_state(bulk), inbox_state(one)) == {}
    assert Contact.objects.filter(account=bulk).count() == 2


@pytest.mark.django_db
def test_a_new_customer_whose_phone_an_earlier_callback_in_the_run_names_is_applied_alone():
    from tests.factories import ProviderAccountFactory

    base = 1_790_000_000_000
    sessionless = json.loads(_customer(0, "777", base))
    del sessionless["messages"][0]["session"]  # not plain: applied alone, after the bulk run
    bodies = [
        json.dumps(sessionless),
        _customer(1, "777", base + 1000, contact_id="tg777"),  # new, with the same phone
        _customer(2, "888", base + 2000),
    ]
    one, bulk = ProviderAccountFactory(), ProviderAccountFactory()
    for event in _store_bodies(one, bodies):
        webhooks.webhook_event_process(event.pk)
    first, same_phone, _ = _store_bodies(bulk, bodies)

    with _spy_one_at_a_time() as one_by_one:
        assert webhook_events_drain() == 3

    assert [call.args[1].key for call in one_by_one.call_args_list] == [first.pk, same_phone.pk]
    assert _customers_state(bulk) == _customers_state(one)
    assert state_differences(inbox_state(bulk), inbox_state(one)) == {}


def _customers_state(account: ProviderAccount) -> dict[str, list[tuple[Any, ...]]]:
    from inbox.models import Contact, ContactIdentity, TimelineEntry

    return {
        "contacts": sorted(
            Contact.objects.filter(account=account).values_list("phone", "name", "profile")
        ),
        "identities": sorted(
            ContactIdentity.objects.filter(account=account).values_list(
                "external_id",
                "contact__phone",
                "channel__external_id",
                "medium",
                "address",
                "profile_name",
                "raw",
            )
        ),
        "sessions": sorted((*row[:-1], str(row[-1])) for row in _session_state(account)),
        "session owners": sorted(
            Session.objects.filter(account=account).values_list(
                "external_id",
                "contact__phone",
                "identity__external_id",
                "channel__external_id",
                "opened_at",
                "assignee__username",
            )
        ),
        "timeline": sorted(
            TimelineEntry.objects.filter(account=account).values_list(
                "session__external_id", "contact__phone", "kind", "summary", "occurred_at"
            )
        ),
        "messages": sorted(_messages(account)),
    }


@pytest.mark.django_db
def test_new_customers_are_applied_in_bulk_leaving_the_inbox_as_one_by_one_would(
    django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    from tests.factories import AgentProfileFactory, ProviderAccountFactory

    base = 1_790_000_000_000
    bodies = [
        _customer(0, "201", base),
        _customer(1, "202", base + 100, name="Ana"),
        _customer(2, "201", base + 200),  # the new customer's second message
        _customer(3, "203", base + 300),
        _customer(4, "202", base + 400, name="Ana Lima"),  # a new name on their profile
        _customer(5, "204", base + 500, contact_id="other-id-same-phone-as-203")
        .replace('"from": "204"', '"from": "203"')
        .replace('"phone": "204"', '"phone": "203"'),  # a second new identity, 203's phone
    ]
    AgentProfileFactory(platform_code="SUPPORT")  # the platform's agent code in every message
    one, bulk = ProviderAccountFactory(), ProviderAccountFactory()
    stored = _store_bodies(one, bodies)
    with live_events_published() as one_told, django_capture_on_commit_callbacks(execute=True):
        for event in stored:
            webhooks.webhook_event_process(event.pk)
    _store_bodies(bulk, bodies)

    with (
        live_events_published() as bulk_told,
        django_capture_on_commit_callbacks(execute=True),
        _spy_one_at_a_time() as one_by_one,
        # (62: opening a session looks up the customer's previous one on the channel, whose
        # owner and labels it may keep (SESSION_CARRY_OVER_HOURS): once for the bulk run and
        # once for the identity applied alone.)
        django_assert_max_num_queries(62),
    ):
        assert webhook_events_drain(batch=10) == 6

    # Only the identity that joins a contact made in the same run waits to go alone.
    assert len(one_by_one.call_args_list) == 1
    assert _customers_state(bulk) == _customers_state(one)
    assert state_differences(inbox_state(bulk), inbox_state(one)) == {}
    # Agents' pages are told the same things (each new message, each new session).
    assert live_events_named(bulk_told) == live_events_named(one_told)
    assert len(one_told) >= len(bodies)
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}


@pytest.mark.django_db
def test_the_statements_for_new_customers_do_not_grow_with_their_number(
    account, django_assert_max_num_queries
):
    from inbox.models import Session, TimelineEntry

    base = 1_790_000_000_000
    _store_bodies(account, [_customer(n, str(300 + n), base + n) for n in range(40)])

    with (
        _spy_one_at_a_time() as one_by_one,
        # Claiming, channel, identities, sessions, stored ids, phones; then one insert each
        # of contacts, identities, sessions, timeline, messages (SQLite splits some in two);
        # one session update; the events marked processed; savepoints; the empty claim that
        # ends the drain. One by one this takes about twenty a message: 800.
        django_assert_max_num_queries(30),
    ):
        assert webhook_events_drain(batch=40) == 40

    one_by_one.assert_not_called()
    assert Session.objects.filter(account=account, unread_count=1).count() == 40
    assert TimelineEntry.objects.filter(account=account, kind="opened").count() == 40


@pytest.mark.django_db
def test_a_new_customer_inserted_meanwhile_by_another_worker_is_found_one_by_one(account):
    from django.db import IntegrityError

    base = 1_790_000_000_000
    _store_bodies(account, [_customer(0, "401", base), _customer(1, "402", base + 1)])

    with mock.patch(
        "inbox.services.contacts.ContactIdentity.objects.bulk_create",
        side_effect=IntegrityError("duplicate key value violates unique constraint"),
    ):
        assert webhook_events_drain() == 2

    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}
    assert Message.objects.filter(account=account).count() == 2


@pytest.mark.django_db
def test_a_bulk_run_that_loses_a_race_once_is_applied_in_bulk_again(account):
    from django.db import IntegrityError

    from inbox.models import ContactIdentity

    base = 1_790_000_000_000
    _store_bodies(account, [_customer(0, "501", base), _customer(1, "502", base + 1)])
    real_bulk_create = ContactIdentity.objects.bulk_create
    calls = mock.Mock(
        side_effect=[IntegrityError("duplicate key value violates unique constraint"), None]
    )

    def lose_the_first_race(*args: Any, **kwargs: Any) -> Any:
        calls()
        return real_bulk_create(*args, **kwargs)

    with (
        mock.patch(
            "inbox.services.contacts.ContactIdentity.objects.bulk_create",
            side_effect=lose_the_first_race,
        ),
        _spy_one_at_a_time() as one_by_one,
    ):
        assert webhook_events_drain() == 2

    assert calls.call_count == 2
    one_by_one.assert_not_called()
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}
    assert ContactIdentity.objects.filter(account=account).count() == 2


@pytest.mark.django_db
def test_a_bulk_run_that_hits_a_database_outage_hands_every_event_back_untried(account):
    base = 1_790_000_000_000
    _store_bodies(account, [_plain(0, at_ms=base)])
    webhook_events_drain()
    events = _store_bodies(account, [_plain(1, at_ms=base + 1000), _plain(2, at_ms=base + 2000)])

    with (
        mock.patch(
            "inbox.services.inbound_bulk.Message.objects.bulk_create",
            side_effect=OperationalError("server closed the connection unexpectedly"),
        ),
        pytest.raises(OperationalError),
    ):
        webhook_events_drain()

    for event in events:
        event.refresh_from_db()
        assert (event.state, event.attempts) == (WebhookEvent.State.PENDING, 0)
    assert webhook_events_drain() == 2  # the retry takes them all


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_bulk_run_holds_its_customers_until_it_commits_so_another_run_waits_for_them(account):
    import psycopg
    from django.db import connection, transaction

    from inbox.services.inbound_bulk import _customers_lock

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    key = f"customer:{account.pk}:wa601_918828218374"
    probe = "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))"
    with psycopg.connect(**params, autocommit=True) as other:
        with transaction.atomic():
            _customers_lock(account, {"wa601_918828218374", "wa602_918828218374"})
            assert other.execute(probe, [key]).fetchone() == (False,)
        assert other.execute(probe, [key]).fetchone() == (True,)  # released at commit
