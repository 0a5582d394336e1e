"""Apply what a platform sent (a `Callback`) to the inbox: contacts, messages, receipts, events.

Idempotent: every row it creates is keyed by a unique constraint, so applying the same callback
twice, or two copies at once, leaves one of everything. Runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Field

from inbox import live
from inbox.models import Contact, ContactIdentity, Message, Session, TimelineEntry
from inbox.services.contacts import (
    identities_create_new,
    identity_refresh,
    identity_upsert,
    phone_normalize,
    profile_phone,
)
from inbox.services.history import session_messages_mirror
from inbox.services.messages import media_fields, receipt_record
from inbox.services.sessions import (
    session_event_apply,
    session_for_inbound,
    session_has_newer,
    session_latest_for_contact,
    session_ref_changes,
    sessions_open_new,
)
from inbox.services.timeline import timeline_add
from integrations.applier import ApplyDeferred, StoredCallback
from integrations.base import (
    Action,
    Callback,
    ContactProfile,
    HistoryMessage,
    InboundMessage,
    Media,
    MessageType,
    SessionEvent,
    SessionRef,
)
from integrations.models import Channel, ProviderAccount
from integrations.services.channels import channel_resolve


@dataclass
class ApplyResult:
    """What applying a callback did."""

    contacts: int = 0
    messages_created: int = 0
    messages_duplicate: int = 0
    receipts_created: int = 0
    receipts_duplicate: int = 0
    events_applied: int = 0
    actions: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        """Say whether anything in the callback landed (new or already there)."""
        return bool(
            self.contacts
            or self.messages_created
            or self.messages_duplicate
            or self.receipts_created
            or self.receipts_duplicate
            or self.events_applied
            or self.actions
        )


def callback_apply(
    account: ProviderAccount, callback: Callback, *, received_at: datetime
) -> ApplyResult:
    """Apply a parsed callback in order: contacts, messages, receipts, events, actions."""
    result = ApplyResult()
    identities: dict[str, ContactIdentity] = {}
    # When a wrapper's messages name a contactId its contacts[] does not (the 2022 example
    # does this), the wrapper's only contact still tells us the channel.
    only_channel: Channel | None = None
    # The caller's transaction (no savepoint of its own: a failure rolls the whole event back).
    with transaction.atomic(savepoint=False):
        for profile in callback.contacts:
            channel = (
                channel_resolve(
                    account,
                    external_id=profile.channel_external_id,
                    lane=profile.lane,
                    medium=profile.medium,
                )
                if profile.channel_external_id or profile.lane
                else None
            )
            identities[profile.external_id] = identity_upsert(account, profile, channel=channel)
            result.contacts += 1
        if len(callback.contacts) == 1:
            only_channel = identities[callback.contacts[0].external_id].channel

        sessions_touched: list[Session] = []
        for message in callback.messages:
            identity = identities.get(message.contact_external_id) or identity_upsert(
                account,
                ContactProfile(external_id=message.contact_external_id, phone=message.sender),
            )
            identities[message.contact_external_id] = identity
            if message.outbound:
                mirrored = _business_message_apply(
                    account, message, identity, received_at=received_at, fallback=only_channel
                )
                result.messages_created += mirrored
                result.messages_duplicate += int(not mirrored)
                continue
            row, created = _message_apply(
                account, message, identity, received_at=received_at, fallback=only_channel
            )
            if created:
                result.messages_created += 1
            else:
                result.messages_duplicate += 1
            sessions_touched.append(row.session)

        for receipt in callback.receipts:
            _, created = receipt_record(account, receipt, received_at=received_at)
            result.receipts_created += int(created)
            result.receipts_duplicate += int(not created)

        for event in callback.events:
            if _event_apply(account, event, received_at=received_at, result=result):
                result.events_applied += 1

        for action in callback.actions:
            if _action_apply(
                account, action, identities, sessions_touched, received_at, result=result
            ):
                result.actions += 1
    return result


def _channel_of(
    account: ProviderAccount,
    message: InboundMessage,
    identity: ContactIdentity,
    fallback: Channel | None,
) -> Channel:
    """The channel a message is on: the one it names, else its contact's, else the
    callback's only contact's (`fallback`), else the account's for the contact's medium."""
    channel = identity.channel or fallback
    named = message.channel_external_id
    if named and (channel is None or channel.external_id != named):
        channel = channel_resolve(account, external_id=named)  # the message's own channel
    return channel or channel_resolve(account, medium=identity.medium)


def _business_message_apply(
    account: ProviderAccount,
    message: InboundMessage,
    identity: ContactIdentity,
    *,
    received_at: datetime,
    fallback: Channel | None,
) -> int:
    """Mirror a message the business sent from the platform itself (a bot, a broadcast, an
    agent there) into its session as an outbound message; return 1 if it made a row.

    It takes the history's path (`session_messages_mirror`): one of our own sends coming back
    is recognized and settled, a known id is skipped, and the customer's window, unread count
    and last message from them stay as they were.
    """
    at = message.sent_at or received_at
    session = session_for_inbound(
        account,
        channel=_channel_of(account, message, identity, fallback),
        identity=identity,
        ref=message.session,
        at=at,
        source=f"message:{message.external_id}",
    )
    added = session_messages_mirror(
        session,
        [
            HistoryMessage(
                external_id=message.external_id,
                external_id_ext=message.external_id_ext,
                outbound=True,
                type=message.type,
                body=message.body,
                sent_at=at,
                media=message.media,
                raw_type=message.raw_type,
                raw=message.raw,
                author=message.author,
            )
        ],
    )
    for row in added:
        live.publish(
            live.MESSAGE_CREATED,
            session_id=session.pk,
            channel_id=session.channel_id,
            message_id=row.pk,
        )
    return len(added)


def _message_apply(
    account: ProviderAccount,
    message: InboundMessage,
    identity: ContactIdentity,
    *,
    received_at: datetime,
    fallback: Channel | None,
) -> tuple[Message, bool]:
    inbound = Message.objects.filter(
        account=account, direction=Message.Direction.INBOUND, external_id=message.external_id
    )
    if inbound.exists():
        # A redelivery: the session already reflects it; re-applying its (older) assignment
        # would undo newer events.
        return inbound.select_related("session").get(), False
    channel = _channel_of(account, message, identity, fallback)
    if identity.channel_id is None:
        ContactIdentity.objects.filter(pk=identity.pk, channel__isnull=True).update(channel=channel)
        identity.channel = channel
    at = message.sent_at or received_at
    session = session_for_inbound(
        account,
        channel=channel,
        identity=identity,
        ref=message.session,
        at=at,
        source=f"message:{message.external_id}",
    )
    # The redelivery check above ran without a lock: a concurrent delivery of the same message
    # can still win the insert. The unique constraint then raises IntegrityError, which rolls
    # this event back; the caller applies it again once, and the check finds the winner. (No
    # savepoint here: two round trips on every message for a race that is rare.)
    row = _message_row(account, message, session, at=at)
    row.save(force_insert=True)
    _session_note_inbound(session, row, at=at)  # (session_for_inbound locked it)
    live.publish(
        live.MESSAGE_CREATED,
        session_id=session.pk,
        channel_id=session.channel_id,
        message_id=row.pk,
    )
    return row, True


def _message_row(
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
        attachments=[_media_json(m) for m in message.attachments if m != media],
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


def _media_json(media: Media) -> dict[str, object]:
    return {
        "link": media.link,
        "mime_type": media.mime_type,
        "filename": media.filename,
        "caption": media.caption,
        "sha256": media.sha256,
        "id": media.media_id,
    }


def _session_note_inbound(locked: Session, message: Message, *, at: datetime) -> None:
    """Bump the session for a new customer message, and note a reopening on its timeline.

    `locked` is current and locked in this transaction (as `session_for_inbound` returns it).
    """
    was = locked.status
    changed = _session_bump(locked, message, at=at)
    locked.save(update_fields=changed)
    if "status" in changed:
        timeline_add(
            message.account,
            session=locked,
            kind=TimelineEntry.Kind.REOPENED,
            summary=f"Reopened: the customer wrote again after it was {was}",
            occurred_at=at,
            dedupe_key=f"reopened:{message.pk}",
        )


def _session_bump(locked: Session, message: Message, *, at: datetime) -> list[str]:
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


def _event_apply(
    account: ProviderAccount, event: SessionEvent, *, received_at: datetime, result: ApplyResult
) -> bool:
    session = Session.objects.filter(account=account, external_id=event.session_external_id).first()
    if session is None:
        if event.contact is None:
            # It may have overtaken the message that opens the session (§4.0): try later.
            raise ApplyDeferred(
                f"event {event.code or event.kind.value} is for session "
                f"{event.session_external_id}, which is not known yet"
            )
        channel = channel_resolve(account, lane=event.contact.lane, medium=event.contact.medium)
        identity = identity_upsert(account, event.contact, channel=channel)
        session = session_for_inbound(
            account,
            channel=identity.channel or channel,
            identity=identity,
            ref=SessionRef(
                external_id=event.session_external_id,
                routing_id=event.routing_id,
            ),
            at=event.occurred_at or received_at,
        )
    return session_event_apply(account, event, session=session, at=received_at)


def _action_apply(
    account: ProviderAccount,
    action: Action,
    identities: dict[str, ContactIdentity],
    sessions_touched: list[Session],
    received_at: datetime,
    *,
    result: ApplyResult,
) -> bool:
    # §4.14: an action carries only its code; its context is the wrapper's messages/contacts.
    session = sessions_touched[0] if sessions_touched else None
    contact = session.contact if session else None
    if session is None and identities:
        contact = next(iter(identities.values())).contact
        session = session_latest_for_contact(account, contact.pk)
    if session is None and contact is None:
        result.warnings.append(
            f"action {action.code} arrived without a contact or session to attach it to"
        )
        return False
    timeline_add(
        account,
        session=session,
        contact=contact,
        kind=TimelineEntry.Kind.ACTION,
        summary=f"Action {action.code}",
        occurred_at=received_at,
        data={"code": action.code, "raw": action.raw},
        dedupe_key=f"action:{action.dedupe_key}",
    )
    return True


def plain_message(callback: Callback) -> InboundMessage | None:
    """Return the callback's message if it is only one customer message in a known session.

    That is the everyday callback (one contact, one message naming its session and channel,
    nothing else, no warnings), which `messages_apply_run` can apply in bulk.
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


def messages_apply_run(account: ProviderAccount, run: Sequence[StoredCallback]) -> set[int]:
    """Apply the plain customer messages in `run` in bulk; return their keys.

    Each callback must be a `plain_message`, for a customer we know on that channel, in a
    session we know that is open or pending, whose routing the message does not change, and
    not already stored; or the first message of a brand-new customer (no identity with that
    platform id, no contact with that phone) opening a session we have never seen. Those are
    applied with a few statements in all (contacts, identities, sessions and messages read
    and written in bulk, rows locked in id order) instead of about ten to twenty per message,
    with the same result as `callback_apply` one by one. One that does not qualify is left
    for the caller to apply on its own, and so is every later one for the same customer or
    session, so each customer's callbacks still apply in order (different customers' do not
    depend on each other). Runs in the caller's transaction.
    """
    bulk = _bulk_partition(account, run)
    if not bulk.head:
        return set()
    _bulk_load(bulk)
    ready, fresh, refresh = _bulk_plan(bulk)
    if not ready:
        return set()
    return _bulk_write(bulk, ready, fresh, refresh)


@dataclass
class _Bulk:
    """A bulk run: its plain messages, what orders them, and the rows they touch."""

    account: ProviderAccount
    head: list[tuple[StoredCallback, InboundMessage]] = field(default_factory=list)
    # Customers, sessions and phones whose callbacks are left to be applied one by one.
    blocked: set[str] = field(default_factory=set)
    # A phone's first position in the run, each callback's position and ordering keys.
    first_mention: dict[str, int] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    run_keys: dict[int, set[str]] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    identities: dict[str, ContactIdentity] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)  # inbound platform ids already stored
    phones_taken: set[str] = field(default_factory=set)


_Ready = tuple[StoredCallback, InboundMessage, Session, datetime]
_Fresh = tuple[ContactProfile, Channel, SessionRef, datetime]
_Refresh = tuple[str, ContactProfile, Channel]  # (identity's platform id, profile, channel)


def _bulk_partition(account: ProviderAccount, run: Sequence[StoredCallback]) -> _Bulk:
    """Take the plain messages up to each customer's first callback that is not one."""
    bulk = _Bulk(account=account)
    for position, item in enumerate(run):
        bulk.positions[item.key] = position
        message = plain_message(item.callback)
        keys = bulk.run_keys[item.key] = _run_keys(item.callback)
        # A phone joins identities into one contact, so it orders callbacks as a customer id
        # does; a new customer's phone must not appear earlier in the run (that callback, even
        # one applied alone, would create or fill the contact it joins).
        for key in keys:
            if key.startswith("phone:"):
                bulk.first_mention.setdefault(key, position)
        if message is None or keys & bulk.blocked:
            bulk.blocked |= keys
        else:
            bulk.head.append((item, message))
    return bulk


def _bulk_load(bulk: _Bulk) -> None:
    """Lock the run's customers and read the channels, identities and sessions it touches."""
    account, head = bulk.account, bulk.head
    _customers_lock(
        account,
        {m.contact_external_id for _, m in head}
        | {key for item, _ in head for key in bulk.run_keys[item.key] if key in bulk.first_mention},
    )
    profiles = {
        item.callback.contacts[0].channel_external_id: item.callback.contacts[0] for item, _ in head
    }
    bulk.channels = {
        key: channel_resolve(account, external_id=key, lane=profile.lane, medium=profile.medium)
        for key, profile in profiles.items()
    }
    bulk.identities = {
        identity.external_id: identity
        for identity in ContactIdentity.objects.select_related("contact")
        .select_for_update(of=("self",))
        .filter(account=account, external_id__in={m.contact_external_id for _, m in head})
        .order_by("id")
    }
    bulk.sessions = {
        session.external_id: session
        for session in Session.objects.select_for_update()
        .filter(
            account=account, external_id__in={m.session.external_id for _, m in head if m.session}
        )
        .order_by("id")
    }
    bulk.stored = set(
        Message.objects.filter(
            account=account,
            direction=Message.Direction.INBOUND,
            external_id__in={m.external_id for _, m in head},
        ).values_list("external_id", flat=True)
    )
    # Phones of contacts we already have: a new identity with one of them joins that contact
    # (and may supersede its sessions), which `callback_apply` does one by one.
    bulk.phones_taken = set(
        Contact.objects.filter(
            account=account,
            phone__in={
                profile_phone(item.callback.contacts[0])
                for item, message in head
                if message.contact_external_id not in bulk.identities
            }
            - {""},
        ).values_list("phone", flat=True)
    )


def _bulk_plan(bulk: _Bulk) -> tuple[list[_Ready], list[_Fresh], list[_Refresh]]:
    """Decide which messages apply in bulk: a known customer's, or a new customer's first."""
    ready: list[_Ready] = []
    fresh: list[_Fresh] = []
    refresh: list[_Refresh] = []
    for item, message in bulk.head:
        profile = item.callback.contacts[0]
        ref = message.session
        assert ref is not None  # (plain_message)
        channel = bulk.channels[profile.channel_external_id]
        at = message.sent_at or item.received_at
        keys = set(bulk.run_keys[item.key])
        identity = bulk.identities.get(message.contact_external_id)
        if identity is not None and identity.pk is not None and identity.contact.phone:
            keys.add(f"phone:{identity.contact.phone}")
        if keys & bulk.blocked or message.external_id in bulk.stored:
            bulk.blocked |= keys
            continue
        session = bulk.sessions.get(ref.external_id)
        if identity is None and session is None:
            if not _bulk_new_customer(bulk, item, message, channel):
                bulk.blocked |= keys
                continue
            fresh.append((profile, channel, ref, at))
            session = bulk.sessions[ref.external_id]
        elif not _bulk_returning(identity, session, channel, ref, at=at):
            bulk.blocked |= keys
            continue
        else:
            assert identity is not None and session is not None  # (_bulk_returning)
            # What the contact's profile brings that is new (rarely anything) is written
            # once the new customers' rows exist.
            refresh.append((identity.external_id, profile, channel))
        bulk.stored.add(message.external_id)
        ready.append((item, message, session, at))
    return ready, fresh, refresh


def _bulk_new_customer(
    bulk: _Bulk, item: StoredCallback, message: InboundMessage, channel: Channel
) -> bool:
    """Put stand-ins in place for a brand-new customer's first message; False if it is not one.

    Until the rows exist, later messages of this customer in the run find the stand-ins as a
    returning customer's, in the session this message opens.
    """
    ref = message.session
    assert ref is not None  # (plain_message)
    phone = profile_phone(item.callback.contacts[0])
    # (A second new customer with this phone in the run is not its first mention.)
    if phone and (
        phone in bulk.phones_taken
        or bulk.first_mention[f"phone:{phone}"] < bulk.positions[item.key]
    ):
        return False
    bulk.identities[message.contact_external_id] = ContactIdentity(
        external_id=message.contact_external_id, channel=channel
    )
    bulk.sessions[ref.external_id] = Session(
        external_id=ref.external_id,
        channel=channel,
        routing_id=ref.routing_id,
        platform_agent=ref.assigned_agent,
        platform_dept=ref.assigned_dept,
    )
    return True


def _bulk_returning(
    identity: ContactIdentity | None,
    session: Session | None,
    channel: Channel,
    ref: SessionRef,
    *,
    at: datetime,
) -> bool:
    """Say whether a known customer's message joins an open session it changes nothing of."""
    return not (
        identity is None
        or identity.channel_id != channel.pk
        or session is None
        or session.channel_id != channel.pk
        or session.status not in (Session.Status.OPEN, Session.Status.PENDING)
        or session_ref_changes(session, ref, at=at)
    )


def _bulk_write(
    bulk: _Bulk, ready: list[_Ready], fresh: list[_Fresh], refresh: list[_Refresh]
) -> set[int]:
    """Write the planned rows in bulk, publish their live events; return the applied keys."""
    account = bulk.account
    if fresh:
        _customers_create_new(account, fresh, bulk.identities, bulk.sessions)
        ready = [
            (item, message, bulk.sessions[stand_in.external_id], at)
            for item, message, stand_in, at in ready
        ]
    for external_id, profile, channel in refresh:
        identity_refresh(bulk.identities[external_id], profile, channel=channel)
    rows = Message.objects.bulk_create(
        [_message_row(account, message, session, at=at) for _, message, session, at in ready]
    )
    touched: dict[int, Session] = {}
    changed: set[str] = set()
    for (_, _, session, at), row in zip(ready, rows, strict=True):
        touched[session.pk] = session
        changed.update(_session_bump(session, row, at=at))
    if changed:
        _sessions_update(list(touched.values()), sorted(changed))
    live.publish_many(
        live.Event(
            live.MESSAGE_CREATED, session=session.pk, channel=session.channel_id, message=row.pk
        )
        for (_, _, session, _), row in zip(ready, rows, strict=True)
    )
    return {item.key for item, _, _, _ in ready}


def _customers_lock(account: ProviderAccount, keys: set[str]) -> None:
    """Wait for other bulk runs with any of these customers or phones; hold them till commit.

    `keys` are platform contact ids and "phone:<digits>". Known customers' identity rows are
    locked anyway; this also covers customers and phones not stored yet. Two drains whose
    batches share a new customer would otherwise both insert them, and
    the loser's whole run would roll back (at the start of a burst of new customers, most
    runs). Transaction-scoped PostgreSQL advisory locks, taken in one sorted order by every
    run (so runs never deadlock on them); SQLite, the embedded default, has one writer anyway.
    """
    if connection.vendor != "postgresql" or not keys:
        return
    with connection.cursor() as cursor:
        # (A SELECT list is evaluated after its ORDER BY: the locks are taken in that order.)
        cursor.execute(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(k, 0) AS h "
            "FROM unnest(%s::text[]) AS k) AS keys ORDER BY h",
            [sorted(f"customer:{account.pk}:{key}" for key in keys)],
        )


def _sessions_update(sessions: Sequence[Session], fields: Sequence[str]) -> None:
    """Write these fields of these sessions in one statement.

    On PostgreSQL an UPDATE … FROM (VALUES …): `bulk_update` builds a CASE expression per
    field and row, which took 40 % of a bulk run's time in the worker (profiled under
    `make bench`). Elsewhere (the embedded SQLite), `bulk_update`.
    """
    if connection.vendor != "postgresql":
        Session.objects.bulk_update(sessions, fields)
        return
    quote = connection.ops.quote_name
    columns: list[Field[Any, Any]] = []
    for name in ("id", *fields):
        field = Session._meta.get_field(name)
        assert isinstance(field, Field)
        columns.append(field)
    row = "(" + ", ".join(f"%s::{field.db_type(connection)}" for field in columns) + ")"
    params: list[Any] = [
        field.get_db_prep_value(getattr(session, field.attname), connection)
        for session in sessions
        for field in columns
    ]
    names = [quote(str(field.column)) for field in columns]
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(Session._meta.db_table)} AS t SET {assignments} "  # noqa: S608
            f"FROM (VALUES {', '.join([row] * len(sessions))}) AS v({', '.join(names)}) "
            f"WHERE t.{names[0]} = v.{names[0]}",  # (every name above is the model's own)
            params,
        )


def _run_keys(callback: Callback) -> set[str]:
    """Name what orders a callback within a bulk run: its customers, sessions and phones."""
    phones = {profile_phone(profile) for profile in callback.contacts}
    phones.update(phone_normalize(message.sender) for message in callback.messages)
    phones.update(profile_phone(event.contact) for event in callback.events if event.contact)
    return callback_keys(callback) | {f"phone:{phone}" for phone in phones if phone}


def _customers_create_new(
    account: ProviderAccount,
    fresh: Sequence[tuple[ContactProfile, Channel, SessionRef, datetime]],
    identities: dict[str, ContactIdentity],
    sessions: dict[str, Session],
) -> None:
    """Insert new customers and their first sessions; put the rows in place of the stand-ins."""
    created = identities_create_new(
        account, [(profile, channel) for profile, channel, _, _ in fresh]
    )
    opened = sessions_open_new(
        account,
        [
            (identity, channel, ref, at)
            for identity, (_, channel, ref, at) in zip(created, fresh, strict=True)
        ],
    )
    for identity, session in zip(created, opened, strict=True):
        identities[identity.external_id] = identity
        sessions[session.external_id] = session
