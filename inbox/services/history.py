"""Import a session's earlier messages from the platform, without duplicating any.

Our own sends are among them: the history names them by the platform's id, which we may not
know yet (the send's answer never came). `sends_correlate` recognizes them (same conversation,
same content, within the send's evidence window) and gives them their ids instead of importing
them as rows of their own; a further copy the platform accepted is kept on the message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from inbox import live
from inbox.models import Message, MessageCopy, Session, TimelineEntry
from inbox.services.media import media_track
from inbox.services.messages import (
    CLOCK_SKEW,
    evidence_window,
    media_fields,
    message_adopt,
    message_copy_record,
    message_receipts_apply_pending,
)
from inbox.services.timeline import timeline_add
from integrations.base import (
    Capability,
    HistoryMessage,
    MessageType,
    ProviderError,
    with_fresh_credentials,
)
from integrations.registry import get_provider

logger = logging.getLogger(__name__)


def session_history_fetch(session: Session) -> list[HistoryMessage]:
    """Ask the platform for the messages of `session` (its account's credentials, refreshed once
    if the platform refuses them).

    Raises `ProviderError` when the platform cannot answer (`UnsupportedError` when it keeps no
    history: `Capability.HISTORY`).
    """
    provider = get_provider(session.account.kind)
    return list(
        with_fresh_credentials(
            provider,
            session.account.config(),
            lambda config: provider.session_history(config, session.external_id),
        )
    )


def session_history_import(session_id: int) -> int:
    """Add the messages the platform has for this session that we do not; return how many."""
    session = Session.objects.select_related("account").get(pk=session_id)
    if not session.external_id or not get_provider(session.account.kind).can(Capability.HISTORY):
        return 0
    try:
        history = session_history_fetch(session)
    except ProviderError as exc:
        logger.warning("history of session %s unavailable: %s", session.external_id, exc)
        raise
    added = session_messages_mirror(session, history)
    imported = len(added)
    if added:
        live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
        timeline_add(
            session.account,
            session=session,
            kind=TimelineEntry.Kind.EVENT,
            summary=f"Imported {imported} earlier message(s) from the platform",
            occurred_at=timezone.now(),
        )
    return imported


def session_messages_mirror(session: Session, items: Sequence[HistoryMessage]) -> list[Message]:
    """Add the messages of `session` the platform has and we do not; return the rows added.

    The one path for a session's history and for a message the business sent from the
    platform itself (a bot, a broadcast, an agent there): our own sends among them are
    recognized (`sends_correlate`) and settled instead of copied, known ids are skipped, and
    the rest become rows (with who sent them there) that date the session as if they had
    arrived live.
    """
    history = sends_correlate(session, items)
    ids = {m.external_id for m in history} | {
        m.external_id_ext for m in history if m.external_id_ext
    }
    known = set()
    for external_id, ext in (
        Message.objects.filter(account_id=session.account_id)
        .filter(Q(external_id__in=ids) | Q(external_id_ext__in=ids))
        .values_list("external_id", "external_id_ext")
    ):
        known.update({external_id, ext})
    added: list[Message] = []
    for item in history:
        if item.external_id in known or (item.external_id_ext and item.external_id_ext in known):
            continue
        message = _import(session, item)
        if message is None:
            continue
        added.append(message)
        if item.outbound:
            message_receipts_apply_pending(message)
    if added:
        _session_date_from(session.pk, added)
        media_track(added)
    return added


def _known_ids(account_id: UUID, items: Sequence[HistoryMessage]) -> set[str]:
    ids = {m.external_id for m in items} | {m.external_id_ext for m in items if m.external_id_ext}
    known: set[str] = set()
    for external_id, ext in (
        Message.objects.filter(account_id=account_id)
        .filter(Q(external_id__in=ids) | Q(external_id_ext__in=ids))
        .values_list("external_id", "external_id_ext")
    ):
        known.update({external_id, ext})
    for external_id, ext in (
        MessageCopy.objects.filter(account_id=account_id)
        .filter(Q(external_id__in=ids) | Q(external_id_ext__in=ids))
        .values_list("external_id", "external_id_ext")
    ):
        known.update({external_id, ext})
    known.discard("")
    return known


def same_content(
    message: Message, item: HistoryMessage, listed_types: Mapping[MessageType, MessageType]
) -> bool:
    """Say whether a history entry has the content of one of our sends.

    `listed_types` is the provider's: the type it lists a send under, where that differs.
    """
    sent_as = MessageType(message.type)
    if item.type != listed_types.get(sent_as, sent_as):
        return False
    if message.type in (MessageType.TEXT, MessageType.TEMPLATE) and item.body.strip():
        return item.body.strip() == message.body.strip()
    return message.type != MessageType.TEXT


def _reference(message: Message) -> datetime:
    return message.first_attempt_at or message.claimed_at or message.created_at


def _in_window(message: Message, at: datetime | None) -> bool:
    if at is None:
        return False
    start = _reference(message)
    return start - CLOCK_SKEW <= at <= start + evidence_window() + CLOCK_SKEW


def sends_correlate(session: Session, items: Sequence[HistoryMessage]) -> list[HistoryMessage]:
    """Recognize our own sends among a history's entries; return the entries that are not ours.

    An outbound entry with an id we do not know is our send when it is in the same conversation
    (contact and channel), has the same content and is dated within the send's evidence window:
    the earliest such send still without its platform id adopts it; when every such send has
    its id already, the entry is a further copy the platform accepted and is kept on the
    message ("delivered twice"). Two identical replies each adopt their own entry, in order.
    """
    known = _known_ids(session.account_id, items)
    unknown = [
        i
        for i in items
        if i.outbound
        and i.external_id not in known
        and not (i.external_id_ext and i.external_id_ext in known)
    ]
    if not unknown:
        return list(items)
    dated = [i.sent_at for i in unknown if i.sent_at is not None]
    ours = Message.objects.filter(
        account_id=session.account_id,
        direction=Message.Direction.OUTBOUND,
        session__contact_id=session.contact_id,
        session__channel_id=session.channel_id,
    ).filter(Q(attempts__gt=0) | Q(first_attempt_at__isnull=False))
    if dated:
        ours = ours.filter(created_at__gte=min(dated) - evidence_window() - CLOCK_SKEW)
    candidates = list(ours.select_related("session").order_by("created_at", "pk")[:500])
    listed_types = get_provider(session.account.kind).listed_types
    matched: set[str] = set()
    for item in sorted(unknown, key=lambda i: (i.sent_at is None, i.sent_at or 0, i.external_id)):
        pending = [
            m
            for m in candidates
            if not m.external_id
            and m.status
            in (Message.Status.SENDING, Message.Status.UNCONFIRMED, Message.Status.QUEUED)
            and same_content(m, item, listed_types)
            and (item.sent_at is None or _in_window(m, item.sent_at))
        ]
        pending.sort(key=lambda m: (_reference(m), m.pk))
        status = Message.Status(item.status)
        if pending and message_adopt(
            pending[0],
            external_id=item.external_id,
            external_id_ext=item.external_id_ext[:255],
            status=status,
            at=item.sent_at,
        ):
            matched.add(item.external_id)
            continue
        settled = [
            m
            for m in candidates
            if m.external_id and same_content(m, item, listed_types) and _in_window(m, item.sent_at)
        ]
        if settled:
            nearest = max(settled, key=lambda m: (_reference(m), m.pk))
            message_copy_record(
                nearest, external_id=item.external_id, external_id_ext=item.external_id_ext
            )
            matched.add(item.external_id)
    return [i for i in items if i.external_id not in matched]


def _session_date_from(session_id: int, added: list[Message]) -> None:
    """Let imported messages say how old the session is, as if they had arrived live.

    The newest becomes the session's last message and activity when it is newer than what the
    session has; a session with no message before (opened by a platform event, at the moment
    the event arrived) takes its activity from them even when that is earlier, and its opening
    (and the "opened" timeline line) moves back to the first of them.
    """
    newest = max(added, key=lambda m: (m.sent_at, m.pk))
    oldest = min(m.sent_at for m in added)
    inbound = [m.sent_at for m in added if m.direction == Message.Direction.INBOUND]
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=session_id)
        changed: list[str] = []
        previous = session.last_message  # read after the lock: the current one
        if previous is None or (previous.sent_at, previous.pk) < (newest.sent_at, newest.pk):
            session.last_message = newest
            changed.append("last_message")
        if previous is None or session.last_activity_at < newest.sent_at:
            session.last_activity_at = newest.sent_at
            changed.append("last_activity_at")
        if inbound and (session.last_inbound_at is None or session.last_inbound_at < max(inbound)):
            session.last_inbound_at = max(inbound)
            changed.append("last_inbound_at")
        if oldest < session.opened_at:
            session.opened_at = oldest
            changed.append("opened_at")
            TimelineEntry.objects.filter(
                session=session, kind=TimelineEntry.Kind.OPENED, occurred_at__gt=oldest
            ).update(occurred_at=oldest)
        if changed:
            session.save(update_fields=[*changed, "updated_at"])


def _import(session: Session, item: HistoryMessage) -> Message | None:
    media = item.media
    status = Message.Status(item.status) if item.outbound else Message.Status.RECEIVED
    try:
        with transaction.atomic():
            message, created = Message.objects.get_or_create(
                account_id=session.account_id,
                external_id=item.external_id,
                defaults={
                    "session": session,
                    "direction": Message.Direction.OUTBOUND
                    if item.outbound
                    else Message.Direction.INBOUND,
                    "type": item.type.value,
                    "raw_type": item.raw_type[:40],
                    "body": item.body,
                    **media_fields(media),
                    "external_id_ext": item.external_id_ext[:255],
                    "status": status,
                    # Undated (the platform gave no time): not "now", which would make an old
                    # conversation look new; no later than the session's opening.
                    "sent_at": item.sent_at or session.opened_at,
                    "raw": item.raw,
                    "author_name": item.author[:255],
                },
            )
    except IntegrityError:
        return None
    return message if created else None
