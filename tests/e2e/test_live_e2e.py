"""Live updates reach an open browser stream through the real processes, worker or not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection

from accounts.models import User
from devstack import Stack, wait_for
from inbox.models import Message
from tests.conftest import load_fixture, redis_up
from tests.e2e.conftest import E2E_REDIS_URL, _database_url
from tests.patience import PATIENCE_SECONDS

# A web process whose pool is far smaller than the number of open streams.
SMALL_POOL = 2


def signed_in_cookie(user: User) -> dict[str, str]:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return {settings.SESSION_COOKIE_NAME: store.session_key or ""}


def sse_events(response: requests.Response) -> Iterator[dict[str, Any]]:
    event: dict[str, Any] = {}
    for raw in response.iter_lines(decode_unicode=True):
        if raw == "":
            if "data" in event:
                yield event
            event = {}
        elif raw.startswith("id: "):
            event["id"] = raw[4:]
        elif raw.startswith("event: "):
            event["type"] = raw[7:]
        elif raw.startswith("data: "):
            event["data"] = json.loads(raw[6:])


def test_with_the_worker_stopped_a_customer_message_still_reaches_the_open_stream(
    stack, e2e_account
):
    agent = User.objects.create_superuser("live-agent", password="not-used-0123")
    stream = requests.get(
        f"{stack.web_url}/live/events/",
        cookies=signed_in_cookie(agent),
        stream=True,
        timeout=PATIENCE_SECONDS,
    )
    assert stream.status_code == 200, stream.text
    stack.stop_worker()
    try:
        sent = stack.sandbox("POST", "inbound", {"customer": "joao", "type": "text", "text": "Oi!"})
        message_event = next(e for e in sse_events(stream) if e.get("type") == "message.created")
    finally:
        stream.close()
        stack.start_worker()

    message = wait_for(lambda: Message.objects.filter(external_id=sent["id"]).first())
    assert message_event["data"]["message"] == message.pk
    assert message_event["data"]["session"] == message.session_id
    assert message.body == "Oi!"


def test_a_reconnecting_stream_resumes_from_its_last_event_id(stack, e2e_account):
    agent = User.objects.create_superuser("live-agent-2", password="not-used-0123")
    cookies = signed_in_cookie(agent)
    first = requests.get(
        f"{stack.web_url}/live/events/", cookies=cookies, stream=True, timeout=PATIENCE_SECONDS
    )
    stack.sandbox("POST", "inbound", {"customer": "mei", "type": "text", "text": "one"})
    seen = next(e for e in sse_events(first) if e.get("type") == "message.created")
    first.close()

    # While nobody listens, two more messages arrive.
    later = [
        stack.sandbox("POST", "inbound", {"customer": "mei", "type": "text", "text": t})
        for t in ("two", "three")
    ]
    wait_for(lambda: Message.objects.filter(external_id=later[-1]["id"]).exists())
    again = requests.get(
        f"{stack.web_url}/live/events/",
        cookies=cookies,
        stream=True,
        timeout=PATIENCE_SECONDS,
        headers={"Last-Event-ID": seen["id"]},
    )
    caught_up = []
    for event in sse_events(again):
        if event.get("type") == "message.created":
            caught_up.append(event["data"]["message"])
        if len(caught_up) == 2:
            break
    again.close()

    expected = list(
        Message.objects.filter(external_id__in=[m["id"] for m in later])
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    assert caught_up == expected


@pytest.fixture(scope="module")
def small_pool(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Stack]:
    """One web process with a pool of SMALL_POOL connections; a pool timeout of seconds."""
    if connection.vendor != "postgresql":
        pytest.skip("end-to-end tests need PostgreSQL (DATABASE_URL)")
    if not redis_up(E2E_REDIS_URL):
        pytest.skip(f"end-to-end tests need Redis at {E2E_REDIS_URL}")
    env = {"DATABASE_POOL_MAX_SIZE": str(SMALL_POOL), "DATABASE_POOL_TIMEOUT": "3"}
    with Stack(database_url=_database_url(), redis_url=E2E_REDIS_URL, extra_env=env) as running:
        yield running


def test_more_open_streams_than_pooled_connections_leave_pages_and_the_webhook_served(
    small_pool, transactional_db, settings
):
    settings.PUBLIC_BASE_URL = small_pool.web_url
    account = small_pool.account("Small pool")
    agent = User.objects.create_superuser("pool-agent", password="not-used-0123")
    cookies = signed_in_cookie(agent)
    opened = [
        requests.get(
            f"{small_pool.web_url}/live/events/",
            cookies=cookies,
            stream=True,
            timeout=PATIENCE_SECONDS,
        )
        for _ in range(SMALL_POOL * 3)
    ]
    try:
        assert [s.status_code for s in opened] == [200] * len(opened), [s.text for s in opened]
        events = [sse_events(s) for s in opened]
        # Every stream is open and reading (it has said something) before the rest begins.
        assert all(next(e) for e in events)

        pages = [
            requests.get(f"{small_pool.web_url}/", cookies=cookies, timeout=PATIENCE_SECONDS)
            for _ in range(SMALL_POOL * 2)
        ]
        callback = requests.post(
            f"{small_pool.web_url}{account.webhook_path}",
            json=load_fixture("xms", "inbound-message-text"),
            headers={"X-Verify-Token": account.verify_token},
            timeout=PATIENCE_SECONDS,
        )
        assert [p.status_code for p in pages] == [200] * len(pages)
        assert callback.status_code == 200, callback.text

        message = wait_for(lambda: Message.objects.filter(account=account).first())
        with ThreadPoolExecutor(len(events)) as readers:
            received = list(
                readers.map(
                    lambda stream: next(
                        e["data"]["message"]
                        for e in stream
                        if e.get("type") == "message.created" and e["data"]["message"] == message.pk
                    ),
                    events,
                )
            )
    finally:
        for stream in opened:
            stream.close()

    assert received == [message.pk] * len(opened)
