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
    codes = getattr(exc, "get_codes", lambda: None)()
    if isinstance(data, dict) and set(data) == {"detail"}:
        code = codes.get("detail") if isinstance(codes, dict) else codes
        response.data = {"error": str(code or "error"), "detail": str(data["detail"])}
    else:
        response.data = {"error": "invalid", "detail": "The request is not valid.", "fields": data}
    return response
