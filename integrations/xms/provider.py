"""The Mehery XMS provider: callbacks in, contact replies out (outbound calls join later)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

from integrations import http
from integrations.base import (
    JSON,
    AccountConfig,
    AuthenticationError,
    Callback,
    Capability,
    ChannelInfo,
    ContactView,
    HistoryMessage,
    InboundSecrets,
    Media,
    MediaFetched,
    MessageType,
    OutboundRequest,
    Provider,
    RejectedError,
    RequestCheck,
    SendResult,
    SessionEvent,
    TemplateInfo,
    send_attempt,
)
from integrations.downloads import http_errors, media_download
from integrations.xms import outbound, schemas
from integrations.xms.client import XmsClient, envelope_field
from integrations.xms.languages import CONTACT_LANGUAGES

VERIFY_TOKEN_HEADER = "x-verify-token"  # noqa: S105 - a header name, not a secret


@contextmanager
def platform_errors() -> Iterator[None]:
    """Raise the provider contract's errors for the HTTP seam's (`downloads.http_errors`, the
    one translation): callers never see HTTP errors.

    Message, status, the platform's words and code pass on unchanged (spec §1.5); a refusal
    also names the field its envelope's first error names.
    """
    try:
        with http_errors():
            yield
    except RejectedError as exc:
        cause = exc.__cause__
        if not exc.field and isinstance(cause, http.HttpError) and isinstance(cause.body, dict):
            exc.field = envelope_field(cause.body)
        raise


class XmsProvider(Provider):
    """Translate Mehery XMS JSON (spec: reference/mehery-xms.md) to the provider contract."""

    kind = "xms"
    label = "Mehery XMS"
    ingest = "webhook"
    # Sessions with routing, history, HSM templates; media goes by link (it fetches it), and
    # receipts come as callbacks.
    capabilities = frozenset(Capability) - {Capability.MEDIA_UPLOAD, Capability.RECEIPTS_FETCH}
    # WhatsApp's 24-hour customer-care window (spec §5.0, implied by error 470).
    messaging_windows = {"whatsapp": 24.0}
    # §4.0: the platform may post to the registered URL as-is or with these paths appended.
    callback_subpaths = ("api/v1/message/receive", "api/v1/contact/info", "api/v1/action/event")
    # WhatsApp's 470, passed through in FAILD receipts (spec §4.12).
    window_error_codes = frozenset({"470"})
    # Voice notes go as audio (§5.5, §5.10), and the history lists them so.
    listed_types = {MessageType.VOICE: MessageType.AUDIO}
    # Locales of the languages the platform documents (spec §2.5, §3.6).
    contact_languages = CONTACT_LANGUAGES
    # Callbacks carry one static shared token (§1.3); our calls carry the API key and id (§1.2).
    request_auth_scheme = VERIFY_TOKEN_HEADER
    request_secret_headers = frozenset({VERIFY_TOKEN_HEADER, "x-api-key", "x-api-id"})

    def verify_request(self, secrets: InboundSecrets, headers: Mapping[str, str]) -> RequestCheck:
        """Compare the x-verify-token header with every accepted token in constant time (§1.3).

        The token is the only authentication XMS callbacks have: no signature of the body.
        """
        return secrets.token_check(headers, VERIFY_TOKEN_HEADER)

    def parse_callback(self, body: JSON) -> Callback:
        """Dispatch on the body's shape (§4.0)."""
        return schemas.parse_callback(body)

    def callback_check(self, callback: Callback, options: Mapping[str, Any]) -> list[str]:
        """Warn when a callback says it is for another app or domain (`meta`, spec §1.3)."""
        warnings = []
        for key, option in (("appId", "app_id"), ("domain", "domain")):
            expected, given = str(options.get(option) or ""), callback.tenant.get(key, "")
            if expected and given and expected != given:
                warnings.append(f"meta.{key} is {given!r}, but this account expects {expected!r}")
        return warnings

    def wants_sync_reply(self, body: JSON) -> bool:
        """Say whether this is a contact/info body, answered with a ContactInfoUpdate (§4.13)."""
        keys = body.keys()
        return (
            "contactId" in keys
            and ("profile" in keys or "lane" in keys)
            and not any(k in keys for k in schemas.WRAPPER_ARRAYS)
        )

    def register_webhook(self, account: AccountConfig, url: str) -> JSON:
        """POST config/webhook (spec §2.4); returns the ClientApp, whose id is `meta.appId`."""
        with platform_errors():
            return XmsClient(account).set_webhook(url)

    def list_channels(self, account: AccountConfig) -> list[ChannelInfo]:
        """GET config/channels (spec §2.1) as ChannelInfo."""
        with platform_errors():
            listed = XmsClient(account).list_channels()
        channels = []
        for item in listed:
            external_id = schemas.as_str(item.get("channelId"), "channelId")
            if not external_id:
                continue
            channels.append(
                ChannelInfo(
                    external_id=external_id,
                    medium=schemas.medium_for(
                        schemas.as_str(item.get("contactType"), "contactType")
                    ),
                    lane=schemas.as_str(item.get("lane"), "lane"),
                    name=schemas.as_str(item.get("name"), "name"),
                    raw=item,
                )
            )
        return channels

    def send_message(self, account: AccountConfig, request: OutboundRequest) -> SendResult:
        """POST message/send (spec §5); the returned id correlates the receipts (§5.12)."""
        body = outbound.send_body(request)
        # §5.0, §7: `message/send` has no idempotency key: only an answer that says the
        # platform did not take the request is retried (`send_attempt`).
        with send_attempt(), platform_errors():
            receipt = XmsClient(account).send_message(body)
        return SendResult(external_id=schemas.as_str(receipt["id"], "data.id"), raw=receipt)

    def list_templates(
        self, account: AccountConfig, channel_external_id: str
    ) -> list[TemplateInfo]:
        """GET config/tmpl/hsm?channelId= (spec §2.3)."""
        with platform_errors():
            docs = XmsClient(account).list_templates(channel_external_id)
        return [info for doc in docs if (info := outbound.template_info(doc)) is not None]

    def _events(self, items: list[JSON]) -> list[SessionEvent]:
        warnings: list[str] = []
        events = [
            schemas.parse_event(item, f"results[{i}]", warnings) for i, item in enumerate(items)
        ]
        return [event for event in events if event is not None]

    def session_route(
        self,
        account: AccountConfig,
        session_external_id: str,
        *,
        queue: str,
        agent: str = "",
        team: str = "",
        skills: tuple[str, ...] = (),
        params: Mapping[str, Any] | None = None,
    ) -> list[SessionEvent]:
        """POST session/routing (spec §6.5); `params` is required by the docs, so {} at least."""
        body: JSON = {
            "sessionId": session_external_id,
            "queue": queue,
            "params": dict(params or {}),
        }
        if agent:
            body["agent"] = agent
        if team:
            body["team"] = team
        if skills:
            body["skills"] = list(skills)
        with platform_errors():
            items = XmsClient(account).session_routing(body)
        return self._events(items)

    def session_resolve(
        self, account: AccountConfig, session_external_id: str
    ) -> list[SessionEvent]:
        """POST session/resolve (spec §6.6)."""
        with platform_errors():
            items = XmsClient(account).session_resolve(session_external_id)
        return self._events(items)

    def session_close(self, account: AccountConfig, session_external_id: str) -> list[SessionEvent]:
        """POST session/close (spec §6.6)."""
        with platform_errors():
            items = XmsClient(account).session_close(session_external_id)
        return self._events(items)

    def session_history(
        self, account: AccountConfig, session_external_id: str
    ) -> list[HistoryMessage]:
        """POST session/messages (spec §6.7), sorted by time then id on our side."""
        with platform_errors():
            items = XmsClient(account).session_messages(session_external_id)
        history = [m for item in items if (m := outbound.history_message(item)) is not None]
        return sorted(history, key=lambda m: (m.sent_at is None, m.sent_at, m.external_id))

    def contact_set_language(
        self, account: AccountConfig, contact_external_id: str, lang: str
    ) -> None:
        """POST contact/prefs/lang (spec §2.5)."""
        with platform_errors():
            XmsClient(account).contact_language(contact_external_id, lang)

    def media_fetch(
        self, account: AccountConfig, media: Media, into: IO[bytes], *, max_bytes: int
    ) -> MediaFetched:
        """Download `linkSecure` (else `link`) as it is; refused, once more with the account's
        API headers (spec §7.28: whether the links need them is undocumented)."""
        try:
            return media_download(media.link, into, max_bytes=max_bytes)
        except AuthenticationError:
            headers = XmsClient(account).headers
            return media_download(media.link, into, max_bytes=max_bytes, headers=headers)

    def contact_reply(self, contact: ContactView | None) -> JSON:
        """Build the ContactInfoUpdate answer (§4.13): only the fields we know."""
        if contact is None:
            return {}
        reply: JSON = {"profileId": contact.profile_id}
        if contact.name:
            reply["name"] = contact.name
        if contact.email:
            reply["email"] = contact.email
        if contact.phone:
            # ContactInfoUpdate says `mobile`, even in 2023 (§3.2).
            reply["mobile"] = contact.phone
        if contact.labels:
            reply["labels"] = [
                {"key": key, "name": key, "type": "TEXT", "value": value}
                for key, value in contact.labels
            ]
        return reply
