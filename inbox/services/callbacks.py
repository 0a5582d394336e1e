"""Apply stored platform callbacks to the inbox: the applier `integrations` hands them to.

`integrations.services.webhooks` owns the raw events (store, claim, lease, settle, sweep,
replay) and calls the class `settings.INBOUND_CALLBACK_APPLIER` names, this one, for what a
run of callbacks means for contacts, sessions and messages (`inbox.services.inbound`, the one
inbound pipeline) and for the contact a platform asks about (`inbox.selectors`). See
`integrations.applier` for the contract.
"""

from __future__ import annotations

from collections.abc import Sequence

from inbox.selectors.contacts import contact_view_for_identity
from inbox.services import inbound
from integrations.applier import Settle, StoredCallback
from integrations.base import ContactView
from integrations.models import ProviderAccount


class InboxApplier:
    """Apply callbacks to the inbox (`integrations.applier.CallbackApplier`)."""

    def callbacks_apply(
        self, account: ProviderAccount, run: Sequence[StoredCallback], settle: Settle
    ) -> None:
        """Apply a run of callbacks, settling each as it commits (`inbound.callbacks_apply`)."""
        inbound.callbacks_apply(account, run, settle)

    def contact_view(
        self, account: ProviderAccount, contact_external_id: str
    ) -> ContactView | None:
        """Return what the inbox knows of a platform contact, for a synchronous reply."""
        return contact_view_for_identity(account, contact_external_id)
