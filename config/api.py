"""API-wide conventions: every error is JSON that says what is wrong."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render DRF errors as {"error": <code>, "detail": <human text>, ...}."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and set(data) == {"detail"}:
        # DRF turns Django's Http404 and PermissionDenied into ErrorDetails with a code.
        code = getattr(data["detail"], "code", None) or "error"
        response.data = {"error": str(code), "detail": str(data["detail"])}
    else:
        response.data = {"error": "invalid", "detail": "The request is not valid.", "fields": data}
    return response
