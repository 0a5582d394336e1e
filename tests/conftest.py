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

# The S3 storage fixture (`s3_storage`: a fresh bucket of the S3 server .ci/run starts).
pytest_plugins = ["tests.s3"]

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
    from inbox.services.send import message_send

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
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register the fake platform (`integrations.fake`) under the kind "fake" for a test."""
    from integrations import registry

    monkeypatch.setitem(registry.PROVIDERS, "fake", "integrations.fake.provider.FakeProvider")
    registry.get_provider.cache_clear()
    yield
    registry.get_provider.cache_clear()


@pytest.fixture
def fake_account(fake_registered: None) -> ProviderAccount:
    """An account on a fake platform of its own (polled, no sessions to route, no templates)."""
    import uuid

    account: ProviderAccount = ProviderAccountFactory(
        kind="fake", name="Fake", base_url=f"https://fake-{uuid.uuid4().hex}.invalid"
    )
    return account


@pytest.fixture
def fake_platform(fake_account: ProviderAccount) -> Any:
    """The in-memory platform behind `fake_account` (`integrations.fake.provider.FakePlatform`)."""
    from integrations.fake.provider import PLATFORMS, FakePlatform

    return PLATFORMS.setdefault(fake_account.base_url, FakePlatform())


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


# How the behaviour tests of inbound processing apply what they post (`post_callback_each_path`).
ONE_TASK_EACH = "a task per callback, each a batch of one"
DRAIN_EACH = "the drain, a batch per callback"
DRAIN_BATCHED = "the drain, the callbacks posted in a row as one batch"


@pytest.fixture(params=[ONE_TASK_EACH, DRAIN_EACH, DRAIN_BATCHED])
def post_callback_each_path(
    request: pytest.FixtureRequest,
    settings: Any,
    api_client: APIClient,
    django_capture_on_commit_callbacks: Any,
) -> Iterator[Poster]:
    """`post_callback` three ways: once through one task per callback (the inbox's pipeline
    with a batch of one each), and twice through the production path: the drain (Redis kick,
    callbacks claimed in batches), with the account and channel caches on, once draining after
    each callback, and once applying every callback posted in a row as one batch.

    Batched: a post only stores the callback (its drain kick is not run); the batch is drained
    just before the test's next database statement, that is when the test looks (or sets
    something up), which is how a burst reaches a drain in production. A module of inbound
    behaviour tests runs on all three by overriding `post_callback` with it (see
    test_inbound_processing).
    """
    if request.param == ONE_TASK_EACH:
        yield _poster(api_client, django_capture_on_commit_callbacks)
        return
    from integrations.services import webhooks

    request.getfixturevalue("test_redis").delete(webhooks.KICK_KEY)
    settings.WEBHOOK_DRAIN = True
    # The per-process caches as in production (each test's account is a new one).
    settings.WEBHOOK_ACCOUNT_CACHE_SECONDS = 5.0
    settings.CHANNEL_CACHE_SECONDS = 5.0
    if request.param == DRAIN_EACH:
        yield _poster(api_client, django_capture_on_commit_callbacks)
        return
    batch = _Batch(django_capture_on_commit_callbacks)
    with connection.execute_wrapper(batch.before_statement):
        yield batch.poster(api_client)


class _Batch:
    """Callbacks posted in a row, drained as one batch before the test's next statement."""

    def __init__(self, capture: Any) -> None:
        self.capture = capture
        self.stored = 0  # posted and not drained yet
        self.busy = False  # posting or draining: their own statements do not drain

    def poster(self, api_client: APIClient) -> Poster:
        post = _poster(api_client, self.capture, run_on_commit=False)

        def post_stored(*args: Any, **kwargs: Any) -> Any:
            self.busy = True
            try:
                response = post(*args, **kwargs)
            finally:
                self.busy = False
            self.stored += 1
            return response

        return post_stored

    def before_statement(
        self, execute: Any, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        if self.stored and not self.busy:
            self.drain()
        return execute(sql, params, many, context)

    def drain(self) -> None:
        from integrations.services.webhooks import webhook_events_drain

        self.busy = True
        try:
            with self.capture(execute=True):
                # (Everything posted since the last statement, at once: a batch of many.)
                webhook_events_drain(batch=max(self.stored, 50))
        finally:
            self.stored, self.busy = 0, False


def _poster(api_client: APIClient, capture: Any, *, run_on_commit: bool = True) -> Poster:
    """Post a body to an account's webhook the way the platform does; run its task on commit
    (or, with `run_on_commit=False`, leave the stored callback for a drain)."""

    def post(
        account: ProviderAccount,
        body: Any,
        *,
        token: str | None = None,
        subpath: str = "",
        raw: bytes | None = None,
        content_type: str = "application/json",
        auth_header: str = "HTTP_X_VERIFY_TOKEN",
    ) -> Any:
        url = account.webhook_path + (f"{subpath}" if subpath else "")
        headers = {}
        token = account.verify_token if token is None else token
        if token:
            headers[auth_header] = token
        data = raw if raw is not None else json.dumps(body).encode()
        with capture(execute=run_on_commit):
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
