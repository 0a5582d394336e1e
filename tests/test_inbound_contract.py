"""What the inbox reads from a provider's `Callback`, whatever the platform: built here from the
contract's own types, not from any platform's JSON."""

from __future__ import annotations

import pytest
from django.utils import timezone

from inbox.models import Message
from inbox.services.inbound import callback_apply, plain_message
from integrations.base import (
    Callback,
    ContactProfile,
    InboundMessage,
    MessageType,
    SessionRef,
)
from integrations.models import Channel
from integrations.xms.schemas import parse_callback
from tests.conftest import load_fixture


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

    callback_apply(account, callback, received_at=timezone.now())

    message = Message.objects.select_related("session__channel").get(external_id="m-hello")
    assert message.session.channel.external_id == "wa:sales"
    assert Channel.objects.get(account=account, external_id="wa:sales").discovered


def test_a_message_that_names_no_channel_takes_its_contacts(account):
    callback_apply(
        account,
        Callback(contacts=[customer("wa:support")], messages=[said("hi")]),
        received_at=timezone.now(),
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
