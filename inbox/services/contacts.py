"""Create and update contacts and their per-channel identities from platform profiles."""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.db import IntegrityError, transaction

from inbox.models import Contact, ContactIdentity
from integrations.base import ContactProfile, Medium
from integrations.models import Channel, ProviderAccount

PHONE_MEDIUMS = frozenset({Medium.WHATSAPP, Medium.SMS, Medium.VIBER, Medium.RCS})
_NON_DIGITS = re.compile(r"\D+")


def phone_normalize(value: str) -> str:
    """Return a phone number as digits only (country code included, no '+')."""
    return _NON_DIGITS.sub("", value or "")[:20]


def profile_phone(profile: ContactProfile) -> str:
    """Return the phone number a platform profile gives for its contact, normalized."""
    return phone_normalize(profile.phone or profile.business_phone)


def identity_upsert(
    account: ProviderAccount, profile: ContactProfile, *, channel: Channel | None = None
) -> ContactIdentity:
    """Return the identity for a platform contact id, creating the contact if it is new.

    A new identity joins an existing contact with the same phone number, so one customer on
    WhatsApp and SMS is one contact. Profile values fill blanks on the contact and never
    overwrite what an agent entered.

    The identity row comes back locked for the caller's transaction (read with FOR UPDATE, or
    created in it), so two callbacks for one customer settle one after the other.
    """
    identity = (
        ContactIdentity.objects.select_related("contact")
        .select_for_update(of=("self",))
        .filter(account=account, external_id=profile.external_id)
        .first()
    )
    if identity is None:
        phone = profile_phone(profile)
        identity = _identity_create(account, profile, channel=channel, phone=phone)
        _contact_fill(identity.contact, profile, phone=phone)
        if channel is not None and identity.channel_id == channel.pk:
            identity.channel = channel
        return identity
    identity_refresh(identity, profile, channel=channel)
    return identity


def identity_refresh(
    identity: ContactIdentity, profile: ContactProfile, *, channel: Channel | None = None
) -> None:
    """Take what is new in a platform profile onto a known identity and its contact.

    `identity` comes with its contact loaded (and, for a caller that relies on it, locked).
    Writes only when something changed, which for a returning customer is rarely.
    """
    _identity_refresh(identity, profile, channel=channel)
    _contact_fill(identity.contact, profile, phone=profile_phone(profile))
    if channel is not None and identity.channel_id == channel.pk:
        identity.channel = channel  # already loaded: spares callers a query


def _identity_create(
    account: ProviderAccount, profile: ContactProfile, *, channel: Channel | None, phone: str
) -> ContactIdentity:
    contact = None
    if phone:
        contact = Contact.objects.filter(account=account, phone=phone).order_by("id").first()
    made_contact = contact is None
    if contact is None:
        contact = Contact.objects.create(account=account, phone=phone)
    # The caller found no identity a moment ago, so insert straight away (no second look);
    # if a concurrent callback inserted it since, the unique constraint says so.
    try:
        with transaction.atomic():
            identity = _identity_row(
                account, profile, contact=contact, channel=channel, phone=phone
            )
            identity.save(force_insert=True)
        created = True
    except IntegrityError:
        found = ContactIdentity.objects.filter(account=account, external_id=profile.external_id)
        if not found.exists():
            raise  # not the race: another constraint
        identity = found.get()
        created = False
    if not created:
        if made_contact:
            # Another worker created this identity first; drop the contact we made for it.
            contact.delete()
        identity = (
            ContactIdentity.objects.select_related("contact")
            .select_for_update(of=("self",))
            .get(pk=identity.pk)
        )
    return identity


def _identity_row(
    account: ProviderAccount,
    profile: ContactProfile,
    *,
    contact: Contact,
    channel: Channel | None,
    phone: str,
) -> ContactIdentity:
    """Return the (unsaved) identity row for a platform contact first seen in `profile`."""
    medium = profile.medium or (channel.medium if channel else Medium.OTHER.value)
    address = phone if medium in PHONE_MEDIUMS else (profile.email or profile.phone)
    return ContactIdentity(
        account=account,
        external_id=profile.external_id,
        contact=contact,
        channel=channel,
        medium=medium,
        address=address,
        profile_name=profile.name,
        opted_out_at=profile.opted_out_at,
        raw=profile.raw,
    )


def identities_create_new(
    account: ProviderAccount, new: Sequence[tuple[ContactProfile, Channel]]
) -> list[ContactIdentity]:
    """Insert brand-new customers, a contact and an identity each, in two statements.

    For callers that have checked, in this transaction, that no identity has these platform
    ids and no contact has these phone numbers (else `identity_upsert` joins or finds them),
    and that no two of them share a phone. The result matches `identity_upsert` one by one. A
    concurrent insert of the same identity makes the unique constraint raise IntegrityError.
    Returns the identities, with their contact and channel loaded, in the order given.
    """
    contacts: list[Contact] = []
    identities: list[ContactIdentity] = []
    for profile, channel in new:
        phone = profile_phone(profile)
        contact = Contact(account=account, phone=phone)
        _contact_fill_fields(contact, profile, phone=phone)
        contacts.append(contact)
        identities.append(
            _identity_row(account, profile, contact=contact, channel=channel, phone=phone)
        )
    Contact.objects.bulk_create(contacts)
    for identity, contact in zip(identities, contacts, strict=True):
        identity.contact = contact  # now with its primary key
    return ContactIdentity.objects.bulk_create(identities)


def _identity_refresh(
    identity: ContactIdentity, profile: ContactProfile, *, channel: Channel | None
) -> None:
    changed: list[str] = []
    if channel is not None and identity.channel_id is None:
        identity.channel = channel
        changed.append("channel")
    if profile.name and profile.name != identity.profile_name:
        identity.profile_name = profile.name
        changed.append("profile_name")
    if profile.raw and profile.raw != identity.raw and "lane" in profile.raw:
        identity.raw = profile.raw
        changed.append("raw")
    if profile.opted_out_at is not None and (
        identity.opted_out_at is None or profile.opted_out_at > identity.opted_out_at
    ):
        identity.opted_out_at = profile.opted_out_at
        changed.append("opted_out_at")
    if changed:
        identity.save(update_fields=[*changed, "updated_at"])


def _contact_fill(contact: Contact, profile: ContactProfile, *, phone: str) -> None:
    changed = _contact_fill_fields(contact, profile, phone=phone)
    if changed:
        contact.save(update_fields=[*changed, "updated_at"])


def _contact_fill_fields(contact: Contact, profile: ContactProfile, *, phone: str) -> list[str]:
    """Fill a contact's blanks from a profile in memory; return the fields changed."""
    changed: list[str] = []
    for field, value in (
        ("name", profile.business_name or profile.name),
        ("email", profile.email or profile.business_email),
        ("phone", phone),
        ("business_profile_id", profile.business_profile_id),
    ):
        if value and not getattr(contact, field):
            setattr(contact, field, value[:255])
            changed.append(field)
    channel_profile = {
        k: v
        for k, v in (("name", profile.name), ("email", profile.email), ("phone", profile.phone))
        if v
    }
    if channel_profile:
        merged = {**(contact.profile or {}), **channel_profile}
        if merged != contact.profile:
            contact.profile = merged
            changed.append("profile")
    return changed
