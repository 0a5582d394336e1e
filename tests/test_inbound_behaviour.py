"""What the inbox does with what a platform tells it, stated in the provider contract's own
types and posted to the fake platform's webhook: no XMS here (its JSON is tested at its seam,
test_xms_schemas, and end to end in test_inbound_processing). Each test runs three ways
(`post_callback_each_path`): a task per callback, the drain per callback, and the drain with
the callbacks a test posts in a row as one batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from inbox.models import Contact, Message, Session, TimelineEntry
from integrations.base import (
    Callback,
    ContactProfile,
    DeliveryStatus,
    InboundMessage,
    MessageType,
    Receipt,
    SessionEvent,
    SessionEventKind,
    SessionRef,
)
from integrations.fake.wire import callback_json
from integrations.models import ProviderAccount, WebhookEvent
from tests.conftest import Poster
from tests.factories import OutboundMessageFactory

pytestmark = pytest.mark.django_db

CHANNEL = "fake:main"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def tell(post_callback_each_path: Poster, fake_account: ProviderAccount) -> Any:
    """Post a `Callback` to the fake platform's webhook, as the platform would."""

    def post(*callbacks: Callback) -> None:
        for callback in callbacks:
            response = post_callback_each_path(
                fake_account,
                {"callback": callback_json(callback)},
                auth_header="HTTP_X_FAKE_TOKEN",
            )
            assert response.status_code == 200, response.content

    return post


def customer(contact: str = "c-1", *, phone: str = "4915100000001") -> ContactProfile:
    return ContactProfile(
        external_id=contact, medium="whatsapp", channel_external_id=CHANNEL, phone=phone
    )


def says(
    text: str,
    *,
    contact: str = "c-1",
    session: str = "s-1",
    at: datetime = T0,
    phone: str = "4915100000001",
    message_id: str = "",
) -> Callback:
    """A plain customer message: one contact, one message in a known session."""
    return Callback(
        contacts=[customer(contact, phone=phone)],
        messages=[
            InboundMessage(
                external_id=message_id or f"m-{contact}-{text}",
                contact_external_id=contact,
                type=MessageType.TEXT,
                body=text,
                session=SessionRef(external_id=session),
                sent_at=at,
                channel_external_id=CHANNEL,
            )
        ],
    )


def sessions(account: ProviderAccount) -> dict[str, Session]:
    return {s.external_id: s for s in Session.objects.filter(account=account)}


def test_a_customers_first_message_opens_their_contact_session_and_an_unread_message(
    tell, fake_account
):
    tell(says("Hello"))

    session = Session.objects.select_related("contact", "channel", "last_message").get()
    assert (session.external_id, session.channel.external_id) == ("s-1", CHANNEL)
    assert (session.status, session.unread_count) == (Session.Status.OPEN, 1)
    assert session.contact.phone == "4915100000001"
    assert session.last_message is not None and session.last_message.body == "Hello"
    assert session.last_inbound_at == T0
    assert session.timeline.filter(kind=TimelineEntry.Kind.OPENED).count() == 1
    assert {e.state for e in WebhookEvent.objects.filter(account=fake_account)} == {"processed"}


def test_the_same_message_delivered_twice_is_one_message_and_one_unread(tell):
    tell(says("Hello"), says("Hello"))

    assert Message.objects.count() == 1
    assert Session.objects.get().unread_count == 1


def test_messages_in_a_row_keep_their_order_and_each_count_as_unread(tell):
    tell(*(says(f"part {n}", at=T0 + timedelta(seconds=n)) for n in range(4)))

    session = Session.objects.select_related("last_message").get()
    bodies = list(Message.objects.order_by("sent_at").values_list("body", flat=True))
    assert bodies == [f"part {n}" for n in range(4)]
    assert session.unread_count == 4
    assert session.last_message is not None and session.last_message.body == "part 3"


def test_two_customers_writing_at_once_each_get_their_own_contact_and_conversation(tell):
    tell(
        says("Hi from one", contact="c-1", session="s-1", phone="111"),
        says("Hi from two", contact="c-2", session="s-2", phone="222"),
        says("One again", contact="c-1", session="s-1", phone="111", at=T0 + timedelta(1)),
    )

    assert Contact.objects.count() == 2
    by_id = {s.external_id: s for s in Session.objects.all()}
    assert (by_id["s-1"].unread_count, by_id["s-2"].unread_count) == (2, 1)
    assert by_id["s-1"].contact_id != by_id["s-2"].contact_id


def test_a_customer_writing_to_a_resolved_session_reopens_it_and_says_so(tell, fake_account):
    tell(says("Hello"))
    Session.objects.update(status=Session.Status.RESOLVED)

    tell(says("Me again", at=T0 + timedelta(hours=1)))

    session = Session.objects.get()
    assert (session.status, session.unread_count) == (Session.Status.OPEN, 2)
    assert session.timeline.filter(kind=TimelineEntry.Kind.REOPENED).count() == 1


def test_a_new_session_for_the_same_customer_on_the_channel_closes_the_previous_one(
    tell, fake_account
):
    tell(
        says("First", session="s-1"),
        says("Second", session="s-2", at=T0 + timedelta(hours=30)),
    )

    found = sessions(fake_account)
    assert found["s-1"].status == Session.Status.CLOSED
    assert (found["s-2"].status, found["s-2"].unread_count) == (Session.Status.OPEN, 1)
    assert found["s-1"].contact_id == found["s-2"].contact_id


def test_a_late_message_of_an_old_session_neither_reopens_it_nor_closes_the_new_one(
    tell, fake_account
):
    tell(
        says("Old", session="s-1"),
        says("New", session="s-2", at=T0 + timedelta(hours=30)),
        says("Old, late", session="s-1", at=T0 + timedelta(minutes=5)),
    )

    found = sessions(fake_account)
    assert found["s-1"].status == Session.Status.CLOSED
    assert found["s-2"].status == Session.Status.OPEN
    assert Message.objects.filter(session=found["s-1"]).count() == 2


def test_an_older_message_arriving_late_moves_neither_the_last_message_nor_the_window_back(tell):
    tell(
        says("Newer", at=T0 + timedelta(hours=2)),
        says("Older", at=T0),
    )

    session = Session.objects.select_related("last_message").get()
    assert session.last_message is not None and session.last_message.body == "Newer"
    assert session.last_inbound_at == T0 + timedelta(hours=2)
    assert session.unread_count == 2


def test_receipts_move_our_message_forward_and_a_late_delivered_never_downgrades_read(tell):
    tell(says("Hello"))
    ours = OutboundMessageFactory(
        session=Session.objects.get(), external_id="out-1", status=Message.Status.SENT
    )

    tell(
        Callback(receipts=[Receipt(external_id="out-1", status=DeliveryStatus.READ)]),
        Callback(receipts=[Receipt(external_id="out-1", status=DeliveryStatus.DELIVERED)]),
        Callback(receipts=[Receipt(external_id="out-1", status=DeliveryStatus.READ)]),
    )

    ours.refresh_from_db()
    assert ours.status == Message.Status.READ
    assert ours.delivered_at is not None and ours.read_at is not None


def test_a_message_the_business_sent_on_the_platform_is_mirrored_and_counts_no_unread(tell):
    tell(says("Hello"))
    bot = Callback(
        contacts=[customer()],
        messages=[
            InboundMessage(
                external_id="bot-1",
                contact_external_id="c-1",
                type=MessageType.TEXT,
                body="Your parcel left today",
                session=SessionRef(external_id="s-1"),
                sent_at=T0 + timedelta(minutes=1),
                channel_external_id=CHANNEL,
                outbound=True,
                author="Parcel bot",
            )
        ],
    )

    tell(bot, bot)

    mirrored = Message.objects.get(external_id="bot-1")
    assert (mirrored.direction, mirrored.author_name) == (Message.Direction.OUTBOUND, "Parcel bot")
    session = Session.objects.get()
    assert (session.unread_count, session.last_inbound_at) == (1, T0)


def test_a_resolved_event_from_the_platform_resolves_the_session_once(tell):
    tell(says("Hello"))
    resolved = Callback(
        events=[
            SessionEvent(
                kind=SessionEventKind.RESOLVED,
                session_external_id="s-1",
                dedupe_key="evt-1",
                occurred_at=T0 + timedelta(minutes=10),
            )
        ]
    )

    tell(resolved, resolved)

    session = Session.objects.get()
    assert session.status == Session.Status.RESOLVED
    assert session.timeline.filter(kind=TimelineEntry.Kind.RESOLVED).count() == 1


def test_a_body_that_is_not_a_callback_fails_alone_with_its_reason_and_the_next_applies(
    post_callback_each_path, fake_account, tell
):
    post_callback_each_path(
        fake_account,
        {"callback": {"messages": [{"unheard_of": 1}]}},
        auth_header="HTTP_X_FAKE_TOKEN",
    )
    tell(says("Hello"))

    bad, good = WebhookEvent.objects.filter(account=fake_account).order_by("id")
    assert bad.state == WebhookEvent.State.FAILED
    assert "not a callback" in bad.error and "unheard_of" in bad.error
    assert good.state == WebhookEvent.State.PROCESSED
    assert Message.objects.get().body == "Hello"


@pytest.mark.parametrize("token", ["not-the-token", "tökén-ünïcödé"])
def test_the_fake_platforms_webhook_refuses_a_wrong_token(api_client, fake_account, token):
    response = api_client.post(
        fake_account.webhook_path,
        {"callback": callback_json(says("Hello"))},
        format="json",
        HTTP_X_FAKE_TOKEN=token,
    )

    assert response.status_code == 401
    assert not WebhookEvent.objects.filter(account=fake_account).exists()


def test_a_customers_file_is_fetched_once_through_the_provider_into_our_storage(
    tell, fake_account, fake_platform
):
    from inbox.models import MediaFile
    from integrations.base import Media

    fake_platform.files["f-1"] = b"%PDF-1.4\n%%EOF\n"
    photo = says("", message_id="m-file")
    message = photo.messages[0]
    photo.messages[0] = InboundMessage(
        external_id=message.external_id,
        contact_external_id=message.contact_external_id,
        type=MessageType.DOCUMENT,
        body="",
        session=message.session,
        sent_at=message.sent_at,
        channel_external_id=CHANNEL,
        media=Media(link="", media_id="f-1", filename="invoice.pdf", mime_type="application/pdf"),
    )

    tell(photo, photo)

    media = MediaFile.objects.get()
    assert (media.state, media.filename, media.content_type) == (
        "stored",
        "invoice.pdf",
        "application/pdf",
    )
    assert fake_platform.downloads == ["f-1"]
