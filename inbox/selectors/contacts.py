"""Contacts: who is behind a platform contact id; their other sessions and identities."""

from __future__ import annotations

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
