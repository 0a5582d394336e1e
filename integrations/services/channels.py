"""Find, create and sync the channels of a platform account."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from integrations.base import ChannelInfo, Medium, ProviderError, with_fresh_credentials
from integrations.models import Channel, ProviderAccount, SyncRun
from integrations.payload import key_fit
from integrations.registry import get_provider
from integrations.services.accounts import account_health_record
from integrations.ttl_cache import TTLCache

UNKNOWN_CHANNEL_ID = "unknown"


def _lane_placeholder(lane: str) -> str:
    return key_fit(f"lane:{lane}", 255)  # (a lane fills the column: hashed, not cut)


def channel_find(
    account: ProviderAccount, *, external_id: str = "", lane: str = ""
) -> Channel | None:
    """Return the channel with this platform id, or (lacking one) this business lane.

    A channel first known only by its lane (session events carry no channelId) has a
    placeholder id; once a callback or the channel list names the real id, it takes it over.
    """
    if external_id:
        channel = Channel.objects.filter(account=account, external_id=external_id).first()
        if channel is not None or not lane:
            return channel
        placeholder = Channel.objects.filter(
            account=account, external_id=_lane_placeholder(lane)
        ).first()
        if placeholder is not None and Channel.objects.filter(
            pk=placeholder.pk, external_id=_lane_placeholder(lane)
        ).update(external_id=external_id):
            placeholder.external_id = external_id
            return placeholder
        return None
    if lane:
        return (
            Channel.objects.filter(account=account, lane=lane).order_by("discovered", "id").first()
        )
    return Channel.objects.filter(account=account, external_id=UNKNOWN_CHANNEL_ID).first()


# Channels found by their platform id, per process, for CHANNEL_CACHE_SECONDS: every inbound
# message names its channel, and channels change rarely (a rename shows up a few seconds late).
_found: TTLCache[tuple[object, str], Channel] = TTLCache(lambda: settings.CHANNEL_CACHE_SECONDS)


def channels_cache_clear() -> None:
    """Forget the channels this process has cached."""
    _found.clear()


def channel_resolve(
    account: ProviderAccount, *, external_id: str = "", lane: str = "", medium: str = ""
) -> Channel:
    """Return the account's channel for a platform channel id or business lane, creating it.

    Inbound traffic can name a channel we have not synced yet; it is created active and marked
    `discovered` so nothing is lost and an admin can see where it came from.
    """
    cache_key = (account.pk, external_id)
    if external_id:
        cached = _found.get(cache_key)
        if cached is not None:
            return cached
    channel = channel_find(account, external_id=external_id, lane=lane)
    if channel is not None:
        if external_id and channel.external_id == external_id:
            _found.put(cache_key, channel)
        return channel
    medium = medium if medium in Medium._value2member_map_ else Medium.OTHER.value
    if external_id or lane:
        key = external_id or _lane_placeholder(lane)
        defaults = {"medium": medium, "lane": lane, "name": lane[:200], "discovered": True}
    else:
        key = UNKNOWN_CHANNEL_ID
        defaults = {"medium": Medium.OTHER.value, "name": "Unknown channel", "discovered": True}
    channel, _ = Channel.objects.get_or_create(account=account, external_id=key, defaults=defaults)
    return channel


@dataclass
class ChannelSyncResult:
    """What a channel sync changed."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.created} new, {self.updated} updated, {self.unchanged} unchanged"


def channels_sync(account: ProviderAccount, *, trigger: str = "command") -> ChannelSyncResult:
    """Create or update the account's channels from the platform's list.

    New channels arrive inactive unless the account's options say `activate_new_channels`, so
    an admin decides who serves them first. A channel already known from inbound traffic keeps
    its active flag and takes the platform's name.
    """
    provider = get_provider(account.kind)
    run = SyncRun.objects.create(account=account, kind=SyncRun.Kind.CHANNELS, trigger=trigger)
    try:
        listed = with_fresh_credentials(provider, account.config(), provider.list_channels)
    except ProviderError as exc:
        account_health_record(account, error=f"Channel sync failed: {exc}")
        SyncRun.objects.filter(pk=run.pk).update(
            state=SyncRun.State.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        raise
    activate = bool((account.options or {}).get("activate_new_channels", False))
    result = ChannelSyncResult()
    for info in listed:
        channel = channel_find(account, external_id=info.external_id, lane=info.lane)
        if channel is None:
            channel, created = Channel.objects.get_or_create(
                account=account,
                external_id=info.external_id,
                defaults={**_fields(info), "is_active": activate, "discovered": False},
            )
            if created:
                result.created += 1
                continue
            # Inbound traffic discovered it since `channel_find` looked: update it as found.
        changed = [key for key, value in _fields(info).items() if getattr(channel, key) != value]
        for key in changed:
            setattr(channel, key, _fields(info)[key])
        if channel.discovered:
            channel.discovered = False
            changed.append("discovered")
        if changed:
            channel.save(update_fields=[*changed, "updated_at"])
            result.updated += 1
        else:
            result.unchanged += 1
    account_health_record(account)
    SyncRun.objects.filter(pk=run.pk).update(
        state=SyncRun.State.SUCCEEDED,
        finished_at=timezone.now(),
        total=len(listed),
        processed=len(listed),
        created=result.created,
        updated=result.updated,
    )
    return result


def _fields(info: ChannelInfo) -> dict[str, object]:
    return {
        "medium": info.medium,
        "lane": info.lane,
        "name": info.name or info.lane,
        "raw": info.raw,
    }
