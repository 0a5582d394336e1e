"""The simulated platform: its tenant, customers, sessions and rules, without any server code.

Every API call returns (HTTP status, envelope, callbacks to deliver later). The server delivers
the callbacks, applying the fault settings. Everything here runs on one event loop, so no locks.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from integrations.sandbox import catalog, envelopes, media
from integrations.sandbox.envelopes import JSON, field_error
from integrations.sandbox.media import media_files
from integrations.sandbox.validation import validate_outbound

RECEIVE = "api/v1/message/receive"
CONTACT_INFO = "api/v1/contact/info"
OUR_QUEUE = "external_bot"
WINDOW_CLOSED = (
    "470",
    "Failed to send message because you are outside the support window for freeform "
    "messages to this user. Please use a valid HSM notification or reconsider.",
)
MEDIA_KINDS = ("image", "video", "audio", "voice", "document")
PARAMS_MISMATCH = ("132000", "Number of parameters does not match the expected number of params")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def now_ms() -> int:
    return int(time.time() * 1000)


def object_id() -> str:
    """Return a 24-hex id, the shape the platform's ids have (spec §0.6)."""
    return secrets.token_hex(12)


@dataclass
class Faults:
    """What goes wrong, and how often (shares are 0..1)."""

    latency_ms: int = 0
    error_rate: float = 0.0
    # A timed-out call was not processed: the answer just never comes in time.
    timeout_rate: float = 0.0
    timeout_seconds: float = 40.0
    # A send accepted and stored (its receipts go out unless hang_receipts is off) whose answer
    # comes only after timeout_seconds, past the client's read timeout (spec §5.0, §7).
    accept_hang_rate: float = 0.0
    hang_receipts: bool = True
    # A send accepted and stored (receipts and all) that is answered 500 all the same: a
    # server failing after it did the work.
    accept_error_rate: float = 0.0
    # session/messages lists a send only this long after accepting it, and never lists a share
    # of them (history_omit_rate): evidence of a send that comes late, or not at all.
    history_lag_seconds: float = 0.0
    history_omit_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    drop_rate: float = 0.0
    # Every `message/send` waits, unanswered and not yet taken, until this is switched off:
    # a test kills its sender while sends are in flight at the platform, with no race.
    hold_sends: bool = False
    # Media links (spec §3.2 InBoundMsgMedia; §7.28 leaves their auth and lifetime undocumented).
    # Every GET or HEAD of a message's media link waits this long before it is answered.
    media_latency_ms: int = 0
    # This share of media GETs is answered 503, a transient failure; 1.0: the platform's media
    # service is down for a while.
    media_error_rate: float = 0.0
    # A media link older than this many seconds answers 404, gone for good; 0: never expires.
    media_ttl_seconds: float = 0.0
    # This share of media GETs serves the file with one byte changed in the middle: the same
    # length and the same first bytes, but the callback's sha256 no longer matches.
    media_corrupt_rate: float = 0.0
    # This share of image messages declares image/jpeg (callback and Content-Type alike) for a
    # link whose bytes are a PDF: only looking at the bytes tells.
    media_mislabel_rate: float = 0.0

    def update(self, values: dict[str, Any]) -> list[str]:
        """Set the given fields; return the names that are not fault settings.

        Nothing is set unless every name is known and every value fits; a value that does not
        (a share outside 0..1, a negative number, a string for a switch) raises ValueError.
        """
        unknown = [key for key in values if key not in self.__dataclass_fields__]
        if unknown:
            return unknown
        parsed = {key: self._parsed(key, value) for key, value in values.items()}
        for key, value in parsed.items():
            setattr(self, key, value)
        return []

    def _parsed(self, key: str, value: Any) -> Any:
        current = getattr(self, key)
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{key} takes true or false, not {value!r}")
            return value
        try:
            if isinstance(value, bool):
                raise TypeError
            number = type(current)(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key} takes a number, not {value!r}") from None
        if not math.isfinite(number) or number < 0 or (key.endswith("_rate") and number > 1):
            limits = "a share from 0 to 1" if key.endswith("_rate") else "a number from 0 up"
            raise ValueError(f"{key} takes {limits}, not {value!r}")
        return number


@dataclass
class Outgoing:
    """A callback to deliver after `delay` seconds, or work to do then (`make`)."""

    delay: float
    body: JSON | None = None
    path: str = RECEIVE
    make: Callable[[], list[Outgoing]] | None = None
    on_reply: Callable[[JSON], None] | None = None
    kind: str = "message"


# What each media link counts, and what the platform counts over all of them (`media` in the
# state): every request, the GETs answered 200 (`served`, corrupted ones included), each fault,
# and the bytes handed to the HTTP server (short of the size when a client stopped reading).
LINK_COUNTS = (
    "requests",
    "served",
    "refused_5xx",
    "gone_404",
    "corrupted",
    "delayed",
    "bytes_sent",
)
MEDIA_COUNTS = ("issued", "mislabeled", *LINK_COUNTS, "unknown_404")


@dataclass
class MediaLink:
    """The media of one message, at its own link: `<media base>/<id>/<name>`.

    `source` is the file in `media_files()` whose bytes the link serves, or "" for `size`
    generated bytes (a big file, streamed). `mime_type` is what the callback declares and the
    link answers with; a mislabeled link declares one type and serves another's bytes.
    """

    id: str
    name: str
    source: str
    size: int
    mime_type: str
    sha256: str
    issued_ms: int
    message_id: str = ""
    mislabeled: bool = False
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LINK_COUNTS, 0))

    def expires_ms(self, ttl_seconds: float) -> int | None:
        return self.issued_ms + int(ttl_seconds * 1000) if ttl_seconds > 0 else None

    def expired(self, ttl_seconds: float, at_ms: int) -> bool:
        expires = self.expires_ms(ttl_seconds)
        return expires is not None and at_ms > expires

    def chunks(self, *, corrupt: bool = False) -> Iterator[bytes]:
        """Yield the bytes the link serves, with one changed if `corrupt`."""
        if self.source:
            chunks = media.file_chunks(media_files()[self.source][1])
        else:
            chunks = media.generated_chunks(self.size)
        return media.corrupted(chunks, self.size // 2) if corrupt else chunks


@dataclass
class Customer:
    """A customer on one channel."""

    key: str
    name: str
    channel_id: str
    contact_id: str
    phone: str = ""
    email: str = ""
    lang: str = "en_US"
    lines: list[str] = field(default_factory=list)
    last_inbound_ms: int | None = None
    profile_id: str = ""
    introduced: bool = False
    line_index: int = 0

    def next_line(self) -> str:
        if not self.lines:
            return "Hello 👋"
        line = self.lines[self.line_index % len(self.lines)]
        self.line_index += 1
        return line


@dataclass
class SimSession:
    """A platform session: one customer on one channel, for one episode."""

    id: str
    customer_key: str
    channel_id: str
    started_ms: int
    status: str = "open"
    queue: str = OUR_QUEUE
    agent: str = ""
    team: str = ""
    dept: str = "SUPPORT"
    skills: list[str] = field(default_factory=list)
    routing_n: int = 1
    history: list[JSON] = field(default_factory=list)

    @property
    def routing_id(self) -> str:
        return f"{self.id}-{self.routing_n}"


@dataclass
class OutboundRecord:
    """A message the business sent through `message/send`."""

    id: str
    ext_id: str
    customer_key: str
    channel_id: str
    session_id: str
    type: str
    body: JSON
    text: str
    accepted_ms: int
    receipts: list[tuple[int, str]] = field(default_factory=list)
    # From when session/messages lists it (None: never; a history fault).
    listed_from_ms: int | None = None

    def status_at(self, ms: int) -> str:
        due = [code for at, code in sorted(self.receipts) if at <= ms]
        return due[-1] if due else "ACCEPTED"


class SandboxPlatform:
    """The platform's behaviour, as the spec documents it and as we read its gaps."""

    def __init__(
        self,
        *,
        api_key: str,
        verify_token: str,
        api_id: str = "",
        media_base: str = "http://127.0.0.1:8001/media",
        rng: random.Random | None = None,
        extra_templates: int = 0,
        receipt_delays: tuple[float, float, float] = (0.4, 1.2, 2.5),
        window_hours: float = 24.0,
        reply_rate: float = 0.6,
        faults: Faults | None = None,
    ) -> None:
        self.api_key = api_key
        self.api_id = api_id
        self.verify_token = verify_token
        self.media_base = media_base.rstrip("/")
        self.rng = rng or random.Random()
        self.receipt_delays = receipt_delays
        self.window_ms = int(window_hours * 3600 * 1000)
        self.reply_rate = reply_rate
        self.faults = faults or Faults()
        self.webhook_url = ""
        self.app_id = object_id()
        self.channels = copy.deepcopy(catalog.CHANNELS)
        self.sandbox_channels = copy.deepcopy(catalog.SANDBOX_CHANNELS)
        self.templates = catalog.base_templates() + catalog.bulk_templates(extra_templates)
        for template in self.templates:
            for attachment in template["attachments"]:
                for key in ("mediaURL", "mediaSrc"):
                    attachment[key] = attachment[key].replace("{media}", self.media_base)
        self.customers: dict[str, Customer] = {}
        self.by_contact_id: dict[str, str] = {}
        self.sessions: dict[str, SimSession] = {}
        self.outbound: dict[str, OutboundRecord] = {}
        self.contact_langs: dict[str, str] = {}
        self.contact_replies: list[JSON] = []
        self.counters: dict[str, int] = {}
        self.media_links: dict[str, MediaLink] = {}
        self.media_counts: dict[str, int] = dict.fromkeys(MEDIA_COUNTS, 0)
        for persona in catalog.PERSONAS:
            self.add_customer_from_persona(persona)

    # --- Customers ----------------------------------------------------------------------------

    def channel(self, channel_id: str) -> JSON | None:
        for channel in (*self.channels, *self.sandbox_channels):
            if channel["channelId"] == channel_id:
                return channel
        return None

    def add_customer_from_persona(self, persona: catalog.Persona) -> Customer:
        channel = self.channel(persona.channel_id)
        assert channel is not None, persona.channel_id
        customer = Customer(
            key=persona.key,
            name=persona.name,
            channel_id=persona.channel_id,
            contact_id=persona.contact_id(channel["lane"]),
            phone=persona.phone,
            email=persona.email,
            lang=persona.lang,
            lines=list(persona.lines),
        )
        self._register(customer)
        return customer

    def add_customer(
        self,
        key: str,
        *,
        name: str,
        channel_id: str,
        phone: str = "",
        lines: list[str] | None = None,
    ) -> Customer:
        channel = self.channel(channel_id)
        if channel is None:
            raise ValueError(f"unknown channel {channel_id}")
        persona = catalog.Persona(
            key=key, name=name, channel_id=channel_id, phone=phone, handle=key, lines=lines or []
        )
        return self.add_customer_from_persona(persona)

    def _register(self, customer: Customer) -> None:
        self.customers[customer.key] = customer
        self.by_contact_id[customer.contact_id] = customer.key

    def dormant_personas(self) -> list[tuple[Customer, float]]:
        hours = {p.key: p.dormant_hours for p in catalog.PERSONAS if p.dormant_hours}
        return [(self.customers[k], h) for k, h in hours.items() if k in self.customers]

    # --- Inbound: a customer writes ---------------------------------------------------------

    def customer_message(
        self,
        key: str,
        *,
        kind: str = "text",
        text: str | None = None,
        at_ms: int | None = None,
        message_id: str | None = None,
        media_size: int | None = None,
    ) -> tuple[list[Outgoing], JSON]:
        """Make a customer send a message; return the callbacks and a summary.

        With `media_size`, a media message links to a generated file of that many bytes.
        """
        customer = self.customers[key]
        channel = self.channel(customer.channel_id)
        assert channel is not None
        if media_size is not None and not 1 <= media_size <= media.MAX_GENERATED_BYTES:
            raise ValueError(f"media size must be 1..{media.MAX_GENERATED_BYTES} bytes")
        if media_size is not None and kind not in MEDIA_KINDS:
            raise ValueError(f"a {kind} message has no media to size")
        at = at_ms or now_ms()
        session, new_session = self._session_for_inbound(customer, at)
        message = self._inbound_message(
            customer, kind, text, at, session, message_id or object_id(), media_size
        )
        customer.last_inbound_ms = max(customer.last_inbound_ms or 0, at)
        session.history.append(self._history_inbound(customer, message, session))
        out: list[Outgoing] = []
        if not customer.introduced:
            customer.introduced = True
            out.append(
                Outgoing(
                    delay=0.0,
                    body=self._contact_json(customer),
                    path=CONTACT_INFO,
                    on_reply=functools.partial(self._contact_reply, customer),
                    kind="contact",
                )
            )
        out.append(
            Outgoing(
                delay=0.05,
                body={
                    "contacts": [self._contact_json(customer)],
                    "messages": [message],
                    "meta": self._meta(),
                    "type": "messages",
                },
            )
        )
        if new_session:
            out.append(
                Outgoing(
                    delay=0.15,
                    body=self._event_wrapper(self._routed_event(session, "")),
                    kind="event",
                )
            )
        self._count("inbound")
        return out, {"id": message["id"], "sessionId": session.id, "contactId": customer.contact_id}

    def _session_for_inbound(self, customer: Customer, at: int) -> tuple[SimSession, bool]:
        session = self._active_session(customer)
        if session is not None:
            if session.status == "resolved":
                session.status = "open"  # the customer continues a resolved session (§6.6)
            return session, False
        session = SimSession(
            id=object_id(), customer_key=customer.key, channel_id=customer.channel_id, started_ms=at
        )
        self.sessions[session.id] = session
        return session, True

    def _active_session(self, customer: Customer) -> SimSession | None:
        for session in reversed(list(self.sessions.values())):
            if (
                session.customer_key == customer.key
                and session.channel_id == customer.channel_id
                and session.status != "closed"
            ):
                return session
        return None

    def _media(self, name: str, kind: str, caption: str, message_id: str, size: int | None) -> JSON:
        """Return the media object of a message (spec §3.2), at a link of its own."""
        link = self.media_issue(name, kind, message_id=message_id, size=size)
        url = self.media_url(link)
        media_object = {
            "id": secrets.token_hex(6),
            "link": url,
            # The sandbox serves plain http on loopback; a real platform gives an https link.
            "linkSecure": url,
            "mime_type": link.mime_type,
            "sha256": link.sha256,
            "type": kind,
        }
        if caption:
            media_object["caption"] = caption
        if kind == "document":
            media_object["filename"] = link.name
        return media_object

    def media_issue(
        self, name: str, kind: str, *, message_id: str = "", size: int | None = None
    ) -> MediaLink:
        """Register a link that serves the file `name` (or `size` generated bytes named like it).

        The link's id is random and url-safe; its lifetime starts now (media_ttl_seconds).
        """
        mime, data = media_files()[name]
        source, sha256, length, mislabeled = name, media.file_sha256(name), len(data), False
        if size is not None:
            source, sha256, length = "", media.generated_sha256(size), size
            name = f"large-{size}{PurePath(name).suffix}"
        elif (
            kind == "image"
            and self.faults.media_mislabel_rate
            and self.rng.random() < self.faults.media_mislabel_rate
        ):
            # Declared a JPEG photo; the bytes are a PDF.
            source, name, mime, mislabeled = "invoice.pdf", "photo.jpg", "image/jpeg", True
            sha256 = media.file_sha256(source)
            length = len(media_files()[source][1])
        link = MediaLink(
            id=secrets.token_urlsafe(16),
            name=name,
            source=source,
            size=length,
            mime_type=mime,
            sha256=sha256,
            issued_ms=now_ms(),
            message_id=message_id,
            mislabeled=mislabeled,
        )
        self.media_links[link.id] = link
        self.media_count(None, "issued")
        if mislabeled:
            self.media_count(None, "mislabeled")
        return link

    def media_url(self, link: MediaLink) -> str:
        return f"{self.media_base}/{link.id}/{link.name}"

    def media_count(self, link: MediaLink | None, name: str, n: int = 1) -> None:
        """Count on the link (if any) and in the platform's totals."""
        self.media_counts[name] += n
        if link is not None:
            link.counts[name] += n

    def media_describe(self, link: MediaLink) -> JSON:
        """What the control API says about one link: what it serves and how often it did."""
        ttl = self.faults.media_ttl_seconds
        return {
            "id": link.id,
            "link": self.media_url(link),
            "name": link.name,
            "mime_type": link.mime_type,
            "size": link.size,
            "sha256": link.sha256,
            "message_id": link.message_id,
            "mislabeled": link.mislabeled,
            "issued_ms": link.issued_ms,
            "expires_ms": link.expires_ms(ttl),
            "expired": link.expired(ttl, now_ms()),
            **link.counts,
        }

    def _inbound_message(
        self,
        customer: Customer,
        kind: str,
        text: str | None,
        at: int,
        session: SimSession,
        message_id: str,
        media_size: int | None = None,
    ) -> JSON:
        def media_of(name: str, caption: str = "") -> JSON:
            return self._media(name, kind, caption, message_id, media_size)

        message: JSON = {
            "contactId": customer.contact_id,
            "from": customer.phone or customer.contact_id,
            "id": message_id,
            "messageIdExt": f"wamid.{secrets.token_urlsafe(18)}",
            "session": {
                "assignedToAgent": session.agent,
                "assignedToDept": session.dept,
                "routingId": session.routing_id,
                "sessionId": session.id,
            },
            "tags": {
                "categories": [],
                "cities": [],
                "countries": [],
                "langs": [customer.lang[:2]],
                "locations": [],
                "organizations": [],
                "persons": [],
                "sentimentScore": 0,
                "sentiments": [],
            },
            "timestamp": at,
            "type": kind,
        }
        if kind == "text":
            message["text"] = {"body": text or customer.next_line()}
        elif kind == "image":
            name = self.rng.choice(["photo.png", "screenshot.png"])
            message["image"] = media_of(name, text or "Here is a photo 📷")
        elif kind == "video":
            message["video"] = media_of("clip.mp4", text or "Short video of the problem")
        elif kind == "audio":
            message["audio"] = media_of("audio.wav")
        elif kind == "voice":
            message["voice"] = media_of(
                "voice.ogg" if "voice.ogg" in media_files() else "voice.wav"
            )
        elif kind == "document":
            message["document"] = media_of("invoice.pdf", text or "My invoice")
        elif kind == "location":
            lat, lng, place = self.rng.choice(
                [
                    (25.1972, 55.2744, "Burj Khalifa, Dubai"),
                    (48.8584, 2.2945, "Champ de Mars, Paris"),
                    (12.9716, 77.5946, "MG Road, Bengaluru"),
                    (-30.0346, -51.2177, "Centro Histórico, Porto Alegre"),
                ]
            )
            message["location"] = {
                "address": place,
                "latitude": f"{lat:.4f}",
                "longitude": f"{lng:.4f}",
                "name": text or place.split(",")[0],
                "url": f"https://maps.example/?q={lat},{lng}",
            }
        elif kind == "system":
            message["text"] = {"body": text or "Customer opted in"}
        else:
            raise ValueError(f"unknown message kind {kind!r}")
        return message

    def _contact_json(self, customer: Customer) -> JSON:
        channel = self.channel(customer.channel_id) or {}
        profile: JSON = {"name": customer.name}
        if customer.phone:
            profile["phone"] = customer.phone
        if customer.email:
            profile["email"] = customer.email
        contact: JSON = {
            "channelId": customer.channel_id,
            "contactId": customer.contact_id,
            "contactType": channel.get("contactType", "WHATSAPP"),
            "csid": channel.get("lane", ""),
            "lane": channel.get("lane", ""),
            "profile": profile,
        }
        if customer.profile_id:
            contact["businessProfile"] = {"profileId": customer.profile_id}
        return contact

    def _contact_reply(self, customer: Customer, reply: JSON) -> None:
        self.contact_replies.append({"contactId": customer.contact_id, "reply": reply})
        if isinstance(reply, dict) and reply.get("profileId"):
            customer.profile_id = str(reply["profileId"])

    def _meta(self) -> JSON:
        return {
            "appId": self.app_id,
            "debug": False,
            "domain": "sandbox",
            "server": "sandbox.local",
        }

    def _history_inbound(self, customer: Customer, message: JSON, session: SimSession) -> JSON:
        kind = message["type"]
        attachments = []
        if kind in MEDIA_KINDS:
            media = message[kind]
            attachments.append(
                {
                    "mediaCaption": media.get("caption", ""),
                    "mediaId": media["id"],
                    "mediaMimeType": media["mime_type"],
                    "mediaName": media.get("filename", ""),
                    "mediaType": "DOCUMENT" if kind == "document" else kind.upper(),
                    "mediaURL": media["link"],
                    "mediaSrc": media["link"],
                }
            )
        return {
            "messageId": message["id"],
            "messageIdExt": message["messageIdExt"],
            "sessionId": session.id,
            "type": kind,
            "text": (message.get("text") or {}).get("body", ""),
            "attachments": attachments,
            "timestamp": message["timestamp"],
            "sender": customer.contact_id,
            "name": customer.name,
            "status": "RECEIVD",
            "stamps": {"RECEIVD": message["timestamp"]},
            "contact": self._contactable(customer),
        }

    def _contactable(self, customer: Customer) -> JSON:
        channel = self.channel(customer.channel_id) or {}
        return {
            "channelType": customer.channel_id.split(":")[0],
            "contactId": customer.contact_id,
            "contactType": channel.get("contactType", ""),
            "csid": channel.get("lane", ""),
            "email": customer.email,
            "lane": channel.get("lane", ""),
            "name": customer.name,
            "phone": customer.phone,
        }

    # --- Session events -----------------------------------------------------------------------

    def _event(self, session: SimSession, code: str, **extra: Any) -> JSON:
        customer = self.customers[session.customer_key]
        event: JSON = {
            "checksum": secrets.token_hex(8),
            "contact": self._contactable(customer),
            "contactId": customer.contact_id,
            "eventCode": code,
            "eventId": object_id(),
            "route": {
                "queueCode": session.queue,
                "routerId": "sandbox-router",
                "sendMode": "AUTO",
                "senderApp": "sandbox",
                "senderCode": session.agent or "router",
                "senderType": "SYSTEM",
            },
            "session": {
                "agent": session.agent,
                "bot": "",
                "dept": session.dept,
                "firstMessage": len(session.history) <= 1,
                "initMessage": len(session.history) <= 1,
                "mode": "AGENT" if session.agent else "APP",
                "queue": session.queue,
                "resolved": session.status == "resolved",
                "routingId": session.routing_id,
                "sessionStamp": session.started_ms,
                "ticketHash": hashlib.sha1(session.id.encode()).hexdigest()[:10],  # noqa: S324
            },
            "sessionId": session.id,
            "trace": [],
        }
        event.update(extra)
        return event

    def _routed_event(self, session: SimSession, source: str) -> JSON:
        return self._event(
            session,
            "SESSION_ROUTED",
            sessionRouted={
                "params": {},
                "routingId": session.routing_id,
                "sessionStart": source == "",
                "sourceQueue": source,
                "targetQueue": session.queue,
            },
        )

    def _event_wrapper(self, event: JSON) -> JSON:
        return {"events": [event], "meta": self._meta(), "type": "events"}

    # --- API: authentication ------------------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        if not secrets.compare_digest(headers.get("x-api-key", ""), self.api_key):
            return False
        given_id = headers.get("x-api-id", "")
        return not (self.api_id and given_id and given_id != self.api_id)

    # --- API: message/send ---------------------------------------------------------------------

    def send(self, body: Any) -> tuple[int, JSON, list[Outgoing]]:
        """POST /api/v1/message/send (spec §2.8, §5)."""
        path = "/api/v1/message/send"
        errors = validate_outbound(body)
        if errors:
            self._count("send_rejected")
            return (
                400,
                envelopes.full(
                    path=path,
                    errors=errors,
                    status=400,
                    status_key="VALIDATION_ERROR",
                    message="The message does not match OutBoundMsg",
                ),
                [],
            )
        channel = self.channel(body["channelId"])
        if channel is None:
            return self._business_error(
                path, "channelId", f"Unknown channel {body['channelId']}", "CHANNEL_NOT_FOUND", 404
            )
        customer, problem = self._recipient(body["to"], channel)
        if customer is None:
            return self._business_error(path, "to", problem, "CONTACT_NOT_FOUND", 404)
        text = ""
        failure: tuple[str, str] | None = None
        template: JSON | None = None
        if body["type"] == "template":
            template, problem = self._template_for(body["template"], channel["channelId"])
            if template is None:
                return self._business_error(
                    path, "template", problem, "TEMPLATE_NOT_AVAILABLE", 422
                )
            data = body["template"].get("data") or {}
            needed = set(_PLACEHOLDER.findall(template["template"]))
            if needed - set(map(str, data)):
                failure = PARAMS_MISMATCH
            text = _PLACEHOLDER.sub(lambda m: str(data.get(m.group(1), "")), template["template"])
        else:
            last = customer.last_inbound_ms
            if body["type"] not in ("optin", "optout") and (
                last is None or now_ms() - last > self.window_ms
            ):
                failure = WINDOW_CLOSED
            text = _outbound_text(body)

        session = self._active_session(customer)
        if session is None:
            session = SimSession(
                id=object_id(),
                customer_key=customer.key,
                channel_id=customer.channel_id,
                started_ms=now_ms(),
            )
            self.sessions[session.id] = session
        record = OutboundRecord(
            id="gBEG" + secrets.token_urlsafe(17)[:23],
            ext_id=f"wamid.{secrets.token_urlsafe(18)}",
            customer_key=customer.key,
            channel_id=channel["channelId"],
            session_id=session.id,
            type=body["type"],
            body=copy.deepcopy(body),
            text=text,
            accepted_ms=now_ms(),
        )
        if self.rng.random() >= self.faults.history_omit_rate:
            record.listed_from_ms = record.accepted_ms + int(self.faults.history_lag_seconds * 1000)
        self.outbound[record.id] = record
        session.history.append(self._history_outbound(record, template))
        callbacks = self._receipts(record, customer, failure)
        self._count("send_accepted")
        return 200, envelopes.full(data={"id": record.id}, path=path), callbacks

    def _business_error(
        self, path: str, field: str, text: str, key: str, status: int
    ) -> tuple[int, JSON, list[Outgoing]]:
        self._count("send_rejected")
        # A business rule failure comes back as HTTP 200 with an error envelope, so clients must
        # read the envelope and not only the HTTP status (spec §1.5).
        return (
            200,
            envelopes.full(
                path=path,
                errors=[field_error(field, text, key)],
                status=status,
                status_key=key,
                message=text,
            ),
            [],
        )

    def _recipient(self, to: JSON, channel: JSON) -> tuple[Customer | None, str]:
        contact_id = str(to.get("contactId") or "")
        phone = str(to.get("phone") or "")
        if contact_id:
            key = self.by_contact_id.get(contact_id)
            if key is not None:
                customer = self.customers[key]
                if customer.channel_id != channel["channelId"]:
                    return None, (
                        f"Contact {contact_id} belongs to channel {customer.channel_id}, "
                        f"not {channel['channelId']}"
                    )
                return customer, ""
            if not phone:
                return None, f"Unknown contactId {contact_id}"
        if phone:
            for customer in self.customers.values():
                if customer.phone == phone and customer.channel_id == channel["channelId"]:
                    return customer, ""
            if channel["contactType"] != "WHATSAPP":
                return None, f"No contact with phone {phone} on {channel['channelId']}"
            # A new number: a template can open the conversation.
            key = f"new-{phone}"
            customer = Customer(
                key=key,
                name=str(to.get("name") or phone),
                channel_id=channel["channelId"],
                contact_id=f"wa{phone}_{channel['lane']}",
                phone=phone,
            )
            self._register(customer)
            return customer, ""
        return None, "to needs contactId or phone"

    def _template_for(self, ref: JSON, channel_id: str) -> tuple[JSON | None, str]:
        tid, code = str(ref.get("id") or ""), str(ref.get("code") or "")
        lang = str(ref.get("lang") or "")
        candidates = [
            t
            for t in self.templates
            if (tid and t["id"] == tid) or (not tid and code and t["code"] == code)
        ]
        if not candidates:
            return None, f"Unknown template {tid or code}"
        if lang:
            matching = [t for t in candidates if t["lang"] == lang]
            if not matching:
                langs = ", ".join(sorted({t["lang"] for t in candidates}))
                return None, f"Template {code or tid} has no language {lang} (has: {langs})"
            candidates = matching
        elif len(candidates) > 1:
            candidates = [t for t in candidates if t["lang"] == "en_US"] or candidates[:1]
        template = candidates[0]
        approval = next((a for a in template["approved"] if a["channelId"] == channel_id), None)
        if approval is None or approval["status"] != catalog.APPROVED:
            state = approval["status"] if approval else "not submitted"
            return (
                None,
                f"Template {template['code']} ({template['lang']}) is {state} on {channel_id}",
            )
        return template, ""

    def _history_outbound(self, record: OutboundRecord, template: JSON | None) -> JSON:
        customer = self.customers[record.customer_key]
        return {
            "messageId": record.id,
            "messageIdExt": record.ext_id,
            "sessionId": record.session_id,
            "type": record.type,
            "text": record.text,
            "attachments": [],
            "timestamp": record.accepted_ms,
            "sender": "app",
            "name": "Switchboard",
            "status": "ACCEPTED",
            "stamps": {},
            "contact": self._contactable(customer),
            "template": template["code"] if template else "",
            "templateId": template["id"] if template else "",
            "_record": record.id,
        }

    def _receipts(
        self, record: OutboundRecord, customer: Customer, failure: tuple[str, str] | None
    ) -> list[Outgoing]:
        first, second, third = self.receipt_delays
        if failure is not None:
            steps = [("FAILD", first)]
        else:
            steps = [("SENT", first), ("DLVRD", second), ("READ", third)]
            if self.rng.random() < self.faults.reorder_rate:
                # Out of order: the receipts arrive newest first.
                steps = list(
                    zip([s for s, _ in reversed(steps)], [d for _, d in steps], strict=True)
                )
        out = []
        base = record.accepted_ms
        for status, delay in steps:
            record.receipts.append((base + int(delay * 1000), status))
            out.append(
                Outgoing(
                    delay=delay,
                    body=self._status_wrapper(record, customer, status, failure),
                    kind="status",
                )
            )
        if failure is None and record.type != "template" and self.rng.random() < self.reply_rate:
            out.append(
                Outgoing(
                    delay=third + self.rng.uniform(2.0, 6.0), make=lambda: self.reply(customer.key)
                )
            )
        return out

    def reply(self, key: str) -> list[Outgoing]:
        """A customer answers what an agent sent."""
        callbacks, _ = self.customer_message(key, kind="text")
        return callbacks

    def _status_wrapper(
        self,
        record: OutboundRecord,
        customer: Customer,
        status: str,
        failure: tuple[str, str] | None,
    ) -> JSON:
        errors = []
        if status == "FAILD" and failure is not None:
            errors = [
                {
                    "code": failure[0],
                    "title": failure[1],
                    "details": failure[1],
                    "href": "https://developers.facebook.com/docs/whatsapp/api/errors#error",
                }
            ]
        return {
            "meta": self._meta(),
            "statuses": [
                {
                    "contactId": customer.contact_id,
                    "errors": errors,
                    "id": record.id,
                    "messageIdExt": record.ext_id,
                    "status": status,
                    "timestamp": now_ms(),
                }
            ],
            "type": "statuses",
        }

    # --- API: sessions (spec §2.9-2.12, §6) ---------------------------------------------------

    def _session_call(self, body: Any) -> tuple[SimSession | None, tuple[int, JSON] | None]:
        if not isinstance(body, dict) or not body.get("sessionId"):
            return None, (
                400,
                envelopes.compact(
                    [], status=400, status_key="VALIDATION_ERROR", message="sessionId is required"
                ),
            )
        session = self.sessions.get(str(body["sessionId"]))
        if session is None:
            return None, (
                404,
                envelopes.compact(
                    [],
                    status=404,
                    status_key="SESSION_NOT_FOUND",
                    message=f"Unknown session {body['sessionId']}",
                ),
            )
        if session.status == "closed":
            return None, (
                200,
                envelopes.compact(
                    [],
                    status=409,
                    status_key="SESSION_CLOSED",
                    message=f"Session {session.id} is closed",
                ),
            )
        return session, None

    def session_routing(self, body: Any) -> tuple[int, JSON, list[Outgoing]]:
        session, problem = self._session_call(body)
        if problem is not None:
            return (*problem, [])
        assert session is not None
        if not body.get("queue"):
            return (
                400,
                envelopes.compact(
                    [], status=400, status_key="VALIDATION_ERROR", message="queue is required"
                ),
                [],
            )
        source = session.queue
        session.queue = str(body["queue"])
        session.agent = str(body.get("agent") or "")
        session.team = str(body.get("team") or "")
        session.skills = [str(s) for s in body.get("skills") or []]
        session.routing_n += 1
        event = self._routed_event(session, source)
        event["sessionRouted"]["params"] = body.get("params") or {}
        callbacks = [Outgoing(delay=0.2, body=self._event_wrapper(event), kind="event")]
        return 200, envelopes.compact([event]), callbacks

    def session_resolve(self, body: Any) -> tuple[int, JSON, list[Outgoing]]:
        session, problem = self._session_call(body)
        if problem is not None:
            return (*problem, [])
        assert session is not None
        session.status = "resolved"
        return 200, envelopes.compact([self._event(session, "SESSION_RESOLVED")]), []

    def session_close(self, body: Any) -> tuple[int, JSON, list[Outgoing]]:
        session, problem = self._session_call(body)
        if problem is not None:
            return (*problem, [])
        assert session is not None
        session.status = "closed"
        return 200, envelopes.compact([self._event(session, "SESSION_CLOSED")]), []

    def sessions_end_quietly(self) -> int:
        """Close every open session without a callback; return how many (a test's clean slate:
        the next message of a customer starts a new session, not one an earlier test left)."""
        ended = 0
        for session in self.sessions.values():
            if session.status != "closed":
                session.status = "closed"
                ended += 1
        return ended

    def session_messages(self, body: Any) -> tuple[int, JSON, list[Outgoing]]:
        if not isinstance(body, dict) or str(body.get("sessionId", "")) not in self.sessions:
            return (
                404,
                envelopes.compact(
                    [], status=404, status_key="SESSION_NOT_FOUND", message="Unknown session"
                ),
                [],
            )
        now = now_ms()
        items = []
        for entry in self.sessions[str(body["sessionId"])].history:
            item = {k: v for k, v in entry.items() if k != "_record"}
            record = self.outbound.get(entry.get("_record", ""))
            if record is not None and (
                record.listed_from_ms is None or record.listed_from_ms > now
            ):
                continue  # not (yet) in the history: an injected fault
            if record is not None:
                item["status"] = record.status_at(now)
                item["stamps"] = {code: at for at, code in record.receipts if at <= now}
            items.append(item)
        return 200, envelopes.compact(items), []

    # --- API: configuration and contacts ------------------------------------------------------

    def list_channels(self, include_sandbox: bool) -> JSON:
        channels = self.channels + (self.sandbox_channels if include_sandbox else [])
        return envelopes.compact(copy.deepcopy(channels))

    def list_templates(self, channel_id: str = "", channel_status: str = "") -> JSON:
        items = self.templates
        if channel_id:
            items = [
                t
                for t in items
                if any(
                    a["channelId"] == channel_id
                    and (not channel_status or a["status"] == channel_status)
                    for a in t["approved"]
                )
            ]
        return envelopes.full(results=copy.deepcopy(items), path="/api/v1/config/tmpl/hsm")

    def remove_template(self, code: str, lang: str = "") -> int:
        before = len(self.templates)
        self.templates = [
            t for t in self.templates if not (t["code"] == code and (not lang or t["lang"] == lang))
        ]
        return before - len(self.templates)

    def global_vars(self) -> JSON:
        items = [
            {
                "id": object_id(),
                "key": "company_name",
                "value": "Switchboard Demo Ltd",
                "type": "TEXT",
                "group": "brand",
                "description": "Company name",
                "domain": "sandbox",
                "server": "sandbox",
                "shared": True,
                "disabled": False,
            },
            {
                "id": object_id(),
                "key": "support_hours",
                "value": "Mon-Fri 9:00-18:00",
                "type": "TEXT",
                "group": "support",
                "description": "Opening hours",
                "domain": "sandbox",
                "server": "sandbox",
                "shared": True,
                "disabled": False,
            },
        ]
        return envelopes.full(results=items, path="/api/v1/config/global/vars")

    def set_webhook(self, body: Any) -> tuple[int, JSON]:
        path = "/api/v1/config/webhook"
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            return 400, envelopes.full(
                path=path,
                errors=[
                    field_error(
                        "url", "url must be an http(s) URL", "INVALID_URL", "WebhookUrlRequest"
                    )
                ],
                status=400,
                status_key="VALIDATION_ERROR",
            )
        self.webhook_url = url
        app = {
            "agentApp": False,
            "appHook": url,
            "appHookFrwrd": "",
            "appMode": "LIVE",
            "appType": "EXTERNAL",
            "config": {},
            "forward": "",
            "id": self.app_id,
            "key": self.api_key[:4] + "…",
            "keyName": "sandbox",
            "keyVersion": "1",
            "props": {},
            "queue": OUR_QUEUE,
            "readOnly": False,
            "secret": {},
            "shared": False,
            "webhook": url,
        }
        return 200, envelopes.full(data=app, path=path)

    def set_contact_lang(self, body: Any) -> tuple[int, JSON]:
        if not isinstance(body, dict) or not body.get("contactId") or not body.get("lang"):
            return 400, envelopes.compact(
                [],
                status=400,
                status_key="VALIDATION_ERROR",
                message="contactId and lang are required",
            )
        contact_id = str(body["contactId"])
        if contact_id not in self.by_contact_id:
            return 404, envelopes.compact(
                [],
                status=404,
                status_key="CONTACT_NOT_FOUND",
                message=f"Unknown contact {contact_id}",
            )
        self.contact_langs[contact_id] = str(body["lang"])
        customer = self.customers[self.by_contact_id[contact_id]]
        customer.lang = str(body["lang"])
        session = self._active_session(customer)
        results = [self._event(session, "CONTACT_LANG_UPDATED")] if session else []
        return 200, envelopes.compact(results)

    def echo(self, body: Any, path: str) -> tuple[int, JSON]:
        if not isinstance(body, dict):
            return 400, envelopes.full(
                path=path,
                errors=[field_error("", "JSON object expected")],
                status=400,
                status_key="VALIDATION_ERROR",
            )
        return 200, envelopes.full(data=body, path=path)

    # --- Introspection for tests and the demo ------------------------------------------------

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def summary(self) -> JSON:
        now = now_ms()
        return {
            "webhookUrl": self.webhook_url,
            "faults": self.faults.__dict__,
            "counters": self.counters,
            "media": dict(self.media_counts),
            "customers": [
                {
                    "key": c.key,
                    "name": c.name,
                    "channelId": c.channel_id,
                    "contactId": c.contact_id,
                    "lastInboundMs": c.last_inbound_ms,
                }
                for c in self.customers.values()
            ],
            "sessions": [
                {
                    "id": s.id,
                    "customer": s.customer_key,
                    "channelId": s.channel_id,
                    "status": s.status,
                    "queue": s.queue,
                    "agent": s.agent,
                    "routingId": s.routing_id,
                    "messages": len(s.history),
                }
                for s in self.sessions.values()
            ],
            "outbound": [
                {
                    "id": r.id,
                    "messageIdExt": r.ext_id,
                    "type": r.type,
                    "customer": r.customer_key,
                    "channelId": r.channel_id,
                    "text": r.text,
                    "status": r.status_at(now),
                    "body": r.body,
                }
                for r in self.outbound.values()
            ],
            "contactReplies": self.contact_replies[-20:],
        }


def _outbound_text(body: JSON) -> str:
    kind = body["type"]
    if kind == "text":
        return str(body["text"]["body"])
    if kind in ("image", "video", "audio", "document"):
        media = body[kind]
        return str(media.get("caption") or media.get("filename") or media["link"])
    if kind == "location":
        return str(body["location"].get("name") or "location")
    if kind == "contacts":
        return ", ".join(
            str(c["name"].get("formatted_name") or c["name"].get("first_name"))
            for c in body["contacts"]
        )
    return kind
