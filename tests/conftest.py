"""Shared fixtures: a platform account, a callback poster, and the XMS example bodies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from integrations.models import ProviderAccount
from tests.factories import ProviderAccountFactory

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(provider: str, name: str) -> dict[str, Any]:
    """Return a platform example body from tests/fixtures/<provider>/<name>.json."""
    return json.loads((FIXTURES / provider / f"{name}.json").read_text())


def pytest_report_header() -> str:
    return f"database: {connection.vendor} (set DATABASE_URL for PostgreSQL)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if connection.vendor != "postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (CI does)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def account(db: None) -> ProviderAccount:
    return ProviderAccountFactory()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


Poster = Callable[..., Any]


@pytest.fixture
def post_callback(
    api_client: APIClient, django_capture_on_commit_callbacks: Any
) -> Iterator[Poster]:
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
        with django_capture_on_commit_callbacks(execute=True):
            return api_client.generic("POST", url, data, content_type=content_type, **headers)

    yield post
