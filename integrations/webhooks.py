"""The public webhook contract: `/webhooks/<kind>/<account uuid>/[<platform sub-path>]`.

Order of checks, each answered in JSON and none writing a message row: unknown account or
sub-path 404; missing or wrong credentials 401 (the account's provider verifies the request,
`Provider.verify_request`: this module knows no platform's headers); body over the size limit
413; a body that is not a JSON object by the standard (not UTF-8, not JSON, NaN or Infinity,
nested deeper than WEBHOOK_MAX_JSON_DEPTH) 400 with the reason, before anything is stored. A
valid callback is stored and answered `200 {}` at once; a platform that expects a synchronous
answer (XMS `contact/info`) gets it from the inbox's own data.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.base import InboundSecrets, ProviderNotFound, RequestCheck
from integrations.models import ProviderAccount
from integrations.payload import BodyError, json_loads
from integrations.registry import get_provider
from integrations.services.webhooks import webhook_event_answer, webhook_event_receive
from integrations.ttl_cache import TTLCache


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The body is larger than this webhook accepts."
    default_code = "payload_too_large"


class RawBody(dict[str, Any]):
    """The parsed JSON object, remembering the exact text it came from."""

    def __init__(self, data: dict[str, Any], text: str) -> None:
        super().__init__(data)
        self.text = text


class BoundedJSONParser(BaseParser):
    """Parse a JSON object of bounded size, whatever Content-Type the platform claims."""

    media_type = "*/*"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> RawBody:
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"The body is {declared} bytes; the limit is {limit} bytes.")
        raw: bytes = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The body is over the limit of {limit} bytes.")
        if not raw.strip():
            raise exceptions.ParseError("The body is empty; a JSON object is expected.")
        try:
            # (A byte order mark is tolerated and dropped: RFC 8259 lets a parser ignore it.)
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"The body is not UTF-8 text: {exc.reason}.") from exc
        try:
            data = json_loads(text, max_depth=settings.WEBHOOK_MAX_JSON_DEPTH)
        except BodyError as exc:
            raise exceptions.ParseError(str(exc)) from exc
        if not isinstance(data, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean"}.get(
                type(data), "a number" if isinstance(data, int | float) else "null"
            )
            raise exceptions.ParseError(f"The body must be a JSON object, not {kind}.")
        return RawBody(data, text)


class CallbackAuthentication(BaseAuthentication):
    """Find the account named in the URL and let its provider verify the request."""

    def authenticate(self, request: Request) -> tuple[None, ProviderAccount]:
        kind, account_id = _url_kwargs(request)
        account = _account_from_url(kind, account_id)
        check = _verify(account, request)
        if check == RequestCheck.WRONG:
            # The cached row may predate a token rotation: ask the database before refusing.
            account = _account_from_url(kind, account_id, fresh=True)
            check = _verify(account, request)
        scheme = get_provider(account.kind).request_auth_scheme
        if check == RequestCheck.MISSING:
            raise exceptions.AuthenticationFailed(
                f"The request carries no {scheme} credentials.", code=check.value
            )
        if check != RequestCheck.ACCEPTED:
            raise exceptions.AuthenticationFailed(
                f"The request's {scheme} credentials do not match this account's.",
                code=RequestCheck.WRONG.value,
            )
        return (None, account)

    def authenticate_header(self, request: Request) -> str:
        try:
            return get_provider(_url_kwargs(request)[0]).request_auth_scheme
        except ProviderNotFound:
            return "Token"


def _url_kwargs(request: Request) -> tuple[str, str]:
    kwargs = request.parser_context.get("kwargs", {}) if request.parser_context else {}
    return kwargs.get("kind", ""), kwargs.get("account_id", "")


def _verify(account: ProviderAccount, request: Request) -> RequestCheck:
    secrets = InboundSecrets(verify_tokens=tuple(account.accepted_verify_tokens()))
    return get_provider(account.kind).verify_request(secrets, request.headers)


# Accounts found by their callback URL, kept briefly in this process: a busy number sends
# hundreds of callbacks a second, and each would otherwise read (and decrypt) the same row.
# A token rotation is seen at once (a mismatch re-reads the row); a deactivated or deleted
# account stops receiving within WEBHOOK_ACCOUNT_CACHE_SECONDS.
_accounts: TTLCache[tuple[str, uuid.UUID], ProviderAccount] = TTLCache(
    lambda: settings.WEBHOOK_ACCOUNT_CACHE_SECONDS
)


def accounts_cache_clear() -> None:
    """Forget the accounts this process has cached (tests; an admin change is seen anyway)."""
    _accounts.clear()


def _account_from_url(kind: str, account_id: str, *, fresh: bool = False) -> ProviderAccount:
    try:
        key = uuid.UUID(account_id)
        get_provider(kind)
    except (ValueError, ProviderNotFound):
        raise exceptions.NotFound("No such webhook.", code="unknown_account") from None
    cached = None if fresh else _accounts.get((kind, key))
    if cached is not None:
        return cached
    account = (
        ProviderAccount.objects.filter(pk=key, kind=kind, is_active=True)
        .only(
            "id",
            "kind",
            "verify_token",
            "previous_verify_token",
            "verify_token_rotated_at",
            "is_active",
        )
        .first()
    )
    if account is None:
        _accounts.discard((kind, key))
        raise exceptions.NotFound("No such webhook.", code="unknown_account")
    _accounts.put((kind, key), account)  # unknown ids are not cached
    return account


class HasCallbackAccount(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ProviderAccount)


class WebhookView(APIView):
    """Receive one platform callback."""

    authentication_classes = [CallbackAuthentication]
    permission_classes = [HasCallbackAccount]
    parser_classes = [BoundedJSONParser]
    renderer_classes = [JSONRenderer]
    throttle_classes: list[Any] = []

    def post(self, request: Request, kind: str, account_id: str, subpath: str = "") -> Response:
        account = request.auth
        assert isinstance(account, ProviderAccount)  # guaranteed by HasCallbackAccount
        provider = get_provider(account.kind)
        subpath = subpath.strip("/")
        if subpath and subpath not in provider.callback_subpaths:
            raise exceptions.NotFound(f"No such callback path: {subpath}.", code="unknown_path")
        payload = request.data
        if not isinstance(payload, RawBody):
            raise exceptions.ParseError("The body is empty; a JSON object is expected.")
        sync = provider.wants_sync_reply(payload)
        event = webhook_event_receive(
            account,
            body=payload.text,
            headers=dict(request.headers),
            path=subpath,
            enqueue=not sync,
        )
        if sync:
            return Response(webhook_event_answer(account, event))
        return Response({})
