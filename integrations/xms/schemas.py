"""Parse Mehery XMS callback bodies into the provider contract's dataclasses.

Pure functions, no Django. Section numbers (§) refer to `reference/mehery-xms.md`.

The platform's documents are loose (§0, §7): fields declared string arrive as JSON numbers,
timestamps come in ms or s, every field is flagged "required" although most are absent, and the
wrapper's `type` disagrees with its own enum. So the parsers accept numbers or strings for every
string field, never branch on the wrapper's `type`, and turn anything unknown into a warning
rather than an exception. Only a body whose structure is unusable (an array that is not an
array, an item that is not an object) raises `PayloadError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from integrations.base import (
    JSON,
    Action,
    Callback,
    ContactProfile,
    DeliveryStatus,
    InboundMessage,
    Location,
    Media,
    Medium,
    MessageType,
    PayloadError,
    Receipt,
    SessionEvent,
    SessionEventKind,
    SessionRef,
    SessionSnapshot,
)

# §3.2 InBoundContact.contactType
CONTACT_TYPE_MEDIUM: dict[str, Medium] = {
    "WHATSAPP": Medium.WHATSAPP,
    "SMS": Medium.SMS,
    "TELEGRAM": Medium.TELEGRAM,
    "FACEBOOK": Medium.FACEBOOK,
    "INSTAGRAM": Medium.INSTAGRAM,
    "TWITTER": Medium.TWITTER,
    "EMAIL": Medium.EMAIL,
    "WEBSITE": Medium.WEBCHAT,
    "PUSH": Medium.PUSH,
    "VIBER": Medium.VIBER,
    "RCS": Medium.RCS,
    "WECHAT": Medium.WECHAT,
}

# §4.12: SENT < DLVRD < READ; FAILD and DELTD terminal. Long spellings tolerated.
RECEIPT_STATUS: dict[str, DeliveryStatus] = {
    "SENT": DeliveryStatus.SENT,
    "DLVRD": DeliveryStatus.DELIVERED,
    "DELIVERED": DeliveryStatus.DELIVERED,
    "READ": DeliveryStatus.READ,
    "FAILD": DeliveryStatus.FAILED,
    "FAILED": DeliveryStatus.FAILED,
    "DELTD": DeliveryStatus.DELETED,
    "DELETED": DeliveryStatus.DELETED,
}

MESSAGE_TYPES: dict[str, MessageType] = {
    "text": MessageType.TEXT,
    "image": MessageType.IMAGE,
    "video": MessageType.VIDEO,
    "audio": MessageType.AUDIO,
    "voice": MessageType.VOICE,
    "document": MessageType.DOCUMENT,
    "location": MessageType.LOCATION,
    "system": MessageType.SYSTEM,
}

WRAPPER_ARRAYS = ("messages", "statuses", "events", "actions")

# §0 item 4: values >= 10^12 are ms, < 10^10 are s; anything between is an anomaly.
_MS_FLOOR = 10**12
_S_CEILING = 10**10


def as_str(value: Any, where: str = "") -> str:
    """Return a string field as a string: numbers become their digits, null becomes ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) >= 1e6 else repr(value)
    if isinstance(value, str):
        return value.strip()
    raise PayloadError(f"{where or 'field'} should be a string, got {type(value).__name__}")


def as_dict(value: Any, where: str) -> JSON:
    """Return an object field, {} for null; raise for any other type."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise PayloadError(f"{where} should be an object, got {type(value).__name__}")


def as_list(value: Any, where: str) -> list[Any]:
    """Return an array field, [] for null; raise for any other type."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise PayloadError(f"{where} should be an array, got {type(value).__name__}")


def as_float(value: Any, where: str, warnings: list[str]) -> float | None:
    """Return a number that may arrive as a string (§3.2 CommonMsgLocation), or None."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        warnings.append(f"{where}: {value!r} is not a number")
        return None
    return number


def parse_timestamp(value: Any, where: str, warnings: list[str]) -> datetime | None:
    """Read an epoch timestamp in ms or s (§0 item 4); None when absent or implausible."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.lstrip("-").isdigit():
            try:
                parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
            except ValueError:
                warnings.append(f"{where}: unreadable timestamp {value!r}")
                return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        try:
            value = int(stripped)
        except ValueError:  # over 4,300 digits, or digits int() does not read ("²")
            warnings.append(f"{where}: unreadable timestamp of {len(stripped)} characters")
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        warnings.append(f"{where}: unreadable timestamp {value!r}")
        return None
    if not (value >= _MS_FLOOR or 0 < value < _S_CEILING):
        warnings.append(f"{where}: timestamp {value} is neither ms nor s; using receipt time")
        return None
    try:
        seconds = value / 1000 if value >= _MS_FLOOR else float(value)
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        warnings.append(f"{where}: timestamp {value} is out of range; using receipt time")
        return None


def body_hash(value: Any) -> str:
    """Return a stable hash of a JSON value, for items the platform gives no id."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:40]


def medium_for(contact_type: str) -> str:
    """Map an XMS contactType to our medium (unknown types become 'other')."""
    return CONTACT_TYPE_MEDIUM.get(contact_type.upper(), Medium.OTHER).value


# --- Contacts (§4.13) ---------------------------------------------------------------------------


def parse_contact(item: Any, where: str, warnings: list[str]) -> ContactProfile | None:
    """Read an InBoundContact (2022 or 2023 shape)."""
    data = as_dict(item, where)
    external_id = as_str(data.get("contactId"), f"{where}.contactId")
    if not external_id:
        warnings.append(f"{where}: contact without contactId skipped")
        return None
    profile = as_dict(data.get("profile"), f"{where}.profile")
    business = as_dict(data.get("businessProfile"), f"{where}.businessProfile")
    return ContactProfile(
        external_id=external_id,
        medium=medium_for(as_str(data.get("contactType"), f"{where}.contactType")),
        channel_external_id=as_str(data.get("channelId"), f"{where}.channelId"),
        lane=as_str(data.get("lane"), f"{where}.lane"),
        name=as_str(profile.get("name"), f"{where}.profile.name"),
        email=as_str(profile.get("email"), f"{where}.profile.email"),
        # 2022 called it `mobile`, 2023 `phone` (§3.2 InBoundContactProfile).
        phone=as_str(profile.get("phone") or profile.get("mobile"), f"{where}.profile.phone"),
        # 2022 had a top-level `profileId`; 2023 moved it into `businessProfile`.
        business_profile_id=as_str(
            business.get("profileId") or data.get("profileId"), f"{where}.profileId"
        ),
        business_name=as_str(business.get("name"), f"{where}.businessProfile.name"),
        business_email=as_str(business.get("email"), f"{where}.businessProfile.email"),
        business_phone=as_str(business.get("phone"), f"{where}.businessProfile.phone"),
        raw=data,
    )


# --- Messages (§4.2-4.11) -----------------------------------------------------------------------


def parse_media(item: Any, where: str) -> Media | None:
    """Read an InBoundMsgMedia; prefer `linkSecure` (https) over `link`."""
    data = as_dict(item, where)
    if not data:
        return None
    link = as_str(data.get("linkSecure"), f"{where}.linkSecure") or as_str(
        data.get("link"), f"{where}.link"
    )
    size_value = data.get("size") or data.get("fileSize")
    size = int(size_value) if isinstance(size_value, int | float) and size_value >= 0 else None
    return Media(
        link=link,
        mime_type=as_str(data.get("mime_type") or data.get("mimeType"), f"{where}.mime_type"),
        filename=as_str(data.get("filename"), f"{where}.filename"),
        caption=as_str(data.get("caption"), f"{where}.caption"),
        sha256=as_str(data.get("sha256"), f"{where}.sha256"),
        media_id=as_str(data.get("id"), f"{where}.id"),
        size=size,
    )


def _dedupe_media(items: Iterable[Media]) -> tuple[Media, ...]:
    seen: set[str] = set()
    unique: list[Media] = []
    for media in items:
        key = media.media_id or media.link
        if key in seen:
            continue
        seen.add(key)
        unique.append(media)
    return tuple(unique)


def parse_message(item: Any, where: str, warnings: list[str]) -> InboundMessage:
    """Read an InBoundMsg. Unknown types are kept with type UNKNOWN, never rejected (§4.11)."""
    data = as_dict(item, where)
    raw_type = as_str(data.get("type"), f"{where}.type").lower()
    message_type = MESSAGE_TYPES.get(raw_type, MessageType.UNKNOWN)
    if message_type is MessageType.UNKNOWN:
        warnings.append(f"{where}: message type {raw_type!r} is not supported; kept as unknown")

    external_id = as_str(data.get("id"), f"{where}.id")
    external_id_ext = as_str(data.get("messageIdExt"), f"{where}.messageIdExt")
    if not external_id:
        # §4.0: de-duplicate on `id`, falling back to `messageIdExt`, then on the body itself.
        external_id = f"ext:{external_id_ext}" if external_id_ext else f"h:{body_hash(data)}"
        warnings.append(f"{where}: message has no id; de-duplicating on {external_id}")

    sender = as_str(data.get("from"), f"{where}.from")
    contact_external_id = as_str(data.get("contactId"), f"{where}.contactId") or sender
    if not contact_external_id:
        raise PayloadError(f"{where}: message has neither contactId nor from")

    text = as_dict(data.get("text"), f"{where}.text")
    body = as_str(text.get("body"), f"{where}.text.body")

    attachments = [
        parse_media(a, f"{where}.attachments[{i}]")
        for i, a in enumerate(as_list(data.get("attachments"), f"{where}.attachments"))
    ]
    media: Media | None = None
    if raw_type in {"image", "video", "audio", "voice", "document"}:
        media = parse_media(data.get(raw_type), f"{where}.{raw_type}")
        if media is None and attachments:
            media = attachments[0]
        if media is None:
            warnings.append(f"{where}: {raw_type} message without a {raw_type} object")

    location: Location | None = None
    if message_type is MessageType.LOCATION:
        loc = as_dict(data.get("location"), f"{where}.location")
        location = Location(
            latitude=as_float(loc.get("latitude"), f"{where}.location.latitude", warnings),
            longitude=as_float(loc.get("longitude"), f"{where}.location.longitude", warnings),
            name=as_str(loc.get("name"), f"{where}.location.name"),
            address=as_str(loc.get("address"), f"{where}.location.address"),
            url=as_str(loc.get("url"), f"{where}.location.url"),
        )

    session_data = as_dict(data.get("session"), f"{where}.session")
    session: SessionRef | None = None
    session_id = as_str(session_data.get("sessionId"), f"{where}.session.sessionId")
    if session_id:
        session = SessionRef(
            external_id=session_id,
            routing_id=as_str(session_data.get("routingId"), f"{where}.session.routingId"),
            assigned_agent=as_str(
                session_data.get("assignedToAgent"), f"{where}.session.assignedToAgent"
            ),
            assigned_dept=as_str(
                session_data.get("assignedToDept"), f"{where}.session.assignedToDept"
            ),
        )

    return InboundMessage(
        external_id=external_id,
        external_id_ext=external_id_ext,
        contact_external_id=contact_external_id,
        type=message_type,
        raw_type=raw_type,
        sender=sender,
        body=body,
        media=media,
        attachments=_dedupe_media(a for a in attachments if a is not None),
        location=location,
        session=session,
        sent_at=parse_timestamp(data.get("timestamp"), f"{where}.timestamp", warnings),
        raw=data,
    )


# --- Receipts (§4.12) ---------------------------------------------------------------------------


def parse_receipt(item: Any, where: str, warnings: list[str]) -> Receipt | None:
    """Read an InBoundMsgStatus; unknown statuses are skipped with a warning."""
    data = as_dict(item, where)
    raw_status = as_str(data.get("status"), f"{where}.status").upper()
    status = RECEIPT_STATUS.get(raw_status)
    if status is None:
        warnings.append(f"{where}: unknown receipt status {raw_status!r} skipped")
        return None
    external_id = as_str(data.get("id"), f"{where}.id")
    external_id_ext = as_str(data.get("messageIdExt"), f"{where}.messageIdExt")
    if not external_id and not external_id_ext:
        warnings.append(f"{where}: receipt without id or messageIdExt skipped")
        return None
    errors = as_list(data.get("errors"), f"{where}.errors")
    first = as_dict(errors[0], f"{where}.errors[0]") if errors else {}
    return Receipt(
        external_id=external_id or external_id_ext,
        external_id_ext=external_id_ext,
        status=status,
        contact_external_id=as_str(data.get("contactId"), f"{where}.contactId"),
        occurred_at=parse_timestamp(data.get("timestamp"), f"{where}.timestamp", warnings),
        error_code=as_str(first.get("code"), f"{where}.errors[0].code"),
        error_title=as_str(first.get("title"), f"{where}.errors[0].title"),
        error_details=as_str(first.get("details"), f"{where}.errors[0].details"),
        raw=data,
    )


# --- Session events (§4.15-4.16) ----------------------------------------------------------------


# SESSION_ROUTED is documented; the others are our reading of the sub-object names (§4.15-4.16).
KNOWN_EVENT_CODES: dict[str, SessionEventKind] = {
    "SESSION_ROUTED": SessionEventKind.ROUTED,
    "SESSION_ASSIGNED": SessionEventKind.ASSIGNED,
    "SESSION_RESOLVED": SessionEventKind.RESOLVED,
    "SESSION_CLOSED": SessionEventKind.CLOSED,
}


def _event_kind(code: str, data: JSON, snapshot: SessionSnapshot | None) -> SessionEventKind:
    known = KNOWN_EVENT_CODES.get(code.upper())
    if known is not None:
        return known
    # §7 item 25: unknown codes are dispatched on which sub-object is filled, never on a
    # guess from the code's wording.
    if isinstance(data.get("sessionRouted"), dict) and data["sessionRouted"]:
        return SessionEventKind.ROUTED
    if isinstance(data.get("sessionAssigned"), dict) and data["sessionAssigned"]:
        return SessionEventKind.ASSIGNED
    if snapshot is not None and snapshot.resolved:
        return SessionEventKind.RESOLVED
    return SessionEventKind.OTHER


def _contactable(data: JSON, where: str) -> ContactProfile | None:
    if not data:
        return None
    external_id = as_str(data.get("contactId"), f"{where}.contactId")
    if not external_id:
        return None
    return ContactProfile(
        external_id=external_id,
        medium=medium_for(as_str(data.get("contactType"), f"{where}.contactType")),
        lane=as_str(data.get("lane"), f"{where}.lane"),
        name=as_str(data.get("name"), f"{where}.name"),
        email=as_str(data.get("email"), f"{where}.email"),
        phone=as_str(data.get("phone"), f"{where}.phone"),
        raw=data,
    )


def parse_event(item: Any, where: str, warnings: list[str]) -> SessionEvent | None:
    """Read an InBoundEvent; events without a session are skipped with a warning."""
    data = as_dict(item, where)
    code = as_str(data.get("eventCode"), f"{where}.eventCode")
    session_id = as_str(data.get("sessionId"), f"{where}.sessionId")
    if not session_id:
        warnings.append(f"{where}: event {code or '(no code)'} without sessionId skipped")
        return None
    snap = as_dict(data.get("session"), f"{where}.session")
    snapshot: SessionSnapshot | None = None
    if snap:
        resolved = snap.get("resolved")
        snapshot = SessionSnapshot(
            agent=as_str(snap.get("agent"), f"{where}.session.agent"),
            bot=as_str(snap.get("bot"), f"{where}.session.bot"),
            dept=as_str(snap.get("dept"), f"{where}.session.dept"),
            queue=as_str(snap.get("queue"), f"{where}.session.queue"),
            mode=as_str(snap.get("mode"), f"{where}.session.mode"),
            resolved=resolved if isinstance(resolved, bool) else None,
            routing_id=as_str(snap.get("routingId"), f"{where}.session.routingId"),
            ticket_hash=as_str(snap.get("ticketHash"), f"{where}.session.ticketHash"),
            started_at=parse_timestamp(
                snap.get("sessionStamp"), f"{where}.session.sessionStamp", warnings
            ),
        )
    routed = as_dict(data.get("sessionRouted"), f"{where}.sessionRouted")
    assigned = as_dict(data.get("sessionAssigned"), f"{where}.sessionAssigned")
    event_id = as_str(data.get("eventId"), f"{where}.eventId")
    routing_id = as_str(routed.get("routingId"), f"{where}.sessionRouted.routingId") or (
        snapshot.routing_id if snapshot else ""
    )
    # §4.0: de-duplicate on eventId. The code and routing episode are part of the key because
    # the documented examples reuse one placeholder eventId for different events.
    without_trace = {k: v for k, v in data.items() if k != "trace"}
    dedupe_key = f"{event_id}:{code}:{routing_id}" if event_id else f"h:{body_hash(without_trace)}"
    if code and code.upper() not in KNOWN_EVENT_CODES:
        warnings.append(f"{where}: event code {code!r} is undocumented; applied by its content")
    return SessionEvent(
        kind=_event_kind(code, data, snapshot),
        code=code,
        session_external_id=session_id,
        dedupe_key=dedupe_key[:200],
        contact=_contactable(as_dict(data.get("contact"), f"{where}.contact"), f"{where}.contact"),
        snapshot=snapshot,
        source_queue=as_str(routed.get("sourceQueue"), f"{where}.sessionRouted.sourceQueue"),
        target_queue=as_str(routed.get("targetQueue"), f"{where}.sessionRouted.targetQueue"),
        routing_id=routing_id,
        old_agent=as_str(assigned.get("oldAgent"), f"{where}.sessionAssigned.oldAgent"),
        new_agent=as_str(assigned.get("newAgent"), f"{where}.sessionAssigned.newAgent"),
        old_dept=as_str(assigned.get("oldDept"), f"{where}.sessionAssigned.oldDept"),
        new_dept=as_str(assigned.get("newDept"), f"{where}.sessionAssigned.newDept"),
        old_bot=as_str(assigned.get("oldBot"), f"{where}.sessionAssigned.oldBot"),
        new_bot=as_str(assigned.get("newBot"), f"{where}.sessionAssigned.newBot"),
        raw=data,
    )


# --- The whole callback (§4.0 dispatch) ---------------------------------------------------------


T = TypeVar("T")


def _items(body: JSON, name: str, warnings: list[str]) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        warnings.append(f"{name}: skipped: should be an array, got {type(value).__name__}")
        return []
    return value


def _tolerant(
    parse: Callable[[Any, str, list[str]], T | None], item: Any, where: str, warnings: list[str]
) -> T | None:
    try:
        return parse(item, where, warnings)
    except (PayloadError, ValueError, TypeError, OverflowError) as exc:
        # (ValueError and the like: a value no parser rule foresaw, e.g. a digit string
        # Python will not turn into a number; the item is named, the rest still applies.)
        warnings.append(f"{where}: skipped: {exc}")
        return None


def parse_callback(body: JSON) -> Callback:
    """Dispatch a callback body on its shape, never on its path or its `type` (§4.0)."""
    if not isinstance(body, dict):
        raise PayloadError("the callback body must be a JSON object")
    warnings: list[str] = []
    callback = Callback(warnings=warnings)
    keys = set(body)

    if keys == {"actionCode"}:  # 2022 action/event (§4.14)
        code = as_str(body.get("actionCode"), "actionCode")
        callback.actions.append(Action(code=code, dedupe_key=f"h:{body_hash(body)}:0", raw=body))
        return callback

    if keys & set(WRAPPER_ARRAYS):  # InBoundWrapper, 2022 or 2023
        meta = body.get("meta")
        if isinstance(meta, dict):
            callback.tenant = {
                k: as_str(meta.get(k), f"meta.{k}")
                for k in ("appId", "domain")
                if isinstance(meta.get(k), str | int)
            }
        # §4.11: one malformed item never sinks the rest of the callback; it is skipped and
        # named in the event's warnings.
        for i, item in enumerate(_items(body, "contacts", warnings)):
            contact = _tolerant(parse_contact, item, f"contacts[{i}]", warnings)
            if contact is not None:
                callback.contacts.append(contact)
        for i, item in enumerate(_items(body, "messages", warnings)):
            message = _tolerant(parse_message, item, f"messages[{i}]", warnings)
            if message is not None:
                callback.messages.append(message)
        # A message names its contact; the contact (in the same wrapper) names the channel.
        channels = {c.external_id: c.channel_external_id for c in callback.contacts}
        callback.messages = [
            replace(m, channel_external_id=channels.get(m.contact_external_id, ""))
            for m in callback.messages
        ]
        for i, item in enumerate(_items(body, "statuses", warnings)):
            receipt = _tolerant(parse_receipt, item, f"statuses[{i}]", warnings)
            if receipt is not None:
                callback.receipts.append(receipt)
        for i, item in enumerate(_items(body, "events", warnings)):
            event = _tolerant(parse_event, item, f"events[{i}]", warnings)
            if event is not None:
                callback.events.append(event)
        wrapper_hash = body_hash(body)
        for i, item in enumerate(_items(body, "actions", warnings)):
            if not isinstance(item, dict):
                warnings.append(f"actions[{i}]: skipped: an action must be an object")
                continue
            code = as_str(item.get("actionCode"), f"actions[{i}].actionCode")
            if not code:
                warnings.append(f"actions[{i}]: action without actionCode skipped")
                continue
            callback.actions.append(Action(code=code, dedupe_key=f"h:{wrapper_hash}:{i}", raw=item))
        return callback

    if "contactId" in keys and ("profile" in keys or "lane" in keys):  # contact/info (§4.13)
        contact = parse_contact(body, "contact", warnings)
        if contact is not None:
            callback.contacts.append(contact)
        callback.wants_contact_reply = True
        return callback

    shown = ", ".join(sorted(keys)[:10]) or "(none)"
    warnings.append(f"unrecognised callback shape; top-level keys: {shown}")
    return callback
