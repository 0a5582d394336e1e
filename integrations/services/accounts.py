"""Platform account chores: health bookkeeping and webhook registration."""

from __future__ import annotations

import logging
from uuid import UUID

from django.utils import timezone

from integrations.base import JSON, ProviderError, with_fresh_credentials
from integrations.models import ProviderAccount
from integrations.registry import get_provider

logger = logging.getLogger(__name__)


# Account id -> platform kind, for the whole process: a kind never changes once an account
# exists (admin shows it read-only), so an id missing here is a new account.
_kinds: dict[UUID, str] = {}


def account_kind(account_id: UUID) -> str:
    """Return an account's platform kind; one query (for every account) per new account."""
    kind = _kinds.get(account_id)
    if kind is None:
        _kinds.update(ProviderAccount.objects.values_list("id", "kind"))
        kind = _kinds[account_id]
    return kind


def account_health_record(account: ProviderAccount, *, error: str = "") -> None:
    """Record the outcome of a call to the platform on the account (shown in admin)."""
    now = timezone.now()
    if error:
        ProviderAccount.objects.filter(pk=account.pk).update(
            last_error_at=now, last_error=error[:2000]
        )
        account.last_error_at, account.last_error = now, error[:2000]
    else:
        ProviderAccount.objects.filter(pk=account.pk).update(last_success_at=now)
        account.last_success_at = now


def account_webhook_register(account: ProviderAccount) -> JSON:
    """Register the account's callback URL (built from PUBLIC_BASE_URL) at its platform.

    Stores the platform's app id, which its callbacks echo in `meta.appId`. Raises the
    classified `ProviderError` after recording it on the account.
    """
    provider = get_provider(account.kind)
    try:
        answer = provider.register_webhook(account.config(), account.webhook_url)
    except ProviderError as exc:
        account_health_record(account, error=f"Registering the callback URL failed: {exc}")
        raise
    app_id = str(answer.get("id") or "")
    if app_id and (account.options or {}).get("app_id") != app_id:
        account.options = {**(account.options or {}), "app_id": app_id}
        account.save(update_fields=["options", "updated_at"])
    account_health_record(account)
    logger.info("registered %s as the callback URL of %s", account.webhook_url, account)
    return answer


def account_credentials_test(account: ProviderAccount) -> str:
    """Make a harmless authenticated call (list channels) and say how it went.

    Records the outcome on the account's health; raises the classified `ProviderError` on failure.
    """
    provider = get_provider(account.kind)
    try:
        channels = with_fresh_credentials(provider, account.config(), provider.list_channels)
    except ProviderError as exc:
        account_health_record(account, error=f"Credential test failed: {exc}")
        raise
    account_health_record(account)
    return f"the platform accepted the credentials and lists {len(channels)} channel(s)"
