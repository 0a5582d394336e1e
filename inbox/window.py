"""The messaging window: when free-form messages may be sent to a customer, and until when.

A medium with a window on its platform (the provider's `messaging_windows`: WhatsApp 24 h)
allows free-form messages only for so long after the customer's last message on that channel;
outside it, only an approved template may be sent. The send service refuses by it, the pages
and the API show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import Max
from django.utils import timezone

from inbox.models import Session
from integrations.registry import PROVIDERS, get_provider
from integrations.services.accounts import account_kind


@dataclass(frozen=True)
class Window:
    """Whether free-form messages may be sent in a session now, and until when."""

    applies: bool
    is_open: bool
    closes_at: datetime | None = None
    last_inbound_at: datetime | None = None

    @property
    def reason(self) -> str:
        if self.is_open:
            return ""
        if self.last_inbound_at is None:
            return "The customer has not written on this channel yet; only a template can open the conversation."
        ago = (timezone.now() - self.last_inbound_at).total_seconds() / 3600
        ago_text = f"{ago:.0f} hours" if ago >= 2 else f"{ago * 60:.0f} minutes"
        return (
            f"The customer last wrote {ago_text} ago, more than {_window_hours_text(self)} ago; "
            "outside that window only an approved template can be sent."
        )


def _window_hours_text(window: Window) -> str:
    if window.closes_at and window.last_inbound_at:
        hours = (window.closes_at - window.last_inbound_at).total_seconds() / 3600
        return f"{hours:g} hours"
    return "the allowed time"


def window_hours(account_id: UUID, medium: str) -> float | None:
    """Return how long after the customer's last message free-form sends are allowed on this
    account's channels of `medium` (None: no window).

    When every platform has the same rule for the medium (WhatsApp's 24 h), that rule, without
    looking the account up; otherwise the rule of the account's platform.
    """
    rules = {kind: get_provider(kind).messaging_windows.get(medium) for kind in PROVIDERS}
    agreed = set(rules.values())
    value = agreed.pop() if len(agreed) == 1 else rules.get(account_kind(account_id))
    return float(value) if value is not None else None


def window_at(
    account_id: UUID,
    medium: str,
    last_inbound_at: datetime | None,
    *,
    now: datetime | None = None,
) -> Window:
    """Return the window a customer's last message on a channel of this account's `medium`
    leaves open."""
    return _window(window_hours(account_id, medium), last_inbound_at, now=now)


def _window(
    hours: float | None, last_inbound_at: datetime | None, *, now: datetime | None
) -> Window:
    if hours is None:
        return Window(applies=False, is_open=True)
    if last_inbound_at is None:
        return Window(applies=True, is_open=False)
    closes_at = last_inbound_at + timedelta(hours=hours)
    return Window(
        applies=True,
        is_open=(now or timezone.now()) < closes_at,
        closes_at=closes_at,
        last_inbound_at=last_inbound_at,
    )


def session_window(session: Session, *, now: datetime | None = None) -> Window:
    """Return the window of the session's contact on its channel (across its sessions)."""
    hours = window_hours(session.account_id, session.channel.medium)
    if hours is None:
        return Window(applies=False, is_open=True)
    last = session.last_inbound_at
    other = (
        Session.objects.filter(channel_id=session.channel_id, contact_id=session.contact_id)
        .exclude(pk=session.pk)
        .aggregate(last=Max("last_inbound_at"))["last"]
    )
    if other is not None and (last is None or other > last):
        last = other
    return _window(hours, last, now=now)
