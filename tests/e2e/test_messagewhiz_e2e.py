"""MessageWhiz end to end, with real processes: customers write at the MessageWhiz sandbox, the
beat's polls bring their messages in, agents reply through the REST API, and the ticks come
from statuses looked up (the platform calls nobody, spec §0 item 1).

Every test starts on a fresh sandbox (its state is in memory) and counts at the far end: the
sandbox's own record of the sends it accepted (`/_sandbox/sent`) and each customer's history
there (`/_sandbox/customers/<id>`). Nothing is timed: each wait is for a condition, within the
suite's patience.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client, override_settings

from accounts.models import User
from devstack import Stack, wait_for
from inbox.models import ContactIdentity, Message, Session
from inbox.selectors.contacts import identity_opt_out
from inbox.views.pages import picker_templates
from integrations.messagewhiz import provider as mw_provider
from integrations.messagewhiz import schemas
from integrations.models import PollCursor, ProviderAccount, WebhookEvent
from integrations.services.channels import channels_sync
from integrations.services.templates import templates_sync

DELIVERED = (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ)


# --- The platform, from the far end -------------------------------------------------------------


@pytest.fixture
def mw(stack: Stack, transactional_db: None, settings: Any) -> ProviderAccount:
    """A MessageWhiz account at a fresh sandbox, its channels active and templates synced.

    The sandbox is restarted first: what an earlier test left there (customers, faults, hung
    answers, revoked tokens) must not reach this one's first poll.
    """
    settings.PUBLIC_BASE_URL = stack.web_url
    stack.start_mw_sandbox()
    account: ProviderAccount = stack.mw_account("E2E MessageWhiz")
    return account


def mw_account_reading_back(stack: Stack, hours: float) -> ProviderAccount:
    """A MessageWhiz account whose first poll reads `hours` back instead of MW_BACKFILL_HOURS,
    as one connected that long ago would have: its cursor is in place before any poll runs."""
    account = ProviderAccount.objects.create(
        kind="messagewhiz",
        name="E2E MessageWhiz (read back)",
        base_url=stack.mw_sandbox_url,
        api_id=stack.mw_email,
        api_key=stack.mw_password,
        options={"activate_new_channels": True},
        is_active=False,  # the beat polls active accounts only
    )
    with override_settings(MW_BACKFILL_HOURS=hours):
        cursor = mw_provider._cursor_read("")
    PollCursor.objects.create(account=account, cursor=json.dumps(cursor))
    channels_sync(account)
    templates_sync(account, trigger="e2e")
    ProviderAccount.objects.filter(pk=account.pk).update(is_active=True)
    account.refresh_from_db()
    return account


def writes(stack: Stack, customer: str, medium: str, text: str, **more: Any) -> dict[str, Any]:
    """A customer writes to the business at the sandbox; return its message_id, customer_id,
    agent_id and sent time."""
    answer: dict[str, Any] = stack.mw(
        "POST", "inbound", {"customer": customer, "medium": medium, "text": text, **more}
    )
    return answer


def platform_sends(stack: Stack, customer: str = "") -> list[dict[str, Any]]:
    """Every send the sandbox accepted (or one customer's), oldest first."""
    path = f"sent?customer={customer}" if customer else "sent"
    sends: list[dict[str, Any]] = stack.mw("GET", path)["sent"]
    return sends


def platform_history(stack: Stack, customer: str) -> dict[str, Any]:
    """A customer and their whole history at the sandbox, oldest first."""
    detail: dict[str, Any] = stack.mw("GET", f"customers/{customer}")
    return detail


def platform_calls(stack: Stack) -> dict[str, int]:
    calls: dict[str, int] = stack.mw("GET", "calls")["calls"]
    return calls


def arrived(external_id: str) -> Message:
    """Wait for a customer's message to be in our database (brought in by a poll)."""
    message: Message = wait_for(
        lambda: (
            Message.objects.select_related("session__channel", "session__identity")
            .filter(direction=Message.Direction.INBOUND, external_id=external_id)
            .first()
        ),
        what=f"message {external_id} polled in",
    )
    return message


def status_of(message_id: int) -> str:
    return str(Message.objects.get(pk=message_id).status)


def reaches(message_id: int, *statuses: str) -> Message:
    """Wait for one of our messages to reach one of `statuses`; return it."""
    wanted = statuses or (Message.Status.READ,)
    message: Message = wait_for(
        lambda: Message.objects.filter(pk=message_id, status__in=wanted).first(),
        what=f"message {message_id} {'/'.join(wanted)}",
    )
    return message


def reply(api: Any, session: Session, body: str) -> int:
    """An agent replies through the REST API; return the new message's id."""
    answer = api.post(f"sessions/{session.pk}/messages/", {"body": body})
    assert answer.status_code == 201, answer.text
    message_id: int = answer.json()["id"]
    return message_id


# --- 1. Polled in on three media, replied to once, read ---------------------------------------

CUSTOMERS = (
    # medium, phone, name, what they write, what the agent answers
    ("sms", "15550001001", "Ana Costa", "Hi, where is my parcel?", "It left our warehouse today."),
    ("viber", "380500000101", "Oksana Melnyk", "Is the blue one in stock?", "Yes, three left 🙂"),
    ("telegram", "4915700000201", "Jonas Weber", "Kann ich umtauschen?", "Ja, innerhalb 30 Tagen."),
)


def test_customers_on_sms_viber_and_telegram_are_polled_in_and_each_reply_goes_out_once_read(
    stack, mw, api
):
    wrote = {
        medium: writes(stack, phone, medium, text, name=name)
        for medium, phone, name, text, _ in CUSTOMERS
    }

    sessions = {}
    for medium, _phone, _name, text, _ in CUSTOMERS:
        message = arrived(wrote[medium]["message_id"])
        channel = message.session.channel
        assert (channel.medium, channel.external_id) == (medium, wrote[medium]["agent_id"])
        assert message.body == text
        assert message.session.identity.external_id == wrote[medium]["customer_id"]
        sessions[medium] = message.session
    # Brought in by the beat's polls: stored pages, no callback (the platform has none).
    assert WebhookEvent.objects.filter(account=mw, path="poll").exists()
    assert not WebhookEvent.objects.filter(account=mw).exclude(path="poll").exists()

    ids = {medium: reply(api, sessions[medium], answer) for medium, *_, answer in CUSTOMERS}

    for message_id in ids.values():
        reaches(message_id, Message.Status.READ)
    sent = platform_sends(stack)
    assert len(sent) == len(CUSTOMERS), sent  # one each: none lost, none twice
    for medium, phone, _, _, answer in CUSTOMERS:
        (send,) = [s for s in sent if s["customerNumber"] == phone]
        assert send["medium"] == medium
        assert send["agent_id"] == wrote[medium]["agent_id"]
        assert send["customer_id"] == wrote[medium]["customer_id"]
        assert send["payload"] == {"type": "TEXT", "text": answer}
        ours = Message.objects.get(pk=ids[medium])
        assert ours.external_id == send["message_id"]
        assert ours.read_at is not None
        # The platform has it as its own agent's message, read by the customer.
        history = platform_history(stack, phone)["messages"]
        (there,) = [m for m in history if m["message_id"] == send["message_id"]]
        assert (there["origin"], there["status"]) == ("AGENT", "READ")
    # The ticks came from statuses looked up or polled, and none of our replies was mirrored
    # back as a stranger's message.
    assert Message.objects.filter(account=mw, direction=Message.Direction.OUTBOUND).count() == 3


# --- 2. WhatsApp's 24 hours: refused in words, a template goes out as a card --------------------


def test_outside_whatsapps_24_hours_a_free_reply_is_refused_and_a_picked_template_goes_out_as_a_card(
    stack, transactional_db, settings, api
):
    settings.PUBLIC_BASE_URL = stack.web_url
    stack.start_mw_sandbox()
    phone = "5511900000301"
    long_ago = datetime.now(UTC) - timedelta(hours=30)
    wrote = writes(
        stack,
        phone,
        "whatsapp",
        "Posso trocar o tamanho?",
        name="Beatriz Lima",
        sent=long_ago.isoformat(),
    )
    # Connected long enough ago to have read her message (a new account reads MW_BACKFILL_HOURS back).
    account = mw_account_reading_back(stack, hours=48)
    session = arrived(wrote["message_id"]).session
    assert session.channel.medium == "whatsapp"

    refused = api.post(f"sessions/{session.pk}/messages/", {"body": "Claro, pode trocar!"})

    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "window_closed"
    assert "only an approved template can be sent" in refused.json()["detail"]
    assert "30 hours ago" in refused.json()["detail"]
    # What the picker offers: the channel's approved templates only.
    agent = User.objects.get(username="e2e-admin")
    offered = {t.code: t for t in picker_templates(agent, session)}
    assert "payment_due" in offered and "order_update" in offered
    assert not {"summer_promo", "win_a_prize"} & offered.keys()  # pending, rejected
    template = offered["payment_due"]  # "Hello {{1}}, your payment of {{2}} is due on {{3}}."
    assert [p["name"] for p in template.placeholders] == ["1", "2", "3"]

    sent = api.post(
        f"sessions/{session.pk}/messages/",
        {
            "template_id": template.pk,
            "template_data": {"3": "1 June", "1": "Beatriz", "2": "R$ 89"},
        },
    )

    assert sent.status_code == 201, sent.text
    message = reaches(sent.json()["id"], Message.Status.READ)
    assert (
        message.body == "Payment reminder\n\nHello Beatriz, your payment of R$ 89 is due on 1 June."
    )
    (send,) = platform_sends(stack, phone)  # the refused reply never left
    assert send["medium"] == "whatsapp"
    assert send["agent_id"] == wrote["agent_id"]
    assert send["payload"] == {
        "type": "CARD",
        "template_id": template.external_id,
        "body_variables": ["Beatriz", "R$ 89", "1 June"],
        "header_variables": [],
    }
    assert message.external_id == send["message_id"]
    assert Message.objects.filter(account=account, direction="out").count() == 1


# --- 3. Opt-out -----------------------------------------------------------------------------------


def composer_of(session: Session) -> str:
    """The session's page as an agent sees it (rendered here, from the same database)."""
    browser = Client()
    browser.force_login(User.objects.get(username="e2e-admin"))
    return browser.get(f"/s/{session.pk}/").content.decode()


def test_a_customer_who_texts_stop_cannot_be_written_to_until_they_write_again(stack, mw, api):
    phone = "15550001301"
    first = arrived(
        writes(stack, phone, "sms", "Hello, quick question", name="Carla Diaz")["message_id"]
    )
    session = first.session

    stop = writes(stack, phone, "sms", "STOP")
    arrived(stop["message_id"])

    identity = ContactIdentity.objects.get(pk=session.identity_id)
    assert identity_opt_out(identity) is not None
    # The platform's own answer to the keyword comes in too, as its bot's.
    bot = wait_for(
        lambda: Message.objects.filter(session=session, direction="out").first(),
        what="the opt-out answer mirrored",
    )
    assert bot.author_name == schemas.AUTHORS["BOT"]
    assert "unsubscribed" in bot.body
    page = composer_of(session)
    assert 'data-testid="composer-opted-out"' in page
    refused = api.post(f"sessions/{session.pk}/messages/", {"body": "Sorry to see you go!"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "opted_out"
    assert "until they write again" in refused.json()["detail"]
    assert platform_sends(stack, phone) == []
    assert platform_history(stack, phone)["customer"]["subscriptions"][stop["agent_id"]] is False

    again = writes(stack, phone, "sms", "Actually, can I order one more?")
    arrived(again["message_id"])

    assert identity_opt_out(ContactIdentity.objects.get(pk=session.identity_id)) is None
    assert 'data-testid="composer-opted-out"' not in composer_of(session)
    message_id = reply(api, session, "Of course! Which size?")
    reaches(message_id, Message.Status.READ)
    (send,) = platform_sends(stack, phone)
    assert send["payload"] == {"type": "TEXT", "text": "Of course! Which size?"}
    assert Message.objects.get(pk=message_id).external_id == send["message_id"]


# --- 4. Tokens that stop working mid-run ---------------------------------------------------------


def logins(stack: Stack) -> int:
    return platform_calls(stack).get("POST /api/auth", 0)


def assert_each_sent_once(stack: Stack, phone: str, ids: list[int], texts: list[str]) -> None:
    for message_id in ids:
        reaches(message_id, Message.Status.READ)
    sends = platform_sends(stack, phone)
    assert Counter(s["payload"]["text"] for s in sends) == Counter(texts)  # once each
    ours = dict(Message.objects.filter(pk__in=ids).values_list("external_id", "status"))
    assert set(ours) == {s["message_id"] for s in sends}
    assert not Message.objects.filter(account__kind="messagewhiz", status="failed").exists()


def test_replies_between_revoked_tokens_each_go_out_once_after_a_new_login(stack, mw, api):
    phone = "15550001401"
    session = arrived(writes(stack, phone, "sms", "Is my order shipped?")["message_id"]).session
    before = logins(stack)
    texts = [f"Update {n}: it is on its way." for n in range(1, 4)]
    ids = []

    for text in texts:
        assert stack.mw("POST", "tokens/revoke")["revoked"] >= 1  # ours, at least
        ids.append(reply(api, session, text))
        reaches(ids[-1], *DELIVERED)  # accepted before the next revocation

    assert_each_sent_once(stack, phone, ids, texts)
    assert logins(stack) >= before + len(texts)  # each revocation cost a login


def test_with_tokens_that_live_seconds_replies_go_out_once_across_their_renewals(stack, mw, api):
    # The login's `expires_at` says ten years; the JWT's `exp` says four seconds (G10).
    stack.start_mw_sandbox(
        ["--no-customers", "--status-delays", "0.2,0.5,0.9", "--token-ttl-seconds", "4"]
    )
    phone = "15550001402"
    session = arrived(writes(stack, phone, "sms", "Can I pay by card?")["message_id"]).session
    texts = [f"Yes, card works ({n})." for n in range(1, 4)]

    ids = []
    for text in texts:
        # Each reply on a token the one before did not have (the polls keep logging in).
        seen = logins(stack)
        wait_for(lambda seen=seen: logins(stack) > seen, what="a login after the token's exp")
        ids.append(reply(api, session, text))
        reaches(ids[-1], *DELIVERED)

    assert_each_sent_once(stack, phone, ids, texts)


# --- 5. A poll cut short ---------------------------------------------------------------------------

MEDIA = ("sms", "viber", "telegram", "whatsapp")


def test_a_poll_cut_short_by_a_killed_worker_loses_and_duplicates_no_customer_message(stack, mw):
    wait_for(
        lambda: PollCursor.objects.filter(account=mw, polled_at__isnull=False).exists(),
        what="the account's first poll",
    )
    # Every call held a while (well under the read timeout), so a poll of 30 customers' histories
    # takes seconds and the kill finds one under way.
    stack.mw("POST", "faults", {"latency_ms": 500})
    stack.mw("POST", "calls/reset")
    items = [
        {
            "customer": f"1555002{n:04d}",
            "name": f"Bulk Customer {n}",
            "medium": MEDIA[n % len(MEDIA)],
            "text": f"Message {k} from customer {n}",
        }
        for n in range(30)
        for k in (1, 2)
    ]
    wrote = stack.mw("POST", "inbound", {"messages": items})["messages"]
    ids = [w["message_id"] for w in wrote]
    try:
        wait_for(
            lambda: platform_calls(stack).get("GET /api/messages/{identifier}", 0) >= 1,
            what="a poll reading the customers' histories",
        )
        stack.stop_worker(["platform"], kill=True)
        # A poll that ends, however it ends, gives its claim back: one still held was cut short.
        cut_short = PollCursor.objects.get(account=mw).claimed_at is not None
    finally:
        stack.mw("POST", "faults", {"latency_ms": 0})
        stack.start_worker(["platform"])

    assert cut_short
    inbound = Message.objects.filter(account=mw, direction=Message.Direction.INBOUND)
    wait_for(
        lambda: inbound.filter(external_id__in=ids).count() == len(ids),
        what="every customer message polled in after the restart",
    )
    assert Counter(inbound.values_list("external_id", flat=True)) == Counter(ids)  # once each
    by_session = Counter(inbound.values_list("session_id", flat=True))
    assert len(by_session) == 30 and set(by_session.values()) == {2}
    for item, sent in zip(items, wrote, strict=True):
        message = Message.objects.select_related("session__channel").get(
            account=mw, external_id=sent["message_id"]
        )
        assert message.body == item["text"]
        assert message.session.channel.medium == item["medium"]


# --- 6. A send the platform holds: killed mid-send, or answered 504 after it took it ----------


def test_a_send_whose_worker_is_killed_while_the_platform_holds_it_is_settled_never_sent_twice(
    stack, mw, api
):
    phone = "15550001601"
    session = arrived(
        writes(stack, phone, "sms", "Did my refund go through?")["message_id"]
    ).session
    text = "Yes, it was refunded on Monday."
    # Until the kill nothing may settle the reply but its own answer, which never comes: the lane
    # that applies polled pages (any evidence of the send) waits, and the platform takes the
    # send and holds its answer for an hour.
    stack.stop_worker(["worker"])
    stack.mw("POST", "faults", {"ambiguous_rate": 1, "timeout_seconds": 3600})
    try:
        message_id = reply(api, session, text)
        wait_for(lambda: platform_sends(stack, phone), what="the send taken by the platform")
        stack.stop_worker(["platform"], kill=True)
        at_kill = Message.objects.get(pk=message_id)
    finally:
        stack.mw("POST", "faults", {"ambiguous_rate": 0})
        stack.start_worker()

    assert at_kill.status in (Message.Status.SENDING, Message.Status.UNCONFIRMED)
    assert at_kill.external_id == ""
    settled = wait_for(
        lambda: (
            Message.objects.filter(pk=message_id, status__in=DELIVERED)
            .exclude(external_id="")
            .first()
        ),
        what="the reply settled from the polled history",
    )
    (send,) = platform_sends(stack, phone)  # never sent twice
    assert send["payload"] == {"type": "TEXT", "text": text}
    assert settled.external_id == send["message_id"]
    assert not settled.copies.exists()
    assert (
        Message.objects.filter(account=mw, direction="out").count() == 1
    )  # not mirrored as a stranger's
    assert stack.mw("GET", "state")["counters"]["fault_ambiguous"] == 1


def test_a_send_answered_504_after_the_platform_took_it_is_adopted_once_and_read(stack, mw, api):
    # Read late, so that the history the reply is recognized in shows it sent or delivered,
    # not read yet: its ticks must still move on from there.
    stack.start_mw_sandbox(["--no-customers", "--status-delays", "0.2,0.5,20"])
    phone = "15550001602"
    session = arrived(writes(stack, phone, "sms", "Can I change my address?")["message_id"]).session
    text = "Yes, send us the new one here."
    # Taken and recorded, then answered 504 a moment later: the client cannot tell (§4.6, G6).
    # It stays on: a second send of this reply would be taken and counted too.
    stack.mw("POST", "faults", {"ambiguous_rate": 1, "timeout_seconds": 0.3})
    try:
        message_id = reply(api, session, text)
        settled = wait_for(
            lambda: (
                Message.objects.filter(pk=message_id, status__in=DELIVERED)
                .exclude(external_id="")
                .first()
            ),
            what="the reply adopted from the polled history",
        )
    finally:
        stack.mw("POST", "faults", {"ambiguous_rate": 0})

    (send,) = platform_sends(stack, phone)
    assert settled.external_id == send["message_id"]
    assert stack.mw("GET", "state")["counters"]["fault_ambiguous"] == 1
    read = reaches(message_id, Message.Status.READ)
    assert read.external_id == send["message_id"]
    assert len(platform_sends(stack, phone)) == 1
