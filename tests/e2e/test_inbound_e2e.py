"""End to end, through real processes: sandbox -> webhook (uvicorn) -> Celery worker -> rows."""

from __future__ import annotations

import json

import requests

from devstack import Stack, group_alive, wait_for
from inbox.models import Message, MessageReceipt, Session
from inbox.services.messages import message_external_ids_set
from integrations.models import WebhookEvent
from tests.factories import OutboundMessageFactory
from tests.patience import PATIENCE_SECONDS


def message_with(external_id: str) -> Message | None:
    return (
        Message.objects.select_related("session__channel").filter(external_id=external_id).first()
    )


def test_a_scripted_customer_message_becomes_a_message_in_the_right_session(stack, e2e_account):
    sent = stack.sandbox(
        "POST", "inbound", {"customer": "lucas", "type": "text", "text": "Bonjour 👋"}
    )

    message = wait_for(lambda: message_with(sent["id"]), what="the message row")

    assert message.body == "Bonjour 👋"
    assert message.session.external_id == sent["sessionId"]
    assert message.session.channel.external_id == "wa360:918828218374"
    assert message.session.contact.name == "Lucas Martin"
    assert message.account_id == e2e_account.id


def test_each_media_type_arrives_with_a_link_the_sandbox_serves(stack, e2e_account):
    sent = [
        stack.sandbox("POST", "inbound", {"customer": "priya", "type": kind})
        for kind in ("image", "voice", "document", "video", "location")
    ]

    messages = [wait_for(lambda s=s: message_with(s["id"]), what="media message") for s in sent]

    assert [m.type for m in messages] == ["image", "voice", "document", "video", "location"]
    for message in messages[:4]:
        response = requests.get(message.media_url, timeout=PATIENCE_SECONDS)
        assert response.ok
        assert (
            response.headers["content-type"].split(";")[0] == message.media_mime_type.split(";")[0]
        )
    assert messages[4].latitude is not None


def test_a_callback_delivered_three_times_is_one_message(stack, e2e_account):
    sent = stack.sandbox("POST", "inbound", {"customer": "amira", "type": "text", "copies": 3})

    def three_processed() -> bool:
        events = WebhookEvent.objects.filter(account=e2e_account, body__contains=sent["id"])
        return events.count() == 3 and not events.exclude(state="processed").exists()

    wait_for(three_processed, what="three processed deliveries")
    assert Message.objects.filter(external_id=sent["id"]).count() == 1
    assert Session.objects.get(external_id=sent["sessionId"]).unread_count == 1


def test_an_out_of_order_receipt_never_downgrades_the_status(stack, e2e_account):
    stack.sandbox("POST", "faults", {"reorder_rate": 1})
    inbound = stack.sandbox("POST", "inbound", {"customer": "yossi", "type": "text"})
    session = wait_for(lambda: Session.objects.filter(external_id=inbound["sessionId"]).first())
    outbound = OutboundMessageFactory(session=session, account=e2e_account, external_id="")
    customer = next(c for c in stack.sandbox("GET", "state")["customers"] if c["key"] == "yossi")

    # Until the send pipeline exists, the test makes the platform call itself.
    response = requests.post(
        f"{stack.sandbox_url}/xms/api/v1/message/send",
        headers={"x-api-key": stack.api_key},
        json={
            "channelId": customer["channelId"],
            "mask": False,
            "type": "text",
            "to": {"contactId": customer["contactId"]},
            "text": {"body": "Shalom!"},
        },
        timeout=PATIENCE_SECONDS,
    )
    message_external_ids_set(outbound, external_id=response.json()["data"]["id"])

    wait_for(
        lambda: MessageReceipt.objects.filter(message=outbound).count() == 3,
        what="three receipts",
    )
    outbound.refresh_from_db()
    assert outbound.status == Message.Status.READ
    assert outbound.delivered_at is not None and outbound.read_at is not None
    assert set(outbound.status_changes.values_list("status", flat=True)) == {
        "sent",
        "delivered",
        "read",
    }


def test_a_scenario_file_plays_the_same_conversation_every_time(stack, e2e_account, tmp_path):
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        json.dumps(
            {
                "steps": [
                    {"at": 0.0, "customer": "mei", "type": "text", "text": "你好", "id": "scn-1"},
                    {"at": 0.3, "customer": "mei", "type": "image", "id": "scn-2"},
                    {"at": 0.6, "customer": "joao", "type": "location", "id": "scn-3"},
                ]
            }
        )
    )
    stack.start_sandbox(["--scenario", str(scenario), "--receipt-delays", "0.2,0.5,0.9"])
    try:
        from integrations.services.accounts import account_webhook_register

        account_webhook_register(e2e_account)
        messages = [
            wait_for(lambda i=i: message_with(f"scn-{i}"), what=f"scn-{i}") for i in (1, 2, 3)
        ]
    finally:
        stack.start_sandbox()

    assert [(m.type, m.session.channel.external_id) for m in messages] == [
        ("text", "tg:switchboard_help_bot"),
        ("image", "tg:switchboard_help_bot"),
        ("location", "tg:switchboard_help_bot"),
    ]
    assert messages[0].session == messages[1].session != messages[2].session


def test_the_harness_leaves_no_process_behind(stack):
    extra = Stack(database_url=stack.database_url, redis_url=stack.redis_url)
    extra.start()
    pids = [p.popen.pid for p in extra.processes.values()]
    assert all(group_alive(pid) for pid in pids)

    extra.stop()

    assert not any(group_alive(pid) for pid in pids)
