"""The sandbox behaves like the platform its spec describes, including how it refuses things."""

from __future__ import annotations

import asyncio
import random
from unittest import mock

import pytest

from integrations.sandbox.server import SandboxServer
from integrations.sandbox.state import Faults, SandboxPlatform, now_ms
from tests.conftest import load_fixture
from tests.sandbox_client import call

KEY = {"x-api-key": "sandbox-key"}


@pytest.fixture
def platform() -> SandboxPlatform:
    return SandboxPlatform(
        api_key="sandbox-key", verify_token="tok", rng=random.Random(7), reply_rate=0.0
    )


@pytest.fixture
def server(platform: SandboxPlatform) -> SandboxServer:
    return SandboxServer(platform, rng=random.Random(7), simulate=False)


def write_in(platform: SandboxPlatform, key: str = "lucas", **kwargs) -> dict:
    _, summary = platform.customer_message(key, **kwargs)
    return summary


def text_to(platform: SandboxPlatform, key: str = "lucas", body: str = "Hello") -> dict:
    customer = platform.customers[key]
    return {
        "channelId": customer.channel_id,
        "mask": False,
        "to": {"contactId": customer.contact_id, "phone": customer.phone},
        "type": "text",
        "text": {"body": body},
    }


def receipt_statuses(callbacks) -> list[str]:
    return [c.body["statuses"][0]["status"] for c in callbacks if c.kind == "status"]


# --- message/send: shape ------------------------------------------------------------------------


def test_a_send_missing_required_fields_is_refused_naming_each_field(server):
    status, envelope = call(
        server, "POST", "/xms/api/v1/message/send", {"type": "text"}, headers=KEY
    )

    assert status == 400
    assert envelope["statusKey"] == "VALIDATION_ERROR"
    fields = {e["field"] for e in envelope["errors"]}
    assert {"channelId", "mask", "to", "text.body"} <= fields
    assert all(e["obzect"] == "OutBoundMsg" for e in envelope["errors"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "fax"}, "type"),
        ({"mask": "no"}, "mask"),
        ({"to": {"phone": "+91 99887"}}, "to.phone"),
        ({"image": {"link": "https://example.com/a.png"}}, "image"),
        ({"type": "image", "text": None, "image": {"link": "ftp://x"}}, "image.link"),
        ({"type": "voice", "text": None}, "type"),
        (
            {"type": "location", "text": None, "location": {"latitude": "north", "longitude": 2}},
            "location.latitude",
        ),
        ({"type": "template", "text": None, "template": {"data": {}}}, "template"),
        ({"options": {"buttons": [{"type": "URL", "label": "Go"}]}}, "options.buttons[0].url"),
    ],
)
def test_a_send_that_breaks_the_shape_names_the_field(server, platform, change, field):
    body = {**text_to(platform), **change}
    body = {k: v for k, v in body.items() if v is not None}

    status, envelope = call(server, "POST", "/api/v1/message/send", body, headers=KEY)

    assert status == 400
    assert field in {e["field"] for e in envelope["errors"]}, envelope["errors"]


def test_a_send_without_the_api_key_is_401(server, platform):
    status, envelope = call(server, "POST", "/xms/api/v1/message/send", text_to(platform))

    assert status == 401
    assert envelope["statusKey"] == "UNAUTHORIZED"


@pytest.mark.parametrize(
    "name",
    [
        "outbound-send-text",
        "outbound-send-text-buttons",
        "outbound-send-image",
        "outbound-send-video",
        "outbound-send-audio",
        "outbound-send-document",
        "outbound-send-location",
        "outbound-send-contacts",
        "outbound-send-template",
    ],
)
def test_every_documented_send_example_is_accepted(server, name):
    status, envelope = call(
        server, "POST", "/xms/api/v1/message/send", load_fixture("xms", name), headers=KEY
    )

    assert status == 200, envelope
    assert envelope["statusKey"] == "SUCCESS"
    assert envelope["data"]["id"] == envelope["results"][0]["id"]


def test_an_unknown_channel_is_an_error_envelope_with_http_200(server, platform):
    body = {**text_to(platform), "channelId": "wa360:000"}

    status, envelope = call(server, "POST", "/api/v1/message/send", body, headers=KEY)

    assert status == 200
    assert envelope["statusKey"] == "CHANNEL_NOT_FOUND"
    assert envelope["errors"][0]["field"] == "channelId"


# --- message/send: what happens next ------------------------------------------------------------


def test_a_reply_inside_the_window_gets_sent_delivered_read_receipts(platform):
    write_in(platform)

    status, envelope, callbacks = platform.send(text_to(platform))

    assert status == 200
    assert receipt_statuses(callbacks) == ["SENT", "DLVRD", "READ"]
    receipt = next(c for c in callbacks if c.kind == "status").body["statuses"][0]
    assert receipt["id"] == envelope["data"]["id"]
    assert receipt["messageIdExt"].startswith("wamid.")


def test_a_free_form_message_outside_the_window_fails_with_470(platform):
    write_in(platform, at_ms=now_ms() - 25 * 3600 * 1000)

    status, _envelope, callbacks = platform.send(text_to(platform))

    assert status == 200  # accepted, then refused by the channel, as the real platform does
    assert receipt_statuses(callbacks) == ["FAILD"]
    error = callbacks[0].body["statuses"][0]["errors"][0]
    assert error["code"] == "470"
    assert "support window" in error["title"]


def test_a_template_outside_the_window_is_delivered(platform):
    write_in(platform, at_ms=now_ms() - 25 * 3600 * 1000)
    customer = platform.customers["lucas"]
    body = {
        "channelId": customer.channel_id,
        "mask": False,
        "to": {"contactId": customer.contact_id},
        "type": "template",
        "template": {
            "code": "ORDER_UPDATE",
            "lang": "en_US",
            "data": {"name": "Lucas", "order_id": "1", "eta": "Friday"},
        },
    }

    status, _, callbacks = platform.send(body)

    assert status == 200
    assert receipt_statuses(callbacks) == ["SENT", "DLVRD", "READ"]
    assert "Hi Lucas, your order 1 is on its way" in next(iter(platform.outbound.values())).text


def test_a_template_with_a_missing_placeholder_fails_like_whatsapp(platform):
    customer = platform.customers["lucas"]
    body = {
        "channelId": customer.channel_id,
        "mask": False,
        "to": {"contactId": customer.contact_id},
        "type": "template",
        "template": {"code": "ORDER_UPDATE", "data": {"name": "Lucas"}},
    }

    _, _, callbacks = platform.send(body)

    assert receipt_statuses(callbacks) == ["FAILD"]
    assert callbacks[0].body["statuses"][0]["errors"][0]["code"] == "132000"


@pytest.mark.parametrize(
    ("code", "state"), [("SUMMER_PROMO", "PENDING"), ("PAYMENT_OVERDUE", "REJECTED")]
)
def test_a_template_not_approved_on_the_channel_is_refused(platform, code, state):
    customer = platform.customers["lucas"]
    body = {
        "channelId": customer.channel_id,
        "mask": False,
        "to": {"contactId": customer.contact_id},
        "type": "template",
        "template": {"code": code},
    }

    status, envelope, _ = platform.send(body)

    assert status == 200
    assert envelope["statusKey"] == "TEMPLATE_NOT_AVAILABLE"
    assert state in envelope["errors"][0]["description"]


def test_reordered_receipts_come_newest_first(platform):
    platform.faults = Faults(reorder_rate=1.0)
    write_in(platform)

    _, _, callbacks = platform.send(text_to(platform))

    assert receipt_statuses(callbacks) == ["READ", "DLVRD", "SENT"]


def test_injected_5xx_answers_are_not_processed(server, platform):
    platform.faults.error_rate = 1.0

    status, _ = call(server, "POST", "/api/v1/message/send", text_to(platform), headers=KEY)

    assert status == 503
    assert platform.outbound == {}


def test_an_accept_then_hang_send_is_stored_and_answered_after_the_timeout(server, platform):
    write_in(platform)
    platform.faults.accept_hang_rate = 1.0
    platform.faults.timeout_seconds = 0.01

    status, envelope = call(server, "POST", "/api/v1/message/send", text_to(platform), headers=KEY)

    assert status == 200
    assert list(platform.outbound) == [envelope["data"]["id"]]
    assert platform.counters["fault_accept_hang"] == 1


def test_a_history_that_lags_lists_a_send_late_and_one_that_omits_it_never(platform):
    session_id = write_in(platform)["sessionId"]
    platform.faults.history_lag_seconds = 3600
    platform.send(text_to(platform, body="Late"))
    platform.faults.history_lag_seconds = 0
    platform.faults.history_omit_rate = 1.0
    platform.send(text_to(platform, body="Never"))
    platform.faults.history_omit_rate = 0.0
    platform.send(text_to(platform, body="Listed"))

    _, envelope, _ = platform.session_messages({"sessionId": session_id})

    assert [m["text"] for m in envelope["results"] if m["status"] != "RECEIVD"] == ["Listed"]
    assert len(platform.outbound) == 3


# --- Customers ----------------------------------------------------------------------------------


def test_a_first_message_sends_the_contact_profile_then_the_message_then_routing(platform):
    callbacks, summary = platform.customer_message("amira", kind="image")

    assert [c.kind for c in callbacks] == ["contact", "message", "event"]
    assert callbacks[0].path == "api/v1/contact/info"
    message = callbacks[1].body["messages"][0]
    assert message["session"]["sessionId"] == summary["sessionId"]
    assert message["image"]["mime_type"] == "image/png"
    assert message["image"]["link"].startswith("http://127.0.0.1:8001/media/")
    assert callbacks[2].body["events"][0]["eventCode"] == "SESSION_ROUTED"


@pytest.mark.parametrize(
    "kind", ["text", "image", "video", "audio", "voice", "document", "location"]
)
def test_customers_send_every_message_type(platform, kind):
    callbacks, _ = platform.customer_message("priya", kind=kind)

    message = next(c for c in callbacks if c.kind == "message").body["messages"][0]
    assert message["type"] == kind
    assert kind in message


def test_every_media_link_is_served_by_the_sandbox(server, platform):
    for kind in ("image", "video", "audio", "voice", "document"):
        callbacks, _ = platform.customer_message("priya", kind=kind)
        media = next(c for c in callbacks if c.kind == "message").body["messages"][0][kind]
        path = media["link"].removeprefix("http://127.0.0.1:8001")
        status, content = call(server, "GET", path)
        assert status == 200, path
        assert len(content) > 100


def test_a_customer_writing_after_close_starts_a_new_session(platform):
    first = write_in(platform)
    platform.session_close({"sessionId": first["sessionId"]})

    second = write_in(platform)

    assert second["sessionId"] != first["sessionId"]


def test_ending_sessions_quietly_makes_the_next_message_start_a_new_one(server, platform):
    first = write_in(platform)
    server.pending = 0

    status, answer = call(server, "POST", "/_sandbox/sessions/end", {})
    second = write_in(platform)

    assert status == 200
    assert answer == {"ended": 1}
    assert server.pending == 0  # no callback told anyone
    assert second["sessionId"] != first["sessionId"]


def test_callbacks_still_waiting_when_sessions_end_are_dropped_not_delivered(server, platform):
    callbacks, _ = platform.customer_message("lucas")
    before = server.generation

    call(server, "POST", "/_sandbox/sessions/end", {})
    with mock.patch.object(server, "deliver") as deliver:
        for callback in callbacks:  # each scheduled before the end, due after it
            server.pending += 1
            asyncio.run(server._later(callback, 1, before))

    deliver.assert_not_called()
    assert server.stats.dropped == len(callbacks) > 0
    assert server.pending == 0


def test_a_customer_writing_after_resolve_continues_the_same_session(platform):
    first = write_in(platform)
    platform.session_resolve({"sessionId": first["sessionId"]})

    second = write_in(platform)

    assert second["sessionId"] == first["sessionId"]
    assert platform.sessions[first["sessionId"]].status == "open"


# --- Sessions and configuration -----------------------------------------------------------------


def test_routing_changes_the_queue_and_pushes_a_session_routed_event(platform):
    session_id = write_in(platform)["sessionId"]

    status, envelope, callbacks = platform.session_routing(
        {
            "sessionId": session_id,
            "queue": "billing",
            "agent": "agent-7",
            "skills": ["fr"],
            "params": {},
        }
    )

    assert status == 200
    event = envelope["results"][0]
    assert event["eventCode"] == "SESSION_ROUTED"
    assert event["sessionRouted"]["sourceQueue"] == "external_bot"
    assert event["sessionRouted"]["targetQueue"] == "billing"
    assert callbacks[0].body["events"][0]["eventId"] == event["eventId"]
    assert platform.sessions[session_id].agent == "agent-7"


def test_closing_a_closed_session_is_refused(platform):
    session_id = write_in(platform)["sessionId"]
    platform.session_close({"sessionId": session_id})

    _status, envelope, _ = platform.session_close({"sessionId": session_id})

    assert envelope["statusKey"] == "SESSION_CLOSED"
    assert envelope["status"] == 409


def test_an_unknown_session_is_404(platform):
    status, envelope, _ = platform.session_resolve({"sessionId": "nope"})

    assert status == 404
    assert envelope["statusKey"] == "SESSION_NOT_FOUND"


def test_session_messages_returns_the_history_in_both_directions(platform):
    session_id = write_in(platform)["sessionId"]
    platform.send(text_to(platform))

    _, envelope, _ = platform.session_messages({"sessionId": session_id})

    assert [m["status"] for m in envelope["results"]] == ["RECEIVD", "ACCEPTED"]


def test_the_template_list_has_languages_approvals_and_a_pending_and_rejected_one(server):
    status, envelope = call(server, "GET", "/xms/api/v1/config/tmpl/hsm", headers=KEY)

    templates = envelope["results"]
    assert status == 200
    assert len({t["lang"] for t in templates}) >= 5
    statuses = {a["status"] for t in templates for a in t["approved"]}
    assert {"APPROVED", "PENDING", "REJECTED"} <= statuses
    assert any(t["options"]["buttons"] for t in templates)
    assert any(t["header"] and t["footer"] for t in templates)


def test_templates_can_be_filtered_by_channel(server):
    _, envelope = call(
        server,
        "GET",
        "/api/v1/config/tmpl/hsm",
        headers=KEY,
        query="channelId=tg:switchboard_help_bot",
    )

    assert envelope["results"] == []


def test_sandbox_channels_are_listed_only_when_asked(server):
    _, plain = call(server, "GET", "/api/v1/config/channels", headers=KEY)
    _, both = call(server, "GET", "/api/v1/config/channels", headers=KEY, query="sabdnox=true")

    assert len(both["results"]) == len(plain["results"]) + 1
    assert {c["contactType"] for c in plain["results"]} == {"WHATSAPP", "TELEGRAM"}


def test_extra_templates_can_be_generated_for_benchmarks():
    platform = SandboxPlatform(api_key="k", verify_token="t", extra_templates=2000)

    assert len(platform.templates) > 2000


def test_set_webhook_refuses_a_url_that_is_not_http(server):
    status, envelope = call(
        server, "POST", "/api/v1/config/webhook", {"url": "ftp://x"}, headers=KEY
    )

    assert status == 400
    assert envelope["errors"][0]["field"] == "url"


def test_faults_can_be_changed_at_run_time_and_unknown_ones_are_refused(server, platform):
    status, faults = call(server, "POST", "/_sandbox/faults", {"duplicate_rate": 0.5})
    bad, _ = call(server, "POST", "/_sandbox/faults", {"explode": 1})

    assert status == 200
    assert platform.faults.duplicate_rate == 0.5
    assert faults["duplicate_rate"] == 0.5
    assert bad == 400
