"""Sign-in throttling, hashed API tokens, token-guessing throttling and security headers."""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import redis
from axes.models import AccessAttempt
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.authentication import TokenFailureThrottle, token_failures_reset
from accounts.models import ApiToken, User
from accounts.services import api_token_create, api_token_revoke
from config.env import BASE_DIR
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pass-word-123"  # tests.factories.UserFactory's


def sign_in(path: str, username: str, password: str, address: str) -> Any:
    """Post the sign-in form of `path` (/login/ or /admin/login/) from `address`."""
    return Client(REMOTE_ADDR=address).post(
        path, {"username": username, "password": password}, REMOTE_ADDR=address
    )


def signed_in(response: Any) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


# --- Sign-in throttling (django-axes) -------------------------------------------------------


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_an_account_is_locked_out_after_the_limit_of_wrong_passwords_from_any_addresses(path):
    user = UserFactory(is_staff=True)
    limit = settings.AXES_FAILURE_LIMIT

    for n in range(limit - 1):
        assert sign_in(path, user.username, "wrong", f"198.51.100.{n}").status_code == 200
    # The failure that reaches the limit is answered with the lockout page already.
    assert sign_in(path, user.username, "wrong", "198.51.100.250").status_code == 429

    locked = sign_in(path, user.username, PASSWORD, "203.0.113.99")

    assert locked.status_code == 429
    assert "_auth_user_id" not in locked.client.session
    assert b"Too many sign-in attempts" in locked.content


def test_an_address_is_locked_out_after_the_limit_of_wrong_passwords_for_any_accounts():
    victims = [UserFactory() for _ in range(settings.AXES_FAILURE_LIMIT)]
    someone = UserFactory()
    answers = [sign_in("/login/", v.username, "wrong", "192.0.2.10").status_code for v in victims]
    assert answers == [200] * (len(victims) - 1) + [429]

    from_that_address = sign_in("/login/", someone.username, PASSWORD, "192.0.2.10")
    from_elsewhere = sign_in("/login/", someone.username, PASSWORD, "192.0.2.11")

    assert from_that_address.status_code == 429
    assert signed_in(from_elsewhere)


def test_a_successful_sign_in_clears_its_accounts_failures():
    user = UserFactory()
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        sign_in("/login/", user.username, "wrong", "192.0.2.20")

    assert signed_in(sign_in("/login/", user.username, PASSWORD, "192.0.2.20"))
    for _ in range(limit - 1):
        assert sign_in("/login/", user.username, "wrong", "192.0.2.20").status_code == 200
    assert signed_in(sign_in("/login/", user.username, PASSWORD, "192.0.2.20"))


def test_another_accounts_sign_in_does_not_clear_the_failures_piled_on_an_account():
    victim, attacker = UserFactory(), UserFactory()
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        sign_in("/login/", victim.username, "wrong", "192.0.2.30")
    assert signed_in(sign_in("/login/", attacker.username, PASSWORD, "192.0.2.30"))

    sign_in("/login/", victim.username, "wrong", "192.0.2.30")

    assert sign_in("/login/", victim.username, PASSWORD, "192.0.2.31").status_code == 429


def test_the_lockout_page_says_when_to_try_again_and_signing_in_works_after_the_cool_off():
    user = UserFactory()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in("/login/", user.username, "wrong", "192.0.2.40")

    before = timezone.now()
    locked = sign_in("/login/", user.username, PASSWORD, "192.0.2.40")

    cool_off = settings.AXES_COOLOFF_TIME
    assert locked.status_code == 429
    assert locked["Retry-After"] == str(int(cool_off.total_seconds()))
    retry_at = locked.context["retry_at"]
    assert before + cool_off <= retry_at <= timezone.now() + cool_off
    assert f"{retry_at:%H:%M}".encode() in locked.content
    assert b'data-testid="locked-out-until"' in locked.content

    AccessAttempt.objects.update(attempt_time=timezone.now() - cool_off - timedelta(seconds=1))
    assert signed_in(sign_in("/login/", user.username, PASSWORD, "192.0.2.40"))


def test_a_wrong_password_below_the_limit_shows_the_form_with_its_error():
    user = UserFactory()

    response = sign_in("/login/", user.username, "wrong", "192.0.2.50")

    assert response.status_code == 200
    assert b'data-testid="login-error"' in response.content


# --- API tokens: hashed, revocable, expiring --------------------------------------------------


def api(key: str, *, keyword: str = "Token", address: str = "127.0.0.1") -> Any:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {key}")
    return client.get("/api/v1/channels/", REMOTE_ADDR=address)


def test_the_database_never_contains_the_full_token():
    user = UserFactory()

    token, key = api_token_create(user, name="CRM")

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken")
        stored = [str(value) for row in cursor.fetchall() for value in row]
    assert not any(key in value for value in stored)
    assert not any(key[len(token.prefix) :] in value for value in stored)
    assert token.digest == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(token.prefix) and len(token.prefix) <= 8 < len(key)


@pytest.mark.parametrize("keyword", ["Token", "Bearer", "token"])
def test_a_token_authenticates_its_user_with_the_token_or_bearer_header(keyword):
    user = UserFactory()
    _, key = api_token_create(user, name="CRM")

    response = api(key, keyword=keyword)

    assert response.status_code == 200
    assert ApiToken.objects.get().last_used_at is not None


def test_a_revoked_token_is_refused_with_401_that_says_it_was_revoked():
    token, key = api_token_create(UserFactory(), name="CRM")
    assert api(key).status_code == 200

    assert api_token_revoke(token) is True
    assert api_token_revoke(token) is False
    response = api(key)

    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"
    assert "revoked" in response.json()["detail"]


def test_an_expired_token_is_refused_with_401_that_says_it_expired():
    token, key = api_token_create(
        UserFactory(), name="CRM", expires_at=timezone.now() + timedelta(days=1)
    )
    assert api(key).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = api(key)

    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_deactivated_users_token_is_refused_with_401():
    user = UserFactory()
    _, key = api_token_create(user, name="CRM")
    User.objects.filter(pk=user.pk).update(is_active=False)

    response = api(key)

    assert response.status_code == 401
    assert "inactive" in response.json()["detail"]


def test_a_token_cannot_be_made_already_expired():
    with pytest.raises(ValueError, match="future"):
        api_token_create(UserFactory(), name="CRM", expires_at=timezone.now())


def test_the_management_command_prints_a_working_key_once(capsys):
    user = UserFactory()

    call_command(
        "api_token_create", user.username, "--name", "Nightly export", "--expires-days", "30"
    )

    key = capsys.readouterr().out.strip()
    token = ApiToken.objects.get()
    assert token.name == "Nightly export" and token.user == user
    assert token.expires_at is not None
    assert token.expires_at - timezone.now() > timedelta(days=29)
    assert api(key).status_code == 200


def test_the_admin_creates_a_token_shows_its_key_once_and_revokes_it(admin_client):
    user = UserFactory()

    created = admin_client.post(
        "/admin/accounts/apitoken/add/", {"user": user.pk, "name": "Zapier", "expires_at": ""}
    )

    assert created.status_code == 200
    key = created.context["key"]
    assert key.encode() in created.content
    assert "no-store" in created["Cache-Control"]
    assert api(key).status_code == 200
    token = ApiToken.objects.get()
    listing = admin_client.get("/admin/accounts/apitoken/")
    detail = admin_client.get(f"/admin/accounts/apitoken/{token.pk}/change/")
    assert key.encode() not in listing.content and key.encode() not in detail.content
    assert token.prefix.encode() in listing.content

    admin_client.post(
        "/admin/accounts/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )

    assert api(key).status_code == 401
    assert b"Revoked" in admin_client.get("/admin/accounts/apitoken/").content


def test_the_admin_refuses_an_expiry_in_the_past(admin_client):
    response = admin_client.post(
        "/admin/accounts/apitoken/add/",
        {
            "user": UserFactory().pk,
            "name": "Old",
            "expires_at_0": "2001-01-01",
            "expires_at_1": "00:00",
        },
    )

    assert response.status_code == 200
    assert b"The expiry must be in the future." in response.content
    assert not ApiToken.objects.exists()


def test_existing_drf_tokens_are_carried_over_hashed_and_their_plain_keys_deleted():
    user = UserFactory()
    old_key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    migration = importlib.import_module("accounts.migrations.0002_api_tokens_hashed")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp with time zone NOT NULL, user_id bigint NOT NULL)"
            if connection.vendor == "postgresql"
            else "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created datetime NOT NULL, user_id bigint NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [old_key, timezone.now() - timedelta(days=400), user.pk],
        )

    migration.import_authtoken_keys(apps, SimpleNamespace(connection=connection))

    token = ApiToken.objects.get()
    assert token.user == user and token.prefix == old_key[:8]
    assert token.created_at < timezone.now() - timedelta(days=399)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
    assert api(old_key).status_code == 200


# --- Token guessing ---------------------------------------------------------------------------


@pytest.fixture
def guesser() -> Iterator[str]:
    """An address of its own, its count cleared before and after, on a frozen throttle clock."""
    address = "203.0.113.66"
    token_failures_reset(address)
    with mock.patch.object(TokenFailureThrottle, "timer", lambda self: 1_000_000.0):
        yield address
    token_failures_reset(address)


def test_guessing_tokens_from_one_address_gets_429_after_the_limit(guesser):
    _, key = api_token_create(UserFactory(), name="CRM")
    limit = TokenFailureThrottle().num_requests

    answers = [api(f"guess-{n}", address=guesser).status_code for n in range(limit)]
    blocked = api("guess-more", address=guesser)

    assert answers == [401] * limit
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "throttled"
    assert int(blocked["Retry-After"]) > 0
    # The address is refused before any key is looked up, so a right guess is no use either.
    assert api(key, address=guesser).status_code == 429
    # Everyone else is unaffected.
    assert api(key, address="203.0.113.67").status_code == 200
    assert api("guess-x", address="203.0.113.67").status_code == 401


def test_valid_tokens_never_count_towards_the_guessing_limit(guesser):
    _, key = api_token_create(UserFactory(), name="CRM")
    limit = TokenFailureThrottle().num_requests

    for n in range(limit - 1):
        assert api(f"guess-{n}", address=guesser).status_code == 401
    for _ in range(limit * 2):
        assert api(key, address=guesser).status_code == 200

    assert api("guess-last", address=guesser).status_code == 401
    assert api("guess-over", address=guesser).status_code == 429


def test_a_clients_own_forwarded_for_header_does_not_escape_the_guessing_limit(guesser):
    limit = TokenFailureThrottle().num_requests
    for n in range(limit):
        client = APIClient(REMOTE_ADDR=guesser)
        client.credentials(HTTP_AUTHORIZATION=f"Token guess-{n}")
        client.get("/api/v1/channels/", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")

    assert api("guess-more", address=guesser).status_code == 429


def test_tokens_are_still_checked_when_the_cache_is_down(guesser, caplog):
    _, key = api_token_create(UserFactory(), name="CRM")
    down = mock.patch.object(
        TokenFailureThrottle.cache, "get", side_effect=redis.ConnectionError("refused")
    )

    with down:
        valid, invalid = api(key, address=guesser), api("guess", address=guesser)

    assert valid.status_code == 200
    assert invalid.status_code == 401
    assert "the cache is unreachable" in caplog.text


# --- Headers ----------------------------------------------------------------------------------


def csp_directives(response: Any) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in header.split(";")
        if part.strip()
    }


PAGES = [
    "/",
    "/?status=all",
    "/admin/",
    "/admin/accounts/apitoken/",
    "/admin/accounts/apitoken/add/",
    "/admin/accounts/user/",
    "/admin/integrations/webhookevent/",
    "/admin/axes/accessattempt/",
    "/api/docs/",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_a_content_security_policy_without_unsafe_inline(admin_client, path):
    response = admin_client.get(path)

    assert response.status_code == 200
    directives = csp_directives(response)
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'self'"
    assert directives["form-action"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]


def test_the_signed_out_sign_in_and_lockout_pages_have_the_policy_too():
    user = UserFactory()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in("/login/", user.username, "wrong", "192.0.2.60")

    pages = [
        Client().get("/login/"),
        Client().get("/admin/login/"),
        sign_in("/login/", user.username, PASSWORD, "192.0.2.60"),
    ]

    for page in pages:
        assert csp_directives(page)["script-src"] == "'self'"
        assert "unsafe-inline" not in page["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/login/", "/api/v1/channels/", "/healthz", "/no-such-page/"])
def test_every_response_has_a_permissions_policy_that_turns_off_unused_features(path):
    response = Client().get(path)

    policy = response["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in policy


# --- Production settings ----------------------------------------------------------------------


def run_with_settings(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a fresh process with `env` over the current one (no test settings)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SIGNIN_"))}
    return subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings.base", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x7Kp2Qm9Rt4Vw8Yz1Bn5Cd3Fg6Hj0Lq",
    "FIELD_ENCRYPTION_KEYS": "kEL0sDxGSVDjRZ2zGhGYyOp-X9ncxX9BbSK7Sn5qV4M=",
    "DJANGO_ALLOWED_HOSTS": "inbox.example.com",
}

SHOW = (
    "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
    "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
)


def test_check_deploy_is_clean_with_production_settings():
    result = run_with_settings(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_redirect_to_https_and_send_hsts_and_make_run_does_not():
    production = run_with_settings(PRODUCTION, "shell", "-v", "0", "-c", SHOW)
    development = run_with_settings({"DJANGO_DEBUG": "1"}, "shell", "-v", "0", "-c", SHOW)

    assert production.stdout.split() == ["True", "31536000", "True", "True"], production.stderr
    assert development.stdout.split() == ["False", "0", "False", "False"], development.stderr
