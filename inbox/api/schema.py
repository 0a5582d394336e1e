"""OpenAPI schema hooks and enum names (drf-spectacular, see SPECTACULAR_SETTINGS)."""

from __future__ import annotations

from typing import Any

from inbox.services.send import SENDABLE_TYPES

# Choice sets shared by the serializers and ENUM_NAME_OVERRIDES, so each enum gets a clear name.
SENDABLE_TYPE_CHOICES = sorted(t.value for t in SENDABLE_TYPES)
BUTTON_TYPE_CHOICES = ["QUICK_REPLY", "URL", "PHONE_NUMBER"]


def message_type_choices() -> list[tuple[str, str]]:
    """Return the choices of `Message.type`, every type a message can have."""
    from inbox.models import Message

    return list(Message._meta.get_field("type").choices or [])


def api_endpoints_only(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Keep the integrator API in the schema; leave out the platforms' webhook and admin."""
    return [endpoint for endpoint in endpoints if str(endpoint[0]).startswith("/api/v1/")]
