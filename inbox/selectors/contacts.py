"""Contacts: who is behind a platform contact id; their other sessions and identities."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from accounts.models import User
from inbox.models import ContactIdentity, Session
from inbox.selectors.visibility import (
    channels_visible_to,
    sessions_visible_to,
    user_sees_everything,
)
from integrations.base import ContactView
from integrations.models import ProviderAccount


def contact_view_for_identity(account: ProviderAccount, external_id: str) -> ContactView | None:
    """Return what we know of the contact behind a platform contact id (one query)."""
    identity = (
        ContactIdentity.objects.select_related("contact")
        .filter(account=account, external_id=external_id)
        .first()
    )
    if identity is None:
        return None
    contact = identity.contact
    return ContactView(
        profile_id=contact.business_profile_id or str(contact.uid),
        name=contact.name,
        email=contact.email,
        phone=contact.phone,
        language=contact.language,
    )


def contact_sessions_other(user: User, session: Session, limit: int = 10) -> list[Session]:
    """Return the contact's other sessions this user may see, newest first."""
    return list(
        sessions_visible_to(user)
        .filter(contact_id=session.contact_id)
        .exclude(pk=session.pk)
        .select_related("channel")
        .order_by("-last_activity_at", "-id")[:limit]
    )


def contact_identities_visible(user: User, session: Session) -> list[ContactIdentity]:
    """Return the contact's identities on channels this user may see (prefetched on the row)."""
    identities = list(session.contact.identities.all())
    if user_sees_everything(user):
        return identities
    visible = set(channels_visible_to(user).values_list("pk", flat=True))
    return [i for i in identities if i.channel_id in visible]


def identity_opt_out(identity: ContactIdentity | None) -> datetime | None:
    """Return when the customer opted out, if they still are (None: they may be written to).

    They are until they write again: a message of theirs after the opt-out, on any channel of
    the account, opts them back in (a platform that keeps opt-outs lifts them so too).
    """
    if identity is None or identity.opted_out_at is None:
        return None
    wrote_since = Session.objects.filter(
        identity_id=identity.pk, last_inbound_at__gt=identity.opted_out_at
    ).exists()
    return None if wrote_since else identity.opted_out_at


def opt_out_reason(opted_out_at: datetime) -> str:
    """Say why nothing can be sent to an opted-out customer, in words for agents."""
    when = timezone.localtime(opted_out_at).strftime("%d %b %Y, %H:%M")
    return (
        f"The customer opted out on {when} (they asked to receive no more messages). "
        "Nothing can be sent to them until they write again."
    )
