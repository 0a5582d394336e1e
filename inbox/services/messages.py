"""The outbound delivery status machine and how receipts move it.

Status only moves forward (queued < sending < sent < delivered < read); failed and deleted are
terminal. A late receipt never downgrades a message, but its step time is still recorded.
Moves are conditional UPDATEs, so two workers applying receipts at once cannot race it back.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, CharField, DateTimeField, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from inbox import live
from inbox.models import Message, MessageCopy, MessageReceipt, MessageStatusChange, Session
from integrations.base import DeliveryStatus, Media, Receipt
from integrations.models import ProviderAccount

logger = logging.getLogger(__name__)
# Platform clocks and ours disagree a little: evidence this much before a send still counts.
CLOCK_SKEW = timedelta(seconds=60)
# An outbound message that may be at the platform without our knowing its id.
UNSETTLED = (Message.Status.SENDING, Message.Status.UNCONFIRMED)

RANK: dict[str, int] = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENDING: 1,
    # Ours, not the platform's: no evidence yet; any receipt or history entry moves it on.
    Message.Status.UNCONFIRMED: 1,
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
    not move (a "delivered" receipt arriving after "read" still tells us when it was delivered).
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
    # A step already in the history stays as it is (ON CONFLICT DO NOTHING: no savepoint).
    MessageStatusChange.objects.bulk_create(
        [
            MessageStatusChange(
                message=message,
                status=status,
                occurred_at=at,
                error_code=error_code[:64] if status == DeliveryStatus.FAILED else "",
                error_title=error_title if status == DeliveryStatus.FAILED else "",
            )
        ],
        ignore_conflicts=True,
    )
    if moved:
        for field, value in updates.items():
            setattr(message, field, value)
    message_update_publish(message)
    return moved


def message_update_publish(message: Message) -> None:
    """Tell open pages that a message changed (once the transaction commits)."""
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
                "contact_external_id": receipt.contact_external_id,
                "raw": receipt.raw,
            },
        )
    if row.applied_at is None:
        message = _outbound_message_for(account, row.external_id, row.external_id_ext)
        if message is not None:
            receipt_apply(row, message)
        elif not _receipt_attach_to_copy(row):
            _receipt_adopt_for_contact(account, row)
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


# --- Adoption: the platform names one of our sends ------------------------------------------------


class _IdTaken(Exception):
    """The id belongs to another of our own sends."""


# What evidence of a send settles on its row besides the platform's id.
_SETTLED: dict[str, object] = {
    "outcome_unknown": False,
    "error_code": "",
    "error_title": "",
    "next_attempt_at": None,
}


def messages_adopt(
    adoptions: list[tuple[Message, str]], *, at: datetime, also: dict[str, object] | None = None
) -> None:
    """Settle many sends the platform accepted, each with the id its answer named.

    `message_adopt` for a batch, in a few statements whatever its size: one UPDATE gives every
    row its id, one moves them to sent, one records the step, one looks for receipts that
    waited. When the unique constraint says another row already has one of the ids (the
    history import named it first), the batch is settled one by one by `message_adopt`, which
    merges that row.
    """
    if len(adoptions) > 1:
        try:
            with transaction.atomic():
                Message.objects.filter(pk__in=[m.pk for m, _ in adoptions]).update(
                    external_id=Case(
                        *(When(pk=m.pk, then=Value(eid)) for m, eid in adoptions),
                        output_field=CharField(),
                    ),
                    **_SETTLED,
                    **(also or {}),
                )
        except IntegrityError:
            pass  # one of the ids is on a row of its own: merge it, one by one below
        else:
            for message, external_id in adoptions:
                message.external_id = external_id
            _sent_in_bulk([m for m, _ in adoptions], at=at)
            return
    for message, external_id in adoptions:
        message_adopt(message, external_id=external_id, at=at, also=also)


def _sent_in_bulk(messages: list[Message], *, at: datetime) -> None:
    """`message_status_advance(m, SENT)` and `message_receipts_apply_pending(m)` for many."""
    sent = DeliveryStatus.SENT
    Message.objects.filter(pk__in=[m.pk for m in messages], status__in=statuses_below(sent)).update(
        status=sent
    )
    MessageStatusChange.objects.bulk_create(
        [MessageStatusChange(message=m, status=sent, occurred_at=at) for m in messages],
        ignore_conflicts=True,
    )
    for message in messages:
        if RANK.get(message.status, 0) < RANK[sent] and message.status not in TERMINAL:
            message.status = sent
    live.publish_many(
        live.Event(
            type=live.MESSAGE_UPDATED,
            session=m.session_id,
            channel=m.session.channel_id,
            message=m.pk,
        )
        for m in messages
    )
    ids = {m.external_id for m in messages}
    waiting = MessageReceipt.objects.filter(
        account_id__in={m.account_id for m in messages}, message__isnull=True
    ).filter(Q(external_id__in=ids) | Q(external_id_ext__in=ids))
    if waiting.exists():
        for message in messages:
            message_receipts_apply_pending(message)


def message_adopt(
    message: Message,
    *,
    external_id: str,
    external_id_ext: str = "",
    status: str = DeliveryStatus.SENT,
    at: datetime | None = None,
    also: dict[str, object] | None = None,
) -> bool:
    """Give an outbound message the platform id that evidence names for it, and settle it.

    Evidence is the send's answer, a receipt or the session history; they may name the message
    in any order and at once. A row the history import made under that id meanwhile is merged
    into this one, so the unique-constraint race ends in adoption, never in an error. Returns
    False (and changes nothing) when the id is another of our sends'. `also`: further columns
    to set in the same UPDATE.
    """
    at = at or timezone.now()
    carried: list[str] = []
    # Nearly always no other row has the id: try the UPDATE first; the unique constraint says
    # when one does (made meanwhile or earlier), and the next round merges it first.
    for round_ in range(3):
        try:
            with transaction.atomic():
                if round_:
                    carried = _take_over_imported(message, external_id)
                Message.objects.filter(pk=message.pk).update(
                    external_id=external_id,
                    external_id_ext=external_id_ext or message.external_id_ext,
                    **{
                        **_SETTLED,
                        # The platform has it: when, if its answer never said (a platform
                        # whose receipts are looked up looks from then on).
                        "accepted_at": Coalesce(
                            F("accepted_at"), Value(at, output_field=DateTimeField())
                        ),
                        **(also or {}),
                    },
                )
            break
        except _IdTaken:
            logger.error(
                "platform id %s names message %s but belongs to another send",
                external_id,
                message.pk,
            )
            return False
        except IntegrityError:
            continue  # a row with this id committed meanwhile: merge it on the next round
    else:
        return False
    message.external_id = external_id
    message.external_id_ext = external_id_ext or message.external_id_ext
    message_status_advance(message, DeliveryStatus.SENT, at=at)
    for step in (status, *carried):
        if step != DeliveryStatus.SENT and step in (*RANK, *TERMINAL):
            message_status_advance(message, step, at=at)
    message_receipts_apply_pending(message)
    return True


def _take_over_imported(message: Message, external_id: str) -> list[str]:
    """Merge the row the history import made for `external_id` into `message`.

    Returns the statuses that row had reached. Raises `_IdTaken` when the row is one of our own
    sends (it has been attempted), which no evidence can take away from it.
    """
    other = (
        Message.objects.select_for_update()
        .filter(account_id=message.account_id, direction=Message.Direction.OUTBOUND)
        .filter(external_id=external_id)
        .exclude(pk=message.pk)
        .first()
    )
    if other is None:
        return []
    if other.attempts or other.first_attempt_at or other.idempotency_key:
        raise _IdTaken
    MessageReceipt.objects.filter(message=other).update(message=message)
    Session.objects.filter(last_message=other).update(last_message=message)
    reached = [other.status] if other.status != Message.Status.SENT else []
    other.delete()
    return reached


def message_copy_record(message: Message, *, external_id: str, external_id_ext: str = "") -> bool:
    """Keep a further copy of `message` the platform accepted (shown as "delivered twice").

    Receipts for that copy attach to the message (without moving its status). Returns whether
    the copy is new.
    """
    _, created = MessageCopy.objects.get_or_create(
        account_id=message.account_id,
        external_id=external_id,
        defaults={"message": message, "external_id_ext": external_id_ext},
    )
    ids = {i for i in (external_id, external_id_ext) if i}
    MessageReceipt.objects.filter(account_id=message.account_id, message__isnull=True).filter(
        Q(external_id__in=ids) | Q(external_id_ext__in=ids)
    ).update(message=message, applied_at=timezone.now())
    if created:
        message_update_publish(message)
    return created


def _receipt_attach_to_copy(receipt: MessageReceipt) -> bool:
    ids = {i for i in (receipt.external_id, receipt.external_id_ext) if i}
    copy = (
        MessageCopy.objects.filter(account_id=receipt.account_id)
        .filter(Q(external_id__in=ids) | Q(external_id_ext__in=ids))
        .first()
    )
    if copy is None:
        return False
    MessageReceipt.objects.filter(pk=receipt.pk).update(
        message_id=copy.message_id, applied_at=timezone.now()
    )
    return True


def _receipt_adopt_for_contact(account: ProviderAccount, receipt: MessageReceipt) -> bool:
    """Settle the contact's one ambiguous send with a receipt for an id we do not know."""
    if not receipt.contact_external_id:
        return False
    candidates = list(
        Message.objects.filter(
            account=account,
            direction=Message.Direction.OUTBOUND,
            session__identity__external_id=receipt.contact_external_id,
            status__in=UNSETTLED,
            external_id="",
        ).select_related("session")[:2]
    )
    if len(candidates) != 1:
        return False
    message = candidates[0]
    if message.status == Message.Status.SENDING and not message.outcome_unknown:
        return False  # still waiting for its answer, which will name it
    return message_adopt_from_receipts(message)


def message_adopt_from_receipts(message: Message) -> bool:
    """Settle an ambiguous send from receipts kept for an id we do not know; return whether.

    Only when it is the contact's one unsettled send and the receipts since its first attempt
    name one id: anything less certain waits for the history.
    """
    session = message.session
    contact = session.identity.external_id if session.identity is not None else ""
    if not contact:
        return False
    rivals = (
        Message.objects.filter(
            account_id=message.account_id,
            direction=Message.Direction.OUTBOUND,
            session__identity_id=session.identity_id,
            status__in=UNSETTLED,
            external_id="",
        )
        .exclude(pk=message.pk)
        .exists()
    )
    if rivals:
        return False
    started = message.first_attempt_at or message.claimed_at or message.created_at
    ids = set(
        MessageReceipt.objects.filter(
            account_id=message.account_id,
            message__isnull=True,
            contact_external_id=contact,
            # Within the send's window only: a later message (a platform agent's, a bot's)
            # is not ours.
            occurred_at__gte=started - CLOCK_SKEW,
            occurred_at__lte=started + evidence_window() + CLOCK_SKEW,
        ).values_list("external_id", flat=True)
    )
    if len(ids) != 1:
        return False
    (external_id,) = ids
    ext = (
        MessageReceipt.objects.filter(account_id=message.account_id, external_id=external_id)
        .exclude(external_id_ext="")
        .values_list("external_id_ext", flat=True)
        .first()
    )
    return message_adopt(message, external_id=external_id, external_id_ext=ext or "")


def evidence_window() -> timedelta:
    """Return how long evidence of an ambiguous send is sought, from its first attempt."""
    return timedelta(seconds=settings.SEND_CONFIRM_WINDOW_SECONDS)
