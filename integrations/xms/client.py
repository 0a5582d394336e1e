"""HTTP calls to Mehery XMS (spec §1-2), through the one seam in `integrations.http`."""

from __future__ import annotations

import logging
from typing import Any

from integrations import http
from integrations.base import JSON, AccountConfig

logger = logging.getLogger(__name__)


class EnvelopeError(http.RejectedError):
    """A 2xx answer whose envelope says the request failed (spec §1.5)."""


class XmsClient:
    """Call one XMS account's API with its key (and app id)."""

    def __init__(self, account: AccountConfig) -> None:
        self.base = account.base_url.rstrip("/")
        self.headers = {"x-api-key": account.api_key}
        if account.api_id:
            self.headers["x-api-id"] = account.api_id

    def _call(self, method: str, path: str, *, json: Any = None, params: Any = None) -> JSON:
        url = f"{self.base}/api/v1/{path}"
        try:
            response = http.request(method, url, headers=self.headers, json=json, params=params)
        except http.HttpError as exc:
            # A refusal with an envelope says why: pass its words and code on (spec §1.5).
            if isinstance(exc.body, dict):
                _log_envelope(method, url, exc.status, exc.body, level=logging.INFO)
                exc.detail, exc.code = describe_errors(exc.body), envelope_code(exc.body)
            raise
        if isinstance(response.json, dict):
            # (DEBUG: a line per send at hundreds of sends a second is noise, and its lock
            # was a tenth of the platform worker's time under `make bench`.)
            _log_envelope(method, url, response.status, response.json, level=logging.DEBUG)
        envelope = response.json if isinstance(response.json, dict) else {}
        check_envelope(envelope, f"{method} {path}")
        return envelope

    def list_channels(self) -> list[JSON]:
        """GET config/channels, sandbox channels included (spec §2.1: send both spellings)."""
        envelope = self._call(
            "GET", "config/channels", params={"sabdnox": "true", "sandbox": "true"}
        )
        return results(envelope)

    def send_message(self, body: JSON) -> JSON:
        """POST message/send (spec §2.8, §5); return the OutBoundReciept (`data`)."""
        envelope = self._call("POST", "message/send", json=body)
        receipt = first_result(envelope)
        if not receipt or not receipt.get("id"):
            raise EnvelopeError("message/send: accepted without a message id", body=envelope)
        return receipt

    def list_templates(self, channel_id: str = "") -> list[JSON]:
        """GET config/tmpl/hsm for a channel, without channelStatus (spec §2.3)."""
        params = {"channelId": channel_id} if channel_id else None
        return results(self._call("GET", "config/tmpl/hsm", params=params))

    def session_routing(self, body: JSON) -> list[JSON]:
        """POST session/routing (spec §2.12); return the InBoundEvents."""
        return results(self._call("POST", "session/routing", json=body))

    def session_resolve(self, session_id: str) -> list[JSON]:
        """POST session/resolve (spec §2.11)."""
        return results(self._call("POST", "session/resolve", json={"sessionId": session_id}))

    def session_close(self, session_id: str) -> list[JSON]:
        """POST session/close (spec §2.9)."""
        return results(self._call("POST", "session/close", json={"sessionId": session_id}))

    def session_messages(self, session_id: str) -> list[JSON]:
        """POST session/messages (spec §2.10): every message of the session."""
        return results(self._call("POST", "session/messages", json={"sessionId": session_id}))

    def contact_language(self, contact_id: str, lang: str) -> list[JSON]:
        """POST contact/prefs/lang (spec §2.5)."""
        return results(
            self._call("POST", "contact/prefs/lang", json={"contactId": contact_id, "lang": lang})
        )

    def set_webhook(self, url: str) -> JSON:
        """Register our callback URL (spec §2.4); return the ClientApp `data`."""
        envelope = self._call("POST", "config/webhook", json={"url": url})
        return first_result(envelope) or {}


def _log_envelope(method: str, url: str, status: int | None, envelope: JSON, *, level: int) -> None:
    # Quote these to the platform's support (spec §1.5 rule 4).
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level,
        "%s %s -> %s traceid=%s messageKey=%s message=%s",
        method,
        url,
        status,
        envelope.get("traceid"),
        envelope.get("messageKey"),
        str(envelope.get("message") or "")[:200],
    )


def check_envelope(envelope: JSON, what: str) -> None:
    """Raise `EnvelopeError` when an envelope reports failure (spec §1.5 rule 1)."""
    errors = envelope.get("errors") or []
    status_key = envelope.get("statusKey")
    status = envelope.get("status")
    try:
        status_code = int(status) if status is not None else None
    except (TypeError, ValueError):
        status_code = None
    failed = (
        bool(errors)
        or (status_key not in (None, "SUCCESS"))
        or (status_code is not None and status_code >= 400)
    )
    if failed:
        raise EnvelopeError(
            f"{what}: {describe_errors(envelope)}",
            status=status_code,
            body=envelope,
            detail=describe_errors(envelope),
            code=envelope_code(envelope),
        )


def describe_errors(envelope: JSON) -> str:
    """Turn an envelope's errors into one human-readable line."""
    parts = []
    for error in envelope.get("errors") or []:
        if isinstance(error, dict):
            field = error.get("field") or error.get("obzect") or error.get("object") or ""
            text = error.get("description") or error.get("code") or "invalid"
            parts.append(f"{field}: {text}" if field else str(text))
    if not parts:
        parts.append(str(envelope.get("message") or envelope.get("statusKey") or "failed"))
    return "; ".join(parts)


def envelope_code(envelope: JSON) -> str:
    """Return the machine code of a failed envelope: its first error's code, or statusKey."""
    errors = envelope.get("errors") or []
    if errors and isinstance(errors[0], dict) and errors[0].get("code"):
        return str(errors[0]["code"])
    return str(envelope.get("statusKey") or "")


def envelope_field(envelope: JSON) -> str:
    """Return the field a failed envelope's first error names ("" when it names none)."""
    errors = envelope.get("errors") or []
    if errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("field") or first.get("obzect") or first.get("object") or "")
    return ""


def first_result(envelope: JSON) -> JSON | None:
    """Read a single-object envelope: `data`, falling back to `results[0]` (spec §1.5 rule 2)."""
    data = envelope.get("data")
    if isinstance(data, dict):
        return data
    results = envelope.get("results") or []
    return results[0] if results and isinstance(results[0], dict) else None


def results(envelope: JSON) -> list[JSON]:
    """Read a list envelope: `results`, falling back to `[data]` (spec §1.5 rule 3)."""
    items = envelope.get("results")
    if isinstance(items, list) and items:
        return [item for item in items if isinstance(item, dict)]
    data = envelope.get("data")
    return [data] if isinstance(data, dict) else []
