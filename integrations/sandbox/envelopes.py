"""XMS response envelopes (spec §1.5): the full `ApiResponse` and the compact one."""

from __future__ import annotations

import secrets
import time
from typing import Any

JSON = dict[str, Any]


def _now_ms() -> int:
    return int(time.time() * 1000)


def field_error(
    field: str, description: str, code: str = "INVALID", obzect: str = "OutBoundMsg"
) -> JSON:
    """Return one ApiFieldError (the platform really spells it `obzect`)."""
    return {
        "body": {},
        "code": code,
        "codeKey": code,
        "codes": [code],
        "description": description,
        "descriptionKey": f"error.{code.lower()}",
        "field": field,
        "obzect": obzect,
        "possibleValues": [],
    }


def full(
    *,
    data: Any = None,
    results: list[Any] | None = None,
    path: str,
    errors: list[JSON] | None = None,
    status: int = 200,
    status_key: str = "SUCCESS",
    message: str = "",
) -> JSON:
    """Return an `ApiResponse«T,object»` envelope."""
    if results is None:
        results = [data] if data is not None else []
    return {
        "data": data,
        "details": [],
        "error": None if not errors else status_key,
        "errors": errors or [],
        "exception": None,
        "extra": {},
        "logs": [],
        "message": message or ("Success" if not errors else "Request failed"),
        "messageKey": "MESSAGE_SUCCESS" if not errors else f"MESSAGE_{status_key}",
        "meta": {},
        "params": {},
        "path": path,
        "query": {},
        "redirectUrl": None,
        "results": results,
        "status": status,
        "statusKey": status_key,
        "timestamp": _now_ms(),
        "traceid": secrets.token_hex(8),
        "warningKey": None,
        "warnings": [],
    }


def compact(
    results: list[Any], *, status: int = 200, status_key: str = "SUCCESS", message: str = ""
) -> JSON:
    """Return an `ApiResultsMetaCompactResponse«T,object»` envelope."""
    return {
        "message": message or ("Success" if status < 400 else "Request failed"),
        "messageKey": "MESSAGE_SUCCESS" if status < 400 else f"MESSAGE_{status_key}",
        "meta": {},
        "results": results,
        "status": status,
        "statusKey": status_key,
        "timestamp": _now_ms(),
        "traceid": secrets.token_hex(8),
    }
