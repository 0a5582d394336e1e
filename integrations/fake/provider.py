"""A platform that lives in memory (`FakePlatform`), behind a provider like any other.

The inbox's tests use it so that an inbox test is not an XMS test: it polls (nothing calls
us), names each message's channel, keeps no sessions (a message names one only if a test gives
it), takes files only as uploads (never a link), and can do nothing else beyond messages
unless a test lists capabilities for it. It is not in the registry; a test registers it under "fake".

Its polled pages, stored raw like any platform's:
    {"messages": [{"id", "contact", "channel", "medium", "text", "session", "name"}],
     "receipts": [{"id", "status"}]}

Its webhook takes the contract's own types, `{"callback": <integrations.fake.wire JSON>}`,
with the account's verify token in `x-fake-token`: an inbox behaviour test builds a `Callback`
and posts it the way any platform's callback arrives.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from integrations.base import (
    JSON,
    AccountConfig,
    Callback,
    Capability,
    ContactProfile,
    DeliveryStatus,
    GoneError,
    InboundMessage,
    InboundSecrets,
    Media,
    MediaFetched,
    MediaUpload,
    MessageType,
    OutboundRequest,
    PayloadError,
    PollPage,
    Provider,
    ProviderError,
    Receipt,
    RequestCheck,
    SendResult,
    SessionRef,
    TooLargeError,
)
from integrations.fake.wire import callback_read


@dataclass
class FakePlatform:
    """What one fake platform holds: what its customers wrote (polled in pages of `page_size`),
    what we sent it, and the failure its next calls raise, if a test set one."""

    written: list[JSON] = field(default_factory=list)
    sent: list[OutboundRequest] = field(default_factory=list)
    uploaded: list[MediaUpload] = field(default_factory=list)
    # The files its customers' media messages name, by media id; each download is counted.
    files: dict[str, bytes] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)
    page_size: int = 2
    failing: ProviderError | None = None
    polls: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def customer_writes(
        self,
        contact: str,
        text: str,
        *,
        channel: str = "fake:main",
        session: str = "",
        medium: str = "other",
    ) -> str:
        """Make a customer write; return the message's platform id."""
        message_id = f"in-{next(self._ids)}"
        self.written.append(
            {
                "id": message_id,
                "contact": contact,
                "channel": channel,
                "medium": medium,
                "text": text,
                **({"session": session} if session else {}),
            }
        )
        return message_id


VERIFY_HEADER = "x-fake-token"

# Fake platforms by account base URL (one per account a test makes).
PLATFORMS: dict[str, FakePlatform] = {}


def platform_of(account: AccountConfig) -> FakePlatform:
    return PLATFORMS.setdefault(account.base_url, FakePlatform())


class FakeProvider(Provider):
    kind = "fake"
    label = "Fake platform"
    ingest = "poll"
    # Unlike XMS (WhatsApp's 24 h, nothing on SMS): a window on SMS only, of two hours.
    messaging_windows = {"sms": 2.0}
    # Unlike XMS, it never fetches a link: a file is uploaded before the send that uses it.
    capabilities = frozenset({Capability.MEDIA_UPLOAD})

    request_secret_headers = frozenset({VERIFY_HEADER})

    def verify_request(self, secrets: InboundSecrets, headers: Mapping[str, str]) -> RequestCheck:
        return secrets.token_check(headers, VERIFY_HEADER)

    def parse_callback(self, body: JSON) -> Callback:
        if not isinstance(body, dict):
            raise PayloadError("a fake platform's body is a JSON object")
        if "callback" in body:  # (what a test posted to the webhook)
            return callback_read(body["callback"])
        callback = Callback()
        for item in body.get("messages") or []:
            contact = str(item["contact"])
            channel = str(item.get("channel") or "")
            callback.contacts.append(
                ContactProfile(
                    external_id=contact,
                    medium=str(item.get("medium") or "other"),
                    channel_external_id=channel,
                    name=str(item.get("name") or ""),
                )
            )
            callback.messages.append(
                InboundMessage(
                    external_id=str(item["id"]),
                    contact_external_id=contact,
                    type=MessageType.TEXT,
                    body=str(item.get("text") or ""),
                    session=(
                        SessionRef(external_id=str(item["session"]))
                        if item.get("session")
                        else None
                    ),
                    channel_external_id=channel,
                    raw=item,
                )
            )
        for item in body.get("receipts") or []:
            callback.receipts.append(
                Receipt(external_id=str(item["id"]), status=DeliveryStatus(item["status"]))
            )
        return callback

    def send_message(self, account: AccountConfig, request: OutboundRequest) -> SendResult:
        platform = platform_of(account)
        if platform.failing is not None:
            raise platform.failing
        platform.sent.append(request)
        return SendResult(external_id=f"out-{len(platform.sent)}")

    def media_upload(self, account: AccountConfig, upload: MediaUpload) -> Media:
        platform = platform_of(account)
        if platform.failing is not None:
            raise platform.failing
        platform.uploaded.append(upload)
        return Media(
            link="",
            mime_type=upload.mime_type,
            filename=upload.filename,
            media_id=f"media-{len(platform.uploaded)}",
        )

    def media_fetch(
        self, account: AccountConfig, media: Media, into: IO[bytes], *, max_bytes: int
    ) -> MediaFetched:
        """Hand over a file by its media id (no links: like MessageWhiz, files need our token)."""
        platform = platform_of(account)
        if platform.failing is not None:
            raise platform.failing
        platform.downloads.append(media.media_id)
        content = platform.files.get(media.media_id)
        if content is None:
            raise GoneError(f"no media {media.media_id!r}", status=404)
        if len(content) > max_bytes:
            raise TooLargeError(f"media {media.media_id!r} is {len(content)} bytes")
        into.write(content)
        return MediaFetched(size=len(content))

    def poll(self, account: AccountConfig, cursor: str) -> PollPage:
        platform = platform_of(account)
        platform.polls += 1
        if platform.failing is not None:
            raise platform.failing
        start = int(cursor or 0)
        items = platform.written[start : start + platform.page_size]
        end = start + len(items)
        return PollPage(
            body={"messages": items},
            cursor=str(end),
            more=end < len(platform.written),
            items=len(items),
        )
