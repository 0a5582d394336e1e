"""The Mehery XMS provider: callbacks in, contact replies out (outbound calls join later)."""

from __future__ import annotations

from integrations.base import JSON, AccountConfig, Callback, ChannelInfo, ContactView, Provider
from integrations.xms import schemas
from integrations.xms.client import XmsClient


class XmsProvider(Provider):
    """Translate Mehery XMS JSON (spec: reference/mehery-xms.md) to the provider contract."""

    kind = "xms"
    label = "Mehery XMS"
    ingest = "webhook"
    # §4.0: the platform may post to the registered URL as-is or with these paths appended.
    callback_subpaths = ("api/v1/message/receive", "api/v1/contact/info", "api/v1/action/event")

    def parse_callback(self, body: JSON) -> Callback:
        """Dispatch on the body's shape (§4.0)."""
        return schemas.parse_callback(body)

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
        return XmsClient(account).set_webhook(url)

    def list_channels(self, account: AccountConfig) -> list[ChannelInfo]:
        """GET config/channels (spec §2.1) as ChannelInfo."""
        channels = []
        for item in XmsClient(account).list_channels():
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
