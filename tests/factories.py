"""factory_boy factories for our own models."""

from __future__ import annotations

from typing import Any

import factory
from django.utils import timezone

from accounts.models import AgentProfile, Team, User
from inbox.models import Contact, ContactIdentity, Message, Session
from integrations.models import Channel, ProviderAccount


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"agent{n}")
    password = factory.PostGenerationMethodCall("set_password", "pass-word-123")

    @classmethod
    def _after_postgeneration(cls, instance: Any, create: bool, results: Any = None) -> None:
        if create:
            instance.save()


class AgentProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentProfile

    user = factory.SubFactory(UserFactory)


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class ProviderAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProviderAccount

    kind = "xms"
    name = factory.Sequence(lambda n: f"XMS account {n}")
    base_url = "https://api.mehery.example/xms"
    api_key = "test-api-key-0123456789"
    api_id = "61ec7d9c2ce85742b201c5ab"
    verify_token = "s1agenttoken$$$"


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel

    account = factory.SubFactory(ProviderAccountFactory)
    external_id = factory.Sequence(lambda n: f"wa360:91880000{n:04d}")
    medium = "whatsapp"
    lane = factory.Sequence(lambda n: f"91880000{n:04d}")
    name = factory.Sequence(lambda n: f"Support line {n}")


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    account = factory.SubFactory(ProviderAccountFactory)
    name = factory.Sequence(lambda n: f"Customer {n}")
    phone = factory.Sequence(lambda n: f"9199000{n:05d}")


class ContactIdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ContactIdentity

    account = factory.SelfAttribute("contact.account")
    contact = factory.SubFactory(ContactFactory)
    medium = "whatsapp"
    external_id = factory.Sequence(lambda n: f"wa9199000{n:05d}_918828218374")


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    account = factory.SubFactory(ProviderAccountFactory)
    channel = factory.SubFactory(ChannelFactory, account=factory.SelfAttribute("..account"))
    contact = factory.SubFactory(ContactFactory, account=factory.SelfAttribute("..account"))
    external_id = factory.Sequence(lambda n: f"session-{n}")
    opened_at = factory.LazyFunction(timezone.now)
    last_activity_at = factory.LazyFunction(timezone.now)


class OutboundMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    account = factory.SelfAttribute("session.account")
    session = factory.SubFactory(SessionFactory)
    direction = Message.Direction.OUTBOUND
    type = "text"
    body = "Hello from support"
    status = Message.Status.SENDING
    sent_at = factory.LazyFunction(timezone.now)


class InboundMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    account = factory.SelfAttribute("session.account")
    session = factory.SubFactory(SessionFactory)
    direction = Message.Direction.INBOUND
    type = "text"
    body = factory.Sequence(lambda n: f"Customer message {n}")
    status = Message.Status.RECEIVED
    external_id = factory.Sequence(lambda n: f"inbound-{n}")
    sent_at = factory.LazyFunction(timezone.now)


class TemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "integrations.Template"

    account = factory.SubFactory(ProviderAccountFactory)
    external_id = factory.Sequence(lambda n: f"tmpl-{n:06d}")
    code = factory.Sequence(lambda n: f"TEMPLATE_{n}")
    lang = "en_US"
    text = "Hi {{name}}"
    placeholders = factory.LazyFunction(
        lambda: [{"name": "name", "label": "Name", "sample": "Anna", "source": ""}]
    )


class TemplateApprovalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "integrations.TemplateApproval"

    template = factory.SubFactory(TemplateFactory)
    channel = factory.SubFactory(
        ChannelFactory, account=factory.SelfAttribute("..template.account")
    )
    status = "APPROVED"


class LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "inbox.Label"

    name = factory.Sequence(lambda n: f"label-{n}")
    color = "blue"


class CannedReplyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "inbox.CannedReply"

    title = factory.Sequence(lambda n: f"Canned reply {n}")
    shortcut = factory.Sequence(lambda n: f"reply-{n}")
    body = "Hello {{contact.first_name}}, thanks for writing to us."


class NoteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "inbox.Note"

    session = factory.SubFactory(SessionFactory)
    author = factory.SubFactory(UserFactory)
    body = factory.Sequence(lambda n: f"Private note {n}")


def make_session(
    account: ProviderAccount,
    channel: Channel,
    *,
    inbound_ago: Any = None,
    identity_external_id: str = "",
    **kw: Any,
) -> Session:
    """Return a session with a platform contact identity, as the inbound flow leaves one."""
    from datetime import timedelta

    contact = kw.pop("contact", None) or ContactFactory(account=account)
    identity_kw = {"external_id": identity_external_id} if identity_external_id else {}
    identity = ContactIdentityFactory(
        contact=contact,
        channel=channel,
        medium=channel.medium,
        address=contact.phone,
        **identity_kw,
    )
    ago = timedelta(minutes=5) if inbound_ago is None else inbound_ago
    return SessionFactory(
        account=account,
        channel=channel,
        contact=contact,
        identity=identity,
        last_inbound_at=timezone.now() - ago,
        **kw,
    )
