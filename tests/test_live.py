"""Live updates are published on commit and reach only the agents who may see them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import AsyncClient

from config.redis import redis_client
from inbox import live, live_hub
from tests.conftest import TEST_REDIS_URL, load_fixture, redis_up
from tests.factories import ChannelFactory, SessionFactory, TeamFactory, UserFactory
from tests.patience import PATIENCE_SECONDS

LIVE_REDIS = TEST_REDIS_URL


pytestmark = pytest.mark.skipif(not redis_up(LIVE_REDIS), reason=f"needs Redis at {LIVE_REDIS}")


@pytest.fixture
def stream(settings: Any) -> Iterator[redis.Redis]:
    settings.REDIS_URL = LIVE_REDIS
    redis_client.cache_clear()
    client = redis.Redis.from_url(LIVE_REDIS)
    client.delete(live.STREAM)
    yield client
    client.delete(live.STREAM)
    redis_client.cache_clear()


def events_in(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(fields[b"e"]) for _, fields in client.xrange(live.STREAM)]


@pytest.mark.django_db(transaction=True)
def test_an_event_is_published_only_when_its_transaction_commits(stream):
    with transaction.atomic():
        live.publish(live.SESSION_UPDATED, session_id=1, channel_id=2)
        assert events_in(stream) == []

    assert events_in(stream) == [
        {"type": "session.updated", "session": 1, "channel": 2, "message": None}
    ]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_publishes_nothing_and_does_not_stop_later_ones(stream):
    with pytest.raises(RuntimeError), transaction.atomic():
        live.publish(live.MESSAGE_CREATED, session_id=1, channel_id=2, message_id=3)
        raise RuntimeError
    assert events_in(stream) == []

    with transaction.atomic():
        live.publish(live.MESSAGE_CREATED, session_id=1, channel_id=2, message_id=4)

    assert [e["message"] for e in events_in(stream)] == [4]


@pytest.mark.django_db(transaction=True)
def test_an_inbound_callback_publishes_the_new_session_and_message(stream, account, api_client):
    body = load_fixture("xms", "inbound-message-text")
    api_client.post(
        account.webhook_path, body, format="json", HTTP_X_VERIFY_TOKEN=account.verify_token
    )

    kinds = [e["type"] for e in events_in(stream)]
    assert "session.created" in kinds
    assert "message.created" in kinds


def test_without_redis_nothing_is_published_and_pages_poll(settings):
    settings.REDIS_URL = ""
    redis_client.cache_clear()
    try:
        assert not live.enabled()
        live.publish(live.SESSION_UPDATED, session_id=1, channel_id=2)  # no error, no effect
    finally:
        redis_client.cache_clear()


async def _read_sse(
    client: AsyncClient, path: str, want: int, headers: dict[str, str] | None = None
) -> list[str]:
    response = await client.get(path, headers=headers or {})
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/event-stream"
    blocks: list[str] = []
    buffer = ""
    iterator = response.streaming_content.__aiter__()
    while len([b for b in blocks if b.startswith("id:")]) < want:
        chunk = await asyncio.wait_for(iterator.__anext__(), timeout=PATIENCE_SECONDS)
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            blocks.append(block)
    await response.aclose() if hasattr(response, "aclose") else None
    return [b for b in blocks if b.startswith("id:")]


@pytest.mark.django_db(transaction=True)
def test_a_reconnecting_browser_gets_every_event_it_missed_from_last_event_id(stream):
    user = UserFactory(is_superuser=True, is_staff=True)
    live.send([live.Event("session.updated", 1, 10)])
    first_id = live.latest_id()
    live.send([live.Event("message.created", 1, 10, 5), live.Event("message.updated", 1, 10, 5)])
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))

    blocks = asyncio.run(_read_sse(client, "/live/events/", 2, {"Last-Event-ID": first_id}))

    assert [b.splitlines()[1] for b in blocks] == [
        "event: message.created",
        "event: message.updated",
    ]


@pytest.mark.django_db(transaction=True)
def test_an_agent_only_receives_events_of_channels_their_teams_serve(stream):
    agent = UserFactory()
    mine, other = ChannelFactory(), ChannelFactory()
    team = TeamFactory()
    team.members.add(agent)
    team.channels.add(mine)
    start = live.latest_id()
    live.send(
        [live.Event("session.updated", 1, other.pk), live.Event("session.updated", 2, mine.pk)]
    )
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(agent))

    blocks = asyncio.run(_read_sse(client, f"/live/events/?last={start}", 1))

    assert f'"session": 2, "channel": {mine.pk}' in blocks[0]


@pytest.mark.django_db(transaction=True)
def test_the_event_stream_needs_a_signed_in_user(stream):
    response = asyncio.run(AsyncClient().get("/live/events/"))

    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_without_redis_the_event_stream_says_to_poll(settings):
    settings.REDIS_URL = ""
    redis_client.cache_clear()
    user = UserFactory()
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))
    try:
        response = asyncio.run(client.get("/live/events/"))
    finally:
        redis_client.cache_clear()

    assert response.status_code == 503
    assert response.json()["error"] == "live_unavailable"


@pytest.mark.django_db
def test_a_session_event_is_published_on_the_sessions_channel(
    stream, django_capture_on_commit_callbacks
):
    from inbox.services.session_actions import session_assign

    session = SessionFactory()
    with django_capture_on_commit_callbacks(execute=True):
        session_assign(session, assignee=UserFactory())

    assert events_in(stream)[-1] == {
        "type": "session.updated",
        "session": session.pk,
        "channel": session.channel_id,
        "message": None,
    }


@pytest.mark.django_db(transaction=True)
def test_an_open_stream_ends_when_its_session_is_gone_at_the_database_recheck(stream, monkeypatch):
    from inbox import live_views

    monkeypatch.setattr(live_views, "RECHECK_SECONDS", 0)
    monkeypatch.setattr(live_views, "KEEPALIVE_MS", 50)
    user = UserFactory()
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))

    async def run() -> list[str]:
        response = await client.get("/live/events/")
        # Gone without a sign-out (cleared by an admin, expired): only the re-check sees it.
        await sync_to_async(client.session.delete)()
        chunks = []
        async for chunk in response.streaming_content:
            chunks.append(chunk.decode() if isinstance(chunk, bytes) else chunk)
        return chunks

    chunks = asyncio.run(asyncio.wait_for(run(), timeout=PATIENCE_SECONDS))

    assert any("event: live.ended" in c for c in chunks)


async def _blocks_until(response: Any, stop: Any, limit: int = 500) -> list[str]:
    """Read SSE blocks until `stop(block)` says so, the stream ends, or `limit` blocks came."""
    blocks: list[str] = []
    buffer = ""
    iterator = response.streaming_content.__aiter__()
    while len(blocks) < limit:
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), timeout=PATIENCE_SECONDS)
        except StopAsyncIteration:
            break
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            blocks.append(block)
            if stop(block):
                return blocks
    return blocks


@pytest.mark.django_db(transaction=True)
def test_a_stream_quiet_for_longer_than_the_redis_clients_default_timeout_stays_open(
    stream, monkeypatch
):
    from inbox import live_views

    # redis-py's asyncio client gives up on a read after 5 s unless told otherwise; the stream
    # (its process's reader) waits longer than that for the next event.
    monkeypatch.setattr(live_views, "KEEPALIVE_MS", 6_000)
    monkeypatch.setattr(live_hub, "BLOCK_MS", 6_000)
    user = UserFactory(is_superuser=True, is_staff=True)
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))

    async def run() -> list[str]:
        response = await client.get("/live/events/")
        quiet = await _blocks_until(response, lambda b: "event: live." in b, limit=5)
        await asyncio.to_thread(live.send, [live.Event("session.updated", 7, 1)])
        after = await _blocks_until(response, lambda b: b.startswith("id:"), limit=5)
        return quiet + after

    blocks = asyncio.run(run())

    assert not any("live.error" in b for b in blocks), blocks
    assert blocks[-1].startswith("id:") and '"session": 7' in blocks[-1]


@pytest.mark.django_db(transaction=True)
def test_a_redis_error_while_streaming_is_retried_and_the_stream_carries_on(stream, monkeypatch):
    from inbox import live_views

    monkeypatch.setattr(live_views, "KEEPALIVE_MS", 100)
    real_read = live.read
    failures = iter([redis.ConnectionError("Connection reset by peer")] * 2)

    async def flaky_read(*args: Any, **kwargs: Any) -> Any:
        error = next(failures, None)
        if error is not None:
            raise error
        return await real_read(*args, **kwargs)

    monkeypatch.setattr(live, "read", flaky_read)
    user = UserFactory(is_superuser=True, is_staff=True)
    start = live.latest_id()
    live.send([live.Event("message.created", 3, 1, 9)])
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))

    async def run() -> list[str]:
        response = await client.get(f"/live/events/?last={start}")
        return await _blocks_until(response, lambda b: b.startswith("id:"), limit=50)

    blocks = asyncio.run(run())

    assert not any("live.error" in b for b in blocks), blocks
    assert '"message": 9' in blocks[-1]


@pytest.mark.django_db(transaction=True)
def test_redis_down_for_good_ends_the_stream_with_a_retry_hint_for_the_browser(stream, monkeypatch):
    from inbox import live_views

    monkeypatch.setattr(live_views, "KEEPALIVE_MS", 100)
    monkeypatch.setattr(live_hub, "RETRY_SECONDS", (0.01, 0.01))

    async def broken_read(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(live, "read", broken_read)
    user = UserFactory()
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))

    async def run() -> list[str]:
        response = await client.get("/live/events/")
        return await _blocks_until(response, lambda b: False, limit=50)

    blocks = asyncio.run(run())

    assert "event: live.error" in blocks[-1]
    assert "retry:" in blocks[-1]


def _loops_until_the_stream_ends(client: AsyncClient, change: Any) -> list[str]:
    async def run() -> list[str]:
        response = await client.get("/live/events/")
        await _blocks_until(response, lambda b: "event: live.ping" in b, limit=5)
        await sync_to_async(change)()
        return await _blocks_until(response, lambda b: "event: live.ended" in b, limit=300)

    return asyncio.run(run())


@pytest.mark.django_db(transaction=True)
def test_an_open_stream_ends_at_its_next_wait_when_its_user_signs_out(stream, monkeypatch):
    from inbox import live_views

    # The database re-check stays at its period; the sign-out must not wait for it.
    monkeypatch.setattr(live_views, "KEEPALIVE_MS", 100)
    user = UserFactory()
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))

    blocks = _loops_until_the_stream_ends(client, client.logout)

    assert "event: live.ended" in blocks[-1]
    assert len(blocks) <= 3, blocks  # ended at the next turn of its loop


@pytest.mark.django_db(transaction=True)
def test_an_open_stream_ends_at_its_next_wait_when_its_user_is_deactivated(stream, monkeypatch):
    from inbox import live_views

    monkeypatch.setattr(live_views, "KEEPALIVE_MS", 100)
    user = UserFactory()
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))

    def deactivate() -> None:
        user.is_active = False
        user.save()

    blocks = _loops_until_the_stream_ends(client, deactivate)

    assert "event: live.ended" in blocks[-1]
    assert len(blocks) <= 3, blocks


@pytest.mark.django_db(transaction=True)
def test_signing_out_one_browser_leaves_the_same_agents_other_stream_open(stream, monkeypatch):
    from inbox import live_views

    monkeypatch.setattr(live_views, "KEEPALIVE_MS", 100)
    user = UserFactory()
    phone, laptop = AsyncClient(), AsyncClient()
    asyncio.run(sync_to_async(phone.force_login)(user))
    asyncio.run(sync_to_async(laptop.force_login)(user))

    async def run() -> list[str]:
        response = await laptop.get("/live/events/")
        await _blocks_until(response, lambda b: "event: live.ping" in b, limit=5)
        await sync_to_async(phone.logout)()
        return await _blocks_until(response, lambda b: False, limit=10)

    blocks = asyncio.run(run())

    assert not any("live.ended" in b for b in blocks), blocks


@pytest.mark.django_db(transaction=True)
def test_a_stream_that_falls_behind_catches_up_from_redis_missing_nothing_and_sending_nothing_twice(
    stream, monkeypatch
):
    from inbox import live_views

    monkeypatch.setattr(live_views, "KEEPALIVE_MS", 100)
    monkeypatch.setattr(live_hub, "QUEUE_LIMIT", 1)
    user = UserFactory(is_superuser=True, is_staff=True)
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))

    async def until(check: Any) -> None:
        for _ in range(500):
            if check():
                return
            await asyncio.sleep(0.01)
        raise TimeoutError

    async def run() -> list[str]:
        response = await client.get("/live/events/")
        await _blocks_until(response, lambda b: "event: live.ping" in b, limit=5)
        # The stream is not read meanwhile (a slow browser): its queue fills, then overflows.
        (subscription,) = live_hub.hub().subscribers
        await asyncio.to_thread(live.send, [live.Event("message.created", 1, 1, 1)])
        await until(subscription.queue.full)
        for message in (2, 3):
            await asyncio.to_thread(live.send, [live.Event("message.created", 1, 1, message)])
        await until(lambda: subscription.behind)
        blocks = await _blocks_until(response, lambda b: '"message": 3' in b, limit=50)
        return [b for b in blocks if b.startswith("id:")]

    blocks = asyncio.run(run())

    assert [json.loads(b.splitlines()[2][6:])["message"] for b in blocks] == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
def test_when_redis_fails_under_open_streams_they_end_with_live_error_and_new_ones_work_again(
    stream, monkeypatch
):
    from inbox import live_views

    monkeypatch.setattr(live_views, "KEEPALIVE_MS", 100)
    monkeypatch.setattr(live_hub, "BLOCK_MS", 100)
    monkeypatch.setattr(live_hub, "RETRY_SECONDS", (0.01,))
    real_read = live.read
    down = False

    async def read(*args: Any, **kwargs: Any) -> Any:
        if down:
            raise redis.ConnectionError("Connection refused")
        return await real_read(*args, **kwargs)

    monkeypatch.setattr(live, "read", read)
    user = UserFactory(is_superuser=True, is_staff=True)
    client = AsyncClient()
    asyncio.run(sync_to_async(client.force_login)(user))

    async def run() -> tuple[list[str], list[str]]:
        nonlocal down
        first = await client.get("/live/events/")
        await _blocks_until(first, lambda b: "event: live.ping" in b, limit=5)
        down = True
        ended = await _blocks_until(first, lambda b: False, limit=100)
        down = False
        second = await client.get("/live/events/")
        await _blocks_until(second, lambda b: "event: live.ping" in b, limit=5)
        await asyncio.to_thread(live.send, [live.Event("session.updated", 8, 1)])
        again = await _blocks_until(second, lambda b: b.startswith("id:"), limit=50)
        return ended, again

    ended, again = asyncio.run(run())

    assert "event: live.error" in ended[-1]
    assert '"session": 8' in again[-1]
