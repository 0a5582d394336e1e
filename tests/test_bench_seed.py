"""The pages benchmark's data generator, and the query counts it exists to check."""

from __future__ import annotations

import pytest
from django.db.models import Count, Max, Q
from django.test import Client

from accounts.models import User
from bench.context import ADMIN_PASSWORD, ADMIN_USERNAME
from bench.pages import count_queries, groups_for
from bench.seed import QUICK_SIZES, SIZES, Size, World, seed_to, seed_world, sizes
from inbox.models import Contact, ContactIdentity, Message, Note, Session, TimelineEntry

SMALL = Size(sessions=8, messages=160, thread=50)
LARGER = Size(sessions=20, messages=420, thread=120)


def test_the_full_run_measures_at_a_hundredth_and_at_fifty_thousand_sessions():
    small, full = sizes(quick=False)

    assert (full.sessions, full.messages, full.thread) == (50_000, 1_000_000, 10_000)
    assert (small.sessions * 100, small.messages * 100, small.thread * 100) == (
        full.sessions,
        full.messages,
        full.thread,
    )
    assert sizes(quick=True) == QUICK_SIZES and sizes(quick=False) == SIZES


@pytest.fixture
def world(db: None) -> World:
    return seed_world(tag="test")


def _sessions(world: World):
    return Session.objects.filter(account=world.account)


@pytest.mark.django_db
@pytest.mark.postgres
def test_seeding_gives_the_sizes_asked_for_and_grows_to_a_larger_one(world):
    seed_to(world, SMALL)
    assert _sessions(world).count() == SMALL.sessions
    assert Message.objects.filter(account=world.account).count() == SMALL.messages
    assert world.thread.messages.count() == SMALL.thread

    step = seed_to(world, LARGER)

    assert (step.sessions, step.messages) == (12, 260)
    assert _sessions(world).count() == LARGER.sessions
    assert Message.objects.filter(account=world.account).count() == LARGER.messages
    assert world.thread.messages.count() == LARGER.thread
    with pytest.raises(ValueError, match="shrink"):
        seed_to(world, SMALL)


@pytest.mark.django_db
@pytest.mark.postgres
def test_every_session_points_at_its_own_latest_message_and_agrees_with_its_messages(world):
    seed_to(world, SMALL)
    seed_to(world, LARGER)

    sessions = (
        _sessions(world)
        .select_related("last_message", "identity")
        .annotate(
            last_sent=Max("messages__sent_at"),
            last_in=Max("messages__sent_at", filter=Q(messages__direction="in")),
            n=Count("messages"),
        )
    )
    for session in sessions:
        latest = session.messages.order_by("-sent_at", "-id").first()
        assert session.n >= 1
        assert session.last_message == latest
        assert session.last_message.session_id == session.pk
        assert session.last_activity_at == session.last_sent
        assert session.last_inbound_at == session.last_in
        assert session.opened_at <= session.messages.order_by("sent_at").first().sent_at
        assert session.identity.contact_id == session.contact_id
        assert session.identity.channel_id == session.channel_id
        if session.status in ("open", "pending") and latest.direction == "in":
            trailing = 0
            for message in session.messages.order_by("-sent_at", "-id"):
                if message.direction != "in":
                    break
                trailing += 1
            assert session.unread_count == trailing
        else:
            assert session.unread_count == 0
        if session.status in ("resolved", "closed"):
            assert session.resolved_at is not None


@pytest.mark.django_db
@pytest.mark.postgres
def test_messages_have_statuses_that_fit_their_direction_and_unique_platform_ids(world):
    seed_to(world, LARGER)
    messages = Message.objects.filter(account=world.account)

    assert set(messages.filter(direction="in").values_list("status", flat=True)) == {"received"}
    outbound = set(messages.filter(direction="out").values_list("status", flat=True))
    assert outbound <= {"sent", "delivered", "read", "failed"}
    assert not messages.filter(direction="in", author__isnull=False).exists()
    assert not messages.filter(status="read", read_at__isnull=True).exists()
    assert not messages.filter(status="failed").exclude(error_code__gt="").exists()
    ids = list(messages.values_list("direction", "external_id"))
    assert len(ids) == len(set(ids)) and all(external for _, external in ids)
    assert messages.filter(type="text").exclude(body="").count() > messages.count() // 2


@pytest.mark.django_db
@pytest.mark.postgres
def test_rows_added_afterwards_through_the_orm_get_fresh_ids(world):
    seed_to(world, SMALL)
    session = world.thread

    message = Message.objects.create(
        account=world.account,
        session=session,
        direction="out",
        type="text",
        body="After the seed",
        status="queued",
        sent_at=session.last_activity_at,
    )
    contact = Contact.objects.create(account=world.account, name="Later customer")
    note = Note.objects.create(session=session, body="Later note")

    assert message.pk > Message.objects.exclude(pk=message.pk).aggregate(m=Max("pk"))["m"]
    assert contact.pk > Contact.objects.exclude(pk=contact.pk).aggregate(m=Max("pk"))["m"]
    assert note.pk is not None


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_thread_grows_by_older_history_and_keeps_its_latest_messages(world):
    seed_to(world, SMALL)
    thread = world.thread
    latest = list(thread.messages.order_by("-sent_at", "-id").values_list("pk", flat=True)[:40])

    seed_to(world, LARGER)
    thread.refresh_from_db()

    assert list(thread.messages.order_by("-sent_at", "-id").values_list("pk", flat=True)[:40]) == (
        latest
    )
    assert thread.last_message_id == latest[0]
    first = thread.messages.order_by("sent_at").first()
    assert thread.opened_at == first.sent_at
    opened = TimelineEntry.objects.get(session=thread, kind="opened")
    assert opened.occurred_at == first.sent_at
    assert thread.assignee == world.agent and thread.status == "open"


@pytest.mark.django_db
@pytest.mark.postgres
def test_contacts_and_identities_are_unique_per_channel(world):
    seed_to(world, LARGER)
    identities = ContactIdentity.objects.filter(account=world.account)

    pairs = list(identities.values_list("contact_id", "channel_id"))
    assert len(pairs) == len(set(pairs))
    assert Contact.objects.filter(account=world.account).count() <= LARGER.sessions


@pytest.fixture
def admin(db: None) -> User:
    return User.objects.create_superuser(ADMIN_USERNAME, password=ADMIN_PASSWORD)


def _query_counts(world: World, size: Size, admin: User) -> dict[tuple[str, str], int]:
    clients = {"agent": Client(), "admin": Client()}
    clients["agent"].force_login(world.agent)
    clients["admin"].force_login(admin)
    return {
        (group.name, page.name): count_queries(clients[page.who], page)
        for group in groups_for(world, size)
        for page in group.pages
    }


@pytest.mark.django_db
@pytest.mark.postgres
def test_list_thread_and_search_pages_answer_with_the_same_query_count_at_two_sizes(world, admin):
    seed_to(world, SMALL)
    small = _query_counts(world, SMALL, admin)

    seed_to(world, LARGER)
    larger = _query_counts(world, LARGER, admin)

    assert small == larger
    names = {group for group, _ in small}
    assert any(name.startswith("Search") for name in names)
    assert any(name.startswith("Thread page") for name in names)
    assert any(name.startswith("List views") for name in names)
