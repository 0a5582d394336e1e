"""The inbox on a platform unlike XMS (`integrations.fake`): polled in, no sessions to route or
resolve there, no templates, and a messaging window of its own. Nothing here is XMS."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from inbox.models import Message, Session, SessionAction, TimelineEntry
from inbox.selectors.lists import sessions_window_closing_first
from inbox.services.refusals import SendRefused
from inbox.services.send import Draft, message_send
from inbox.services.uploads import message_send_upload
from inbox.window import session_window
from integrations.base import AmbiguousError
from integrations.fake.provider import FakeProvider
from integrations.models import ProviderAccount
from integrations.services import polling
from tests.factories import ChannelFactory, make_session

pytestmark = pytest.mark.django_db


def poll(account: ProviderAccount, capture: Any) -> None:
    with capture(execute=True):  # the stored pages are applied as callbacks are
        polling.account_poll(str(account.pk))


@pytest.fixture
def customer_writes(
    fake_account: ProviderAccount, fake_platform: Any, django_capture_on_commit_callbacks: Any
) -> Any:
    """A customer writes on the fake platform and we poll it; return their conversation."""

    def wrote(contact: str, text: str) -> Session:
        fake_platform.customer_writes(contact, text)
        poll(fake_account, django_capture_on_commit_callbacks)
        return Session.objects.get(account=fake_account, contact__identities__external_id=contact)

    return wrote


def test_a_customer_on_a_polled_platform_reaches_the_thread_and_nothing_is_offered_it_lacks(
    customer_writes, admin_client
):
    session = customer_writes("cust-1", "Hello from elsewhere")

    assert session.channel.external_id == "fake:main"
    assert session.unread_count == 1
    page = admin_client.get(f"/s/{session.pk}/").content.decode()
    assert "Hello from elsewhere" in page
    # The fake platform can route and close nothing: the thread offers neither (resolving is
    # ours alone there: see below).
    for menu in ("action-route-menu", "action-close", "action-more-menu"):
        assert f'data-testid="{menu}"' not in page


def test_an_agents_reply_goes_out_once_through_the_sessions_own_platform(
    customer_writes, fake_platform, admin_user, django_capture_on_commit_callbacks
):
    session = customer_writes("cust-2", "Where is my order?")

    with django_capture_on_commit_callbacks(execute=True):
        message, created = message_send(
            session, Draft(body="On its way"), author=admin_user, idempotency_key="k-1"
        )
        again, created_again = message_send(
            session, Draft(body="On its way"), author=admin_user, idempotency_key="k-1"
        )

    message.refresh_from_db()
    assert (created, created_again, again.pk) == (True, False, message.pk)
    assert [request.body for request in fake_platform.sent] == ["On its way"]
    assert fake_platform.sent[0].channel_external_id == "fake:main"
    assert (message.status, message.external_id) == (Message.Status.SENT, "out-1")


def test_a_template_is_refused_in_words_on_a_platform_without_templates(
    customer_writes, fake_platform
):
    session = customer_writes("cust-3", "Hi")

    with pytest.raises(SendRefused) as refused:
        message_send(session, Draft(type="template"))

    assert (refused.value.code, refused.value.reason) == (
        "unsupported",
        "Fake platform cannot send templates.",
    )
    assert not fake_platform.sent


def test_the_messaging_window_is_the_platforms_rule_for_the_medium(fake_account, account):
    three_hours = timedelta(hours=3)

    def session_on(on: ProviderAccount, medium: str) -> Session:
        channel = ChannelFactory(account=on, medium=medium)
        return make_session(on, channel, inbound_ago=three_hours)

    # The fake platform: a two-hour window on SMS, none elsewhere. XMS: WhatsApp's 24 hours.
    assert not session_window(session_on(fake_account, "sms")).is_open
    assert not session_window(session_on(fake_account, "whatsapp")).applies
    assert session_window(session_on(account, "whatsapp")).is_open
    assert not session_window(session_on(account, "sms")).applies


def test_the_inbox_sorts_by_when_each_platforms_window_closes(fake_account, account):
    hour = timedelta(hours=1)
    fake_sms = make_session(
        fake_account, ChannelFactory(account=fake_account, medium="sms"), inbound_ago=hour
    )
    xms_whatsapp = make_session(
        account, ChannelFactory(account=account, medium="whatsapp"), inbound_ago=hour
    )
    xms_sms = make_session(account, ChannelFactory(account=account, medium="sms"), inbound_ago=hour)

    ordered = sessions_window_closing_first(Session.objects.all(), now=timezone.now())

    # Closes in one hour, then in 23; a medium without a window last.
    assert list(ordered) == [fake_sms, xms_whatsapp, xms_sms]


def test_on_a_platform_without_sessions_an_agent_resolves_and_reopens_our_copy_at_once(
    customer_writes, fake_account, fake_platform, admin_client, django_capture_on_commit_callbacks
):
    session = customer_writes("cust-4", "Thanks, all good")
    page = admin_client.get(f"/s/{session.pk}/").content.decode()
    assert 'data-testid="action-resolve"' in page  # (nothing at the platform to ask)

    resolved = admin_client.post(f"/s/{session.pk}/resolve/", HTTP_HX_REQUEST="true")

    session.refresh_from_db()
    assert resolved.status_code == 200
    assert "Resolved." in resolved.content.decode()
    assert (session.status, session.resolved_at is not None) == (Session.Status.RESOLVED, True)
    assert not SessionAction.objects.filter(session=session).exists()  # no platform call
    assert session.timeline.filter(kind=TimelineEntry.Kind.RESOLVED).count() == 1
    again = admin_client.post(f"/s/{session.pk}/resolve/", HTTP_HX_REQUEST="true")
    assert again.status_code == 422

    # Closed, too, is only our copy here: it can be reopened, unlike a session XMS ended.
    Session.objects.filter(pk=session.pk).update(status=Session.Status.CLOSED)
    session.refresh_from_db()
    with pytest.raises(SendRefused, match="reopen it to reply"):
        message_send(session, Draft(body="Hello?"))
    assert admin_client.post(f"/s/{session.pk}/reopen/").status_code == 302
    session.refresh_from_db()
    assert session.status == Session.Status.OPEN

    # The customer's next message lands in the same conversation.
    fake_platform.customer_writes("cust-4", "One more thing")
    poll(fake_account, django_capture_on_commit_callbacks)
    assert Session.objects.filter(account=fake_account).count() == 1


PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_a_file_goes_to_a_platform_that_takes_only_uploads_as_an_upload_named_in_the_send(
    customer_writes, fake_platform, admin_user, django_capture_on_commit_callbacks
):
    session = customer_writes("cust-5", "Can you send the invoice?")
    attached = SimpleUploadedFile("invoice.pdf", PDF, content_type="application/pdf")

    with django_capture_on_commit_callbacks(execute=True):
        message, _ = message_send_upload(session, attached, "Here it is", author=admin_user)

    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert [(u.filename, u.mime_type, u.content) for u in fake_platform.uploaded] == [
        ("invoice.pdf", "application/pdf", PDF)
    ]
    (request,) = fake_platform.sent
    assert request.media is not None and request.media.media_id == "media-1"
    assert request.media.caption == "Here it is"


def test_an_upload_the_platform_did_not_answer_is_simply_tried_again_not_reconciled(
    customer_writes, fake_platform, admin_user, django_capture_on_commit_callbacks, monkeypatch
):
    session = customer_writes("cust-6", "The invoice, please")
    real = FakeProvider.media_upload
    answers_lost = [AmbiguousError("no answer in time")]  # (the first upload's answer)

    def upload_once_unanswered(self: FakeProvider, account: Any, upload: Any) -> Any:
        if answers_lost:
            raise answers_lost.pop()
        return real(self, account, upload)

    monkeypatch.setattr(FakeProvider, "media_upload", upload_once_unanswered)
    attached = SimpleUploadedFile("invoice.pdf", PDF, content_type="application/pdf")

    with django_capture_on_commit_callbacks(execute=True):
        message, _ = message_send_upload(session, attached, "", author=admin_user)

    message.refresh_from_db()
    # Nothing had reached the customer: not an ambiguous send, just a second attempt.
    assert (message.status, message.attempts) == (Message.Status.SENT, 2)
    assert not message.outcome_unknown
    assert len(fake_platform.uploaded) == 1 and len(fake_platform.sent) == 1


def test_a_media_link_is_refused_in_words_where_the_platform_takes_only_uploads(
    customer_writes, fake_platform
):
    session = customer_writes("cust-7", "Hi")

    with pytest.raises(SendRefused) as refused:
        message_send(
            session,
            Draft(type="image", media_url="https://cdn.example.com/cat.jpg", media_filename="c"),
        )

    assert refused.value.code == "media_link"
    assert "takes files only as uploads" in refused.value.reason
    assert not fake_platform.sent and not fake_platform.uploaded
