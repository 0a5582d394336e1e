"""Apply what platforms sent (stored `Callback`s) to the inbox: the one inbound pipeline.

`callbacks_apply` is the one way in, for a drain's batch and for a single callback alike (a
batch of one). It applies the everyday customer messages together, in one transaction
(`inbound_bulk.messages_apply_bulk`: partition by ordering keys, lock and load, plan, write,
publish), then what is left one callback at a time, each in a transaction of its own, in the
order received (`_callback_apply`: contacts, messages, receipts, events, actions). Both decide
with the rules in `inbound_rules`. Each transaction settles what it applied (the caller's
`settle`: the stored events' states), so a callback is applied and recorded together.

Idempotent: every row it creates is keyed by a unique constraint, so applying the same callback
twice, or two copies at once, leaves one of everything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction

from inbox import live
from inbox.models import ContactIdentity, Message, Session, TimelineEntry
from inbox.services.contacts import identity_upsert
from inbox.services.history import session_messages_mirror
from inbox.services.inbound_bulk import messages_apply_bulk
from inbox.services.inbound_rules import message_row, session_bump
from inbox.services.media import media_track
from inbox.services.messages import receipt_record
from inbox.services.sessions import (
    session_event_apply,
    session_for_inbound,
    session_latest_for_contact,
)
from inbox.services.timeline import timeline_add
from integrations.applier import (
    ApplyDeferred,
    Outcome,
    Settle,
    StoredCallback,
    database_outage,
    error_text,
    outage_blame,
)
from integrations.base import (
    Action,
    Callback,
    ContactProfile,
    HistoryMessage,
    InboundMessage,
    SessionEvent,
    SessionRef,
)
from integrations.models import Channel, ProviderAccount
from integrations.services.channels import channel_resolve, channels_cache_clear

logger = logging.getLogger(__name__)


def callbacks_apply(
    account: ProviderAccount, run: Sequence[StoredCallback], settle: Settle
) -> None:
    """Apply a run of one account's stored callbacks in order, settling each as it commits.

    The everyday customer messages go together in one transaction (`_bulk_apply`), every other
    callback in one of its own (`_one_apply`), in the order received; `settle` (the caller's:
    the stored events' states) is called inside each transaction with the outcomes it decided,
    so a callback is applied and settled together. A callback that fails, or overtook what it
    refers to (`ApplyDeferred`), is rolled back alone and settled with the reason. A database
    outage raises, leaving what is not settled yet for the caller's retry.
    """
    applied = _bulk_apply(account, run, settle)
    for item in run:
        if item.key not in applied:
            _one_apply(account, item, settle)


def _bulk_apply(
    account: ProviderAccount, run: Sequence[StoredCallback], settle: Settle
) -> set[int]:
    """Apply the run's everyday messages together, in one transaction; return their keys.

    A bulk write that loses an insert race (a row inserted meanwhile by a path that does not
    hold the customer) is planned once more, and then finds the row; any other error leaves
    the whole run to `_one_apply`, where the callback at fault fails alone, with its reason.
    """
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                applied = messages_apply_bulk(account, run)
                if applied:
                    settle(dict.fromkeys(applied, Outcome(applied=True)))
            return applied
        except IntegrityError:
            logger.info("a bulk run lost an insert race (attempt %s)", attempt)
            channels_cache_clear()  # (a cached channel deleted meanwhile fails the same way)
        except Exception as exc:
            if database_outage(exc):
                raise
            logger.warning(
                "a bulk run of %s callbacks failed (%s); applying them one at a time",
                len(run),
                error_text(exc)[:500],
            )
            channels_cache_clear()
            return set()
    return set()


def _one_apply(account: ProviderAccount, item: StoredCallback, settle: Settle) -> None:
    """Apply one callback in a transaction of its own; a failure or deferral is settled alone."""
    callback = item.callback
    outcome = Outcome()
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                result = _callback_apply(account, callback, received_at=item.received_at)
                warnings = [*callback.warnings, *result.warnings]
                settle({item.key: Outcome(applied=result.applied, warnings=warnings)})
            return
        except ApplyDeferred as exc:
            outcome = Outcome(deferred=str(exc))
            break
        except IntegrityError as exc:
            # A concurrent delivery of the same item won an insert (or a cached row went
            # away): once more, and the redelivery checks find the winner.
            channels_cache_clear()
            if attempt == 2:
                logger.exception("callback %s failed", item.key)
                outcome = Outcome(failed=error_text(exc))
        except Exception as exc:
            if database_outage(exc):
                outage_blame(exc, item.key)
                raise
            logger.exception("callback %s failed", item.key)
            outcome = Outcome(failed=error_text(exc))
            break
    settle({item.key: outcome})  # (rolled back: the reason, on its own)


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


def _callback_apply(
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
    row = message_row(account, message, session, at=at)
    row.save(force_insert=True)
    media_track([row])
    _session_note_inbound(session, row, at=at)  # (session_for_inbound locked it)
    live.publish(
        live.MESSAGE_CREATED,
        session_id=session.pk,
        channel_id=session.channel_id,
        message_id=row.pk,
    )
    return row, True


def _session_note_inbound(locked: Session, message: Message, *, at: datetime) -> None:
    """Bump the session for a new customer message, and note a reopening on its timeline.

    `locked` is current and locked in this transaction (as `session_for_inbound` returns it).
    """
    was = locked.status
    changed = session_bump(locked, message, at=at)
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
