"""Find or create the channel a callback refers to."""

from __future__ import annotations

from integrations.base import Medium
from integrations.models import Channel, ProviderAccount

UNKNOWN_CHANNEL_ID = "unknown"


def _lane_placeholder(lane: str) -> str:
    return f"lane:{lane}"


def channel_resolve(
    account: ProviderAccount, *, external_id: str = "", lane: str = "", medium: str = ""
) -> Channel:
    """Return the account's channel for a platform channel id or business lane, creating it.

    Inbound traffic can name a channel we have not synced yet; it is created as `discovered`
    so nothing is lost. A channel known only by its lane (session events carry no channelId)
    gets a placeholder id, which is replaced once a callback names the real one.
    """
    medium = medium if medium in Medium._value2member_map_ else Medium.OTHER.value
    if external_id:
        channel = Channel.objects.filter(account=account, external_id=external_id).first()
        if channel is not None:
            return channel
        if lane:
            placeholder = Channel.objects.filter(
                account=account, external_id=_lane_placeholder(lane)
            ).first()
            if placeholder is not None:
                updated = Channel.objects.filter(
                    pk=placeholder.pk, external_id=_lane_placeholder(lane)
                ).update(external_id=external_id)
                if updated:
                    placeholder.external_id = external_id
                    return placeholder
        channel, _ = Channel.objects.get_or_create(
            account=account,
            external_id=external_id,
            defaults={"medium": medium, "lane": lane, "name": lane, "discovered": True},
        )
        return channel
    if lane:
        channel = (
            Channel.objects.filter(account=account, lane=lane).order_by("discovered", "id").first()
        )
        if channel is not None:
            return channel
        channel, _ = Channel.objects.get_or_create(
            account=account,
            external_id=_lane_placeholder(lane),
            defaults={"medium": medium, "lane": lane, "name": lane, "discovered": True},
        )
        return channel
    channel, _ = Channel.objects.get_or_create(
        account=account,
        external_id=UNKNOWN_CHANNEL_ID,
        defaults={"medium": Medium.OTHER.value, "name": "Unknown channel", "discovered": True},
    )
    return channel
