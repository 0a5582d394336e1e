"""The rules of inbound messages that every way of applying them follows, stated once.

Which callbacks are everyday customer messages (`plain_message`), what orders callbacks
(`callback_keys`, `run_keys`), the row a customer message becomes (`message_row`), and what it
does to its session (`session_bump`). `inbox.services.inbound` applies callbacks one at a time
and `inbox.services.inbound_bulk` many at once; both decide with these.
"""

from __future__ import annotations

from datetime import datetime

from inbox.models import Message, Session
from inbox.services.contacts import phone_normalize, profile_phone
from inbox.services.messages import media_fields
from inbox.services.sessions import session_has_newer
from integrations.base import Callback, InboundMessage, Media, MessageType
from integrations.models import ProviderAccount


def plain_message(callback: Callback) -> InboundMessage | None:
    """Return the callback's message if it is only one customer message in a known session.

    That is the everyday callback (one contact, one message naming its session and channel,
    nothing else, no warnings), which `inbound_bulk` can apply together with others.
    """
    if (
        len(callback.contacts) != 1
        or len(callback.messages) != 1
        or callback.receipts
        or callback.events
        or callback.actions
        or callback.warnings
        or callback.wants_contact_reply
    ):
        return None
    message = callback.messages[0]
    profile = callback.contacts[0]
    if (
        message.outbound
        or message.session is None
        or message.type == MessageType.SYSTEM
        or message.contact_external_id != profile.external_id
        or not profile.channel_external_id
        or message.channel_external_id not in ("", profile.channel_external_id)
    ):
        return None
    return message


def callback_keys(callback: Callback) -> set[str]:
    """Name the customers and sessions a callback touches (its order matters among these)."""
    keys = {f"contact:{profile.external_id}" for profile in callback.contacts}
    keys.update(f"contact:{m.contact_external_id}" for m in callback.messages)
    keys.update(f"session:{m.session.external_id}" for m in callback.messages if m.session)
    keys.update(f"contact:{r.contact_external_id}" for r in callback.receipts)
    keys.update(f"session:{e.session_external_id}" for e in callback.events)
    return keys


def run_keys(callback: Callback) -> set[str]:
    """Name what orders a callback within a bulk run: its customers, sessions and phones."""
    phones = {profile_phone(profile) for profile in callback.contacts}
    phones.update(phone_normalize(message.sender) for message in callback.messages)
    phones.update(profile_phone(event.contact) for event in callback.events if event.contact)
    return callback_keys(callback) | {f"phone:{phone}" for phone in phones if phone}


def message_row(
    account: ProviderAccount, message: InboundMessage, session: Session, *, at: datetime
) -> Message:
    """Return the (unsaved) row for a new customer message in `session`."""
    media = message.media
    location = message.location
    return Message(
        account=account,
        direction=Message.Direction.INBOUND,
        external_id=message.external_id,
        session=session,
        type=message.type.value,
        raw_type=message.raw_type[:40],
        body=message.body,
        **media_fields(media),
        attachments=[media_json(m) for m in message.attachments if m != media],
        latitude=location.latitude if location else None,
        longitude=location.longitude if location else None,
        location_name=location.name[:255] if location else "",
        location_address=location.address[:500] if location else "",
        location_url=location.url[:2000] if location else "",
        external_id_ext=message.external_id_ext,
        status=Message.Status.RECEIVED,
        sent_at=at,
        raw=message.raw,
    )


def media_json(media: Media) -> dict[str, object]:
    return {
        "link": media.link,
        "mime_type": media.mime_type,
        "filename": media.filename,
        "caption": media.caption,
        "sha256": media.sha256,
        "id": media.media_id,
    }


def session_bump(locked: Session, message: Message, *, at: datetime) -> list[str]:
    """Apply a new message to a locked, current session in memory; return the fields changed.

    Activity, the reply window, unread count, the last message, and a reopening: a resolved
    session continues when the customer writes (§6.6); a closed one only if no later session
    replaced it (a late message of an old session stays there, closed).
    """
    is_customer_message = message.type != MessageType.SYSTEM
    reopened = is_customer_message and (
        locked.status == Session.Status.RESOLVED
        or (locked.status == Session.Status.CLOSED and not session_has_newer(locked))
    )
    stays_closed = locked.status == Session.Status.CLOSED and not reopened
    changed: list[str] = []
    # A session's first message dates it, even when earlier than its opening: a platform event
    # that overtook the message opened it on arrival, which is not when the customer wrote.
    first = locked.last_message_id is None
    if first or locked.last_activity_at <= at:
        locked.last_message = message
        changed.append("last_message")
    if locked.last_activity_at < at or (first and locked.last_activity_at != at):
        locked.last_activity_at = at
        changed.append("last_activity_at")
    if is_customer_message:
        if not stays_closed:
            locked.unread_count += 1
            changed.append("unread_count")
        if locked.last_inbound_at is None or locked.last_inbound_at < at:
            locked.last_inbound_at = at
            changed.append("last_inbound_at")
    if reopened:
        locked.status = Session.Status.OPEN
        changed.append("status")
    return changed
