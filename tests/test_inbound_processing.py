"""Every callback the platform can send lands as the rows an agent's inbox shows, exactly once."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.utils import timezone

from inbox.models import (
    Contact,
    ContactIdentity,
    Message,
    MessageReceipt,
    MessageStatusChange,
    Session,
    TimelineEntry,
)
from inbox.services.messages import message_external_ids_set
from integrations.models import Channel, WebhookEvent
from integrations.services import webhooks
from tests.conftest import DRAIN_BATCHED, Poster, load_fixture
from tests.factories import AgentProfileFactory, OutboundMessageFactory, SessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def post_callback(post_callback_each_path: Poster) -> Poster:
    """Each behaviour here holds on both paths: one task per callback, and the drain."""
    return post_callback_each_path


def xms(name: str) -> dict:
    return load_fixture("xms", name)


def test_callbacks_posted_in_a_row_are_applied_one_batch_at_a_time_or_together_per_path(
    account, post_callback, request
):
    """The paths really differ: on the batched one, a burst reaches the pipeline as one run."""
    real = webhooks._apply_claimed
    with mock.patch.object(webhooks, "_apply_claimed", side_effect=real) as runs:
        for number in range(3):
            body = copy.deepcopy(xms("inbound-message-text"))
            body["messages"][0]["id"] = body["messages"][0]["messageIdExt"] = f"row-{number}"
            post_callback(account, body)
        states = list(WebhookEvent.objects.order_by("id").values_list("state", flat=True))

    assert states == [WebhookEvent.State.PROCESSED] * 3
    assert Message.objects.filter(account=account).count() == 3
    sizes = [len(call.args[0]) for call in runs.call_args_list]
    batched = request.node.callspec.params["post_callback_each_path"] == DRAIN_BATCHED
    assert sizes == ([3] if batched else [1, 1, 1])


# --- Messages of every type ---------------------------------------------------------------------


def test_a_text_message_creates_contact_identity_channel_session_and_message(
    account, post_callback
):
    post_callback(account, xms("inbound-message-text"))

    message = Message.objects.get()
    assert message.direction == Message.Direction.INBOUND
    assert message.type == "text"
    assert message.body == "your-text-message-content"
    assert message.external_id == "1234567"
    assert message.external_id_ext == "1234567"
    assert message.status == Message.Status.RECEIVED

    identity = ContactIdentity.objects.get()
    assert identity.external_id == "wa919988776655_918828218374"
    assert identity.medium == "whatsapp"
    assert identity.address == "919988776655"
    contact = identity.contact
    assert (contact.name, contact.email, contact.phone) == (
        "John Doe",
        "abc@xyz.com",
        "919988776655",
    )
    assert contact.business_profile_id == "C34567"

    channel = Channel.objects.get()
    assert (channel.external_id, channel.lane, channel.medium) == (
        "wa360:918828218374",
        "918828218374",
        "whatsapp",
    )
    assert channel.discovered

    session = Session.objects.get()
    assert session.external_id == "xsds34434"
    assert session.routing_id == "xsds34434-323-232"
    assert session.platform_agent == "SUPPORT"
    assert session.platform_dept == "SUPPORT"
    assert session.status == Session.Status.OPEN
    assert session.channel == channel
    assert session.contact == contact
    assert session.unread_count == 1
    assert session.last_message == message
    assert session.last_inbound_at == message.sent_at
    assert message.session == session
    assert session.timeline.filter(kind=TimelineEntry.Kind.OPENED).count() == 1


@pytest.mark.parametrize(
    ("fixture", "kind", "mime", "filename", "caption"),
    [
        ("inbound-message-image", "image", "image/jpeg", "", "document-caption"),
        ("inbound-message-video", "video", "video/mp4", "", "document-caption"),
        ("inbound-message-audio", "audio", "audio/mpeg", "", ""),
        ("inbound-message-voice", "voice", "audio/ogg; codecs=opus", "", ""),
        (
            "inbound-message-document",
            "document",
            "application/pdf",
            "document-filename",
            "document-caption",
        ),
    ],
)
def test_a_media_message_keeps_its_link_type_name_and_checksum(
    account, post_callback, fixture, kind, mime, filename, caption
):
    body = xms(fixture)
    post_callback(account, body)

    message = Message.objects.get()
    media = body["messages"][0][kind]
    assert message.type == kind
    assert message.media_url == media["linkSecure"]
    assert message.media_mime_type == mime
    assert message.media_filename == filename
    assert message.caption == caption
    assert message.media_sha256 == "m3232kaoe4belrr"
    assert message.media_external_id == "2121212"


def test_a_location_message_keeps_its_coordinates_as_numbers(account, post_callback):
    post_callback(account, xms("inbound-message-location"))

    message = Message.objects.get()
    assert message.type == "location"
    assert message.latitude == pytest.approx(12.90909)
    assert message.longitude == pytest.approx(6.90808)
    assert message.location_name == "Main Building"
    assert message.location_address == "1 Hacker Way, Menlo Park, CA, 94025"


def test_a_system_message_is_kept_but_does_not_count_as_unread(account, post_callback):
    body = xms("inbound-message-text")
    body["messages"][0]["type"] = "system"
    body["messages"][0]["text"] = {"body": "Customer joined"}
    post_callback(account, body)

    message = Message.objects.get()
    assert message.type == "system"
    assert message.body == "Customer joined"
    assert Session.objects.get().unread_count == 0


def test_an_unknown_message_type_is_kept_with_its_raw_type_and_a_warning(account, post_callback):
    body = xms("inbound-message-text")
    body["messages"][0]["type"] = "reaction"
    body["messages"][0]["reaction"] = {"emoji": "👍"}
    post_callback(account, body)

    message = Message.objects.get()
    assert message.type == "unknown"
    assert message.raw_type == "reaction"
    assert message.raw["reaction"] == {"emoji": "👍"}
    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.PROCESSED
    assert any("reaction" in w for w in event.warnings)


def test_the_2023_kitchen_sink_wrapper_with_numbers_for_strings_is_processed(
    account, post_callback
):
    post_callback(account, xms("inbound-wrapper-full-2023"))

    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.PROCESSED, event.error
    message = Message.objects.get()
    assert message.external_id == "1234567"
    assert message.type == "text"
    # The docs' 12-digit timestamp is neither ms nor s: the receipt time stands in (spec §0).
    assert message.sent_at == event.received_at
    assert any("neither ms nor s" in w for w in event.warnings)
    assert MessageReceipt.objects.get().status == "delivered"
    assert TimelineEntry.objects.filter(kind=TimelineEntry.Kind.ACTION).count() == 1
    assert TimelineEntry.objects.filter(kind=TimelineEntry.Kind.ROUTED).count() == 1


def test_the_2022_wrapper_with_mobile_and_top_level_profile_id_is_processed(account, post_callback):
    post_callback(account, xms("inbound-wrapper-full-2022"))

    assert WebhookEvent.objects.get().state == WebhookEvent.State.PROCESSED
    message = Message.objects.get()
    assert message.type == "text"
    assert message.session.external_id == "xsds34434"
    # contacts[] says 1234567 and the message says WA919988776655: one phone, one contact.
    assert ContactIdentity.objects.count() == 2
    contact = Contact.objects.get()
    assert contact.phone == "919988776655"
    assert contact.business_profile_id == "C34567"
    # The message's channel comes from the wrapper's only contact (lane 919999998888).
    assert message.session.channel.lane == "919999998888"


def test_timestamps_in_seconds_and_milliseconds_both_read_as_the_same_moment(
    account, post_callback
):
    seconds = xms("inbound-message-text")
    seconds["messages"][0]["timestamp"] = 1700000000
    millis = xms("inbound-message-text")
    millis["messages"][0].update(id="other", timestamp=1700000000000)

    post_callback(account, seconds)
    post_callback(account, millis)

    moments = {m.sent_at for m in Message.objects.all()}
    assert moments == {datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)}


def test_a_message_without_id_falls_back_to_messageIdExt(account, post_callback):
    body = xms("inbound-message-text")
    del body["messages"][0]["id"]
    post_callback(account, body)
    post_callback(account, body)

    assert Message.objects.get().external_id == "ext:1234567"


# --- Exactly once -------------------------------------------------------------------------------


def test_the_same_message_posted_twice_is_one_message(account, post_callback):
    body = xms("inbound-message-text")

    post_callback(account, body)
    post_callback(account, body)

    assert WebhookEvent.objects.count() == 2
    assert set(WebhookEvent.objects.values_list("state", flat=True)) == {"processed"}
    assert Message.objects.count() == 1
    assert Session.objects.get().unread_count == 1
    assert Contact.objects.count() == 1
    assert TimelineEntry.objects.count() == 1


def test_every_example_posted_twice_creates_nothing_the_second_time(account, post_callback):
    names = [
        "inbound-wrapper-full-2023",
        "inbound-wrapper-full-2022",
        "inbound-message-image",
        "inbound-status-failed",
        "inbound-event-session-routed",
        "inbound-event-session-assigned",
        "inbound-action",
        "inbound-contact-info-2023",
    ]
    for name in names:
        post_callback(account, xms(name))
    counts = [
        m.objects.count()
        for m in (Contact, ContactIdentity, Session, Message, MessageReceipt, TimelineEntry)
    ]

    for name in names:
        post_callback(account, xms(name))

    assert counts == [
        m.objects.count()
        for m in (Contact, ContactIdentity, Session, Message, MessageReceipt, TimelineEntry)
    ]


# --- Contacts -----------------------------------------------------------------------------------


def test_a_contact_on_two_channels_with_one_phone_is_one_contact(account, post_callback):
    first = xms("inbound-message-text")
    second = copy.deepcopy(first)
    second["contacts"][0].update(
        contactId="sms919988776655",
        contactType="SMS",
        channelId="sms:918828218375",
        lane="918828218375",
    )
    second["messages"][0].update(
        id="sms-1", contactId="sms919988776655", session={"sessionId": "sms-session"}
    )

    post_callback(account, first)
    post_callback(account, second)

    contact = Contact.objects.get()
    assert sorted(contact.identities.values_list("medium", flat=True)) == ["sms", "whatsapp"]
    assert Session.objects.filter(contact=contact).count() == 2
    assert Channel.objects.count() == 2


def test_a_callback_never_overwrites_a_name_an_agent_entered(account, post_callback):
    post_callback(account, xms("inbound-message-text"))
    Contact.objects.update(name="Jonathan (VIP)")

    post_callback(account, xms("inbound-contact-info-2023"))

    assert Contact.objects.get().name == "Jonathan (VIP)"


# --- Sessions -----------------------------------------------------------------------------------


def test_a_new_session_id_for_the_same_contact_closes_the_previous_session(account, post_callback):
    first = xms("inbound-message-text")
    first["messages"][0]["timestamp"] = 1700000000000
    second = copy.deepcopy(first)
    second["messages"][0].update(id="2", timestamp=1700000600000)
    second["messages"][0]["session"]["sessionId"] = "next-session"

    post_callback(account, first)
    post_callback(account, second)

    old, new = Session.objects.order_by("opened_at")
    assert old.status == Session.Status.CLOSED
    assert new.status == Session.Status.OPEN
    assert old.timeline.filter(kind=TimelineEntry.Kind.CLOSED).exists()


def test_a_customer_writing_to_a_resolved_session_reopens_it(account, post_callback):
    post_callback(account, xms("inbound-message-text"))
    Session.objects.update(status=Session.Status.RESOLVED)
    again = xms("inbound-message-text")
    again["messages"][0]["id"] = "again"

    post_callback(account, again)

    session = Session.objects.get()
    assert session.status == Session.Status.OPEN
    assert session.unread_count == 2
    assert session.timeline.filter(kind=TimelineEntry.Kind.REOPENED).exists()


def test_an_older_message_arriving_late_does_not_move_the_window_back(account, post_callback):
    newer = xms("inbound-message-text")
    newer["messages"][0].update(id="newer", timestamp=1700000600000)
    older = xms("inbound-message-text")
    older["messages"][0].update(id="older", timestamp=1700000000000)

    post_callback(account, newer)
    post_callback(account, older)

    session = Session.objects.get()
    assert session.last_inbound_at == datetime.fromtimestamp(1700000600, tz=UTC)
    assert session.last_message.external_id == "newer"


def test_a_session_routed_event_updates_queue_routing_and_timeline(account, post_callback):
    post_callback(account, xms("inbound-message-text"))

    post_callback(account, xms("inbound-event-session-routed"))

    session = Session.objects.get()
    assert session.platform_queue == "external_bot"
    assert session.platform_dept == "SUPPORT"
    entry = session.timeline.get(kind=TimelineEntry.Kind.ROUTED)
    assert "external_bot" in entry.summary


def test_a_session_assigned_event_maps_the_agent_code_to_our_agent(account, post_callback):
    post_callback(account, xms("inbound-message-text"))
    agent = AgentProfileFactory(platform_code="agent-42").user
    body = xms("inbound-event-session-assigned")
    body["events"][0]["sessionAssigned"]["newAgent"] = "agent-42"
    body["events"][0]["session"]["agent"] = "agent-42"

    post_callback(account, body)

    session = Session.objects.get()
    assert session.platform_agent == "agent-42"
    assert session.assignee == agent
    assert session.timeline.filter(kind=TimelineEntry.Kind.ASSIGNED).count() == 1


def test_an_event_for_an_unseen_session_creates_it_from_the_event_contact(account, post_callback):
    post_callback(account, xms("inbound-event-session-routed"))

    session = Session.objects.get()
    assert session.external_id == "xsds34434"
    assert session.platform_queue == "external_bot"
    assert session.contact.identities.get().external_id == "wa919988776655_918828218374"
    assert session.channel.lane == "918828218374"


def test_a_later_message_upgrades_a_channel_known_only_by_its_lane(account, post_callback):
    post_callback(account, xms("inbound-event-session-routed"))
    post_callback(account, xms("inbound-message-text"))

    channel = Channel.objects.get()
    assert channel.external_id == "wa360:918828218374"


def test_an_event_whose_snapshot_says_resolved_resolves_the_session(account, post_callback):
    post_callback(account, xms("inbound-message-text"))
    body = xms("inbound-event-session-routed")
    body["events"][0]["eventCode"] = "SESSION_RESOLVED"
    body["events"][0]["eventId"] = "ev-resolved"
    body["events"][0].pop("sessionRouted")
    body["events"][0]["session"]["resolved"] = True

    post_callback(account, body)

    session = Session.objects.get()
    assert session.status == Session.Status.RESOLVED
    assert session.resolved_at is not None


def test_routed_and_assigned_events_sharing_a_placeholder_event_id_both_apply(
    account, post_callback
):
    # The documented examples reuse eventId "string" for different events.
    post_callback(account, xms("inbound-event-session-routed"))
    post_callback(account, xms("inbound-event-session-assigned"))

    kinds = set(TimelineEntry.objects.values_list("kind", flat=True))
    assert {"routed", "assigned"} <= kinds


def test_an_event_that_overtakes_its_session_is_applied_once_the_session_exists(
    account, post_callback, settings
):
    from integrations.services.webhooks import webhook_events_sweep

    body = xms("inbound-event-session-routed")
    del body["events"][0]["contact"]
    post_callback(account, body)
    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.PENDING
    assert event.error.startswith("Deferred: event SESSION_ROUTED")
    assert not Session.objects.exists()

    post_callback(account, xms("inbound-message-text"))
    WebhookEvent.objects.filter(pk=event.pk).update(
        enqueued_at=timezone.now() - timedelta(seconds=settings.WEBHOOK_REENQUEUE_AFTER_SECONDS + 1)
    )
    webhook_events_sweep()

    event.refresh_from_db()
    assert event.state == WebhookEvent.State.PROCESSED
    assert Session.objects.get().platform_queue == "external_bot"


def test_an_event_whose_session_never_appears_is_given_up_with_the_reason(
    account, post_callback, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    body = xms("inbound-event-session-routed")
    del body["events"][0]["contact"]

    post_callback(account, body)

    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.IGNORED
    assert "not known yet; gave up after 1 attempts" in event.error


# --- Actions ------------------------------------------------------------------------------------


def test_an_action_lands_on_the_timeline_of_its_contacts_latest_session(account, post_callback):
    post_callback(account, xms("inbound-message-text"))

    post_callback(account, xms("inbound-action"))

    entry = TimelineEntry.objects.get(kind=TimelineEntry.Kind.ACTION)
    assert entry.session == Session.objects.get()
    assert entry.summary == "Action SEND_INVOICE"


def test_an_action_for_a_contact_without_sessions_lands_on_the_contact(account, post_callback):
    post_callback(account, xms("inbound-action"))

    entry = TimelineEntry.objects.get(kind=TimelineEntry.Kind.ACTION)
    assert entry.session is None
    assert entry.contact == Contact.objects.get()


def test_a_2022_bare_action_without_context_is_ignored_with_a_visible_reason(
    account, post_callback
):
    post_callback(account, xms("inbound-action-2022"), subpath="api/v1/action/event")

    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.IGNORED
    assert "SEND_INVOICE" in event.error


# --- Receipts -----------------------------------------------------------------------------------


def outbound(account, external_id: str = "1234567") -> Message:
    session = SessionFactory(account=account)
    return OutboundMessageFactory(session=session, external_id=external_id)


@pytest.mark.parametrize(
    ("fixture", "status"),
    [
        ("inbound-status-sent", "sent"),
        ("inbound-status-delivered", "delivered"),
        ("inbound-status-read", "read"),
        ("inbound-status-failed", "failed"),
    ],
)
def test_a_receipt_moves_its_outbound_message(account, post_callback, fixture, status):
    message = outbound(account)

    post_callback(account, xms(fixture))

    message.refresh_from_db()
    assert message.status == status
    receipt = MessageReceipt.objects.get()
    assert receipt.message == message
    assert receipt.applied_at is not None
    assert MessageStatusChange.objects.filter(message=message, status=status).exists()


def test_a_failed_receipt_records_the_platform_error_code_and_title(account, post_callback):
    message = outbound(account)

    post_callback(account, xms("inbound-status-failed"))

    message.refresh_from_db()
    assert message.error_code == "470"
    assert "outside the support window" in message.error_title
    assert message.failed_at is not None


def test_a_late_delivered_receipt_never_downgrades_read(account, post_callback):
    message = outbound(account)

    post_callback(account, xms("inbound-status-read"))
    post_callback(account, xms("inbound-status-delivered"))
    post_callback(account, xms("inbound-status-sent"))

    message.refresh_from_db()
    assert message.status == Message.Status.READ
    # The late step is still recorded: we know when it was delivered.
    assert message.delivered_at is not None
    assert set(message.status_changes.values_list("status", flat=True)) == {
        "read",
        "delivered",
        "sent",
    }


def test_a_receipt_after_failure_never_revives_the_message(account, post_callback):
    message = outbound(account)

    post_callback(account, xms("inbound-status-failed"))
    post_callback(account, xms("inbound-status-read"))

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.read_at is None


def test_the_same_receipt_twice_is_one_receipt(account, post_callback):
    message = outbound(account)

    post_callback(account, xms("inbound-status-delivered"))
    post_callback(account, xms("inbound-status-delivered"))

    assert MessageReceipt.objects.count() == 1
    assert message.status_changes.count() == 1


def test_a_receipt_matches_the_channel_message_id_too_and_teaches_us_the_service_id(
    account, post_callback
):
    message = outbound(account, external_id="gBEGkYiEB1VXAglK1ZEqA1YKPrU")
    delivered = xms("inbound-status-delivered")
    delivered["statuses"][0].update(id="service-id-1", messageIdExt="gBEGkYiEB1VXAglK1ZEqA1YKPrU")
    read = xms("inbound-status-read")
    read["statuses"][0].update(id="service-id-1", messageIdExt="")

    post_callback(account, delivered)
    post_callback(account, read)

    message.refresh_from_db()
    assert message.external_id_ext == "service-id-1"
    assert message.status == Message.Status.READ


def test_a_receipt_that_raced_the_send_answer_is_applied_by_the_reaper(account, post_callback):
    from inbox.services.reconcile import messages_reap

    post_callback(account, xms("inbound-status-read"))
    message = outbound(account, external_id="1234567")  # stored without applying waiting receipts

    assert messages_reap().orphan_receipts == 1

    message.refresh_from_db()
    assert message.status == Message.Status.READ


def test_a_late_message_of_an_old_session_neither_reopens_it_nor_closes_the_new_one(
    account, post_callback
):
    first = xms("inbound-message-text")
    first["messages"][0].update(id="old-1", timestamp=1700000000000)
    second = copy.deepcopy(first)
    second["messages"][0].update(id="new-1", timestamp=1700000600000)
    second["messages"][0]["session"]["sessionId"] = "next-session"
    late = copy.deepcopy(first)
    late["messages"][0].update(id="old-2", timestamp=1700000300000)

    post_callback(account, first)
    post_callback(account, second)
    post_callback(account, late)

    old, new = Session.objects.order_by("opened_at")
    assert (old.status, new.status) == (Session.Status.CLOSED, Session.Status.OPEN)
    assert old.unread_count == 1
    assert Message.objects.get(external_id="old-2").session == old


def test_the_first_message_of_an_older_session_arriving_last_leaves_only_the_newest_open(
    account, post_callback
):
    newer = xms("inbound-message-text")
    newer["messages"][0].update(id="n1", timestamp=1700000600000)
    newer["messages"][0]["session"]["sessionId"] = "newer"
    older = xms("inbound-message-text")
    older["messages"][0].update(id="o1", timestamp=1700000000000)
    older["messages"][0]["session"]["sessionId"] = "older"

    post_callback(account, newer)
    post_callback(account, older)

    statuses = dict(Session.objects.values_list("external_id", "status"))
    assert statuses == {"newer": "open", "older": "closed"}


def test_an_older_message_does_not_undo_a_newer_assignment(account, post_callback):
    newer = xms("inbound-message-text")
    newer["messages"][0].update(id="n1", timestamp=1700000600000)
    newer["messages"][0]["session"]["assignedToAgent"] = "agent-B"
    older = xms("inbound-message-text")
    older["messages"][0].update(id="o1", timestamp=1700000000000)
    older["messages"][0]["session"]["assignedToAgent"] = "agent-A"

    post_callback(account, newer)
    post_callback(account, older)

    assert Session.objects.get().platform_agent == "agent-B"


def test_an_inbound_message_with_an_outbound_messages_id_is_still_kept(account, post_callback):
    outbound(account, external_id="1234567")

    post_callback(account, xms("inbound-message-text"))

    assert Message.objects.filter(external_id="1234567").count() == 2


def test_a_receipt_before_its_message_exists_is_applied_when_the_message_appears(
    account, post_callback
):
    post_callback(account, xms("inbound-status-delivered"))
    receipt = MessageReceipt.objects.get()
    assert receipt.message is None

    message = outbound(account, external_id="")
    applied = message_external_ids_set(message, external_id="1234567")

    assert applied == 1
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    receipt.refresh_from_db()
    assert receipt.message == message


def test_a_receipt_is_never_applied_to_an_inbound_message_with_the_same_id(account, post_callback):
    post_callback(account, xms("inbound-message-text"))

    post_callback(account, xms("inbound-status-read"))

    assert Message.objects.get().status == Message.Status.RECEIVED
    assert MessageReceipt.objects.get().message is None
