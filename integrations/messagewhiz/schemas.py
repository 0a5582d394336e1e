"""MessageWhiz JSON in and out (spec: reference/messagewhiz.md): the tables the docs give or
leave to us, and pure functions from the platform's bodies to the provider contract's types.

Nothing here makes a call; `provider.py` fetches, this module reads and writes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from integrations.base import (
    JSON,
    Callback,
    ChannelInfo,
    ContactProfile,
    DeliveryStatus,
    InboundMessage,
    Location,
    Media,
    Medium,
    MessageType,
    OutboundRequest,
    PayloadError,
    Receipt,
    TemplateInfo,
    UnsupportedError,
)

logger = logging.getLogger(__name__)

# Channel `type` -> our medium, and the segment of its send path (spec §3.1, §7.1). ECHO is
# undocumented (G35) and ignored.
MEDIA_OF_TYPE: Mapping[str, Medium] = {
    "SMS": Medium.SMS,
    "WA": Medium.WHATSAPP,
    "VI": Medium.VIBER,
    "TG": Medium.TELEGRAM,
    "RCS": Medium.RCS,
    "WECHAT": Medium.WECHAT,
}
SEND_PATHS: Mapping[str, str] = {
    Medium.SMS: "sms",
    Medium.WHATSAPP: "whatsapp",
    Medium.VIBER: "viber",
    Medium.TELEGRAM: "telegram",
    Medium.RCS: "rcs",
    Medium.WECHAT: "wechat",
}

# The payload `type` discriminators (§0 item 6, §3.3, G4). Only TEXT is in the docs; the others
# follow §6's recommended reading and must be confirmed with the vendor (README lists them).
PAYLOAD_TYPES: Mapping[str, tuple[str, bool]] = {
    # variant: (discriminator, confirmed by the docs)
    "text": ("TEXT", True),
    "image": ("IMAGE", False),  # "Image file message payload"
    "media": ("MEDIA", False),  # "Media file message payload" (video, audio, voice, files)
    "location": ("LOCATION", False),
    "contact": ("CONTACT", False),
    "card": ("CARD", False),  # "Card message payload": a WhatsApp template (§5.1)
    "carousel": ("CAROUSEL", False),  # RCS only; never sent by the inbox
}
# An image's `category` has no IMAGE value (G15): the recommended reading.
IMAGE_CATEGORY = "UNSPECIFIED"


def payload_type(variant: str) -> str:
    return PAYLOAD_TYPES[variant][0]


_MEDIA_KINDS = frozenset(
    {MessageType.IMAGE, MessageType.VIDEO, MessageType.AUDIO, MessageType.VOICE}
) | {MessageType.DOCUMENT}
# The capability matrix (§3.2): what each medium carries. WeChat's payload is undocumented
# (G17): text only until it is verified. Templates are WhatsApp's "Card" payload (§5.1).
SENDABLE_TYPES: Mapping[str, frozenset[MessageType]] = {
    Medium.SMS: frozenset({MessageType.TEXT}),
    Medium.WHATSAPP: frozenset(
        {MessageType.TEXT, MessageType.LOCATION, MessageType.CONTACT, MessageType.TEMPLATE}
    )
    | _MEDIA_KINDS,
    Medium.TELEGRAM: frozenset({MessageType.TEXT, MessageType.LOCATION, MessageType.CONTACT})
    | _MEDIA_KINDS,
    Medium.VIBER: frozenset({MessageType.TEXT, MessageType.IMAGE}),
    Medium.RCS: frozenset({MessageType.TEXT}) | _MEDIA_KINDS,
    Medium.WECHAT: frozenset({MessageType.TEXT}),
}

# Message `status` (§4.5) -> a receipt's status; CREATED says only that the platform has it,
# which our `sent` already says, so it moves nothing.
STATUS_MAP: Mapping[str, DeliveryStatus] = {
    "SENT": DeliveryStatus.SENT,
    "DELIVERED": DeliveryStatus.DELIVERED,
    "READ": DeliveryStatus.READ,
    "ERROR": DeliveryStatus.FAILED,
    "UNDELIVERABLE": DeliveryStatus.FAILED,
    "UPLOAD_ERROR": DeliveryStatus.FAILED,
}
# The platform gives no failure reason (G29): these words, and the raw status as the code.
FAILURE_WORDS: Mapping[str, str] = {
    "ERROR": "The platform reported an error sending it.",
    "UNDELIVERABLE": "The platform could not deliver it to the customer.",
    "UPLOAD_ERROR": "The platform could not upload its file.",
}
# Who wrote a message the business sent from the platform itself (origin, §4.1); the thread
# adds "on the platform".
AUTHORS: Mapping[str, str] = {
    "AGENT": "An agent",
    "BOT": "The bot",
    "BROADCAST": "A broadcast",
}

_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")


# --- Reading -------------------------------------------------------------------------------------


def as_str(value: Any) -> str:
    """A string field, leniently: numbers become text, anything else ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def as_obj(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 with or without milliseconds, `Z` for UTC (§1.3); None for anything else."""
    text = as_str(value)
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def enum_word(value: Any) -> str:
    """Read an enum leniently (G34): case, `-`, `.` and spaces aside."""
    return re.sub(r"[-. ]", "_", as_str(value).strip()).upper()


def digits(phone: str) -> str:
    """A phone number as the API takes it: digits only, no `+` (§1.3, G45)."""
    return re.sub(r"\D", "", phone)


def channel_infos(channels: Iterable[JSON]) -> list[ChannelInfo]:
    """Our channels from the platform's: one per agent (a sending identity: a VLN, a bot), so
    a reply leaves from the number the customer wrote to (§4.2, §7.1)."""
    infos = []
    for channel in channels:
        medium = MEDIA_OF_TYPE.get(enum_word(channel.get("type")))
        if medium is None:
            continue
        config = as_obj(channel.get("config"))
        name = as_str(config.get("name")) or as_str(channel.get("_id"))
        agents = [a for a in as_list(channel.get("agents")) if isinstance(a, dict)]
        for agent in agents:
            agent_id = as_str(agent.get("_id"))
            if not agent_id:
                continue
            lane = agent_lane(agent)
            infos.append(
                ChannelInfo(
                    external_id=agent_id,
                    medium=medium.value,
                    lane=lane,
                    name=f"{name} · {lane}" if len(agents) > 1 and lane else name,
                    raw={
                        "channel_id": as_str(channel.get("_id")),
                        "type": enum_word(channel.get("type")),
                        "status": as_str(channel.get("status")),
                        # Never the agent's whole config: a Telegram bot's holds its
                        # access token (G35).
                        "agent": {
                            "_id": agent_id,
                            "vln": as_str(as_obj(agent.get("config")).get("vln")),
                            "bot_name": as_str(as_obj(agent.get("config")).get("bot_name")),
                        },
                    },
                )
            )
    return infos


def agent_lane(agent: JSON) -> str:
    """What the customer sees the agent as: an SMS VLN, a bot name (G38: config is raw)."""
    config = as_obj(agent.get("config"))
    return as_str(config.get("vln")) or as_str(config.get("bot_name")) or ""


def agents_map(channels: Iterable[JSON]) -> dict[str, JSON]:
    """agent id -> {medium, channel, name}, from the channels list (messages name only the
    agent, §4.2)."""
    found = {}
    for info in channel_infos(channels):
        found[info.external_id] = {
            "medium": info.medium,
            "channel_id": info.raw.get("channel_id", ""),
            "name": info.name,
            "lane": info.lane,
        }
    return found


def keyword_map(events: Iterable[JSON]) -> dict[str, list[str]]:
    """Keyword event type (OPT_OUT, JOIN, HELP) -> its keywords, lowercased (§2.4, G34)."""
    found: dict[str, list[str]] = {}
    for event in events:
        kind = enum_word(as_obj(event.get("config")).get("type") or event.get("event"))
        words = [as_str(w).strip().casefold() for w in as_list(event.get("keywords"))]
        found.setdefault(kind, []).extend(w for w in words if w)
    return found


def _media_kind(mime: str, category: str) -> MessageType:
    if mime.startswith("image/"):
        return MessageType.IMAGE
    if mime.startswith("video/") or category == "VIDEO":
        return MessageType.VIDEO
    if category == "VOICE" or mime == "audio/ogg":
        return MessageType.VOICE
    if mime.startswith("audio/") or category == "AUDIO":
        return MessageType.AUDIO
    return MessageType.DOCUMENT


def payload_read(payload: JSON) -> tuple[MessageType, str, Media | None, Location | None]:
    """Read a message payload (§4.4): type, text, media, location. Unknown shapes keep their
    raw JSON and say what they are."""
    kind = enum_word(payload.get("type"))
    src = as_obj(payload.get("src"))
    if kind == "TEXT" or (not kind and "text" in payload and not src):
        return MessageType.TEXT, as_str(payload.get("text")), None, None
    if as_str(src.get("uri")):
        mime = as_str(src.get("mime")).lower()
        size = src.get("size")
        media = Media(
            link=as_str(src.get("uri")),
            mime_type=mime,
            filename=as_str(payload.get("name")),
            caption=as_str(payload.get("text")) or as_str(payload.get("caption")),
            size=int(size) if isinstance(size, (int, float)) and size > 0 else None,
        )
        return _media_kind(mime, enum_word(payload.get("category"))), "", media, None
    if "latitude" in payload and "longitude" in payload:
        lat, lng = payload.get("latitude"), payload.get("longitude")
        if isinstance(lat, (int, float)) and isinstance(lng, (int, float)):
            return MessageType.LOCATION, "", None, Location(latitude=lat, longitude=lng)
    if "firstname" in payload or ("phone" in payload and "lastname" in payload):
        name = " ".join(
            p for p in (as_str(payload.get("firstname")), as_str(payload.get("lastname"))) if p
        )
        return MessageType.CONTACT, f"{name} {as_str(payload.get('phone'))}".strip(), None, None
    if "template_id" in payload:
        # No text of its own: the history gives only the id and variables, and one of our
        # template sends coming back must be recognized by its type, not by a text (§3.3).
        return MessageType.TEMPLATE, "", None, None
    if isinstance(payload.get("content"), list):
        titles = [as_str(as_obj(card).get("title")) for card in payload["content"]]
        return MessageType.UNKNOWN, "Cards: " + ", ".join(t for t in titles if t), None, None
    return MessageType.UNKNOWN, f"Unsupported message (type={kind or '?'})", None, None


def _opted_out_at(
    customer: JSON, messages: list[JSON], agents: set[str], keywords: Mapping[str, list[str]]
) -> datetime | None:
    """When the customer opted out, if this page shows it (§4.7, G26): their latest message is
    an OPT_OUT keyword, or the platform lists them unsubscribed from an agent they wrote to."""
    theirs = [m for m in messages if enum_word(m.get("origin")) == "CUSTOMER"]
    if not theirs:
        return None
    latest = max(theirs, key=lambda m: as_str(m.get("sent")))
    text = as_str(as_obj(latest.get("payload")).get("text")).strip().casefold()
    if text and text in keywords.get("OPT_OUT", []):
        return parse_time(latest.get("sent"))
    subscriptions = as_obj(customer.get("subscriptions"))
    # The customer as listed may be older than the history read after it: their state then
    # says nothing of messages they sent since.
    listed_at = as_str(customer.get("last_message_time"))
    for agent in agents:
        if subscriptions.get(agent) is False:
            on_agent = [
                m
                for m in theirs
                if as_str(m.get("agent_id")) == agent
                and (not listed_at or as_str(m.get("sent")) <= listed_at)
            ]
            if on_agent:
                return parse_time(max(on_agent, key=lambda m: as_str(m.get("sent"))).get("sent"))
    return None


def page_read(body: JSON) -> Callback:
    """Read a stored page (a poll's or a receipts check's): its customers' profiles on each
    channel they used, their messages oldest first (the business's own mirrored, §4.3), and a
    receipt for each status the platform shows (§4.5)."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise PayloadError("a MessageWhiz page is an object with a messages list")
    callback = Callback()
    agents = {k: as_obj(v) for k, v in as_obj(body.get("agents")).items()}
    keywords = {k: [as_str(w) for w in as_list(v)] for k, v in as_obj(body.get("keywords")).items()}
    customers = {
        as_str(c.get("_id")): c for c in as_list(body.get("customers")) if isinstance(c, dict)
    }
    messages = [m for m in body["messages"] if isinstance(m, dict) and as_str(m.get("message_id"))]
    messages.sort(key=lambda m: (as_str(m.get("sent")), as_str(m.get("message_id"))))
    by_customer: dict[str, list[JSON]] = {}
    for message in messages:
        by_customer.setdefault(as_str(message.get("customer_id")), []).append(message)
    unknown_types: set[str] = set()
    for customer_id, theirs in by_customer.items():
        if not customer_id:
            callback.warnings.append("a message without a customer_id was skipped")
            continue
        customer = customers.get(customer_id, {})
        used = {as_str(m.get("agent_id")) for m in theirs}
        opted_out_at = _opted_out_at(customer, theirs, used, keywords)
        for agent_id in sorted(used):
            agent = agents.get(agent_id, {})
            medium = as_str(agent.get("medium"))
            phone = as_str(customer.get("phone"))
            if not phone and medium == Medium.TELEGRAM:
                phone = as_str(customer.get("telegram_chat_id"))  # G16
            callback.contacts.append(
                ContactProfile(
                    external_id=customer_id,
                    medium=medium or Medium.OTHER.value,
                    channel_external_id=agent_id,
                    name=as_str(customer.get("name")),
                    phone=digits(phone),
                    opted_out_at=opted_out_at,
                    raw=customer,
                )
            )
        for message in theirs:
            _message_read(callback, customer_id, message, unknown_types)
    for kind in sorted(unknown_types):
        # §4.4: learn the real discriminators from what arrives.
        callback.warnings.append(f"unknown payload type {kind!r} kept raw")
    return callback


def _message_read(callback: Callback, customer_id: str, message: JSON, unknown: set[str]) -> None:
    payload = as_obj(message.get("payload"))
    kind, text, media, location = payload_read(payload)
    if kind is MessageType.UNKNOWN:
        unknown.add(enum_word(payload.get("type")) or "?")
    origin = enum_word(message.get("origin"))
    external_id = as_str(message.get("message_id"))
    outbound = origin != "CUSTOMER"
    callback.messages.append(
        InboundMessage(
            external_id=external_id,
            contact_external_id=customer_id,
            type=kind,
            body=text or (media.caption if media else ""),
            media=media,
            location=location,
            sent_at=parse_time(message.get("sent")),
            raw_type=enum_word(payload.get("type")),
            raw=message,
            channel_external_id=as_str(message.get("agent_id")),
            outbound=outbound,
            author=AUTHORS.get(origin, origin.title()) if outbound else "",
        )
    )
    status = enum_word(message.get("status"))
    if outbound and status in STATUS_MAP:
        failed = STATUS_MAP[status] is DeliveryStatus.FAILED
        callback.receipts.append(
            Receipt(
                external_id=external_id,
                status=STATUS_MAP[status],
                contact_external_id=customer_id,
                error_code=status if failed else "",
                error_title=FAILURE_WORDS.get(status, "") if failed else "",
                raw={"status": status},
            )
        )


def _components_read(template: JSON) -> tuple[str, str, str, str, list[JSON]]:
    """Header format and text, body, footer and buttons, from either shape (G5)."""
    components = [c for c in as_list(template.get("components")) if isinstance(c, dict)]
    if components:
        header_format, header, body, footer, buttons = "NONE", "", "", "", []
        for component in components:
            kind = enum_word(component.get("type"))
            if kind == "HEADER":
                header_format = enum_word(component.get("format")) or "TEXT"
                header = as_str(component.get("text"))
            elif kind == "BODY":
                body = as_str(component.get("text"))
            elif kind == "FOOTER":
                footer = as_str(component.get("text"))
            elif kind == "BUTTONS":
                buttons = [b for b in as_list(component.get("buttons")) if isinstance(b, dict)]
        return header_format, header, body, footer, buttons
    head = as_obj(template.get("header"))
    flat_buttons = as_obj(template.get("buttons"))
    buttons = []
    phone, website = as_obj(flat_buttons.get("phone")), as_obj(flat_buttons.get("website"))
    if phone:
        buttons.append(
            {
                "type": "PHONE_NUMBER",
                "text": as_str(phone.get("text")),
                "phone_number": as_str(phone.get("number")),
            }
        )
    if website:
        buttons.append(
            {"type": "URL", "text": as_str(website.get("text")), "url": as_str(website.get("link"))}
        )
    for text in as_list(flat_buttons.get("quickReplyBlocks")):
        buttons.append({"type": "QUICK_REPLY", "text": as_str(text)})
    return (
        enum_word(head.get("type")) or "NONE",
        as_str(head.get("value")),
        as_str(template.get("body")),
        as_str(template.get("footer")),
        buttons,
    )


HEADER_PREFIX = "header."


def template_info(template: JSON, agent_id: str) -> TemplateInfo | None:
    """Read a WhatsApp template (§5.1), either shape. Placeholders are positional: the body's
    `{{1}}`... keep their numbers as names, the header's become `{{header.1}}`... so the two
    never collide in the form agents fill; the send puts them back in order."""
    external_id = as_str(template.get("id"))
    if not external_id:
        return None
    header_format, header, body, footer, buttons = _components_read(template)
    if header_format != "TEXT":
        header = f"[{header_format.lower()}]" if header_format not in ("", "NONE") else ""
    header = _PLACEHOLDER.sub(lambda m: "{{" + HEADER_PREFIX + m.group(1) + "}}", header)
    placeholders = [
        {"name": f"{HEADER_PREFIX}{n}", "label": f"Header {n}", "sample": "", "source": ""}
        for n in _numbers(header, HEADER_PREFIX)
    ] + [
        {"name": n, "label": f"Variable {n}", "sample": "", "source": ""}
        for n in _numbers(body, "")
    ]
    status = enum_word(template.get("status"))
    return TemplateInfo(
        external_id=external_id,
        code=as_str(template.get("name")),
        lang=as_str(template.get("language")),
        name=as_str(template.get("name")),
        category=as_str(template.get("category")),
        header=header,
        body=body,
        footer=footer,
        buttons=tuple(buttons),
        placeholders=tuple(placeholders),
        approvals={agent_id: (status, external_id)},
        raw=template,
    )


def _numbers(text: str, prefix: str) -> list[str]:
    pattern = re.compile(r"\{\{\s*" + re.escape(prefix) + r"(\d+)\s*\}\}")
    found: list[str] = []
    for n in sorted({int(m) for m in pattern.findall(text)}):
        found.append(str(n))
    return found


# --- Writing -------------------------------------------------------------------------------------


def _file(mime: str, size: int | None, uri: str) -> JSON:
    return {"mime": mime or "application/octet-stream", "size": int(size or 0), "uri": uri}


def media_category(mime: str, kind: MessageType) -> str:
    """The media `category` (§3.5 step 3)."""
    if mime.startswith("video/"):
        return "VIDEO"
    if kind is MessageType.VOICE or mime == "audio/ogg":
        return "VOICE"
    if mime.startswith("audio/"):
        return "AUDIO"
    if mime.startswith(("application/", "text/")):
        return "APPLICATION"
    return "UNSPECIFIED"


def send_payload(
    request: OutboundRequest, renditions: Mapping[str, tuple[str, int]] | None = None
) -> JSON:
    """Build the send `payload` for a request (§3.3, §3.5); `renditions` gives the thumbnail's
    and preview's (mime, size) where the platform told us. Raises `UnsupportedError` for what
    the medium cannot carry (§3.2)."""
    kind = request.type
    allowed = SENDABLE_TYPES.get(request.medium)
    if allowed is not None and kind not in allowed:
        raise UnsupportedError(
            f"MessageWhiz cannot send a {kind.value} message on {request.medium or 'this channel'}."
        )
    if kind is MessageType.TEXT:
        return {"type": payload_type("text"), "text": request.body}
    if kind in _MEDIA_KINDS:
        media = request.media
        if media is None or not media.link:
            raise UnsupportedError("A media message needs its uploaded file.")
        mime = media.mime_type
        src = _file(mime, media.size, media.link)
        rendition = dict(renditions or {})
        if kind is MessageType.IMAGE:
            # Thumbnail and preview are required for images (§3.3, G14).
            payload: JSON = {
                "type": payload_type("image"),
                "category": IMAGE_CATEGORY,
                "src": src,
                "thumbnail": _file(
                    *rendition.get("thumbnail", ("image/jpeg", 0)),
                    media.thumbnail_link or media.link,
                ),
                "preview": _file(
                    *rendition.get("preview", ("image/jpeg", 0)), media.preview_link or media.link
                ),
            }
        else:
            payload = {
                "type": payload_type("media"),
                "category": media_category(mime, kind),
                "src": src,
            }
        if media.filename:
            payload["name"] = media.filename
        return payload
    if kind is MessageType.LOCATION:
        location = request.location
        if location is None or location.latitude is None or location.longitude is None:
            raise UnsupportedError("A location needs a latitude and a longitude.")
        # No name or address field exists (§3.3).
        return {
            "type": payload_type("location"),
            "latitude": location.latitude,
            "longitude": location.longitude,
        }
    if kind is MessageType.CONTACT:
        if not request.contact_cards:
            raise UnsupportedError("A contact message needs a contact card.")
        return contact_payload(request.contact_cards[0])
    if kind is MessageType.TEMPLATE:
        data = request.template_data
        body_keys = sorted((k for k in data if k.isdigit()), key=int)
        header_keys = sorted(
            (k for k in data if k.startswith(HEADER_PREFIX) and k[len(HEADER_PREFIX) :].isdigit()),
            key=lambda k: int(k[len(HEADER_PREFIX) :]),
        )
        return {
            "type": payload_type("card"),
            "template_id": request.template_id,
            "body_variables": [as_str(data[k]) for k in body_keys],
            "header_variables": [as_str(data[k]) for k in header_keys],
        }
    raise UnsupportedError(f"MessageWhiz cannot send a {kind.value} message.")


def contact_payload(card: Mapping[str, Any]) -> JSON:
    """A contact card as the Contact payload (§3.3): first and last name and phone required."""
    name = card.get("name")
    formatted = (
        as_str(as_obj(name).get("formatted_name")) if isinstance(name, dict) else as_str(name)
    )
    first = as_str(
        card.get("firstname") or card.get("first_name") or as_obj(name).get("first_name")
    )
    last = as_str(card.get("lastname") or card.get("last_name") or as_obj(name).get("last_name"))
    if not first and formatted:
        first, _, last = formatted.partition(" ")
    phones = as_list(card.get("phones"))
    phone = as_str(card.get("phone")) or (as_str(as_obj(phones[0]).get("phone")) if phones else "")
    if not first or not phone:
        raise UnsupportedError("A contact card needs at least a name and a phone number.")
    payload: JSON = {
        "type": payload_type("contact"),
        "firstname": first,
        "lastname": last or "-",
        "phone": digits(phone),
    }
    emails = as_list(card.get("emails"))
    email = as_str(card.get("email")) or (as_str(as_obj(emails[0]).get("email")) if emails else "")
    if email:
        payload["email"] = email
    return payload
