"""Import a session's earlier messages from the platform, without duplicating any."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from inbox import live
from inbox.models import Message, Session, TimelineEntry
from inbox.services.messages import media_fields, message_receipts_apply_pending
from inbox.services.timeline import timeline_add
from integrations.base import HistoryMessage, MessageType
from integrations.http import HttpError
from integrations.registry import get_provider

logger = logging.getLogger(__name__)
_OUTBOUND_STATUS = {
    "SENT": Message.Status.SENT,
    "DLVRD": Message.Status.DELIVERED,
    "DELIVERED": Message.Status.DELIVERED,
    "READ": Message.Status.READ,
    "FAILD": Message.Status.FAILED,
    "FAILED": Message.Status.FAILED,
    "DELTD": Message.Status.DELETED,
}


def session_history_import(session_id: int) -> int:
    """Add the messages the platform has for this session that we do not; return how many."""
    session = Session.objects.select_related("account").get(pk=session_id)
    if not session.external_id:
        return 0
    provider = get_provider(session.account.kind)
    try:
        history = provider.session_history(session.account.config(), session.external_id)
    except NotImplementedError:
        return 0
    except HttpError as exc:
        logger.warning("history of session %s unavailable: %s", session.external_id, exc)
        raise
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
    imported = len(added)
    if added:
        _session_date_from(session.pk, added)
        live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
        timeline_add(
            session.account,
            session=session,
            kind=TimelineEntry.Kind.EVENT,
            summary=f"Imported {imported} earlier message(s) from the platform",
            occurred_at=timezone.now(),
        )
    return imported


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
    try:
        kind = MessageType(item.type if item.type != "contacts" else "contact")
    except ValueError:
        kind = MessageType.UNKNOWN
    media = item.media
    status = (
        _OUTBOUND_STATUS.get(item.status, Message.Status.SENT)
        if item.outbound
        else Message.Status.RECEIVED
    )
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
                    "type": kind.value,
                    "raw_type": item.type[:40],
                    "body": item.body,
                    **media_fields(media),
                    "external_id_ext": item.external_id_ext[:255],
                    "status": status,
                    # Undated (the platform gave no time): not "now", which would make an old
                    # conversation look new; no later than the session's opening.
                    "sent_at": item.sent_at or session.opened_at,
                    "raw": item.raw,
                },
            )
    except IntegrityError:
        return None
    return message if created else None
