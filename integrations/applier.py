"""The seam between stored platform callbacks and what applies them: the inbox.

`integrations` receives, stores, claims, sweeps and replays raw callbacks (`WebhookEvent`),
and it never imports `inbox`. What a callback means for contacts, sessions and messages is the
inbox's business: `integrations.services.webhooks` reads claimed events into `Callback`s and
hands them, as one run per account, to the applier named by `settings.INBOUND_CALLBACK_APPLIER`
(`inbox.services.callbacks.InboxApplier`). A single event is a run of one: there is one way in.

The applier decides the transactions (the everyday messages of a run together, the rest one by
one) and, inside each, calls back `settle` with the outcomes it decided, so an event's new
state commits together with what it changed. It applies each callback or none of it: one that
fails, or cannot apply yet because it overtook what it refers to, is rolled back alone and
settled with its `Outcome`. Only a database outage (`database_outage`) escapes, leaving what is
not settled yet to be retried.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Protocol

from django.conf import settings
from django.db import OperationalError
from django.utils.module_loading import import_string

from integrations.base import Callback, ContactView

if TYPE_CHECKING:
    from integrations.models import ProviderAccount


class ApplyDeferred(Exception):
    """A callback cannot be applied yet (it overtook what it refers to); try again later."""


@dataclass(frozen=True)
class StoredCallback:
    """A stored callback waiting to be applied: its key (the event id), content and arrival."""

    key: int
    callback: Callback
    received_at: datetime


@dataclass(frozen=True)
class Outcome:
    """What applying one callback came to, as far as its stored event needs to know.

    Exactly one of: `applied` (something in it landed, new or already there), `deferred` (the
    reason it cannot apply yet), `failed` (the error that rolled it back), or none of them
    (nothing to apply: the warnings say why).
    """

    applied: bool = False
    warnings: list[str] = field(default_factory=list)
    deferred: str = ""
    failed: str = ""


# Record outcomes (key -> Outcome) in the applier's current transaction.
Settle = Callable[[Mapping[int, Outcome]], None]


class CallbackApplier(Protocol):
    """Apply parsed callbacks to whatever mirrors the platform (the inbox)."""

    def callbacks_apply(
        self, account: ProviderAccount, run: Sequence[StoredCallback], settle: Settle
    ) -> None:
        """Apply `run` in order, calling `settle` in each transaction with what it decided.

        A callback that fails or is deferred is rolled back alone and settled with the
        reason; a database outage raises.
        """

    def contact_view(
        self, account: ProviderAccount, contact_external_id: str
    ) -> ContactView | None:
        """Return what is known of a contact, for a platform that asks (XMS contact/info)."""


@cache
def callback_applier() -> CallbackApplier:
    """Return the applier `settings.INBOUND_CALLBACK_APPLIER` names (a class, made once)."""
    applier_class: type[CallbackApplier] = import_string(settings.INBOUND_CALLBACK_APPLIER)
    return applier_class()


# SQLSTATE classes that say the database itself is in trouble (connection lost, shutting down,
# out of resources, a serialization failure or deadlock to retry), not this callback's values.
_OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def database_outage(exc: BaseException) -> bool:
    """Say whether an error means "retry later": the database, not the callback, is at fault.

    Only such errors roll a whole run back to be retried; any other (a value refused, an
    index entry too large, a constraint, a bug) fails the one callback that caused it.
    """
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return not sqlstate or sqlstate[:2] in _OUTAGE_SQLSTATE_CLASSES


def error_text(exc: BaseException) -> str:
    """Return an error as the reason a callback or event failed: its type and message."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def outage_blame(exc: BaseException, key: int) -> None:
    """Note on an outage that it struck while this callback was applied on its own.

    The caller retries that callback by itself, with backoff and its attempts counted (an
    outage it causes every time is given up), and the rest of the run as if untried.
    """
    exc.__dict__["callback_key"] = key


def outage_blamed(exc: BaseException) -> int | None:
    """Return the key `outage_blame` noted on an outage, if any."""
    key = exc.__dict__.get("callback_key")
    return key if isinstance(key, int) else None
