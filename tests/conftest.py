"""Shared fixtures: a platform account, a callback poster, and the XMS example bodies."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from integrations.models import ProviderAccount
from tests.factories import ProviderAccountFactory

FIXTURES = Path(__file__).parent / "fixtures"
# The Redis database the tests of live events and drain kicks write to (they flush their keys);
# not the benchmark's (14) nor the end-to-end stack's (E2E_REDIS_URL, 9).
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def load_fixture(provider: str, name: str) -> dict[str, Any]:
    """Return a platform example body from tests/fixtures/<provider>/<name>.json."""
    return json.loads((FIXTURES / provider / f"{name}.json").read_text())


_LOCAL_HOSTS = ("localhost", "127.", "::1", "::ffff:127.")
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect


def _is_local(host: object) -> bool:
    return isinstance(host, str) and (host == "" or host.startswith(_LOCAL_HOSTS))


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host is not None and not _is_local(host):
        raise OSError(
            f"tests must not reach the network (looked up {host!r}); stub it with `responses`"
        )
    return _real_getaddrinfo(host, *args, **kwargs)


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if isinstance(address, tuple) and not _is_local(address[0]):
        raise OSError(f"tests must not reach the network (connected to {address!r})")
    return _real_connect(self, address)


def pytest_configure(config: pytest.Config) -> None:
    # Only loopback is allowed: PostgreSQL, Redis and the processes the e2e tests start.
    socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]


def pytest_report_header() -> str:
    return f"database: {connection.vendor} (set DATABASE_URL for PostgreSQL)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (CI does)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _api_token_failures_forgotten() -> None:
    """Unknown API keys counted for the test client's address (in Redis) start at zero."""
    from accounts.authentication import token_failures_reset

    token_failures_reset("127.0.0.1")


@pytest.fixture
def account(db: None) -> ProviderAccount:
    return ProviderAccountFactory()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def send(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """Send a draft and run its delivery task, as the worker would; return the message."""
    from inbox.services.outbound import message_send

    def run(session: Any, draft: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            message, _ = message_send(session, draft, **kwargs)
        message.refresh_from_db()
        return message

    return run


# A WhatsApp channel, an agent whose team serves it, and a browser signed in as that agent: the
# everyday world of the page tests (a test module may define its own instead).
@pytest.fixture
def channel(account: ProviderAccount) -> Any:
    from tests.factories import ChannelFactory

    return ChannelFactory(account=account, medium="whatsapp", name="Support")


@pytest.fixture
def agent(channel: Any) -> Any:
    from accounts.models import AgentProfile
    from tests.factories import AgentProfileFactory, TeamFactory

    team = TeamFactory()
    team.channels.add(channel)
    profile = AgentProfileFactory(role=AgentProfile.Role.AGENT)
    team.members.add(profile.user)
    return profile.user


@pytest.fixture
def as_agent(agent: Any) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(agent)
    return client


Poster = Callable[..., Any]


@pytest.fixture
def test_redis(settings: Any) -> Iterator[Any]:
    """Point REDIS_URL at the tests' Redis (skip without one) and yield a client of it; the
    process's shared client is rebuilt before and after."""
    import redis

    from config.redis import redis_client

    if not redis_up(TEST_REDIS_URL):
        pytest.skip(f"needs Redis at {TEST_REDIS_URL}")
    settings.REDIS_URL = TEST_REDIS_URL
    redis_client.cache_clear()
    yield redis.Redis.from_url(TEST_REDIS_URL)
    redis_client.cache_clear()


@pytest.fixture(params=["one task per callback", "the drain"])
def post_callback_each_path(
    request: pytest.FixtureRequest,
    settings: Any,
    api_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> Poster:
    """`post_callback`, once through one task per callback and once through the production
    path: the drain (Redis kick, callbacks claimed in batches, plain customer messages
    applied in bulk) with the account and channel caches on. A module of inbound behaviour
    tests runs on both by overriding `post_callback` with it (see test_inbound_processing)."""
    if request.param == "the drain":
        from integrations.services import webhooks

        request.getfixturevalue("test_redis").delete(webhooks.KICK_KEY)
        settings.WEBHOOK_DRAIN = True
        # The per-process caches as in production (each test's account is a new one).
        settings.WEBHOOK_ACCOUNT_CACHE_SECONDS = 5.0
        settings.CHANNEL_CACHE_SECONDS = 5.0
    return _poster(api_client, django_capture_on_commit_callbacks)


def _poster(api_client: APIClient, capture: Any) -> Poster:
    """Post a body to an account's webhook the way the platform does; run its task on commit."""

    def post(
        account: ProviderAccount,
        body: Any,
        *,
        token: str | None = None,
        subpath: str = "",
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        url = account.webhook_path + (f"{subpath}" if subpath else "")
        headers = {}
        token = account.verify_token if token is None else token
        if token:
            headers["HTTP_X_VERIFY_TOKEN"] = token
        data = raw if raw is not None else json.dumps(body).encode()
        with capture(execute=True):
            return api_client.generic("POST", url, data, content_type=content_type, **headers)

    return post


@pytest.fixture
def post_callback(
    api_client: APIClient, django_capture_on_commit_callbacks: Any
) -> Iterator[Poster]:
    """Post a body to an account's webhook the way the platform does; run its task on commit."""
    yield _poster(api_client, django_capture_on_commit_callbacks)


@pytest.fixture
def xms_session(account: ProviderAccount) -> Any:
    """A WhatsApp session with John Doe, ids as in the platform's documented examples."""
    from tests.factories import ChannelFactory, ContactFactory, make_session

    channel = ChannelFactory(account=account, external_id="wa360:918828218374", medium="whatsapp")
    contact = ContactFactory(account=account, name="John Doe", phone="919988776655")
    return make_session(
        account,
        channel,
        contact=contact,
        identity_external_id="wa919988776655_918828218374",
        external_id="xsds34434",
    )


def redis_up(url: str) -> bool:
    """Say whether a Redis server answers at `url` (tests that need one skip without it)."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False
