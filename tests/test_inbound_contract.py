"""What the inbox reads from a provider's `Callback`, whatever the platform: built here from the
contract's own types, not from any platform's JSON."""

from __future__ import annotations

import itertools

import pytest
from django.utils import timezone

from inbox.models import Message
from inbox.services.inbound import callbacks_apply
from inbox.services.inbound_rules import plain_message
from integrations.applier import Outcome, StoredCallback
from integrations.base import (
    Callback,
    ContactProfile,
    InboundMessage,
    MessageType,
    SessionRef,
)
from integrations.models import Channel, ProviderAccount
from integrations.xms.schemas import parse_callback
from tests.conftest import load_fixture
from tests.factories import OutboundMessageFactory

_keys = itertools.count(1)


def callback_apply(account: ProviderAccount, callback: Callback) -> None:
    """Apply one callback the one way the inbox applies any: a run of one."""
    key = next(_keys)
    run = [StoredCallback(key=key, callback=callback, received_at=timezone.now())]
    settled: dict[int, Outcome] = {}
    callbacks_apply(account, run, settled.update)
    outcome = settled[key]
    assert outcome.applied and not (outcome.failed or outcome.deferred), outcome


def customer(channel: str = "wa:support") -> ContactProfile:
    return ContactProfile(
        external_id="c-1", medium="whatsapp", channel_external_id=channel, phone="4915100000001"
    )


def said(text: str, *, channel: str = "", session: str = "s-1") -> InboundMessage:
    return InboundMessage(
        external_id=f"m-{text}",
        contact_external_id="c-1",
        type=MessageType.TEXT,
        body=text,
        session=SessionRef(external_id=session),
        channel_external_id=channel,
    )


def test_a_message_that_names_its_channel_lands_on_that_channel_not_its_contacts(account):
    callback = Callback(
        contacts=[customer("wa:support")],
        messages=[said("hello", channel="wa:sales", session="s-sales")],
    )

    callback_apply(account, callback)

    message = Message.objects.select_related("session__channel").get(external_id="m-hello")
    assert message.session.channel.external_id == "wa:sales"
    assert Channel.objects.get(account=account, external_id="wa:sales").discovered


def test_a_message_that_names_no_channel_takes_its_contacts(account):
    callback_apply(
        account,
        Callback(contacts=[customer("wa:support")], messages=[said("hi")]),
    )

    message = Message.objects.select_related("session__channel").get(external_id="m-hi")
    assert message.session.channel.external_id == "wa:support"


def test_only_a_message_on_its_contacts_channel_is_applied_in_bulk():
    same = Callback(contacts=[customer("wa:support")], messages=[said("a", channel="wa:support")])
    other = Callback(contacts=[customer("wa:support")], messages=[said("b", channel="wa:sales")])

    assert plain_message(same) is not None
    assert plain_message(other) is None  # the one-by-one path decides its channel


@pytest.mark.parametrize(
    "name", ["inbound-message-text", "inbound-wrapper-full-2023", "inbound-wrapper-full-2022"]
)
def test_xms_messages_name_the_channel_of_their_contact_in_the_same_wrapper(name):
    callback = parse_callback(load_fixture("xms", name))

    channels = {c.external_id: c.channel_external_id for c in callback.contacts}
    assert callback.messages
    for message in callback.messages:
        assert message.channel_external_id == channels.get(message.contact_external_id, "")


def sent_there(message_id: str, text: str, *, author: str = "Bot Berta") -> InboundMessage:
    return InboundMessage(
        external_id=message_id,
        contact_external_id="c-1",
        type=MessageType.TEXT,
        body=text,
        session=SessionRef(external_id="s-1"),
        outbound=True,
        author=author,
    )


def test_a_message_the_business_sent_on_the_platform_is_mirrored_as_outbound_with_its_author(
    account, admin_client
):
    callback_apply(
        account,
        Callback(contacts=[customer()], messages=[said("hello")]),
    )
    session = Message.objects.get(external_id="m-hello").session
    before = (session.unread_count, session.last_inbound_at)

    callback_apply(
        account,
        Callback(contacts=[customer()], messages=[sent_there("bot-1", "Your parcel left today")]),
    )

    mirrored = Message.objects.get(external_id="bot-1")
    assert (mirrored.direction, mirrored.status, mirrored.author_name, mirrored.session_id) == (
        Message.Direction.OUTBOUND,
        Message.Status.SENT,
        "Bot Berta",
        session.pk,
    )
    session.refresh_from_db()
    assert (session.unread_count, session.last_inbound_at) == before  # not the customer
    page = admin_client.get(f"/s/{session.pk}/").content.decode()
    assert "Bot Berta" in page and "on the platform" in page


def test_our_own_send_coming_back_from_the_platform_is_not_copied(account):
    callback_apply(
        account,
        Callback(contacts=[customer()], messages=[said("hello")]),
    )
    session = Message.objects.get(external_id="m-hello").session
    ours = OutboundMessageFactory(session=session, external_id="out-7", body="On its way")
    echo = Callback(contacts=[customer()], messages=[sent_there("out-7", "On its way", author="")])

    callback_apply(account, echo)
    callback_apply(account, echo)  # and again

    assert list(Message.objects.filter(direction="out").values_list("pk", flat=True)) == [ours.pk]


def test_a_message_sent_on_the_platform_is_applied_one_by_one_not_in_bulk():
    assert plain_message(Callback(contacts=[customer()], messages=[sent_there("b", "x")])) is None
