"""The outbound delivery status machine and how receipts move it.

Status only moves forward (queued < sending < sent < delivered < read); failed and deleted are
terminal. A late receipt never downgrades a message, but its step time is still recorded.
Moves are conditional UPDATEs, so two workers applying receipts at once cannot race it back.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from inbox import live
from inbox.models import Message, MessageReceipt, MessageStatusChange, Session
from integrations.base import DeliveryStatus, Media, Receipt
from integrations.models import ProviderAccount

RANK: dict[str, int] = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENDING: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
}
TERMINAL = frozenset({DeliveryStatus.FAILED.value, DeliveryStatus.DELETED.value})
STEP_FIELDS: dict[str, str] = {
    DeliveryStatus.DELIVERED: "delivered_at",
    DeliveryStatus.READ: "read_at",
    DeliveryStatus.FAILED: "failed_at",
    DeliveryStatus.DELETED: "deleted_at",
}


def media_fields(media: Media | None) -> dict[str, object]:
    """Return the Message columns that describe a platform media item, trimmed to fit."""
    if media is None:
        return {
            "caption": "",
            "media_url": "",
            "media_mime_type": "",
            "media_filename": "",
            "media_size": None,
            "media_sha256": "",
            "media_external_id": "",
        }
    return {
        "caption": media.caption,
        "media_url": media.link[:2000],
        "media_mime_type": media.mime_type[:255],
        "media_filename": media.filename[:255],
        "media_size": media.size,
        "media_sha256": media.sha256[:128],
        "media_external_id": media.media_id[:255],
    }


def statuses_below(status: str) -> list[str]:
    """Return the statuses a message may move to `status` from."""
    if status in TERMINAL:
        return list(RANK)
    return [s for s, rank in RANK.items() if rank < RANK[status]]


def message_status_advance(
    message: Message,
    status: str,
    *,
    at: datetime,
    error_code: str = "",
    error_title: str = "",
) -> bool:
    """Move an outbound message forward to `status`; return whether its status changed.

    Records the step in the history and its time on the row even when the status itself does
    not move (a DLVRD arriving after READ still tells us when it was delivered).
    """
    updates: dict[str, object] = {"status": status}
    if status == DeliveryStatus.FAILED:
        updates.update(error_code=error_code[:64], error_title=error_title)
    step_field = STEP_FIELDS.get(status)
    if step_field:
        updates[step_field] = at
    moved = (
        Message.objects.filter(pk=message.pk, status__in=statuses_below(status)).update(**updates)
        == 1
    )
    if not moved and step_field:
        Message.objects.filter(pk=message.pk, **{f"{step_field}__isnull": True}).exclude(
            status__in=TERMINAL - {status}
        ).update(**{step_field: at})
    try:
        with transaction.atomic():
            MessageStatusChange.objects.create(
                message=message,
                status=status,
                occurred_at=at,
                error_code=error_code[:64] if status == DeliveryStatus.FAILED else "",
                error_title=error_title if status == DeliveryStatus.FAILED else "",
            )
    except IntegrityError:
        pass  # this step is already in the history
    if moved:
        for field, value in updates.items():
            setattr(message, field, value)
    _publish_update(message)
    return moved


def _publish_update(message: Message) -> None:
    cached = message._state.fields_cache.get("session")
    channel_id = (
        cached.channel_id
        if cached is not None
        else Session.objects.filter(pk=message.session_id)
        .values_list("channel_id", flat=True)
        .first()
    )
    if channel_id is not None:
        live.publish(
            live.MESSAGE_UPDATED,
            session_id=message.session_id,
            channel_id=channel_id,
            message_id=message.pk,
        )


def receipt_record(
    account: ProviderAccount, receipt: Receipt, *, received_at: datetime
) -> tuple[MessageReceipt, bool]:
    """Store a receipt once and apply it to its message if we have that message yet."""
    with transaction.atomic():
        row, created = MessageReceipt.objects.get_or_create(
            account=account,
            external_id=receipt.external_id,
            status=receipt.status.value,
            defaults={
                "external_id_ext": receipt.external_id_ext,
                "occurred_at": receipt.occurred_at or received_at,
                "error_code": receipt.error_code[:64],
                "error_title": receipt.error_title,
                "error_details": receipt.error_details,
                "raw": receipt.raw,
            },
        )
    if row.applied_at is None:
        message = _outbound_message_for(account, row.external_id, row.external_id_ext)
        if message is not None:
            receipt_apply(row, message)
    return row, created


def _outbound_message_for(
    account: ProviderAccount, external_id: str, external_id_ext: str
) -> Message | None:
    # §5.12: the send response id may be either of the receipt's two ids; match both ways.
    ids = {i for i in (external_id, external_id_ext) if i}
    return (
        Message.objects.filter(account=account, direction=Message.Direction.OUTBOUND)
        .select_related("session")
        .filter(Q(external_id__in=ids) | Q(external_id_ext__in=ids))
        .first()
    )


def receipt_apply(receipt: MessageReceipt, message: Message) -> None:
    """Apply a stored receipt to its message and mark it applied."""
    message_status_advance(
        message,
        receipt.status,
        at=receipt.occurred_at,
        error_code=receipt.error_code,
        error_title=receipt.error_title,
    )
    MessageReceipt.objects.filter(pk=receipt.pk).update(message=message, applied_at=timezone.now())
    # §5.12: remember the receipt's other id (whichever is not the one we already have), so
    # later receipts and history that carry only that one match too.
    other = next(
        (
            i
            for i in (receipt.external_id, receipt.external_id_ext)
            if i and i != message.external_id
        ),
        "",
    )
    if other and not message.external_id_ext:
        Message.objects.filter(pk=message.pk, external_id_ext="").update(external_id_ext=other)
        message.external_id_ext = other
        message_receipts_apply_pending(message)


def message_receipts_apply_pending(message: Message) -> int:
    """Apply receipts that arrived before this outbound message had its platform ids."""
    ids = {i for i in (message.external_id, message.external_id_ext) if i}
    if not ids or message.direction != Message.Direction.OUTBOUND:
        return 0
    pending = list(
        MessageReceipt.objects.filter(account_id=message.account_id, message__isnull=True)
        .filter(Q(external_id__in=ids) | Q(external_id_ext__in=ids))
        .order_by("occurred_at", "id")
    )
    for receipt in pending:
        receipt_apply(receipt, message)
    return len(pending)


def message_external_ids_set(
    message: Message, *, external_id: str, external_id_ext: str = ""
) -> int:
    """Record the platform's ids for an outbound message and apply any receipts that waited.

    Called when a send is accepted (or history names the message); returns how many waiting
    receipts were applied.
    """
    message.external_id = external_id
    message.external_id_ext = external_id_ext or message.external_id_ext
    message.save(update_fields=["external_id", "external_id_ext"])
    return message_receipts_apply_pending(message)


def receipts_apply_orphans(*, max_age: timedelta = timedelta(hours=1), limit: int = 1000) -> int:
    """Apply receipts that found no message because they raced the send's answer (§4.12)."""
    since = timezone.now() - max_age
    applied = 0
    orphans = (
        MessageReceipt.objects.select_related("account")
        .filter(message__isnull=True, created_at__gte=since)
        .order_by("occurred_at", "id")[:limit]
    )
    for receipt in orphans:
        account = receipt.account
        message = _outbound_message_for(account, receipt.external_id, receipt.external_id_ext)
        if message is not None:
            receipt_apply(receipt, message)
            applied += 1
    return applied
