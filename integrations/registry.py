"""Map a platform kind to its provider class, resolved lazily by dotted path.

A new platform is a new package under `integrations/` and one line here; no inbox code changes.
"""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from integrations.base import Provider, ProviderNotFound

PROVIDERS: dict[str, str] = {
    "xms": "integrations.xms.provider.XmsProvider",
    "messagewhiz": "integrations.messagewhiz.provider.MessageWhizProvider",
}

KIND_LABELS: dict[str, str] = {
    "xms": "Mehery XMS",
    "messagewhiz": "MessageWhiz",
}


def kind_choices() -> list[tuple[str, str]]:
    """Return (kind, label) pairs for forms and model choices."""
    return [(kind, KIND_LABELS.get(kind, kind)) for kind in PROVIDERS]


def messaging_windows() -> list[tuple[str, str, float]]:
    """Return (kind, medium, hours) for every registered platform's messaging windows."""
    return [
        (kind, medium, float(hours))
        for kind in PROVIDERS
        for medium, hours in get_provider(kind).messaging_windows.items()
    ]


@cache
def get_provider(kind: str) -> Provider:
    """Return the (stateless, shared) provider instance for a kind."""
    try:
        path = PROVIDERS[kind]
    except KeyError:
        raise ProviderNotFound(f"no provider is registered for kind {kind!r}") from None
    provider_class: type[Provider] = import_string(path)
    return provider_class()
