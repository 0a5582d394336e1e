"""Apply stored platform callbacks to the inbox: the applier `integrations` hands them to.

`integrations.services.webhooks` owns the raw events (store, claim, lease, settle, sweep,
replay) and calls the class `settings.INBOUND_CALLBACK_APPLIER` names, this one, for what a
callback means for contacts, sessions and messages (`inbox.services.inbound`) and for the
contact a platform asks about (`inbox.selectors`). See `integrations.applier` for the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from inbox.selectors.contacts import contact_view_for_identity
from inbox.services import inbound
from integrations.applier import StoredCallback
from integrations.base import Callback, ContactView
from integrations.models import ProviderAccount


class InboxApplier:
    """Apply callbacks to the inbox (`integrations.applier.CallbackApplier`)."""

    def callback_apply(
        self, account: ProviderAccount, callback: Callback, *, received_at: datetime
    ) -> inbound.ApplyResult:
        """Apply one callback in the caller's transaction (`inbound.callback_apply`)."""
        return inbound.callback_apply(account, callback, received_at=received_at)

    def callbacks_apply_run(
        self, account: ProviderAccount, run: Sequence[StoredCallback]
    ) -> set[int]:
        """Apply the plain customer messages of `run` in bulk (`inbound.messages_apply_run`)."""
        return inbound.messages_apply_run(account, run)

    def contact_view(
        self, account: ProviderAccount, contact_external_id: str
    ) -> ContactView | None:
        """Return what the inbox knows of a platform contact, for a synchronous reply."""
        return contact_view_for_identity(account, contact_external_id)
