"""The XMS parser reads what the platform really sends, however loosely it is typed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integrations.base import DeliveryStatus, MessageType, PayloadError, SessionEventKind
from integrations.xms import schemas
from integrations.xms.provider import XmsProvider
from tests.conftest import load_fixture


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (919988776655, "919988776655"),
        ("  abc ", "abc"),
        (12.90909, "12.90909"),
        (True, "true"),
    ],
)
def test_string_fields_accept_numbers_and_strings(value, expected):
    assert schemas.as_str(value) == expected


def test_a_string_field_holding_an_object_is_a_payload_error():
    with pytest.raises(PayloadError, match=r"messages\[0\]\.id"):
        schemas.as_str({"nested": 1}, "messages[0].id")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1700000000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("1700000000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("2023-11-14T22:13:20Z", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (0, None),
        (None, None),
    ],
)
def test_timestamps_are_read_as_ms_or_s(value, expected):
    assert schemas.parse_timestamp(value, "t", []) == expected


def test_an_implausible_timestamp_gives_none_and_a_warning():
    warnings: list[str] = []

    assert schemas.parse_timestamp(156753339076, "messages[0].timestamp", warnings) is None
    assert "neither ms nor s" in warnings[0]


def test_the_wrapper_type_is_ignored_and_every_array_is_read():
    body = load_fixture("xms", "inbound-wrapper-full-2023")
    assert body["type"] == "message"

    callback = schemas.parse_callback(body)

    assert len(callback.messages) == 1
    assert len(callback.receipts) == 1
    assert len(callback.events) == 1
    assert len(callback.actions) == 1
    assert len(callback.contacts) == 1


def test_the_2022_contact_reads_mobile_and_top_level_profile_id():
    callback = schemas.parse_callback(load_fixture("xms", "inbound-contact-info-2022"))

    contact = callback.contacts[0]
    assert callback.wants_contact_reply
    assert (contact.external_id, contact.phone, contact.business_profile_id) == (
        "1234567",
        "919988776655",
        "C34567",
    )


def test_media_prefers_the_secure_link():
    message = schemas.parse_callback(load_fixture("xms", "inbound-message-image")).messages[0]

    assert message.type is MessageType.IMAGE
    assert message.media is not None
    assert message.media.link.startswith("https://")


def test_a_media_message_without_its_object_uses_its_first_attachment():
    body = load_fixture("xms", "inbound-message-image")
    msg = body["messages"][0]
    msg["attachments"] = [msg.pop("image")]

    message = schemas.parse_callback(body).messages[0]

    assert message.media is not None
    assert message.media.mime_type == "image/jpeg"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SENT", "sent"),
        ("DLVRD", "delivered"),
        ("READ", "read"),
        ("FAILD", "failed"),
        ("DELTD", "deleted"),
    ],
)
def test_receipt_status_codes_map_to_delivery_statuses(code, status):
    body = load_fixture("xms", "inbound-status-sent")
    body["statuses"][0]["status"] = code

    assert schemas.parse_callback(body).receipts[0].status == DeliveryStatus(status)


def test_an_unknown_receipt_status_is_skipped_with_a_warning():
    body = load_fixture("xms", "inbound-status-sent")
    body["statuses"][0]["status"] = "BOUNCED"

    callback = schemas.parse_callback(body)

    assert callback.receipts == []
    assert "BOUNCED" in callback.warnings[0]


def test_an_event_with_an_unknown_code_is_dispatched_on_its_sub_object():
    body = load_fixture("xms", "inbound-event-session-assigned")
    body["events"][0]["eventCode"] = "AGENT_CHANGED"

    event = schemas.parse_callback(body).events[0]

    assert event.kind is SessionEventKind.ASSIGNED


def test_a_non_array_where_an_array_belongs_is_skipped_with_a_warning():
    callback = schemas.parse_callback({"statuses": {"id": 1}})

    assert callback.is_empty()
    assert callback.warnings == ["statuses: skipped: should be an array, got dict"]


@pytest.mark.parametrize("code", ["SESSION_CLOSE_WARNING", "ROUTER_HEARTBEAT", "UNASSIGNED_COUNT"])
def test_an_unknown_event_code_is_never_classified_by_its_wording(code):
    body = load_fixture("xms", "inbound-event-session-routed")
    body["events"][0]["eventCode"] = code
    del body["events"][0]["sessionRouted"]

    assert schemas.parse_callback(body).events[0].kind is SessionEventKind.OTHER


def test_the_contact_reply_uses_mobile_and_omits_what_we_do_not_know():
    from integrations.base import ContactView

    reply = XmsProvider().contact_reply(ContactView(profile_id="C1", name="Ann"))

    assert reply == {"profileId": "C1", "name": "Ann"}


def test_only_a_top_level_contact_body_wants_a_synchronous_reply():
    provider = XmsProvider()

    assert provider.wants_sync_reply(load_fixture("xms", "inbound-contact-info-2023"))
    assert not provider.wants_sync_reply(load_fixture("xms", "inbound-message-text"))
    assert not provider.wants_sync_reply(load_fixture("xms", "inbound-action-2022"))
