"""Build XMS request bodies from the provider contract, and read XMS answers back (spec §5, §6).

Pure functions, no Django.
"""

from __future__ import annotations

import re
from typing import Any

from integrations.base import (
    JSON,
    DeliveryStatus,
    HistoryMessage,
    Media,
    MessageType,
    OutboundRequest,
    TemplateInfo,
    UnsupportedError,
)
from integrations.xms import schemas

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
# There is no voice object in OutBoundMsg: voice notes go as audio (spec §5.5, §5.10).
_SEND_TYPE = {MessageType.VOICE: "audio", MessageType.CONTACT: "contacts"}


def send_body(request: OutboundRequest) -> JSON:
    """Return the OutBoundMsg for a request: channelId, to, type, mask and only the type's object."""
    send_type = _SEND_TYPE.get(request.type, request.type.value)
    to: JSON = {}
    # In a conversation send the inbound contactId and the phone, which agree (spec §5.0).
    if request.to_contact_id:
        to["contactId"] = request.to_contact_id
    if request.to_phone:
        to["phone"] = request.to_phone
    if request.to_name:
        to["name"] = request.to_name
    body: JSON = {
        "channelId": request.channel_external_id,
        "mask": False,
        "to": to,
        "type": send_type,
    }
    kind = request.type
    if kind is MessageType.TEXT:
        body["text"] = {"body": request.body}
    elif kind in (
        MessageType.IMAGE,
        MessageType.VIDEO,
        MessageType.AUDIO,
        MessageType.VOICE,
        MessageType.DOCUMENT,
    ):
        if request.media is None:
            raise UnsupportedError(f"a {kind} message needs media")
        media: JSON = {"link": request.media.link}
        if request.media.caption and kind not in (MessageType.AUDIO, MessageType.VOICE):
            media["caption"] = request.media.caption
        if request.media.filename and kind is MessageType.DOCUMENT:
            media["filename"] = request.media.filename
        body[send_type] = media
    elif kind is MessageType.LOCATION:
        if request.location is None:
            raise UnsupportedError("a location message needs a location")
        loc = request.location
        body["location"] = {
            "latitude": f"{loc.latitude}",
            "longitude": f"{loc.longitude}",
            **({"name": loc.name} if loc.name else {}),
            **({"address": loc.address} if loc.address else {}),
            **({"url": loc.url} if loc.url else {}),
        }
    elif kind is MessageType.CONTACT:
        body["contacts"] = [dict(card) for card in request.contact_cards]
    elif kind is MessageType.TEMPLATE:
        template: JSON = {"data": {k: _as_text(v) for k, v in request.template_data.items()}}
        if request.template_code:
            template["code"] = request.template_code
        if request.template_id:
            template["id"] = request.template_id
        if request.template_lang:
            template["lang"] = request.template_lang
        body["template"] = template
    else:
        raise UnsupportedError(f"XMS cannot send a {kind} message")
    if request.buttons:
        body["options"] = {
            "buttons": [
                {
                    "type": b.kind,
                    "label": b.label,
                    "name": b.code or b.label,
                    **({"code": b.code} if b.code else {}),
                    **({"url": b.url} if b.url else {}),
                    **({"phone": b.phone} if b.phone else {}),
                }
                for b in request.buttons
            ]
        }
    return body


def _obj(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _arr(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


def placeholders_of(doc: JSON) -> list[JSON]:
    """List a template's placeholders: names from its text in order, labels from its `model`.

    Spec §5.7: the docs show named `data` keys; the names are taken from `{{name}}` in the
    template text, described by the `model` map where the platform provides one.
    """
    model = _obj(doc.get("model"))
    text = " ".join(str(doc.get(part) or "") for part in ("header", "body", "footer", "template"))
    names: list[str] = []
    for name in [*_PLACEHOLDER.findall(text), *model.keys()]:
        if name not in names:
            names.append(name)
    result = []
    for name in names:
        spec = _obj(model.get(name))
        result.append(
            {
                "name": name,
                "label": str(spec.get("label") or name.replace("_", " ").capitalize()),
                "sample": str(spec.get("sample") or ""),
                "source": str(spec.get("source") or ""),
            }
        )
    return result


def template_info(doc: JSON) -> TemplateInfo | None:
    """Read one HSMTemplateDoc (spec §3.5); None when it has no id."""
    external_id = schemas.as_str(doc.get("id"), "template.id")
    if not external_id:
        return None
    approvals: dict[str, tuple[str, str]] = {}
    for item in schemas.as_list(doc.get("approved"), "template.approved"):
        if isinstance(item, dict) and item.get("channelId"):
            approvals[schemas.as_str(item["channelId"], "approved.channelId")] = (
                schemas.as_str(item.get("status"), "approved.status"),
                schemas.as_str(item.get("templateId"), "approved.templateId"),
            )
    options = _obj(doc.get("options"))
    buttons = _arr(options.get("buttons"))
    return TemplateInfo(
        external_id=external_id,
        code=schemas.as_str(doc.get("code"), "template.code"),
        lang=schemas.as_str(doc.get("lang"), "template.lang"),
        name=schemas.as_str(doc.get("name"), "template.name"),
        title=schemas.as_str(doc.get("title"), "template.title"),
        category=schemas.as_str(doc.get("category"), "template.category"),
        header=schemas.as_str(doc.get("header"), "template.header"),
        body=schemas.as_str(doc.get("body"), "template.body"),
        footer=schemas.as_str(doc.get("footer"), "template.footer"),
        text=schemas.as_str(doc.get("template"), "template.template"),
        buttons=tuple(b for b in buttons if isinstance(b, dict)),
        placeholders=tuple(placeholders_of(doc)),
        attachments=tuple(
            a
            for a in schemas.as_list(doc.get("attachments"), "template.attachments")
            if isinstance(a, dict)
        ),
        approvals=approvals,
        raw=doc,
    )


def _history_type(raw_type: str) -> MessageType:
    """Read a ChatMessageDTO's type: OutBoundMsg names, `contacts` for contact cards (§5.8)."""
    try:
        return MessageType("contact" if raw_type == "contacts" else raw_type)
    except ValueError:
        return MessageType.UNKNOWN


def history_message(item: JSON, contact_id: str = "") -> HistoryMessage | None:
    """Read one ChatMessageDTO (spec §3.4, §6.7); None without any id."""
    external_id = schemas.as_str(item.get("messageId"), "messageId")
    external_id_ext = schemas.as_str(item.get("messageIdExt"), "messageIdExt")
    if not external_id and not external_id_ext:
        return None
    raw_status = schemas.as_str(item.get("status"), "status").upper()
    sender = schemas.as_str(item.get("sender"), "sender")
    contact = _obj(item.get("contact"))
    customer = contact_id or schemas.as_str(contact.get("contactId"), "contact.contactId")
    # Direction is not a field: RECEIVD marks inbound; so does the contact being the sender.
    outbound = raw_status != "RECEIVD" and not (customer and sender == customer)
    attachments = schemas.as_list(item.get("attachments"), "attachments")
    media = None
    if attachments and isinstance(attachments[0], dict):
        first = attachments[0]
        media = Media(
            link=schemas.as_str(first.get("mediaURL") or first.get("mediaSrc"), "mediaURL"),
            mime_type=schemas.as_str(first.get("mediaMimeType"), "mediaMimeType"),
            filename=schemas.as_str(first.get("mediaName"), "mediaName"),
            caption=schemas.as_str(first.get("mediaCaption"), "mediaCaption"),
            media_id=schemas.as_str(first.get("mediaId"), "mediaId"),
        )
    raw_type = schemas.as_str(item.get("type"), "type").lower() or "text"
    warnings: list[str] = []
    sent_at = schemas.parse_timestamp(item.get("timestamp"), "timestamp", warnings)
    if sent_at is None:
        # `stamps` maps each status to when it was reached (§3.4): the earliest is the send.
        stamps = _obj(item.get("stamps"))
        times = [schemas.parse_timestamp(v, "stamps", warnings) for v in stamps.values()]
        sent_at = min((t for t in times if t is not None), default=None)
    return HistoryMessage(
        external_id=external_id or f"ext:{external_id_ext}",
        external_id_ext=external_id_ext,
        outbound=outbound,
        type=_history_type(raw_type),
        body=schemas.as_str(item.get("text"), "text"),
        sent_at=sent_at,
        # A status it does not name (e.g. RECEIVD): listed, so at least sent.
        status=schemas.RECEIPT_STATUS.get(raw_status, DeliveryStatus.SENT),
        media=media,
        raw_type=raw_type,
        raw=item,
    )
