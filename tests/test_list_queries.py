"""The inbox list's queries as reshaped for large inboxes: the same answers as before.

The list picks a page of ids first and joins only those rows; search goes through one
subquery of matches; the window sort and the queue suggestions are computed differently
(`inbox/selectors/lists.py`, `routing.py`). These tests pin what an agent sees.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from inbox.models import Session
from inbox.selectors.routing import platform_queues_known
from tests.factories import (
    ContactFactory,
    InboundMessageFactory,
    LabelFactory,
    make_session,
)

pytestmark = pytest.mark.django_db


def rows(client: Client, path: str) -> list[int]:
    html = client.get(path).content.decode()
    return [int(i) for i in re.findall(r'data-testid="session-row" data-session-id="(\d+)"', html)]


def test_the_window_sort_counts_the_customers_message_in_another_session_on_the_channel(
    as_agent, account, channel
):
    contact = ContactFactory(account=account)
    # The customer wrote 23 hours ago in a session since resolved, and 30 hours ago here:
    # the window of this session closes in an hour, so it comes first.
    here = make_session(account, channel, contact=contact, inbound_ago=timedelta(hours=30))
    make_session(
        account,
        channel,
        contact=contact,
        inbound_ago=timedelta(hours=23),
        status=Session.Status.RESOLVED,
    )
    fresh = make_session(account, channel, inbound_ago=timedelta(minutes=5))
    closed = make_session(account, channel, inbound_ago=timedelta(hours=40))

    assert rows(as_agent, "/list/?sort=window") == [here.pk, fresh.pk, closed.pk]


def test_the_open_session_stays_in_an_unfiltered_list_with_everything_else(
    as_agent, account, channel
):
    sessions = [make_session(account, channel) for _ in range(3)]
    Session.objects.filter(pk=sessions[0].pk).update(status=Session.Status.CLOSED)

    shown = rows(as_agent, f"/list/?status=any&current={sessions[0].pk}")

    assert sorted(shown) == sorted(s.pk for s in sessions)


def test_the_open_session_keeps_its_place_on_a_later_page(as_agent, agent, account, channel):
    now = timezone.now()
    sessions = [
        make_session(account, channel, last_activity_at=now - timedelta(minutes=i))
        for i in range(60)
    ]
    kept = sessions[55]
    # Assigned away from "Unassigned" while open: it stays until the agent moves on.
    Session.objects.filter(pk=kept.pk).update(assignee=agent)

    second_page = rows(as_agent, f"/list/?view=unassigned&page=2&current={kept.pk}")

    assert second_page == [s.pk for s in sessions[50:]]


def test_a_resolved_open_session_leaves_the_open_and_pending_list(as_agent, account, channel):
    sessions = [make_session(account, channel) for _ in range(3)]
    resolved = sessions[1]
    Session.objects.filter(pk=resolved.pk).update(status=Session.Status.RESOLVED)

    assert resolved.pk not in rows(as_agent, f"/list/?current={resolved.pk}")
    assert resolved.pk in rows(as_agent, f"/list/?status=any&current={resolved.pk}")
    assert resolved.pk in rows(as_agent, f"/list/?status=resolved&current={resolved.pk}")


def test_search_shows_a_session_once_when_its_contact_and_its_messages_both_match(
    as_agent, account, channel
):
    session = make_session(
        account, channel, contact=ContactFactory(account=account, name="Refund Rita")
    )
    InboundMessageFactory(session=session, body="I want a refund")
    InboundMessageFactory(session=session, body="Refund, please")
    other = make_session(account, channel)

    assert rows(as_agent, "/list/?status=any&q=refund") == [session.pk]
    assert other.pk in rows(as_agent, "/list/?status=any")


def test_filters_combine_with_search_and_the_label_filter_lists_a_session_once(
    as_agent, account, channel
):
    vip, billing = LabelFactory(name="vip"), LabelFactory(name="billing")
    both = make_session(account, channel)
    both.labels.add(vip, billing)
    InboundMessageFactory(session=both, body="Where is my invoice?")
    only_vip = make_session(account, channel)
    only_vip.labels.add(vip)

    assert sorted(rows(as_agent, f"/list/?label={vip.pk}")) == sorted([both.pk, only_vip.pk])
    assert rows(as_agent, f"/list/?label={vip.pk}&q=invoice") == [both.pk]
    assert rows(as_agent, "/list/?medium=sms") == []


def test_queue_suggestions_are_each_queue_once_by_name_without_the_empty_one(account, channel):
    for queue in ["support-2", "", "billing", "support-2", "billing", "vip", ""]:
        make_session(account, channel, platform_queue=queue)

    assert platform_queues_known() == ["billing", "support-2", "vip"]
    assert platform_queues_known(limit=2) == ["billing", "support-2"]


@pytest.mark.parametrize("query", ["refund", "Rita", "4915", "nothing-matches"])
def test_a_search_finds_the_same_page_whether_it_walks_the_list_or_collects_the_matches(
    as_agent, account, channel, monkeypatch, query
):
    now = timezone.now()
    for i in range(12):
        contact = ContactFactory(
            account=account, name="Refund Rita" if i % 4 == 0 else f"Customer {i}"
        )
        session = make_session(
            account, channel, contact=contact, last_activity_at=now - timedelta(minutes=i)
        )
        if i % 3 == 0:
            InboundMessageFactory(session=session, body="Can I get a refund?")
        if i % 5 == 0:
            contact.phone = f"4915{i:07d}"
            contact.save()
    path = f"/list/?status=any&q={query}"

    monkeypatch.setattr("inbox.selectors.lists._search_walks", lambda *args: False)
    collected = rows(as_agent, path)
    monkeypatch.setattr("inbox.selectors.lists._search_walks", lambda *args: True)
    walked = rows(as_agent, path)

    assert walked == collected
    assert (query == "nothing-matches") == (collected == [])
