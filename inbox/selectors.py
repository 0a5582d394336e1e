"""Read the inbox for pages, APIs and platform answers."""

from __future__ import annotations

from inbox.models import ContactIdentity
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
