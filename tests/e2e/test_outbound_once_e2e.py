"""End to end, with faults the sandbox injects: a reply reaches the customer once, in order.

Counted at the far end: the sandbox's own record of the sends it accepted. A confirmed message
was accepted exactly once; an unconfirmed one at most once (never when it never reached the
sandbox); replies of one conversation arrive in the order agents sent them; nothing is left
queued or sending.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from devstack import Stack, wait_for
from inbox.models import Message, Session
from integrations.models import WebhookEvent

CHANNEL = "wa360:918828218374"
CONFIRMED = {"sent", "delivered", "read"}


@pytest.fixture(autouse=True)
def _quiet_at_the_end(stack: Stack, transactional_db: None) -> Any:
    """Let the far end finish (receipts, customers' answers, their processing) before the
    database is emptied for the next test: a worker mid-transaction would deadlock with it."""
    yield
    wait_for(lambda: stack.sandbox("GET", "state")["pendingCallbacks"] == 0, what="callbacks out")
    busy = ("pending", "processing")
    wait_for(
        lambda: not WebhookEvent.objects.filter(state__in=busy).exists(), what="callbacks applied"
    )
    wait_for(
        lambda: not Message.objects.filter(status__in=("queued", "sending")).exists(),
        what="nothing queued or sending",
    )


def new_customer(stack: Stack) -> str:
    """A customer of its own (the sandbox outlives each test), who writes in."""
    key = f"c{uuid.uuid4().hex[:8]}"
    phone = f"49151{uuid.uuid4().int % 10**8:08d}"
    stack.sandbox("POST", "customers", {"key": key, "channelId": CHANNEL, "phone": phone})
    return key


def conversation(stack: Stack, customer: str) -> Session:
    sent = stack.sandbox("POST", "inbound", {"customer": customer, "type": "text"})
    return wait_for(
        lambda: Session.objects.filter(external_id=sent["sessionId"]).first(),
        what=f"{customer}'s session",
    )


def accepted_by_the_sandbox(stack: Stack, customer: str) -> list[str]:
    """The texts the sandbox accepted for a customer, in the order it accepted them."""
    return [
        s["text"] for s in stack.sandbox("GET", "state")["outbound"] if s["customer"] == customer
    ]


def settled(ids: list[int]) -> bool:
    statuses = Message.objects.filter(pk__in=ids).values_list("status", flat=True)
    return all(s not in ("queued", "sending") for s in statuses)


def reply(api: Any, session: Session, text: str) -> int:
    answer = api.post(f"sessions/{session.pk}/messages/", {"body": text})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def faults(stack: Stack, **values: Any) -> None:
    stack.sandbox("POST", "faults", values)


def test_a_hung_send_the_history_never_lists_reaches_the_customer_once_and_shows_unconfirmed(
    stack, e2e_account, api
):
    customer = new_customer(stack)
    session = conversation(stack, customer)
    faults(
        stack,
        accept_hang_rate=1,
        timeout_seconds=3,
        hang_receipts=False,
        history_omit_rate=1,
    )
    text = f"Your refund is on its way {uuid.uuid4().hex[:6]}"

    message_id = reply(api, session, text)
    wait_for(lambda: settled([message_id]), what="the hung send settled")
    faults(stack, accept_hang_rate=0, history_omit_rate=0, hang_receipts=True)

    message = Message.objects.get(pk=message_id)
    assert message.status == Message.Status.UNCONFIRMED
    assert accepted_by_the_sandbox(stack, customer).count(text) == 1
    shown = api.get(f"messages/{message_id}/").json()
    assert shown["status"] == "unconfirmed"
    assert "may not have been delivered" in shown["error"]["title"]
    agent = User.objects.create_superuser("agent-unconfirmed", password="not-used-0123")
    page = Client()
    page.force_login(agent)
    html = page.get(f"/s/{session.pk}/").content.decode()
    assert 'data-testid="message-unconfirmed"' in html
    assert 'data-testid="message-send-again"' in html


def test_receipts_for_a_hung_send_settle_it_without_a_second_copy(stack, e2e_account, api):
    customer = new_customer(stack)
    session = conversation(stack, customer)
    faults(stack, accept_hang_rate=1, timeout_seconds=3, hang_receipts=True, history_omit_rate=1)
    text = f"Receipts will tell {uuid.uuid4().hex[:6]}"

    message_id = reply(api, session, text)
    wait_for(
        lambda: Message.objects.get(pk=message_id).status == "read", what="read by its receipts"
    )
    faults(stack, accept_hang_rate=0, history_omit_rate=0)

    message = Message.objects.get(pk=message_id)
    record = next(s for s in stack.sandbox("GET", "state")["outbound"] if s["text"] == text)
    assert message.external_id == record["id"]
    assert accepted_by_the_sandbox(stack, customer).count(text) == 1


def test_a_history_that_lists_a_hung_send_late_settles_it_without_a_second_copy(
    stack, e2e_account, api
):
    customer = new_customer(stack)
    session = conversation(stack, customer)
    faults(stack, accept_hang_rate=1, timeout_seconds=3, hang_receipts=False, history_lag_seconds=2)
    text = f"Found in the history {uuid.uuid4().hex[:6]}"

    message_id = reply(api, session, text)
    wait_for(lambda: settled([message_id]), what="the hung send settled")
    faults(stack, accept_hang_rate=0, history_lag_seconds=0, hang_receipts=True)

    message = Message.objects.get(pk=message_id)
    assert message.status in CONFIRMED
    assert message.external_id
    assert accepted_by_the_sandbox(stack, customer).count(text) == 1
    assert Message.objects.filter(body=text).count() == 1  # no authorless copy imported


def test_a_server_error_after_the_platform_took_the_send_leaves_one_copy_settled_by_evidence(
    stack, e2e_account, api
):
    customer = new_customer(stack)
    session = conversation(stack, customer)
    faults(stack, accept_error_rate=1)
    texts = [f"Taken, then a 500 {i} {uuid.uuid4().hex[:6]}" for i in range(3)]

    ids = [reply(api, session, t) for t in texts]
    wait_for(lambda: settled(ids), what="the sends answered 500 settled")
    faults(stack, accept_error_rate=0)

    counts = Counter(accepted_by_the_sandbox(stack, customer))
    assert [counts[t] for t in texts] == [1, 1, 1]  # the sandbox had each; none went twice
    assert set(Message.objects.filter(pk__in=ids).values_list("status", flat=True)) <= CONFIRMED
    assert stack.sandbox("GET", "state")["counters"].get("fault_accept_error", 0) == 3


def test_under_hangs_and_lost_requests_no_reply_arrives_twice_and_the_order_is_kept(
    stack, e2e_account, api
):
    customer = new_customer(stack)
    session = conversation(stack, customer)
    faults(
        stack,
        accept_hang_rate=0.25,
        timeout_rate=0.2,
        timeout_seconds=3,
        hang_receipts=False,
        history_omit_rate=0.5,
        history_lag_seconds=1,
    )
    texts = [f"Step {i} {uuid.uuid4().hex[:4]}" for i in range(8)]

    ids = [reply(api, session, t) for t in texts]
    wait_for(lambda: settled(ids), what="every reply settled")
    faults(stack, accept_hang_rate=0, timeout_rate=0, history_omit_rate=0, history_lag_seconds=0)

    counts = Counter(accepted_by_the_sandbox(stack, customer))
    statuses = dict(Message.objects.filter(pk__in=ids).values_list("body", "status"))
    for text in texts:
        if statuses[text] in CONFIRMED:
            assert counts[text] == 1, (text, statuses[text], counts[text])
        else:
            assert statuses[text] == "unconfirmed", (text, statuses[text])
            assert counts[text] <= 1, (text, counts[text])
    arrived = [t for t in accepted_by_the_sandbox(stack, customer) if t in texts]
    assert arrived == [t for t in texts if t in arrived]  # the customer's order
    counters = stack.sandbox("GET", "state")["counters"]
    assert counters.get("fault_accept_hang", 0) + counters.get("fault_timeout", 0) > 0


def test_replies_keep_their_order_under_5xx_retries_and_conversations_go_in_parallel(
    stack, e2e_account, api
):
    first, second = new_customer(stack), new_customer(stack)
    sessions = {first: conversation(stack, first), second: conversation(stack, second)}
    faults(stack, error_rate=0.35)
    texts = {c: [f"{c} line {i}" for i in range(10)] for c in sessions}

    ids = []
    for i in range(10):
        for customer, session in sessions.items():
            ids.append(reply(api, session, texts[customer][i]))
    wait_for(lambda: settled(ids), what="every reply settled")
    faults(stack, error_rate=0)

    assert set(Message.objects.filter(pk__in=ids).values_list("status", flat=True)) <= CONFIRMED
    for customer in sessions:
        assert accepted_by_the_sandbox(stack, customer) == texts[customer]  # once, in order
    assert stack.sandbox("GET", "state")["counters"].get("fault_5xx", 0) > 0
