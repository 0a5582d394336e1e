"""The inbox on MessageWhiz: polled in through the production path (the poll stores pages, the
drain applies them), replies out per medium, ticks from receipts looked up, opt-out honoured.

The platform is a small stateful stub at the HTTP seam (`responses`), speaking the spec's
bodies; the end-to-end tests run the real sandbox.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from inbox.models import Message, Session
from inbox.services import receipts_fetch
from inbox.services.refusals import SendRefused
from inbox.services.send import Draft, message_send
from integrations.messagewhiz import provider as mw_provider
from integrations.models import Channel, ProviderAccount, Template, TemplateApproval
from integrations.services import polling
from integrations.services.channels import channels_sync
from tests.factories import ProviderAccountFactory

pytestmark = pytest.mark.django_db

BASE = "https://mw.example.test"
SMS_AGENT, VIBER_AGENT, WA_AGENT = "agent-sms", "agent-viber", "agent-wa"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StubPlatform:
    """What the stub MessageWhiz holds: customers, their histories, what it accepted."""

    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    logins: int = 0
    login_attempts: int = 0
    password: str = "s3cret"
    # A send is taken but its answer is lost (a read timeout): the ambiguous case.
    lose_next_answer: bool = False

    def customer_writes(self, phone: str, text: str, agent: str = SMS_AGENT) -> str:
        now = datetime.now(UTC)
        cid = f"cust-{phone}"
        customer = self.customers.setdefault(
            cid, {"_id": cid, "phone": phone, "name": f"Customer {phone}", "subscriptions": {}}
        )
        customer["last_message_time"] = _iso(now)
        if text.strip().lower() == "stop":
            customer["subscriptions"][agent] = False
        else:
            customer["subscriptions"][agent] = True
        mid = str(uuid.uuid4())
        self.history.append(
            {
                "message_id": mid,
                "customer_id": cid,
                "agent_id": agent,
                "origin": "CUSTOMER",
                "sent": _iso(now),
                "status": "DELIVERED",
                "payload": {"type": "TEXT", "text": text},
            }
        )
        return mid

    def status(self, message_id: str, status: str) -> None:
        for item in self.history:
            if item["message_id"] == message_id:
                item["status"] = status  # (last_message_time does not move: G3)


def _install(rsps: responses.RequestsMock, platform: StubPlatform) -> None:
    def auth(request: Any) -> tuple[int, dict[str, str], str]:
        platform.login_attempts += 1
        if json.loads(request.body)["password"] != platform.password:
            refusal = {"statusCode": 401, "message": "Wrong email or password"}
            return 401, {}, json.dumps(refusal)
        platform.logins += 1
        return 200, {}, json.dumps({"token": f"tok-{platform.logins}", "expires_at": 1893456000})

    def channels(request: Any) -> tuple[int, dict[str, str], str]:
        listed = [
            {
                "_id": "ch-sms",
                "type": "SMS",
                "status": "ACTIVE",
                "config": {"name": "SMS USA"},
                "agents": [{"_id": SMS_AGENT, "config": {"vln": "145044111206"}}],
            },
            {
                "_id": "ch-vi",
                "type": "VI",
                "status": "ACTIVE",
                "config": {"name": "Viber"},
                "agents": [{"_id": VIBER_AGENT, "config": {}}],
            },
            {
                "_id": "ch-wa",
                "type": "WA",
                "status": "ACTIVE",
                "config": {"name": "WhatsApp"},
                "agents": [{"_id": WA_AGENT, "config": {}}],
            },
        ]
        return 200, {}, json.dumps({"channels": listed, "total": 3, "offset": 0, "limit": 50})

    def customers(request: Any) -> tuple[int, dict[str, str], str]:
        offset = int(request.params.get("offset", 0))
        ordered = sorted(
            platform.customers.values(), key=lambda c: c["last_message_time"], reverse=True
        )
        page = ordered[offset : offset + 50]
        return 200, {}, json.dumps({"customers": page, "total": len(ordered), "offset": offset})

    def history(request: Any) -> tuple[int, dict[str, str], str]:
        cid = request.path_url.split("/api/messages/")[1].split("?")[0]
        items = [m for m in platform.history if m["customer_id"] == cid]
        if request.params.get("agentID"):
            items = [m for m in items if m["agent_id"] == request.params["agentID"]]
        if request.params.get("origin"):
            items = [m for m in items if m["origin"] == request.params["origin"]]
        items.sort(key=lambda m: m["sent"], reverse=True)
        offset = int(request.params.get("offset", 0))
        body = {"messages": items[offset : offset + 50], "total": len(items), "offset": offset}
        return 200, {}, json.dumps(body)

    def send(request: Any) -> tuple[int, dict[str, str], str]:
        medium, agent = re.search(r"/api/agents/(\w+)/([\w-]+)/send", request.path_url).groups()
        body = json.loads(request.body)
        cid = f"cust-{body['customerNumber']}"
        if platform.customers.get(cid, {}).get("subscriptions", {}).get(agent) is False:
            return 403, {}, json.dumps({"statusCode": 403, "message": "Customer unsubscribed"})
        mid = str(uuid.uuid4())
        now = _iso(datetime.now(UTC))
        platform.accepted.append({"message_id": mid, "medium": medium, "agent": agent, **body})
        platform.history.append(
            {
                "message_id": mid,
                "customer_id": cid,
                "agent_id": agent,
                "origin": "AGENT",
                "sent": now,
                "status": "CREATED",
                "payload": body["payload"],
            }
        )
        if cid in platform.customers:
            platform.customers[cid]["last_message_time"] = now
        if platform.lose_next_answer:
            platform.lose_next_answer = False
            return 504, {}, json.dumps({"statusCode": 504, "message": "Gateway Timeout"})
        return 200, {}, json.dumps({"message_id": mid})

    rsps.add_callback(responses.POST, f"{BASE}/api/auth", callback=auth)
    rsps.add_callback(responses.GET, f"{BASE}/api/channels", callback=channels)
    rsps.add_callback(responses.GET, f"{BASE}/api/customers", callback=customers)
    rsps.add_callback(responses.GET, re.compile(rf"{BASE}/api/messages/.+"), callback=history)
    rsps.add_callback(
        responses.POST, re.compile(rf"{BASE}/api/agents/\w+/[\w-]+/send"), callback=send
    )
    rsps.get(
        f"{BASE}/api/keyword_events",
        json={
            "keyword_events": [{"_id": "k1", "keywords": ["stop"], "config": {"type": "OPT_OUT"}}],
            "total": 1,
        },
    )


@pytest.fixture
def platform() -> Any:
    cache.clear()
    mw_provider._agents.clear()
    mw_provider._keywords.clear()
    stub = StubPlatform()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        _install(rsps, stub)
        yield stub
    cache.clear()
    mw_provider._agents.clear()
    mw_provider._keywords.clear()


@pytest.fixture
def mw_account(platform: StubPlatform) -> ProviderAccount:
    account: ProviderAccount = ProviderAccountFactory(
        kind="messagewhiz",
        name="MessageWhiz",
        base_url=BASE,
        api_id="ops@example.com",
        api_key="s3cret",
        options={"activate_new_channels": True},
    )
    channels_sync(account)
    return account


def poll(account: ProviderAccount, capture: Any) -> None:
    with capture(execute=True):  # the stored pages are applied as callbacks are
        polling.account_poll(str(account.pk))


def test_a_customer_message_reaches_its_channels_conversation_once_however_often_polled(
    mw_account, platform, django_capture_on_commit_callbacks
):
    platform.customer_writes("15550001", "Hello on SMS")
    platform.customer_writes("15550002", "Hello on Viber", agent=VIBER_AGENT)

    poll(mw_account, django_capture_on_commit_callbacks)
    poll(mw_account, django_capture_on_commit_callbacks)  # (the overlap reads them again)

    inbound = Message.objects.filter(account=mw_account, direction=Message.Direction.INBOUND)
    assert sorted(inbound.values_list("body", flat=True)) == ["Hello on SMS", "Hello on Viber"]
    sms = Session.objects.get(account=mw_account, channel__external_id=SMS_AGENT)
    viber = Session.objects.get(account=mw_account, channel__external_id=VIBER_AGENT)
    assert (sms.channel.medium, sms.channel.lane) == ("sms", "145044111206")
    assert viber.channel.medium == "viber"
    assert sms.contact.phone == "15550001"


def test_a_reply_goes_out_on_the_agent_written_to_and_its_ticks_move_without_callbacks(
    mw_account, platform, admin_user, django_capture_on_commit_callbacks, settings
):
    settings.RECEIPTS_FETCH_BACKOFF_SECONDS = (0.0, 0.0)
    platform.customer_writes("15550003", "Where is my parcel?")
    poll(mw_account, django_capture_on_commit_callbacks)
    session = Session.objects.get(account=mw_account)

    with django_capture_on_commit_callbacks(execute=True):
        reply, _ = message_send(session, Draft(body="On its way"), author=admin_user)
    reply.refresh_from_db()
    (taken,) = platform.accepted
    assert (taken["medium"], taken["agent"], taken["customerNumber"]) == (
        "sms",
        SMS_AGENT,
        "15550003",
    )
    assert taken["payload"] == {"type": "TEXT", "text": "On its way"}
    assert (reply.status, reply.external_id) == (Message.Status.SENT, taken["message_id"])

    seen = []
    for status in ("SENT", "READ", "DELIVERED"):  # a late DELIVERED never undoes READ
        platform.status(reply.external_id, status)
        with django_capture_on_commit_callbacks(execute=True):
            Message.objects.filter(pk=reply.pk).update(receipt_check_at=timezone.now())
            receipts_fetch.account_receipts_fetch(str(mw_account.pk))
        reply.refresh_from_db()
        seen.append(reply.status)
    assert seen == [Message.Status.SENT, Message.Status.READ, Message.Status.READ]


def test_receipts_are_looked_up_less_and_less_often_and_not_once_final(
    mw_account, platform, admin_user, django_capture_on_commit_callbacks, settings
):
    settings.RECEIPTS_FETCH_BACKOFF_SECONDS = (0.0, 10.0, 60.0)
    platform.customer_writes("15550004", "Hi")
    poll(mw_account, django_capture_on_commit_callbacks)
    session = Session.objects.get(account=mw_account)
    with django_capture_on_commit_callbacks(execute=True):
        reply, _ = message_send(session, Draft(body="Hello"), author=admin_user)

    looked = receipts_fetch.account_receipts_fetch(str(mw_account.pk))
    again_at_once = receipts_fetch.account_receipts_fetch(str(mw_account.pk))
    reply.refresh_from_db()
    assert (looked, again_at_once, reply.receipt_checks) == (1, 0, 1)
    assert reply.receipt_check_at > timezone.now() + timedelta(seconds=5)

    platform.status(reply.external_id, "READ")
    Message.objects.filter(pk=reply.pk).update(receipt_check_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        receipts_fetch.account_receipts_fetch(str(mw_account.pk))
    Message.objects.filter(pk=reply.pk).update(receipt_check_at=timezone.now())
    assert receipts_fetch.account_receipts_fetch(str(mw_account.pk)) == 0  # read is final


def test_an_opted_out_customer_cannot_be_written_to_until_they_write_again(
    mw_account, platform, admin_user, admin_client, django_capture_on_commit_callbacks
):
    platform.customer_writes("15550005", "Hi")
    platform.customer_writes("15550005", "STOP")
    poll(mw_account, django_capture_on_commit_callbacks)
    session = Session.objects.get(account=mw_account)

    with pytest.raises(SendRefused) as refused:
        message_send(session, Draft(body="Are you sure?"), author=admin_user)
    assert refused.value.code == "opted_out"
    assert "until they write again" in refused.value.reason
    page = admin_client.get(f"/s/{session.pk}/").content.decode()
    assert 'data-testid="composer-opted-out"' in page
    api = admin_client.post(
        f"/api/v1/sessions/{session.pk}/messages/",
        {"type": "text", "body": "Through the API"},
        content_type="application/json",
    )
    assert api.status_code in (400, 409, 422)
    assert "until they write again" in api.content.decode()
    assert not platform.accepted

    time.sleep(0.002)  # (a later platform timestamp than the STOP's)
    platform.customer_writes("15550005", "Sorry, I still need help")
    poll(mw_account, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        message_send(session, Draft(body="Happy to help"), author=admin_user)
    assert [a["payload"]["text"] for a in platform.accepted] == ["Happy to help"]


def test_the_composer_offers_only_what_the_channels_medium_carries(
    mw_account, platform, admin_client, admin_user, django_capture_on_commit_callbacks
):
    platform.customer_writes("15550006", "Hi on SMS")
    platform.customer_writes("15550007", "Hi on Viber", agent=VIBER_AGENT)
    poll(mw_account, django_capture_on_commit_callbacks)
    sms = Session.objects.get(account=mw_account, channel__external_id=SMS_AGENT)
    viber = Session.objects.get(account=mw_account, channel__external_id=VIBER_AGENT)

    sms_page = admin_client.get(f"/s/{sms.pk}/").content.decode()
    viber_page = admin_client.get(f"/s/{viber.pk}/").content.decode()

    assert 'data-testid="composer-file"' not in sms_page
    assert 'data-testid="composer-text-only"' in sms_page
    assert re.search(r'data-testid="composer-file" accept="image/\*"', viber_page)
    with pytest.raises(SendRefused) as refused:
        message_send(sms, Draft(type="location", latitude=1.0, longitude=2.0), author=admin_user)
    assert refused.value.reason.startswith("MessageWhiz cannot send a location on SMS")


def test_a_template_on_an_sms_channel_is_refused_in_words_before_anything_is_stored(
    mw_account, platform, admin_user, django_capture_on_commit_callbacks
):
    platform.customer_writes("15550008", "Hi")
    poll(mw_account, django_capture_on_commit_callbacks)
    session = Session.objects.get(account=mw_account)
    template = Template.objects.create(
        account=mw_account, external_id="t1", code="hello", lang="en", body="Hi {{1}}"
    )
    TemplateApproval.objects.create(
        template=template, channel=session.channel, status="APPROVED", platform_template_id="t1"
    )
    before = Message.objects.count()

    with pytest.raises(SendRefused) as refused:
        message_send(session, Draft(type="template", template=template, template_data={"1": "Ann"}))

    assert refused.value.reason.startswith("MessageWhiz cannot send a template on SMS")
    assert Message.objects.count() == before


def test_a_reply_whose_answer_was_lost_is_settled_from_the_polled_history_not_sent_twice(
    mw_account, platform, admin_user, django_capture_on_commit_callbacks, settings
):
    platform.customer_writes("15550009", "Hi")
    poll(mw_account, django_capture_on_commit_callbacks)
    session = Session.objects.get(account=mw_account)
    platform.lose_next_answer = True

    with django_capture_on_commit_callbacks(execute=True):
        reply, _ = message_send(session, Draft(body="Checking now"), author=admin_user)
    reply.refresh_from_db()
    assert (reply.status, reply.outcome_unknown) == (Message.Status.SENDING, True)

    poll(mw_account, django_capture_on_commit_callbacks)  # the platform lists what it took
    reply.refresh_from_db()

    (taken,) = platform.accepted
    assert reply.external_id == taken["message_id"]
    assert reply.status == Message.Status.SENT
    assert Message.objects.filter(session=session, direction="out").count() == 1

    # Settled from the history, it is looked up like any send: its ticks move on.
    settings.RECEIPTS_FETCH_BACKOFF_SECONDS = (0.0, 0.0)
    platform.status(reply.external_id, "READ")
    with django_capture_on_commit_callbacks(execute=True):
        receipts_fetch.account_receipts_fetch(str(mw_account.pk))
    reply.refresh_from_db()
    assert reply.status == Message.Status.READ


def test_a_wrong_password_marks_the_account_unhealthy_with_the_reason(
    platform, django_capture_on_commit_callbacks
):
    account: ProviderAccount = ProviderAccountFactory(
        kind="messagewhiz", name="Wrong", base_url=BASE, api_id="ops@example.com", api_key="nope"
    )

    poll(account, django_capture_on_commit_callbacks)
    poll(account, django_capture_on_commit_callbacks)

    account.refresh_from_db()
    assert platform.login_attempts == 1  # not every few seconds: a lockout would follow
    assert not account.is_healthy
    assert "refused the account's email and password" in account.last_error
    assert "Wrong email or password" in account.last_error
    assert not Channel.objects.filter(account=account).exists()


def test_admin_names_the_accounts_credentials_email_and_password_and_never_shows_them(
    mw_account, admin_client
):
    page = admin_client.get(
        f"/admin/integrations/provideraccount/{mw_account.pk}/change/"
    ).content.decode()

    assert ">Email:<" in page and ">Password:<" in page
    assert "ops@example.com" not in page and "s3cret" not in page
    assert "Stored: ••••••••. Leave blank" in page  # not even its last characters
    assert ".com. Leave blank" not in page and "cret. Leave blank" not in page


def test_add_account_takes_a_messagewhiz_email_and_password_encrypted(db, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--email and --password"):
        call_command("add_account", "messagewhiz", "--name", "MW", "--base-url", BASE)
    call_command(
        "add_account",
        "messagewhiz",
        "--name",
        "MW",
        "--base-url",
        BASE,
        "--email",
        "ops@example.com",
        "--password",
        "s3cret",
    )

    account = ProviderAccount.objects.get(kind="messagewhiz", name="MW")
    assert (account.api_id, account.api_key) == ("ops@example.com", "s3cret")
    assert "s3cret" not in capsys.readouterr().out
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_id, api_key FROM integrations_provideraccount WHERE id = %s", [account.pk]
        )
        stored = cursor.fetchone()
    assert "ops@example.com" not in stored[0] and "s3cret" not in stored[1]


def test_a_failed_reply_cannot_be_retried_to_a_customer_who_opted_out_since(
    mw_account, platform, admin_user, django_capture_on_commit_callbacks
):
    from inbox.services.send import message_retry

    platform.customer_writes("15550010", "Hi")
    poll(mw_account, django_capture_on_commit_callbacks)
    session = Session.objects.get(account=mw_account)
    with django_capture_on_commit_callbacks(execute=True):
        reply, _ = message_send(session, Draft(body="Hello"), author=admin_user)
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.FAILED)
    platform.customer_writes("15550010", "STOP")
    poll(mw_account, django_capture_on_commit_callbacks)
    reply.refresh_from_db()

    with pytest.raises(SendRefused) as refused:
        message_retry(reply)

    assert refused.value.code == "opted_out"
    assert len(platform.accepted) == 1
