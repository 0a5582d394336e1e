"""The ambiguous case, and recovery: sends the platform may have taken without confirming,
and rows no worker will finish.

    message_reconcile() seeks evidence of an unconfirmed send (a receipt, the session history)
                        over a window measured from the first attempt
                        (SEND_CONFIRM_WINDOW_SECONDS); without any by its end the message is
                        `unconfirmed` ("may not have been delivered", with Send again). Sending
                        again by itself is an account option (`resend_unconfirmed`), off by
                        default, within the attempt limit.
    messages_reap()     recovers rows a killed worker left `sending`, checks whose task was
                        lost, and queued rows whose task was lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.queue import (
    enqueue,
    queue_length,
)
from inbox.models import Message, MessageStatusChange
from inbox.send_failures import UNCONFIRMED_CODE, UNCONFIRMED_TITLE
from inbox.services.deliver import (
    DRAIN_TASK,
    conversation_next_start,
    delivery_enqueue,
    message_requeue,
    message_update_publish,
    reconcile_enqueue,
    waiting_in_line,
)
from inbox.services.history import sends_correlate, session_history_fetch
from inbox.services.messages import (
    message_adopt_from_receipts,
    receipts_apply_orphans,
)
from integrations.base import (
    Capability,
    ProviderError,
)
from integrations.registry import get_provider

logger = logging.getLogger(__name__)


def message_reconcile(message_id: int) -> str:
    """Settle a send the platform never confirmed, from evidence only; return what happened.

    Evidence is a receipt for an id we did not know (the contact's one unsettled send) or the
    session history listing it; it is sought from the first attempt for
    SEND_CONFIRM_WINDOW_SECONDS, however often the row was reclaimed. Found: the platform's id
    is adopted (receipts that waited for it apply). Not yet: look again later. None by the end
    of the window: `unconfirmed` for the agent to decide, or, when the account allows it,
    queued again within the attempt limit.
    """
    message = (
        Message.objects.select_related("account", "session__account", "session__identity")
        .filter(pk=message_id, status=Message.Status.SENDING, outcome_unknown=True)
        .first()
    )
    if message is None:
        return "nothing to reconcile"
    if message_adopt_from_receipts(message):
        conversation_next_start(message)
        return "found (receipt)"
    session = message.session
    if session.external_id and get_provider(message.account.kind).can(Capability.HISTORY):
        try:
            history = session_history_fetch(session)
        except ProviderError as exc:
            logger.info("history for message %s unavailable: %s", message.pk, exc)
        else:
            sends_correlate(session, history)
            if Message.objects.filter(pk=message.pk).exclude(external_id="").exists():
                conversation_next_start(message)
                return "found (history)"
    now = timezone.now()
    started = message.first_attempt_at or message.claimed_at or message.created_at
    left = (started + timedelta(seconds=settings.SEND_CONFIRM_WINDOW_SECONDS) - now).total_seconds()
    if left > 0:
        wait = min(max(float(settings.SEND_RECONCILE_AFTER_SECONDS), 1.0), left)
        Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            next_attempt_at=now + timedelta(seconds=wait)
        )
        # An eager queue cannot wait: the reaper looks again when the check is due.
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            reconcile_enqueue(message.pk, wait)
        return "no evidence yet"
    resend = bool((message.account.options or {}).get("resend_unconfirmed", False))
    if resend and message.attempts < settings.SEND_MAX_ATTEMPTS:
        message_requeue(message, at=now, note="No evidence the platform has it; sending again.")
        Message.objects.filter(pk=message.pk, status=Message.Status.QUEUED).update(
            outcome_unknown=False
        )
        transaction.on_commit(lambda: delivery_enqueue(message.pk))
        return "no evidence; queued again"
    message_unconfirmed(message)
    return "unconfirmed"


def message_unconfirmed(message: Message) -> bool:
    """Mark an ambiguous send unconfirmed: no evidence either way; the agent decides."""
    now = timezone.now()
    with transaction.atomic():
        moved = Message.objects.filter(
            pk=message.pk, status=Message.Status.SENDING, outcome_unknown=True
        ).update(
            status=Message.Status.UNCONFIRMED,
            claimed_at=None,
            next_attempt_at=None,
            error_code=UNCONFIRMED_CODE,
            error_title=UNCONFIRMED_TITLE,
        )
        if moved:
            MessageStatusChange.objects.get_or_create(
                message=message, status=Message.Status.UNCONFIRMED, defaults={"occurred_at": now}
            )
    if moved:
        message_update_publish(message)
        conversation_next_start(message)
    return bool(moved)


@dataclass
class ReapResult:
    stale_claims: int = 0
    requeued: int = 0
    orphan_receipts: int = 0


def messages_reap() -> ReapResult:
    """Recover outbound messages no worker will finish.

    - `sending` with its lease run out for SEND_STALE_SECONDS (the delivering worker renews it
      while it runs, `integrations.leases`): the worker died mid-send, which may or may not
      have reached the platform, so it is reconciled like a timeout, its evidence sought from
      the first attempt (`first_attempt_at`, kept before the claim is taken over). The takeover
      is a conditional UPDATE on the same stale lease, so a claim renewed meanwhile stays its
      worker's.
    - ambiguous sends whose next check is overdue by SEND_REQUEUE_AFTER_SECONDS: that check's
      task was lost.
    - `queued` and due for SEND_REQUEUE_AFTER_SECONDS with nothing claiming it: its drain or
      task was lost (a killed worker's prefetched tasks, broker restart, enqueue refused);
      a drain of its channel is enqueued (one that finds it taken does nothing).
    - receipts that arrived while their send's answer was still being stored.
    """
    now = timezone.now()
    result = ReapResult()
    stale = now - timedelta(seconds=settings.SEND_STALE_SECONDS)
    sending = Message.objects.filter(
        direction=Message.Direction.OUTBOUND, status=Message.Status.SENDING
    )
    dead = Q(outcome_unknown=False, claimed_at__lt=stale)
    for message_id in sending.filter(dead).values_list("pk", flat=True)[:1000]:
        taken = sending.filter(dead, pk=message_id).update(
            outcome_unknown=True,
            first_attempt_at=Coalesce("first_attempt_at", "claimed_at"),
            next_attempt_at=now,
            claimed_at=now,
        )
        if taken:
            reconcile_enqueue(message_id, 0)
            result.stale_claims += 1
    due = now - timedelta(seconds=settings.SEND_REQUEUE_AFTER_SECONDS)
    overdue = sending.filter(outcome_unknown=True).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=now)
    )
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        overdue = overdue.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=due))
    for message_id in overdue.values_list("pk", flat=True)[:1000]:
        reconcile_enqueue(message_id, 0)
    lost = Message.objects.filter(
        direction=Message.Direction.OUTBOUND, status=Message.Status.QUEUED, created_at__lt=due
    ).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=due))
    # Behind a backlog in the platform lane, a queued message's task is most likely still
    # waiting its turn: enqueueing it again would only lengthen the backlog (a burst of 2,000
    # replies drew 500 needless tasks). It is taken for lost once the backlog is gone, or when
    # it has waited SEND_REQUEUE_BEHIND_BACKLOG_SECONDS behind one.
    if queue_length(settings.PLATFORM_QUEUE):
        behind = now - timedelta(seconds=settings.SEND_REQUEUE_BEHIND_BACKLOG_SECONDS)
        lost = lost.filter(created_at__lt=behind).filter(
            Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=behind)
        )
    # A reply in line behind an earlier one has no task by design; it is lost only once it
    # heads its conversation (or has waited SEND_ORDER_WAIT_SECONDS).
    heads = list(lost.exclude(waiting_in_line(now)).values_list("pk", "session__channel_id")[:1000])
    Message.objects.filter(pk__in=[pk for pk, _ in heads], status=Message.Status.QUEUED).update(
        next_attempt_at=now
    )
    # A drain of each such channel sends them (a drain that finds them taken does nothing).
    for channel_id in {channel_id for _, channel_id in heads}:
        if not enqueue(DRAIN_TASK, channel_id, what=f"a drain of channel {channel_id}"):
            break  # the broker is away: the next round tries again
    result.requeued = len(heads)
    result.orphan_receipts = receipts_apply_orphans()
    return result
