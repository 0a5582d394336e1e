"""Put labels on sessions; each change is a timeline line and a live event."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from inbox import live
from inbox.models import Label, Session, TimelineEntry
from inbox.services.timeline import timeline_add


def session_label_set(session: Session, labels: Iterable[Label], *, by: Any = None) -> bool:
    """Make `labels` the session's labels; return whether anything changed.

    Writes one timeline line naming what was added and removed, and bumps the session's
    `updated_at` so pages that poll see the change.
    """
    wanted = {label.pk: label for label in labels}
    with transaction.atomic():
        current = {label.pk: label for label in session.labels.all()}
        added = [wanted[pk] for pk in wanted.keys() - current.keys()]
        removed = [current[pk] for pk in current.keys() - wanted.keys()]
        if not added and not removed:
            return False
        if removed:
            session.labels.remove(*removed)
        if added:
            session.labels.add(*added)
        Session.objects.filter(pk=session.pk).update(updated_at=timezone.now())
        parts = []
        if added:
            parts.append("Labelled " + ", ".join(sorted(label.name for label in added)))
        if removed:
            parts.append("removed " + ", ".join(sorted(label.name for label in removed)))
        summary = "; ".join(parts)
        timeline_add(
            session.account,
            session=session,
            kind=TimelineEntry.Kind.EVENT,
            summary=(summary[0].upper() + summary[1:]) + (f" by {by}" if by else ""),
            occurred_at=timezone.now(),
            data={
                "labels_added": [label.pk for label in added],
                "labels_removed": [label.pk for label in removed],
            },
        )
        live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
    return True


def session_label_add(session: Session, label: Label, *, by: Any = None) -> bool:
    """Add one label to a session; return whether it was new."""
    return session_label_set(session, [*session.labels.all(), label], by=by)


def session_label_remove(session: Session, label: Label, *, by: Any = None) -> bool:
    """Take one label off a session; return whether it had it."""
    return session_label_set(
        session, [other for other in session.labels.all() if other.pk != label.pk], by=by
    )
