"""Fixtures that run the real processes against PostgreSQL and Redis on loopback."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
import redis
import requests
from django.db import OperationalError, connection

from devstack import Stack
from integrations.models import ProviderAccount
from tests.patience import PATIENCE_SECONDS

E2E_REDIS_URL = os.environ.get("E2E_REDIS_URL", "redis://127.0.0.1:6379/9")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.postgres)


def _database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{auth}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


FLUSH_TRIES = 10


@pytest.fixture(scope="session", autouse=True)
def flush_outlasts_a_deadlock() -> Iterator[None]:
    """Empty the database after each test even while the stack's processes are still at work.

    The running workers and beat (reapers every few seconds) may hold row locks on two tables
    when the test's teardown TRUNCATEs them all; PostgreSQL then breaks the deadlock by
    aborting one side, sometimes the TRUNCATE, which changed nothing. Trying it again is
    correct: the workers' transactions are short.
    """
    from django.core.management.base import CommandError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(1, FLUSH_TRIES + 1):
            try:
                original(self)
                return
            except (CommandError, OperationalError) as exc:
                causes = (exc, exc.__cause__, exc.__context__)
                if not any("deadlock" in str(c) for c in causes) or attempt == FLUSH_TRIES:
                    raise
                # Let the workers' short transactions end before the next try (a pause, not a
                # bound: the tries are counted).
                time.sleep(0.1 * attempt)

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[method-assign]
    yield
    TransactionTestCase._fixture_teardown = original  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def stack(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Stack]:
    if connection.vendor != "postgresql":
        pytest.skip("end-to-end tests need PostgreSQL (DATABASE_URL)")
    try:
        redis.Redis.from_url(E2E_REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"end-to-end tests need Redis at {E2E_REDIS_URL}")
    fast_retries = {
        # Seconds, not minutes: the fault tests go through many retries.
        "SEND_BACKOFF_BASE_SECONDS": "0.2",
        # A long run of injected faults must not push one retry past the test's wait.
        "SEND_BACKOFF_MAX_SECONDS": "3",
        "SEND_MAX_ATTEMPTS": "20",
        "PLATFORM_READ_TIMEOUT": "1.5",
        "SEND_RECONCILE_AFTER_SECONDS": "1",
        # Evidence of an ambiguous send is sought for seconds, not ten minutes.
        "SEND_CONFIRM_WINDOW_SECONDS": "6",
        # Media downloads: retried within the tests' patience, and given up only after many.
        "MEDIA_FETCH_BACKOFF_SECONDS": "0.3",
        "MEDIA_FETCH_BACKOFF_MAX_SECONDS": "2",
        "MEDIA_FETCH_ATTEMPTS": "40",
        "MEDIA_FETCH_LEASE_SECONDS": "4",
        "MEDIA_SWEEP_INTERVAL_SECONDS": "1",
    }
    with (
        s3_bucket_for_the_stack() as storage_env,
        Stack(
            database_url=_database_url(),
            redis_url=E2E_REDIS_URL,
            extra_env={**fast_retries, **storage_env},
        ) as running,
    ):
        yield running


@contextmanager
def s3_bucket_for_the_stack() -> Iterator[dict[str, str]]:
    """The stack's files in a fresh bucket of the S3-compatible server, when there is one
    (.ci/run starts it); else in the stack's own folder."""
    endpoint = os.environ.get("S3_TEST_ENDPOINT_URL", "")
    if not endpoint:
        yield {}
        return
    import boto3

    bucket = f"e2e-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=bucket)
    try:
        yield {
            "S3_BUCKET": bucket,
            "S3_ENDPOINT_URL": endpoint,
            "S3_ACCESS_KEY_ID": "testing",
            "S3_SECRET_ACCESS_KEY": "testing",
        }
    finally:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        for item in listed:
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)


@pytest.fixture
def e2e_account(stack: Stack, transactional_db: None, settings: Any) -> ProviderAccount:
    """An XMS account at the sandbox whose callback URL is registered there."""
    settings.PUBLIC_BASE_URL = stack.web_url
    # Faults a failed test left behind must not fail the next one's setup.
    stack.sandbox(
        "POST",
        "faults",
        {
            "duplicate_rate": 0,
            "reorder_rate": 0,
            "drop_rate": 0,
            "error_rate": 0,
            "timeout_rate": 0,
            "latency_ms": 0,
            "accept_hang_rate": 0,
            "hang_receipts": True,
            "history_lag_seconds": 0,
            "history_omit_rate": 0,
            "media_latency_ms": 0,
            "media_error_rate": 0,
            "media_ttl_seconds": 0,
            "media_corrupt_rate": 0,
            "media_mislabel_rate": 0,
        },
    )
    # Nor may a conversation it left open: a customer's message would join it, and the new
    # session's history import would bring the earlier test's messages along.
    stack.sandbox("POST", "sessions/end", {})
    account: ProviderAccount = stack.account("E2E sandbox")
    return account


@pytest.fixture
def api(stack: Stack, transactional_db: None) -> Any:
    """A client of the running web server's REST API, signed in as a supervisor."""
    from accounts.models import User
    from accounts.services import api_token_create

    user = User.objects.create_superuser("e2e-admin", password="not-used-0123")
    _, key = api_token_create(user, name="e2e")
    session = requests.Session()
    session.headers["Authorization"] = f"Token {key}"

    class Api:
        def get(self, path: str, **kwargs: Any) -> requests.Response:
            return session.get(f"{stack.web_url}/api/v1/{path}", timeout=PATIENCE_SECONDS, **kwargs)

        def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
            return session.post(
                f"{stack.web_url}/api/v1/{path}", json=body, timeout=PATIENCE_SECONDS, **kwargs
            )

    return Api()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    running = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(running, Stack):
        report.sections.append(("processes (last lines of each log)", running.logs()))
