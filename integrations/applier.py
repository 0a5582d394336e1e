"""The seam between stored platform callbacks and what applies them: the inbox.

`integrations` receives, stores, claims, sweeps and replays raw callbacks (`WebhookEvent`),
and it never imports `inbox`. What a callback means for contacts, sessions and messages is the
inbox's business: `integrations.services.webhooks` reads a claimed event into a `Callback` and
hands it to the applier named by `settings.INBOUND_CALLBACK_APPLIER`
(`inbox.services.callbacks.InboxApplier`), inside the transaction that also settles the event's
state, so an event is processed (or not) together with what it changed.

An applier raises `ApplyDeferred` (below) for a callback that overtook what it refers
to; any other error rolls the event's transaction back and fails (or, for a database outage,
retries) the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Protocol

from django.conf import settings
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


class Applied(Protocol):
    """What applying one callback did, as far as the stored event needs to know."""

    @property
    def applied(self) -> bool:
        """Say whether anything in the callback landed (new or already there)."""

    @property
    def warnings(self) -> list[str]:
        """Name what the applier noticed (shown on the stored event)."""


class CallbackApplier(Protocol):
    """Apply parsed callbacks to whatever mirrors the platform (the inbox)."""

    def callback_apply(
        self, account: ProviderAccount, callback: Callback, *, received_at: datetime
    ) -> Applied:
        """Apply one callback in the caller's transaction."""

    def callbacks_apply_run(
        self, account: ProviderAccount, run: Sequence[StoredCallback]
    ) -> set[int]:
        """Apply what of `run` can be applied in bulk, in the caller's transaction; return keys.

        What is not returned is applied one by one by the caller, in order.
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
