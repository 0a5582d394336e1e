"""The provider contract: what every messaging platform translates its JSON into and out of.

Providers (`integrations/<kind>/provider.py`) turn a platform's callbacks into these boundary
dataclasses, and the inbox applies them without knowing which platform sent them. Nothing here
imports Django models, and no provider imports `inbox` or `accounts`.

A platform that pushes callbacks implements `parse_callback`; one that must be polled (such as
MessageWhiz) implements `poll` and returns the same `Callback` dataclass, so the inbox applies
both through one path.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, ClassVar, TypeVar

JSON = dict[str, Any]
T = TypeVar("T")


class Medium(enum.StrEnum):
    """The channel type a customer writes on."""

    WHATSAPP = "whatsapp"
    SMS = "sms"
    TELEGRAM = "telegram"
    VIBER = "viber"
    RCS = "rcs"
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    TWITTER = "twitter"
    WECHAT = "wechat"
    EMAIL = "email"
    WEBCHAT = "webchat"
    PUSH = "push"
    OTHER = "other"


# What people call each medium (the enum's names are for code).
MEDIUM_LABELS: Mapping[str, str] = {
    Medium.WHATSAPP: "WhatsApp",
    Medium.SMS: "SMS",
    Medium.TELEGRAM: "Telegram",
    Medium.VIBER: "Viber",
    Medium.RCS: "RCS",
    Medium.FACEBOOK: "Facebook",
    Medium.INSTAGRAM: "Instagram",
    Medium.TWITTER: "X (Twitter)",
    Medium.WECHAT: "WeChat",
    Medium.EMAIL: "Email",
    Medium.WEBCHAT: "Web chat",
    Medium.PUSH: "Push",
    Medium.OTHER: "Other",
}


class MessageType(enum.StrEnum):
    """What a message carries."""

    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"
    DOCUMENT = "document"
    LOCATION = "location"
    CONTACT = "contact"
    SYSTEM = "system"
    TEMPLATE = "template"
    UNKNOWN = "unknown"


MEDIA_TYPES = frozenset(
    {
        MessageType.IMAGE,
        MessageType.VIDEO,
        MessageType.AUDIO,
        MessageType.VOICE,
        MessageType.DOCUMENT,
    }
)


class DeliveryStatus(enum.StrEnum):
    """Where an outbound message is on its way to the customer."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    DELETED = "deleted"


class SessionEventKind(enum.StrEnum):
    """What a platform session event means for our session row."""

    ROUTED = "routed"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    CLOSED = "closed"
    OTHER = "other"


class RequestCheck(enum.StrEnum):
    """What a provider found when it checked that an inbound request comes from its platform."""

    ACCEPTED = "accepted"
    MISSING = "missing_token"  # the request carries no credentials
    WRONG = "wrong_token"  # it carries credentials that match none the account accepts


# --- Errors ------------------------------------------------------------------------------------


class ProviderError(Exception):
    """Base class of every error a provider raises: the inbox catches these, never HTTP errors.

    `detail` is the reason in words people can act on (the platform's own, when it gave any;
    otherwise the message) and `code` the platform's machine code ("" when it gave none).
    `status` is the platform's HTTP status, where there was one, for people to quote.
    """

    def __init__(
        self, message: str, *, status: int | None = None, detail: str = "", code: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message
        self.code = code


class PayloadError(ProviderError):
    """A platform body does not have the shape the provider expects; retrying will not help."""


class ProviderNotFound(ProviderError):
    """No provider is registered for this kind."""


class TransientError(ProviderError):
    """The platform could not be reached or was unavailable (connection, timeout, 429, 5xx).

    Trying again later may help; `retry_after` is the wait in seconds the platform asked for,
    when it asked for one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str = "",
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, detail=detail, code=code)
        self.retry_after = retry_after


class AmbiguousError(TransientError):
    """The request may have reached the platform (no answer in time, a connection dropped after
    sending): the outcome is unknown. A read may simply be retried (it is a `TransientError`);
    a caller to whom a repeat matters (a send) catches this one first."""


# Answers to a send that say the platform did not take it (timeout before processing, rate
# limited, unavailable): the only failures after which a send without an idempotency key may
# simply be sent again.
SEND_NOT_TAKEN = frozenset({408, 429, 503})


@contextlib.contextmanager
def send_attempt() -> Iterator[None]:
    """Around a send with no idempotency key: a transient failure whose request may have
    reached the platform (any 5xx but 503, no answer) is raised as `AmbiguousError`, to be
    settled by evidence, never sent again blindly. One with no connection, or an answer in
    SEND_NOT_TAKEN, stays a plain `TransientError`.
    """
    try:
        yield
    except AmbiguousError:
        raise
    except TransientError as exc:
        if exc.status is None or exc.status in SEND_NOT_TAKEN:
            raise
        raise AmbiguousError(str(exc), status=exc.status, detail=exc.detail, code=exc.code) from exc


class AuthenticationError(ProviderError):
    """The platform refused the account's credentials (401/403, an expired or revoked token).

    A provider whose credentials can be renewed (a login token) does so in
    `Provider.refresh_credentials`; `with_fresh_credentials` then tries the call once more.
    """


class RejectedError(ProviderError):
    """The platform refused this request (a 4xx, a failure envelope); retrying will not help.

    `field` names what it refused (a field, a JSON pointer or parameter), `code` is its own
    code and `detail` its own words, each when it said so.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str = "",
        code: str = "",
        field: str = "",
    ) -> None:
        super().__init__(message, status=status, detail=detail, code=code)
        self.field = field


class GoneError(RejectedError):
    """The platform no longer has what was asked for (a 404 or 410 for a media file whose link
    has expired); asking again will not bring it back."""


class TooLargeError(RejectedError):
    """A file is larger than we take; it was not read past the limit."""


class UnsupportedError(ProviderError):
    """The request cannot be expressed for this platform (a message type it cannot send, a
    media message without its media); nothing was sent."""


# --- Boundary dataclasses -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactProfile:
    """A customer as the platform describes them on one channel."""

    external_id: str
    medium: str = ""
    channel_external_id: str = ""
    lane: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""
    business_profile_id: str = ""
    business_name: str = ""
    business_email: str = ""
    business_phone: str = ""
    # When the customer asked to hear no more from the business (an opt-out keyword, an
    # unsubscription the platform reports); a message they send later opts them back in.
    # None: the platform said nothing about it.
    opted_out_at: datetime | None = None
    raw: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    """A media file attached to a message."""

    link: str
    mime_type: str = ""
    filename: str = ""
    caption: str = ""
    sha256: str = ""
    media_id: str = ""
    size: int | None = None
    # Smaller renditions the platform made of an uploaded file, for a send that names them.
    thumbnail_link: str = ""
    preview_link: str = ""


@dataclass(frozen=True, slots=True)
class MediaFetched:
    """A platform's media file, written whole into the caller's file by `Provider.media_fetch`.

    `content_type` is what the platform's server called it: a claim, not a fact.
    """

    size: int
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class MediaUpload:
    """A file to hand the platform before the message that uses it (`Provider.media_upload`)."""

    filename: str
    mime_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class Location:
    """A shared location."""

    latitude: float | None
    longitude: float | None
    name: str = ""
    address: str = ""
    url: str = ""


@dataclass(frozen=True, slots=True)
class SessionRef:
    """The platform session a message belongs to, with its assignment at that moment."""

    external_id: str
    routing_id: str = ""
    assigned_agent: str = ""
    assigned_dept: str = ""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a customer sent."""

    external_id: str
    contact_external_id: str
    type: MessageType
    external_id_ext: str = ""
    sender: str = ""
    body: str = ""
    media: Media | None = None
    attachments: tuple[Media, ...] = ()
    location: Location | None = None
    session: SessionRef | None = None
    sent_at: datetime | None = None
    raw_type: str = ""
    raw: JSON = field(default_factory=dict)
    # The channel (number, bot, page) it came in on, when the platform says; otherwise the
    # inbox takes the one its contact is known on.
    channel_external_id: str = ""
    # Sent by the business from the platform itself (a bot, a broadcast, an agent working
    # there), not by the customer: mirrored as an outbound message, with who sent it.
    outbound: bool = False
    author: str = ""


@dataclass(frozen=True, slots=True)
class PollPage:
    """One page a polling platform answered: its body (stored raw, read by `read_callback`),
    the cursor the next poll starts from, and whether more is waiting right now."""

    body: JSON
    cursor: str
    more: bool = False
    # How many items it holds (nothing to store when 0; the cursor still moves).
    items: int = 0


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One of our sends still on its way, whose receipt a platform that pushes none is asked
    for (`Provider.receipts_fetch`)."""

    external_id: str
    contact_external_id: str
    channel_external_id: str
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt for a message the business sent."""

    external_id: str
    status: DeliveryStatus
    external_id_ext: str = ""
    contact_external_id: str = ""
    occurred_at: datetime | None = None
    error_code: str = ""
    error_title: str = ""
    error_details: str = ""
    raw: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A session's state as the platform reports it after an event."""

    agent: str = ""
    bot: str = ""
    dept: str = ""
    queue: str = ""
    mode: str = ""
    resolved: bool | None = None
    routing_id: str = ""
    ticket_hash: str = ""
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A change to a session reported by the platform: routed, assigned, resolved, closed."""

    kind: SessionEventKind
    session_external_id: str
    dedupe_key: str
    code: str = ""
    contact: ContactProfile | None = None
    snapshot: SessionSnapshot | None = None
    source_queue: str = ""
    target_queue: str = ""
    old_agent: str = ""
    new_agent: str = ""
    old_dept: str = ""
    new_dept: str = ""
    old_bot: str = ""
    new_bot: str = ""
    routing_id: str = ""
    occurred_at: datetime | None = None
    raw: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Action:
    """Something an agent or a platform service asks the business application to do."""

    code: str
    dedupe_key: str
    raw: JSON = field(default_factory=dict)


@dataclass(slots=True)
class Callback:
    """Everything one platform callback (or one poll) carries, in the order it must be applied."""

    contacts: list[ContactProfile] = field(default_factory=list)
    messages: list[InboundMessage] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Set when the callback is a contact-profile request the platform expects an answer to.
    wants_contact_reply: bool = False
    # Who the platform says it is delivering for (XMS `meta`: appId, domain), to check.
    tenant: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """Name the callback's main content, for listing and filtering."""
        if self.wants_contact_reply:
            return "contact"
        for name in ("messages", "receipts", "events", "actions", "contacts"):
            if getattr(self, name):
                return name
        return "empty"

    def is_empty(self) -> bool:
        """Say whether there is nothing to apply."""
        return not (self.contacts or self.messages or self.receipts or self.events or self.actions)


@dataclass(frozen=True, slots=True)
class ContactView:
    """What we know of a contact, for a platform that asks us about one (XMS `contact/info`)."""

    profile_id: str
    name: str = ""
    email: str = ""
    phone: str = ""
    language: str = ""
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Button:
    """A quick-reply, URL or phone button on an outbound message."""

    kind: str  # QUICK_REPLY, URL, PHONE_NUMBER
    label: str
    code: str = ""
    url: str = ""
    phone: str = ""


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """Everything a provider needs to send one message."""

    channel_external_id: str
    type: MessageType
    # The channel's medium (whatsapp, sms...), for a platform whose calls differ by medium.
    medium: str = ""
    to_contact_id: str = ""
    to_phone: str = ""
    to_name: str = ""
    body: str = ""
    media: Media | None = None
    location: Location | None = None
    contact_cards: tuple[JSON, ...] = ()
    buttons: tuple[Button, ...] = ()
    template_code: str = ""
    template_id: str = ""
    template_lang: str = ""
    template_data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    """The platform accepted a message and gave it this id."""

    external_id: str
    raw: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """A template as the platform lists it."""

    external_id: str
    code: str
    lang: str
    name: str = ""
    title: str = ""
    category: str = ""
    header: str = ""
    body: str = ""
    footer: str = ""
    text: str = ""
    buttons: tuple[JSON, ...] = ()
    placeholders: tuple[JSON, ...] = ()
    attachments: tuple[JSON, ...] = ()
    # channel external id -> (approval status, platform template id)
    approvals: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    raw: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One message of a session's history as the platform keeps it."""

    external_id: str
    external_id_ext: str
    outbound: bool
    type: MessageType
    body: str = ""
    sent_at: datetime | None = None
    # Where an outbound message got to (an inbound one's is not read).
    status: DeliveryStatus = DeliveryStatus.SENT
    media: Media | None = None
    raw_type: str = ""  # the platform's own name for the type, as it listed it
    raw: JSON = field(default_factory=dict)
    # Who sent an outbound message on the platform (an agent's name, a bot), when it says.
    author: str = ""


@dataclass(frozen=True, slots=True)
class Language:
    """A contact language a platform takes: its code as sent, and a name for people."""

    code: str
    name: str


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A channel as the platform lists it."""

    external_id: str
    medium: str
    lane: str = ""
    name: str = ""
    raw: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundSecrets:
    """What an account's inbound requests are checked against (decrypted: never log it).

    `verify_tokens` are the shared tokens the account accepts now: its current one and, for a
    while after a rotation, the previous one.
    """

    verify_tokens: tuple[str, ...] = ()

    def token_check(self, headers: Mapping[str, str], header: str) -> RequestCheck:
        """Check a shared token sent in `header` (any case) against every accepted token, in
        constant time (every one is compared, whatever matches first)."""
        token = next((v for k, v in headers.items() if k.lower() == header), "")
        if not token:
            return RequestCheck.MISSING
        matches = [
            hmac.compare_digest(token.encode(), accepted.encode())
            for accepted in self.verify_tokens
        ]
        return RequestCheck.ACCEPTED if any(matches) else RequestCheck.WRONG


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """The credentials and settings of one platform account, decrypted, for a provider's use."""

    id: str
    kind: str
    base_url: str
    api_key: str = ""
    api_id: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


class Capability(enum.StrEnum):
    """What a platform can do besides taking our messages and giving us its customers'.

    A provider lists the ones it has (`Provider.capabilities`) and implements their methods; the
    inbox offers only those, and refuses the others with `Provider.unsupported`'s reason. (A
    test holds the list and the methods together.)
    """

    # Keep conversations as sessions of its own: it opens and ends them and names each
    # message's, and a session it ended stays ended. Without it the inbox keeps the sessions:
    # a contact's messages on a channel join their open conversation, and agents resolve,
    # close and reopen our copy with nothing to tell the platform.
    SESSIONS = "sessions"
    ROUTE = "route"  # hand a session to a platform queue, team or agent
    RESOLVE = "resolve"  # mark a session resolved at the platform
    CLOSE = "close"  # end a session at the platform
    HISTORY = "history"  # list a session's messages (those we missed, ours among them)
    TEMPLATES = "templates"  # approved templates: what goes out when the window is closed
    CHANNELS = "channels"  # list the account's channels (numbers, bots, pages)
    WEBHOOK = "webhook"  # take the URL its callbacks go to
    CONTACT_LANGUAGE = "contact_language"  # keep a contact's preferred language
    # Take a file uploaded before the send that uses it (`media_upload`), as MessageWhiz
    # requires; without it the platform fetches media from the link we send (XMS).
    MEDIA_UPLOAD = "media_upload"
    # Push no delivery receipts: the inbox asks for those of its sends still on their way
    # (`receipts_fetch`), with backoff, until they are final or too old.
    RECEIPTS_FETCH = "receipts_fetch"


# What each missing capability is, for the reason the inbox gives ("Acme cannot …").
CAPABILITY_WORDS: Mapping[Capability, str] = {
    Capability.SESSIONS: "keep sessions",
    Capability.ROUTE: "route sessions",
    Capability.RESOLVE: "resolve sessions",
    Capability.CLOSE: "close sessions",
    Capability.HISTORY: "list a session's messages",
    Capability.TEMPLATES: "send templates",
    Capability.CHANNELS: "list its channels",
    Capability.WEBHOOK: "take a callback URL",
    Capability.CONTACT_LANGUAGE: "keep a contact's language",
    Capability.MEDIA_UPLOAD: "take uploaded files",
    Capability.RECEIPTS_FETCH: "list its delivery statuses",
}

# What a platform does rather than a call it takes: no method of its own.
CAPABILITIES_WITHOUT_METHOD = frozenset({Capability.SESSIONS})

# The provider method each other capability stands for.
CAPABILITY_METHODS: Mapping[Capability, str] = {
    Capability.ROUTE: "session_route",
    Capability.RESOLVE: "session_resolve",
    Capability.CLOSE: "session_close",
    Capability.HISTORY: "session_history",
    Capability.TEMPLATES: "list_templates",
    Capability.CHANNELS: "list_channels",
    Capability.WEBHOOK: "register_webhook",
    Capability.CONTACT_LANGUAGE: "contact_set_language",
    Capability.MEDIA_UPLOAD: "media_upload",
    Capability.RECEIPTS_FETCH: "receipts_fetch",
}


class Provider(abc.ABC):
    """Translate one platform's JSON to and from the boundary dataclasses.

    `ingest` says how inbound traffic arrives: "webhook" (the platform calls us) or "poll" (a
    beat task asks the platform). Providers are stateless; `AccountConfig` is passed in.
    """

    kind: ClassVar[str]
    label: ClassVar[str]
    ingest: ClassVar[str] = "webhook"
    # What the platform can do beyond messages (`Capability`); each has its method below.
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    # Extra sub-paths under an account's callback URL that the platform may post to.
    callback_subpaths: ClassVar[tuple[str, ...]] = ()
    # The messaging window per medium: how many hours after the customer's last message on a
    # channel free-form messages may go out (WhatsApp's 24); after that only an approved
    # template. A medium not listed has no window.
    messaging_windows: ClassVar[Mapping[str, float]] = {}
    # Error codes by which the platform says a free-form message fell outside the window
    # (only a template can go out): the inbox offers "send as template" instead of "retry".
    window_error_codes: ClassVar[frozenset[str]] = frozenset()
    # The type a platform lists one of our sends under in a session's history, where it is
    # not the type we sent (XMS sends a voice note as audio), so our sends are recognized.
    listed_types: ClassVar[Mapping[MessageType, MessageType]] = {}
    # What can be sent on each medium (a platform's capability matrix): a medium not listed
    # takes every type the inbox sends. The composer offers nothing else, and a send of
    # another type is refused in words before anything is stored.
    sendable_types: ClassVar[Mapping[str, frozenset[MessageType]]] = {}
    # The languages `contact_set_language` takes, with names for a picker (none: it takes none).
    contact_languages: ClassVar[tuple[Language, ...]] = ()
    # How a refused caller is told to authenticate (the 401's WWW-Authenticate), and the
    # request headers that carry secrets (never stored with a callback).
    # What the account's two credentials are called at this platform (`api_key`, `api_id`).
    credential_labels: ClassVar[tuple[str, str]] = ("API key", "API id")
    # Whether admin may show their last characters, to tell keys apart (never a password's).
    credentials_recognizable: ClassVar[bool] = True
    request_auth_scheme: ClassVar[str] = "Token"
    request_secret_headers: ClassVar[frozenset[str]] = frozenset()

    def can(self, capability: Capability) -> bool:
        """Say whether the platform can do `capability` (the inbox offers nothing else)."""
        return capability in self.capabilities

    def can_send(self, medium: str, kind: MessageType) -> bool:
        """Say whether a message of type `kind` can be sent on a channel of `medium`."""
        allowed = self.sendable_types.get(medium)
        return allowed is None or kind in allowed

    def unsupported(self, capability: Capability) -> UnsupportedError:
        """The refusal for a capability the platform lacks, in words for the person asking."""
        return UnsupportedError(f"{self.label} cannot {CAPABILITY_WORDS[capability]}.")

    def verify_request(self, secrets: InboundSecrets, headers: Mapping[str, str]) -> RequestCheck:
        """Check that an inbound request comes from the platform (compare in constant time).

        `headers` are the request's (any case). The default refuses every request: a platform
        that calls us must say how its calls are authenticated.
        """
        return RequestCheck.MISSING

    def refresh_credentials(self, account: AccountConfig) -> bool:
        """Renew the account's credentials after the platform refused them; say whether it did.

        For platforms whose calls carry a login token (MessageWhiz's JWT): drop the cached one
        and log in again, so that the next call carries a fresh one. An API key cannot be
        renewed, hence the default: False (the refusal stands).
        """
        return False

    @abc.abstractmethod
    def parse_callback(self, body: JSON) -> Callback:
        """Turn a callback body into a `Callback`; raise `PayloadError` for a body it cannot read."""

    def read_callback(self, body: JSON, *, options: Mapping[str, Any] | None = None) -> Callback:
        """Parse a callback body into values the inbox can store, whatever was sent.

        The one boundary for every platform (`integrations/payload.py`): strings are cleaned
        of what no database text holds before `parse_callback` sees them, and its result is
        fitted to the inbox's columns, each change a warning on the callback. Then
        `callback_check` compares it with the account's `options`, each doubt a warning too.
        """
        from integrations import payload

        callback = payload.callback_fit(self.parse_callback(payload.json_clean(body)))
        callback.warnings.extend(self.callback_check(callback, options or {}))
        return callback

    def callback_check(self, callback: Callback, options: Mapping[str, Any]) -> list[str]:
        """Return warnings about a parsed callback, e.g. addressed to another tenant ([])."""
        return []

    def wants_sync_reply(self, body: JSON) -> bool:
        """Say, from its shape alone, whether a callback expects an answer in the response."""
        return False

    def contact_reply(self, contact: ContactView | None) -> JSON:
        """Build the synchronous answer to a contact-profile callback ({} when there is none)."""
        return {}

    def register_webhook(self, account: AccountConfig, url: str) -> JSON:
        """Tell the platform where to send callbacks; return what it answered."""
        raise self.unsupported(Capability.WEBHOOK)

    def list_channels(self, account: AccountConfig) -> list[ChannelInfo]:
        """Return the channels the account has at the platform."""
        raise self.unsupported(Capability.CHANNELS)

    def list_templates(
        self, account: AccountConfig, channel_external_id: str
    ) -> list[TemplateInfo]:
        """Return the message templates usable on a channel (with their approvals)."""
        raise self.unsupported(Capability.TEMPLATES)

    def send_message(self, account: AccountConfig, request: OutboundRequest) -> SendResult:
        """Send one message; raise a `ProviderError` subclass on failure (`UnsupportedError`: the
        message cannot be expressed for this platform)."""
        raise NotImplementedError(f"{self.kind} cannot send")

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
        """Route a platform session; return the events the platform reports."""
        raise self.unsupported(Capability.ROUTE)

    def session_resolve(
        self, account: AccountConfig, session_external_id: str
    ) -> list[SessionEvent]:
        """Resolve a platform session; return the events the platform reports."""
        raise self.unsupported(Capability.RESOLVE)

    def session_close(self, account: AccountConfig, session_external_id: str) -> list[SessionEvent]:
        """Close a platform session; return the events the platform reports."""
        raise self.unsupported(Capability.CLOSE)

    def session_history(
        self, account: AccountConfig, session_external_id: str
    ) -> list[HistoryMessage]:
        """Return every message of a platform session, oldest first."""
        raise self.unsupported(Capability.HISTORY)

    def contact_set_language(
        self, account: AccountConfig, contact_external_id: str, lang: str
    ) -> None:
        """Tell the platform a contact's preferred language (locale, e.g. en_US)."""
        raise self.unsupported(Capability.CONTACT_LANGUAGE)

    def media_upload(self, account: AccountConfig, upload: MediaUpload) -> Media:
        """Hand the platform a file; return the `Media` a send names it by (its `media_id`).

        Nothing is sent to a customer: a lost answer here is a `TransientError` to the caller,
        never an ambiguous send.
        """
        raise self.unsupported(Capability.MEDIA_UPLOAD)

    def media_fetch(
        self, account: AccountConfig, media: Media, into: IO[bytes], *, max_bytes: int
    ) -> MediaFetched:
        """Download a media file the platform sent us (`Media` of an inbound message) into
        `into`, never reading more than `max_bytes`.

        Raise `TransientError` when trying later may help, `GoneError` when the platform no
        longer has it, `TooLargeError` past the limit, `AuthenticationError` or `RejectedError`
        otherwise. (`integrations.downloads.media_download` does it for a plain link.)
        """
        raise NotImplementedError(f"{self.kind} cannot fetch media")

    def contact_language_find(self, code: str) -> Language | None:
        """Return the listed language `code` names (case and `-`/`_` aside), or None."""
        wanted = code.strip().replace("-", "_").casefold()
        return next(
            (lang for lang in self.contact_languages if lang.code.casefold() == wanted), None
        )

    def receipts_fetch(self, account: AccountConfig, sends: Sequence[SentMessage]) -> PollPage:
        """Ask the platform where these sends of ours are; return a page to store and apply
        like a callback (its receipts move them on, never back). Its `cursor` is unused."""
        raise self.unsupported(Capability.RECEIPTS_FETCH)

    def poll(self, account: AccountConfig, cursor: str) -> PollPage:
        """Fetch one page of what arrived since `cursor` ("": from now on) for a platform whose
        `ingest` is "poll". The page is stored raw and read later by `read_callback`, like a
        webhook body; its `cursor` is where the next poll starts."""
        raise NotImplementedError(f"{self.kind} does not poll")


def with_fresh_credentials(
    provider: Provider, account: AccountConfig, call: Callable[[AccountConfig], T]
) -> T:
    """Make one platform call; when the platform refuses the credentials and the provider
    renews them (`Provider.refresh_credentials`), make it once more.

    Safe for every call, sends included: a refusal of the credentials means the platform did
    nothing with the request. A second refusal raises `AuthenticationError` as the first did.
    """
    try:
        return call(account)
    except AuthenticationError:
        if not provider.refresh_credentials(account):
            raise
    return call(account)
