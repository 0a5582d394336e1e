"""Fixtures that run the real processes against PostgreSQL and Redis on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
from django.db import connection

from integrations.models import ProviderAccount
from integrations.services.accounts import account_webhook_register
from tests.e2e.harness import Stack

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


@pytest.fixture(scope="session")
def stack(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Stack]:
    if connection.vendor != "postgresql":
        pytest.skip("end-to-end tests need PostgreSQL (DATABASE_URL)")
    try:
        redis.Redis.from_url(E2E_REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"end-to-end tests need Redis at {E2E_REDIS_URL}")
    with Stack(database_url=_database_url(), redis_url=E2E_REDIS_URL) as running:
        yield running


@pytest.fixture
def e2e_account(stack: Stack, transactional_db: None, settings: Any) -> ProviderAccount:
    """An XMS account at the sandbox whose callback URL is registered there."""
    settings.PUBLIC_BASE_URL = stack.web_url
    account = ProviderAccount.objects.create(
        kind="xms",
        name="E2E sandbox",
        base_url=f"{stack.sandbox_url}/xms",
        api_key=stack.api_key,
        verify_token=stack.verify_token,
    )
    account_webhook_register(account)
    stack.sandbox("POST", "faults", {"duplicate_rate": 0, "reorder_rate": 0, "drop_rate": 0})
    return account


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    running = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(running, Stack):
        report.sections.append(("processes (last lines of each log)", running.logs()))
