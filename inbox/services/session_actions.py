"""Route, resolve and close sessions, and set a contact's language, at the platform.

`session_action_request` records what the agent asked for (pending) and enqueues it after
commit; `session_action_perform`, in a worker, calls the platform and only then changes local
state and writes the timeline. A failed call leaves the session as it was and says why, on the
action and on the timeline. Assignment inside Switchboard (`session_assign`) needs no platform
call.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Team
from config.queue import enqueue
from inbox import live
from inbox.models import Session, SessionAction, TimelineEntry
from inbox.services.deliver import backoff_seconds
from inbox.services.refusals import SendRefused
from inbox.services.sessions import session_event_apply
from inbox.services.timeline import timeline_add
from integrations.base import (
    AccountConfig,
    AuthenticationError,
    Capability,
    Provider,
    ProviderError,
    RejectedError,
    SessionEvent,
    TransientError,
    UnsupportedError,
    with_fresh_credentials,
)
from integrations.leases import lease_held
from integrations.registry import get_provider
from integrations.services.accounts import account_health_record

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


# What the session keeps of a route (Session.platform_queue and platform_agent hold 255).
ROUTE_MAX_LENGTHS = {"queue": 255, "agent": 255, "team": 255}
SKILL_MAX_LENGTH = 120


# The platform capability each action needs: without it the inbox neither offers nor sends it.
ACTION_CAPABILITIES: dict[str, Capability] = {
    SessionAction.Kind.ROUTE: Capability.ROUTE,
    SessionAction.Kind.RESOLVE: Capability.RESOLVE,
    SessionAction.Kind.CLOSE: Capability.CLOSE,
    SessionAction.Kind.LANGUAGE: Capability.CONTACT_LANGUAGE,
}


def _refuse_over_long(route: dict[str, Any]) -> None:
    for name, limit in ROUTE_MAX_LENGTHS.items():
        if len(route[name]) > limit:
            raise SendRefused(
                f"{name}_too_long", f"The {name} can have at most {limit} characters."
            )
    if any(len(skill) > SKILL_MAX_LENGTH for skill in route["skills"]):
        raise SendRefused(
            "skill_too_long", f"A skill can have at most {SKILL_MAX_LENGTH} characters."
        )


def session_action_request(
    session: Session, kind: str, params: dict[str, Any] | None = None, *, by: Any = None
) -> SessionAction:
    """Record an action for the platform and enqueue it; refuse what cannot work."""
    params = dict(params or {})
    if not session.external_id:
        raise SendRefused("no_platform_session", "This session is not known to the platform.")
    capability = ACTION_CAPABILITIES.get(kind)
    provider = get_provider(session.account.kind)
    if capability is not None and not provider.can(capability):
        raise SendRefused("unsupported", provider.unsupported(capability).detail)
    if kind == SessionAction.Kind.ROUTE:
        queue = str(params.get("queue") or "").strip()
        if not queue:
            raise SendRefused("queue_required", "Choose the queue to route the session to.")
        skills = params.get("skills") or []
        if isinstance(skills, str):
            skills = [s.strip() for s in skills.split(",") if s.strip()]
        params = {
            "queue": queue,
            "agent": str(params.get("agent") or "").strip(),
            "team": str(params.get("team") or "").strip(),
            "skills": [str(s) for s in skills],
            "params": params.get("params") if isinstance(params.get("params"), dict) else {},
        }
        _refuse_over_long(params)
    elif kind in (SessionAction.Kind.RESOLVE, SessionAction.Kind.CLOSE):
        if session.status == Session.Status.CLOSED:
            raise SendRefused("closed", "The session is already closed.")
        if kind == SessionAction.Kind.RESOLVE and session.status == Session.Status.RESOLVED:
            raise SendRefused("resolved", "The session is already resolved.")
        params = {}
    elif kind == SessionAction.Kind.LANGUAGE:
        lang = str(params.get("lang") or "").strip()
        if not lang:
            raise SendRefused("lang_required", "Choose the contact's language from the list.")
        # Only what the platform takes (the provider lists it), in the form it takes it.
        language = provider.contact_language_find(lang)
        if language is None:
            raise SendRefused(
                "lang_unknown",
                f"{provider.label} does not take that language; choose one from the list.",
            )
        params = {"lang": language.code}
    else:
        raise SendRefused("unknown_action", f"Unknown action {kind!r}.")
    pending = SessionAction.objects.filter(
        session=session,
        kind=kind,
        state__in=[SessionAction.State.PENDING, SessionAction.State.RUNNING],
    ).first()
    if pending is not None and pending.params == params:
        return pending  # a double click asks once
    action = SessionAction.objects.create(
        session=session,
        kind=kind,
        params=params,
        requested_by=by if getattr(by, "pk", None) else None,
    )
    transaction.on_commit(lambda: _enqueue(action.pk))
    return action


def _enqueue(action_id: int, countdown: float = 0) -> None:
    if countdown:
        SessionAction.objects.filter(pk=action_id).update(
            next_attempt_at=timezone.now() + timedelta(seconds=countdown)
        )
    enqueue(
        "inbox.tasks.session_action_perform",
        action_id,
        countdown=countdown,
        what=f"session action {action_id}",
    )


def session_action_perform(action_id: int) -> str:
    """Carry out one pending action at the platform, then locally."""
    claimed_at = timezone.now()
    claimed = SessionAction.objects.filter(pk=action_id, state=SessionAction.State.PENDING).update(
        state=SessionAction.State.RUNNING,
        attempts=F("attempts") + 1,
        claimed_at=claimed_at,
        next_attempt_at=None,
    )
    if not claimed:
        return "not claimable"
    try:
        # A lease, renewed while this runs: the reaper recognises a dead worker in seconds.
        with lease_held(
            SessionAction, [action_id], claimed_at, still=Q(state=SessionAction.State.RUNNING)
        ):
            return _perform(action_id)
    except Exception as exc:
        # Anything unexpected ends the action with its reason instead of leaving it running for
        # the reaper to repeat (which could call the platform again).
        logger.exception("session action %s failed", action_id)
        action = SessionAction.objects.select_related("session").get(pk=action_id)
        return _failed(action, f"Unexpected error: {type(exc).__name__}: {exc}")


def _perform(action_id: int) -> str:
    action = SessionAction.objects.select_related(
        "session__account", "session__contact", "requested_by"
    ).get(pk=action_id)
    session = action.session
    account = session.account
    provider = get_provider(account.kind)
    try:
        events = with_fresh_credentials(
            provider, account.config(), lambda config: _platform_call(action, provider, config)
        )
    except TransientError as exc:
        if action.attempts < MAX_ATTEMPTS:
            SessionAction.objects.filter(pk=action.pk).update(
                state=SessionAction.State.PENDING, error=f"Retrying: {exc}"
            )
            _enqueue(action.pk, backoff_seconds(action.attempts))
            return "retry"
        return _failed(action, f"The platform was unavailable ({exc}).")
    except AuthenticationError as exc:
        account_health_record(account, error=f"The platform refused our credentials: {exc}")
        return _failed(
            action, "The platform refused the account's credentials; an admin must fix them."
        )
    except (RejectedError, UnsupportedError) as exc:
        return _failed(action, f"The platform refused: {_reason(exc)}")
    now = timezone.now()
    with transaction.atomic():
        kind, summary = _apply_locally(action, now)
        # The platform's own event for this action carries our line (one line, not two, and
        # the webhook copy of the same event then finds it already applied).
        described = False
        for event in events:
            own = not described and event.kind.value == kind
            session_event_apply(
                account, event, session=session, at=now, summary=summary if own else ""
            )
            described = described or own
        if not described:
            timeline_add(
                account,
                session=session,
                kind=kind,
                summary=summary,
                occurred_at=now,
                data={"action": action.pk, **action.params},
                dedupe_key=f"action-done:{action.pk}",
            )
        SessionAction.objects.filter(pk=action.pk).update(
            state=SessionAction.State.DONE, error="", finished_at=now
        )
    return "done"


def _platform_call(
    action: SessionAction, provider: Provider, config: AccountConfig
) -> list[SessionEvent]:
    """Ask the platform to do what the action says; return the events it reports."""
    session = action.session
    if action.kind == SessionAction.Kind.ROUTE:
        return provider.session_route(
            config,
            session.external_id,
            queue=action.params["queue"],
            agent=action.params.get("agent", ""),
            team=action.params.get("team", ""),
            skills=tuple(action.params.get("skills") or ()),
            params=action.params.get("params") or {},
        )
    if action.kind == SessionAction.Kind.RESOLVE:
        return provider.session_resolve(config, session.external_id)
    if action.kind == SessionAction.Kind.CLOSE:
        return provider.session_close(config, session.external_id)
    identity = session.identity
    if identity is None:
        raise RejectedError("the session has no platform contact")
    provider.contact_set_language(config, identity.external_id, action.params["lang"])
    return []


def _reason(exc: Exception) -> str:
    return exc.detail if isinstance(exc, ProviderError) else str(exc)


@transaction.atomic
def _failed(action: SessionAction, reason: str) -> str:
    now = timezone.now()
    live.publish(
        live.SESSION_UPDATED, session_id=action.session_id, channel_id=action.session.channel_id
    )
    SessionAction.objects.filter(pk=action.pk).update(
        state=SessionAction.State.FAILED, error=reason, finished_at=now
    )
    timeline_add(
        action.session.account,
        session=action.session,
        kind=TimelineEntry.Kind.EVENT,
        summary=f"{action.get_kind_display()} failed: {reason}"[:500],
        occurred_at=now,
        data={"action": action.pk, "failed": True},
        dedupe_key=f"action-failed:{action.pk}",
    )
    return "failed"


def _apply_locally(action: SessionAction, now: Any) -> tuple[str, str]:
    """Change the session as the action says; return its timeline kind and line."""
    session = Session.objects.select_for_update().get(pk=action.session_id)
    live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
    by = f" by {action.requested_by}" if action.requested_by else ""
    if action.kind == SessionAction.Kind.ROUTE:
        params = action.params
        session.platform_queue = params["queue"]
        session.platform_agent = params.get("agent") or session.platform_agent
        session.save(update_fields=["platform_queue", "platform_agent", "updated_at"])
        detail = ", ".join(
            f"{k} {v}"
            for k, v in (("agent", params.get("agent")), ("team", params.get("team")))
            if v
        )
        skills = f" with skills {', '.join(params['skills'])}" if params.get("skills") else ""
        summary = f"Routed to queue {params['queue']}{f' ({detail})' if detail else ''}{skills}{by}"
        kind = TimelineEntry.Kind.ROUTED
    elif action.kind == SessionAction.Kind.RESOLVE:
        if session.status != Session.Status.CLOSED:
            session.status = Session.Status.RESOLVED
            session.resolved_at = now
            session.save(update_fields=["status", "resolved_at", "updated_at"])
        summary, kind = f"Resolved{by}", TimelineEntry.Kind.RESOLVED
    elif action.kind == SessionAction.Kind.CLOSE:
        session.status = Session.Status.CLOSED
        session.closed_at = now
        session.save(update_fields=["status", "closed_at", "updated_at"])
        summary, kind = f"Closed{by}", TimelineEntry.Kind.CLOSED
    else:
        contact = session.contact
        contact.language = action.params["lang"]
        contact.save(update_fields=["language", "updated_at"])
        summary, kind = f"Language set to {action.params['lang']}{by}", TimelineEntry.Kind.EVENT
    return kind, summary


def session_actions_reap() -> int:
    """Recover actions no worker will finish, judged by when they were claimed or due.

    Running with its lease run out (CLAIM_LEASE_SECONDS; the performing worker renews it,
    `integrations.leases`): the worker died; it is failed with that reason (the platform call
    may or may not have happened, so it is not repeated blindly). Pending and overdue by
    SEND_REQUEUE_AFTER_SECONDS: its task was lost; it is enqueued again (a second task finds
    nothing to claim). Returns how many were enqueued.
    """
    now = timezone.now()
    stale = Q(state=SessionAction.State.RUNNING) & Q(
        claimed_at__lt=now - timedelta(seconds=settings.CLAIM_LEASE_SECONDS)
    )
    dead = SessionAction.objects.filter(stale).select_related("session")
    for action in dead[:500]:
        # Only if still stale: a claim renewed meanwhile stays its worker's.
        if SessionAction.objects.filter(stale, pk=action.pk).update(claimed_at=now):
            _failed(action, "The worker stopped before the platform answered; check and try again.")
    overdue = now - timedelta(seconds=settings.SEND_REQUEUE_AFTER_SECONDS)
    lost = list(
        SessionAction.objects.filter(state=SessionAction.State.PENDING, created_at__lt=overdue)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=overdue))
        .values_list("pk", flat=True)[:500]
    )
    for action_id in lost:
        SessionAction.objects.filter(pk=action_id).update(next_attempt_at=now)
        _enqueue(action_id)
    return len(lost)


@transaction.atomic
def session_assign(
    session: Session, *, assignee: Any = None, team: Team | None = None, by: Any = None
) -> Session:
    """Assign a session to an agent and/or team inside Switchboard (no platform call)."""
    changed = []
    if session.assignee_id != (assignee.pk if assignee else None):
        session.assignee = assignee
        changed.append("assignee")
    if team is not None and session.team_id != team.pk:
        session.team = team
        changed.append("team")
    if not changed:
        return session
    session.save(update_fields=[*changed, "updated_at"])
    live.publish(live.SESSION_UPDATED, session_id=session.pk, channel_id=session.channel_id)
    who = str(assignee) if assignee else "nobody"
    parts = [f"Assigned to {who}"] if "assignee" in changed else []
    if "team" in changed and team is not None:
        parts.append(f"team {team}")
    timeline_add(
        session.account,
        session=session,
        kind=TimelineEntry.Kind.ASSIGNED,
        summary=", ".join(parts) + (f" by {by}" if by else ""),
        occurred_at=timezone.now(),
        data={"assignee": assignee.pk if assignee else None, "team": team.pk if team else None},
    )
    return session
