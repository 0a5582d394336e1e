"""Import a session's earlier messages from the platform, without duplicating any."""

from __future__ import annotations

import logging
from datetime import datetime

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
    imported = 0
    latest_inbound: datetime | None = None
    for item in history:
        if item.external_id in known or (item.external_id_ext and item.external_id_ext in known):
            continue
        message = _import(session, item)
        if message is None:
            continue
        imported += 1
        if not item.outbound:
            latest_inbound = max(filter(None, (latest_inbound, message.sent_at)), default=None)
        else:
            message_receipts_apply_pending(message)
    if latest_inbound is not None:
        Session.objects.filter(pk=session.pk).filter(
            Q(last_inbound_at__isnull=True) | Q(last_inbound_at__lt=latest_inbound)
        ).update(last_inbound_at=latest_inbound)
    if imported:
        live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
        timeline_add(
            session.account,
            session=session,
            kind=TimelineEntry.Kind.EVENT,
            summary=f"Imported {imported} earlier message(s) from the platform",
            occurred_at=timezone.now(),
        )
    return imported


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
                    "sent_at": item.sent_at or timezone.now(),
                    "raw": item.raw,
                },
            )
    except IntegrityError:
        return None
    return message if created else None
