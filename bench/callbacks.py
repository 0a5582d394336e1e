"""A realistic mix of XMS callbacks, built from the documented examples (tests/fixtures/xms/).

Each body is unique where the platform's would be: a new message id per message, the customer's
own contact id, phone and session. Receipts name outbound messages the run created beforehand,
so they apply instead of waiting for a message that never comes.
"""

from __future__ import annotations

import copy
import json
import random
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "xms"
CHANNEL_ID = "wa360:918828218374"
LANE = "918828218374"

# Message types as customers send them: mostly text, then pictures and voice notes.
MESSAGE_TYPES: Sequence[tuple[str, int]] = (
    ("text", 60),
    ("image", 12),
    ("voice", 8),
    ("document", 6),
    ("audio", 4),
    ("video", 4),
    ("location", 6),
)
# The sandbox's own files, by message type (integrations/sandbox/media.py).
MEDIA_FILES = {
    "image": "photo.png",
    "voice": "voice.ogg",
    "document": "invoice.pdf",
    "audio": "audio.wav",
    "video": "clip.mp4",
}
TEXTS = (
    "Hello, my order #{n} has not arrived yet",
    "Bonjour, je voudrais changer mon adresse de livraison",
    "مرحبا، أحتاج إلى مساعدة في طلبي",
    "שלום, החבילה שלי לא הגיעה",
    "नमस्ते, मेरा रिफंड कब आएगा?",
    "你好，我的订单什么时候发货？",
    "Olá! Posso trocar o tamanho? 👟",
    "Hallo, die Rechnung stimmt nicht 🙁",
    "Thanks, that worked 👍",
)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@dataclass(frozen=True)
class Customer:
    index: int
    prefix: str

    @property
    def phone(self) -> str:
        return f"9{zlib.crc32(self.prefix.encode()) % 1000:03d}{self.index:07d}"

    @property
    def contact_id(self) -> str:
        return f"wa{self.phone}_{LANE}"

    @property
    def session_id(self) -> str:
        return f"{self.prefix}-s{self.index}"


class Mix:
    """Build callback bodies for `customers` customers of one WhatsApp channel."""

    def __init__(
        self,
        prefix: str,
        customers: int,
        seed: int = 7,
        tenant: dict[str, str] | None = None,
        media_base: str = "",
    ) -> None:
        self.prefix = prefix
        # Where media messages' files are (the sandbox's plain media route): the inbox fetches
        # every one, as it would a platform's. Without it, the documentation's placeholder link,
        # which nobody can fetch.
        self.media_base = media_base.rstrip("/")
        # Who the platform says it delivers for (`meta`): the account's own app, or every
        # callback would carry a "meta.appId is not this account's" warning.
        self.tenant = tenant or {}
        self.customers = [Customer(i, prefix) for i in range(customers)]
        self.random = random.Random(seed)
        self.counter = 0
        self._messages = {kind: _load(f"inbound-message-{kind}") for kind, _ in MESSAGE_TYPES}
        self._status = _load("inbound-status-read")
        self._events = [
            _load("inbound-event-session-routed"),
            _load("inbound-event-session-assigned"),
        ]
        self._receipts: Iterator[tuple[str, Customer, str]] = iter(())
        self._kinds = [kind for kind, _ in MESSAGE_TYPES]
        self._weights = [weight for _, weight in MESSAGE_TYPES]

    def _copy(self, template: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(template)
        if self.tenant:
            body.setdefault("meta", {}).update(self.tenant)
        return body

    def _next_id(self) -> str:
        self.counter += 1
        return f"{self.prefix}-m{self.counter}"

    def customer(self) -> Customer:
        return self.random.choice(self.customers)

    def message(self, customer: Customer | None = None, kind: str | None = None) -> dict[str, Any]:
        """Return a `messages` callback: one new customer message."""
        customer = customer or self.customer()
        kind = kind or self.random.choices(self._kinds, self._weights)[0]
        body = self._copy(self._messages[kind])
        contact = body["contacts"][0]
        contact.update(contactId=customer.contact_id, channelId=CHANNEL_ID, lane=LANE)
        contact["profile"].update(phone=customer.phone, name=f"Customer {customer.index}")
        contact["businessProfile"].update(phone=customer.phone, name=f"Customer {customer.index}")
        message = body["messages"][0]
        message_id = self._next_id()
        message.update(
            id=message_id,
            messageIdExt=message_id,
            contactId=customer.contact_id,
            timestamp=int(time.time() * 1000),
            **{"from": customer.phone},
        )
        message["session"].update(
            sessionId=customer.session_id, routingId=f"{customer.session_id}-r"
        )
        if kind == "text":
            message["text"]["body"] = self.random.choice(TEXTS).format(n=self.counter)
        elif isinstance(message.get(kind), dict) and "id" in message[kind]:
            message[kind]["id"] = f"{message_id}-media"
            if self.media_base:
                link = f"{self.media_base}/media/{MEDIA_FILES.get(kind, 'photo.png')}"
                message[kind].update(link=link, linkSecure=link)
        return body

    def status(self, external_id: str, customer: Customer, status: str) -> dict[str, Any]:
        """Return a `statuses` callback: a receipt for one of our outbound messages."""
        body = self._copy(self._status)
        receipt = body["statuses"][0]
        receipt.update(
            id=external_id,
            messageIdExt=external_id,
            contactId=customer.contact_id,
            status=status,
            timestamp=int(time.time() * 1000),
        )
        return body

    def event(self, customer: Customer | None = None) -> dict[str, Any]:
        """Return an `events` callback: the platform routed or assigned a session."""
        customer = customer or self.customer()
        body = self._copy(self.random.choice(self._events))
        event = body["events"][0]
        event.update(
            contactId=customer.contact_id,
            sessionId=customer.session_id,
            eventId=self._next_id(),
        )
        event["contact"].update(contactId=customer.contact_id, phone=customer.phone, lane=LANE)
        event["session"].update(routingId=f"{customer.session_id}-r", agent="", bot="")
        return body

    def use_outbound(self, outbound: Sequence[tuple[str, Customer]]) -> None:
        """Name the outbound messages (platform id, customer) that receipts will be about."""
        self._receipts = ((eid, customer, s) for eid, customer in outbound for s in _STEPS)

    def realistic(self, count: int) -> Iterator[dict[str, Any]]:
        """Yield `count` callbacks as a busy number sees them.

        The platform's sizing rule: about three receipts per outbound message plus the inbound
        ones. Here 40 % customer messages, 50 % receipts (SENT, DLVRD, READ for the outbound
        messages in order), 10 % session events.
        """
        for _ in range(count):
            roll = self.random.random()
            if roll < 0.5:
                step = next(self._receipts, None)
                if step is not None:
                    yield self.status(*step)
                    continue
            if roll < 0.9:
                yield self.message()
            else:
                yield self.event()


_STEPS = ("SENT", "DLVRD", "READ")


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
