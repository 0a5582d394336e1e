"""Open, update and close sessions from what the platform tells us."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count

from accounts.models import AgentProfile
from config.queue import enqueue
from inbox import live
from inbox.models import ContactIdentity, Session, TimelineEntry
from inbox.services.timeline import timeline_add
from integrations.base import SessionEvent, SessionEventKind, SessionRef
from integrations.models import Channel, ProviderAccount

logger = logging.getLogger(__name__)


def session_for_inbound(
    account: ProviderAccount,
    *,
    channel: Channel,
    identity: ContactIdentity,
    ref: SessionRef | None,
    at: datetime,
    source: str = "",
) -> Session:
    """Return the session an inbound message belongs to, opening it if it is new.

    The session comes back locked for the transaction and current, so callers update it
    without reading it again.

    A new platform session id for a contact on a channel proves the previous session there
    ended (spec §4.16), so older open sessions of that pair are closed, and a late message of
    an older session never reopens it. The caller holds the identity row locked (as
    `identity_upsert` returns it), so two callbacks for one customer on one channel settle
    their sessions one after the other.
    """
    if ref is None:
        session = (
            Session.objects.select_for_update()
            .filter(channel=channel, contact=identity.contact)
            .exclude(status=Session.Status.CLOSED)
            .order_by("-last_activity_at")
            .first()
        )
        if session is not None:
            return session
        return _session_open(account, channel=channel, identity=identity, ref=None, at=at)

    # Locked now: following the ref and noting the message both update this row.
    session = (
        Session.objects.select_for_update()
        .filter(account=account, external_id=ref.external_id)
        .first()
    )
    if session is None:
        session = _session_open(account, channel=channel, identity=identity, ref=ref, at=at)
    else:
        _session_follow_ref(session, ref, at=at, source=source)
    return session


def session_new_fields(
    *, channel: Channel, identity: ContactIdentity, ref: SessionRef | None, at: datetime
) -> dict[str, Any]:
    """The columns of a session a customer's message opens (one by one and in bulk)."""
    return {
        "channel": channel,
        "contact": identity.contact,
        "identity": identity,
        "routing_id": ref.routing_id if ref else "",
        "platform_agent": ref.assigned_agent if ref else "",
        "platform_dept": ref.assigned_dept if ref else "",
        "opened_at": at,
        "last_activity_at": at,
    }


def _session_open(
    account: ProviderAccount,
    *,
    channel: Channel,
    identity: ContactIdentity,
    ref: SessionRef | None,
    at: datetime,
) -> Session:
    defaults = session_new_fields(channel=channel, identity=identity, ref=ref, at=at)
    if ref is None:
        session = Session.objects.create(account=account, external_id="", **defaults)
        created = True
    else:
        # The caller found no session with this id a moment ago: insert straight away.
        try:
            with transaction.atomic():
                session = Session.objects.create(
                    account=account, external_id=ref.external_id, **defaults
                )
            created = True
        except IntegrityError:  # another worker opened it meanwhile: lock it as callers expect
            winner = (
                Session.objects.select_for_update()
                .filter(account=account, external_id=ref.external_id)
                .first()
            )
            if winner is None:
                raise  # not the race: another constraint
            session, created = winner, False
    if created:
        live.publish(live.SESSION_CREATED, session_id=session.pk, channel_id=session.channel_id)
        _assignee_from_platform(session, session.platform_agent)
        if ref is not None and settings.IMPORT_SESSION_HISTORY:
            # Earlier messages of a session first seen mid-way (spec §6.7); a few seconds
            # later, so the callbacks arriving with it land first.
            session_id = session.pk
            transaction.on_commit(lambda: _history_import_later(session_id))
        timeline_add(
            account,
            session=session,
            kind=TimelineEntry.Kind.OPENED,
            summary=_opened_summary(channel),
            occurred_at=at,
            dedupe_key=f"opened:{session.pk}",
        )
        # (Before the supersession below closes the previous session: it is judged as it was.)
        sessions_carry_over([session])
        _settle_supersession(session, at=at)
    return session


def sessions_open_new(
    account: ProviderAccount, new: Sequence[tuple[ContactIdentity, Channel, SessionRef, datetime]]
) -> list[Session]:
    """Open the first sessions of brand-new customers in bulk; return them, in order.

    For callers that have just created these identities (`identities_create_new`) in this
    transaction, each named by one new platform session id: what `_session_open` does one by
    one, in a few statements. There is nothing to supersede, since a new contact has no other
    session; a concurrent insert of the same session id raises IntegrityError.
    """
    assignees = platform_agents_users({ref.assigned_agent for _, _, ref, _ in new})
    sessions = Session.objects.bulk_create(
        [
            Session(
                account=account,
                assignee_id=assignees.get(ref.assigned_agent),
                external_id=ref.external_id,
                **session_new_fields(channel=channel, identity=identity, ref=ref, at=at),
            )
            for identity, channel, ref, at in new
        ]
    )
    live.publish_many(
        [
            live.Event(live.SESSION_CREATED, session=session.pk, channel=session.channel_id)
            for session in sessions
        ]
    )
    TimelineEntry.objects.bulk_create(
        [
            TimelineEntry(
                account=account,
                session=session,
                contact=session.contact,
                kind=TimelineEntry.Kind.OPENED,
                summary=_opened_summary(channel)[:500],
                occurred_at=at,
                dedupe_key=f"opened:{session.pk}",
            )
            for session, (_, channel, _, at) in zip(sessions, new, strict=True)
        ]
    )
    sessions_carry_over(sessions)
    if settings.IMPORT_SESSION_HISTORY:
        for session in sessions:
            transaction.on_commit(partial(_history_import_later, session.pk))
    return sessions


# --- Carrying ownership over to the customer's next session --------------------------------------


def session_ended_at(session: Session) -> datetime:
    """Return when a session ended, or the last moment it was known alive if it has not."""
    if session.status == Session.Status.CLOSED and session.closed_at is not None:
        return session.closed_at
    if session.status == Session.Status.RESOLVED and session.resolved_at is not None:
        return session.resolved_at
    return session.last_activity_at


def carries_over(previous: Session, *, opened_at: datetime) -> bool:
    """Say whether a session opened at `opened_at` keeps what `previous` (the customer's last
    session on the channel) had: it ended less than SESSION_CARRY_OVER_HOURS before."""
    hours = settings.SESSION_CARRY_OVER_HOURS
    if hours <= 0 or previous.opened_at > opened_at:
        return False
    return opened_at - session_ended_at(previous) < timedelta(hours=hours)


def sessions_carry_over(opened: Sequence[Session]) -> int:
    """Give sessions just opened the assignee, team and labels of their customer's previous
    session on the same channel, when `carries_over` says so; return how many took any.

    Both ways of opening sessions call this (one by one and in bulk), so the rule holds on
    both. One query finds the previous sessions of all of them; only a session that takes
    something costs writes: its row, its labels, and a timeline line that says what it kept.
    An assignee or team the platform already gave the new session is not replaced.
    """
    if not opened or settings.SESSION_CARRY_OVER_HOURS <= 0:
        return 0
    latest: dict[tuple[int, int], list[Session]] = {}
    for candidate in (
        Session.objects.filter(
            channel_id__in={s.channel_id for s in opened},
            contact_id__in={s.contact_id for s in opened},
        )
        .exclude(pk__in=[s.pk for s in opened])
        .select_related("assignee", "team")
        .annotate(label_count=Count("labels"))
        .order_by("-opened_at", "-id")
    ):
        latest.setdefault((candidate.channel_id, candidate.contact_id), []).append(candidate)
    carried = 0
    for session in opened:
        previous = next(
            (
                p
                for p in latest.get((session.channel_id, session.contact_id), [])
                if p.opened_at <= session.opened_at
            ),
            None,
        )
        if previous is not None and carries_over(previous, opened_at=session.opened_at):
            carried += int(_carry_over(previous, session))
    return carried


def _carry_over(previous: Session, session: Session) -> bool:
    kept: list[str] = []
    updates: dict[str, int] = {}
    assignee = previous.assignee
    if session.assignee_id is None and assignee is not None and assignee.is_active:
        updates["assignee_id"] = session.assignee_id = assignee.pk
        kept.append(f"assigned to {assignee}")
    if session.team_id is None and previous.team is not None:
        updates["team_id"] = session.team_id = previous.team.pk
        kept.append(f"team {previous.team}")
    labels = list(previous.labels.order_by("name")) if getattr(previous, "label_count", 1) else []
    if labels:
        session.labels.add(*labels)
        kept.append("labels " + ", ".join(label.name for label in labels))
    if not kept:
        return False
    if updates:
        Session.objects.filter(pk=session.pk).update(**updates)
    ago = _hours_text(session.opened_at - session_ended_at(previous))
    timeline_add(
        session.account,
        session=session,
        kind=TimelineEntry.Kind.EVENT,
        summary=f"Kept from the previous session, which ended {ago} before: " + "; ".join(kept),
        occurred_at=session.opened_at,
        data={"carried_from": previous.pk, "kept": kept},
        dedupe_key=f"carried:{session.pk}",
    )
    return True


def _hours_text(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    return f"{round(minutes / 60)} h"


def _opened_summary(channel: Channel) -> str:
    return f"Session opened on {channel}"


def _history_import_later(session_id: int) -> None:
    enqueue(
        "inbox.tasks.session_history_import",
        session_id,
        countdown=5,
        what=f"the history import of session {session_id}",
    )


def session_has_newer(session: Session) -> bool:
    """Say whether the same customer has a later session on the same channel."""
    return (
        Session.objects.filter(channel_id=session.channel_id, contact_id=session.contact_id)
        .exclude(pk=session.pk)
        .filter(opened_at__gt=session.opened_at)
        .exists()
    )


def _settle_supersession(session: Session, *, at: datetime) -> None:
    """Close whichever sessions of this customer on this channel a newer one replaced."""
    pair = Session.objects.filter(channel=session.channel_id, contact=session.contact_id).exclude(
        pk=session.pk
    )
    newer = pair.filter(opened_at__gt=at).order_by("opened_at").first()
    if newer is not None:
        # This session's first message arrived after a later session had started: it is
        # already over.
        _close_as_superseded(session, by=newer, at=at)
        return
    for old in (
        pair.exclude(status=Session.Status.CLOSED).filter(opened_at__lte=at).select_for_update()
    ):
        _close_as_superseded(old, by=session, at=at)


def _close_as_superseded(old: Session, *, by: Session, at: datetime) -> None:
    Session.objects.filter(pk=old.pk).update(status=Session.Status.CLOSED, closed_at=at)
    old.status = Session.Status.CLOSED
    timeline_add(
        old.account,
        session=old,
        kind=TimelineEntry.Kind.CLOSED,
        summary=f"Closed: the customer's messages continue in session {by.external_id or by.pk}",
        occurred_at=at,
        dedupe_key=f"superseded:{old.pk}",
    )


def session_ref_changes(session: Session, ref: SessionRef, *, at: datetime) -> dict[str, str]:
    """The columns a customer's message dated `at`, naming `ref`, changes on its session
    (none: following it changes nothing). One rule for both paths: the bulk run applies a
    message whose reference changes nothing, and leaves the others to `_session_follow_ref`.

    Only the newest customer message speaks for the session's current routing: a late, older
    message must not undo what newer messages or events set.
    """
    if session.last_inbound_at is not None and at < session.last_inbound_at:
        return {}
    return {
        field: value
        for field, value in (
            ("routing_id", ref.routing_id),
            ("platform_agent", ref.assigned_agent),
            ("platform_dept", ref.assigned_dept),
        )
        if value and value != getattr(session, field)
    }


def _session_follow_ref(session: Session, ref: SessionRef, *, at: datetime, source: str) -> None:
    # (The caller read and locked the row in this transaction, so it is current.)
    changes = session_ref_changes(session, ref, at=at)
    for field, value in changes.items():
        setattr(session, field, value)
    if changes:
        session.save(update_fields=[*changes, "updated_at"])
    if changes.keys() & {"platform_agent", "platform_dept"}:
        live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
        _assignee_from_platform(session, ref.assigned_agent)
        timeline_add(
            session.account,
            session=session,
            kind=TimelineEntry.Kind.ASSIGNED,
            summary=_assignment_summary(ref.assigned_agent, ref.assigned_dept),
            occurred_at=at,
            data={"agent": ref.assigned_agent, "dept": ref.assigned_dept, "source": source},
            dedupe_key=f"assigned:{source}" if source else "",
        )


def _assignment_summary(agent: str, dept: str) -> str:
    parts = [
        p for p in (f"agent {agent}" if agent else "", f"department {dept}" if dept else "") if p
    ]
    return "Assigned to " + " and ".join(parts) if parts else "Assignment cleared"


def platform_agents_users(codes: Iterable[str]) -> dict[str, int]:
    """Map platform agent codes to our users: the first agent profile claiming each code."""
    wanted = {code for code in codes if code}
    if not wanted:
        return {}
    users: dict[str, int] = {}
    for code, user_id in (
        AgentProfile.objects.filter(platform_code__in=wanted)
        .order_by("id")
        .values_list("platform_code", "user_id")
    ):
        users.setdefault(code, user_id)
    return users


def _assignee_from_platform(session: Session, agent_code: str) -> None:
    """Map the platform's agent code to a local user, when an agent profile claims it."""
    user_id = platform_agents_users([agent_code]).get(agent_code)
    if user_id is not None and session.assignee_id != user_id:
        Session.objects.filter(pk=session.pk).update(assignee_id=user_id)
        session.assignee_id = user_id


def session_event_apply(
    account: ProviderAccount,
    event: SessionEvent,
    *,
    session: Session,
    at: datetime,
    summary: str = "",
) -> bool:
    """Apply a platform session event once; return False if it was already applied.

    `summary` replaces the generated timeline line, e.g. "Resolved by Ann" when the event
    answers an agent's own action (so the action and its event are one line, not two).
    """
    entry = timeline_add(
        account,
        session=session,
        kind=event.kind.value,
        summary=summary or _event_summary(event),
        occurred_at=event.occurred_at or at,
        data={"code": event.code, "raw": event.raw},
        dedupe_key=f"event:{session.external_id}:{event.dedupe_key}",
    )
    if entry is None:
        return False

    session = Session.objects.select_for_update().get(pk=session.pk)
    changed: set[str] = set()

    def put(field: str, value: str, *, empty_means_none: bool = False) -> None:
        if (value or empty_means_none) and getattr(session, field) != value:
            setattr(session, field, value)
            changed.add(field)

    snapshot = event.snapshot
    if snapshot is not None:
        # The snapshot is the session's state after the event (§4.15): an empty owner means
        # nobody owns it now.
        put("platform_agent", snapshot.agent, empty_means_none=True)
        put("platform_dept", snapshot.dept, empty_means_none=True)
        put("platform_queue", snapshot.queue)
        put("platform_bot", snapshot.bot, empty_means_none=True)
        put("platform_mode", snapshot.mode)
        put("routing_id", snapshot.routing_id)
        put("ticket_hash", snapshot.ticket_hash)
    if event.kind is SessionEventKind.ROUTED:
        put("platform_queue", event.target_queue)
        put("routing_id", event.routing_id)
    if event.kind is SessionEventKind.ASSIGNED:
        put("platform_agent", event.new_agent)
        put("platform_dept", event.new_dept)
        put("platform_bot", event.new_bot)
    resolved = event.kind is SessionEventKind.RESOLVED or (
        snapshot is not None and snapshot.resolved is True
    )
    if event.kind is SessionEventKind.CLOSED and session.status != Session.Status.CLOSED:
        session.status = Session.Status.CLOSED
        session.closed_at = event.occurred_at or at
        changed.update({"status", "closed_at"})
    elif resolved and session.status in (Session.Status.OPEN, Session.Status.PENDING):
        session.status = Session.Status.RESOLVED
        session.resolved_at = event.occurred_at or at
        changed.update({"status", "resolved_at"})
    if changed:
        session.save(update_fields=[*sorted(changed), "updated_at"])
    if "platform_agent" in changed:
        _assignee_from_platform(session, session.platform_agent)
    live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
    return True


def _event_summary(event: SessionEvent) -> str:
    if event.kind is SessionEventKind.ROUTED:
        source = f" from {event.source_queue}" if event.source_queue else ""
        target = event.target_queue or (event.snapshot.queue if event.snapshot else "")
        return f"Routed{source} to {target or 'another queue'}"
    if event.kind is SessionEventKind.ASSIGNED:
        return _assignment_summary(event.new_agent or event.new_bot, event.new_dept)
    if event.kind is SessionEventKind.RESOLVED:
        return "Resolved on the platform"
    if event.kind is SessionEventKind.CLOSED:
        return "Closed on the platform"
    return f"Platform event {event.code or '(no code)'}"


def session_latest_for_contact(account: ProviderAccount, contact_id: int) -> Session | None:
    """Return the contact's most recently active session, if any."""
    return (
        Session.objects.filter(account=account, contact_id=contact_id)
        .order_by("-last_activity_at", "-id")
        .first()
    )
