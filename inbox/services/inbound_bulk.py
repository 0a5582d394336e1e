"""Apply many everyday customer messages at once: the inbound pipeline's bulk phases.

`messages_apply_bulk` takes a run of stored callbacks and applies, with a few statements in all,
the plain customer messages (`inbound_rules.plain_message`) of returning customers in sessions
that the message changes nothing of, and the first messages of brand-new customers; what it
leaves, `inbox.services.inbound` applies one at a time. Phases, each a function: partition (by
the callbacks' ordering keys), load (lock and read what exists), plan (decide per message, with
the rules of `inbound_rules`), write (in bulk) and publish (live events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Field

from inbox import live
from inbox.models import Contact, ContactIdentity, Message, Session
from inbox.services.contacts import identities_create_new, identity_refresh, profile_phone
from inbox.services.inbound_rules import message_row, plain_message, run_keys, session_bump
from inbox.services.media import media_track
from inbox.services.sessions import session_ref_changes, sessions_open_new
from integrations.applier import StoredCallback
from integrations.base import ContactProfile, InboundMessage, SessionRef
from integrations.models import Channel, ProviderAccount
from integrations.services.channels import channel_resolve


def messages_apply_bulk(account: ProviderAccount, run: Sequence[StoredCallback]) -> set[int]:
    """Apply the plain customer messages in `run` in bulk; return their keys.

    Each callback must be a `plain_message`, for a customer we know on that channel, in a
    session we know that is open or pending, whose routing the message does not change, and
    not already stored; or the first message of a brand-new customer (no identity with that
    platform id, no contact with that phone) opening a session we have never seen. Those are
    applied with a few statements in all (contacts, identities, sessions and messages read
    and written in bulk, rows locked in id order) instead of about ten to twenty per message,
    with the same result as one at a time. One that does not qualify is left for the caller,
    and so is every later one for the same customer, session or phone, so each customer's
    callbacks still apply in order (different customers' do not depend on each other). Runs in
    the caller's transaction.
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
    # Customers, sessions and phones whose callbacks are left to be applied one at a time.
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
        keys = bulk.run_keys[item.key] = run_keys(item.callback)
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
    # (and may supersede its sessions), which `inbound._callback_apply` does one at a time.
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
        [message_row(account, message, session, at=at) for _, message, session, at in ready]
    )
    media_track(rows)
    touched: dict[int, Session] = {}
    changed: set[str] = set()
    for (_, _, session, at), row in zip(ready, rows, strict=True):
        touched[session.pk] = session
        changed.update(session_bump(session, row, at=at))
    if changed:
        _sessions_update(list(touched.values()), sorted(changed))
    live.publish_many(
        live.Event(
            live.MESSAGE_CREATED, session=session.pk, channel=session.channel_id, message=row.pk
        )
        for (_, _, session, _), row in zip(ready, rows, strict=True)
    )
    return {item.key for item, _, _, _ in ready}


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
