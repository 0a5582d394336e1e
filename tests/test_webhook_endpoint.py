"""The webhook is a public contract: what it answers, and what it stores, for every input."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import override_settings

from inbox.models import Contact, Message
from integrations.models import WebhookEvent
from tests.conftest import load_fixture
from tests.factories import ProviderAccountFactory

pytestmark = pytest.mark.django_db

TEXT = load_fixture("xms", "inbound-message-text")


def test_a_valid_callback_is_stored_and_answered_with_an_empty_json_object(account, post_callback):
    response = post_callback(account, TEXT)

    assert response.status_code == 200
    assert response.json() == {}
    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.PROCESSED
    assert json.loads(event.body) == TEXT
    assert Message.objects.count() == 1


def test_the_stored_event_keeps_headers_but_never_the_verify_token(account, post_callback):
    post_callback(account, TEXT)

    headers = WebhookEvent.objects.get().headers
    assert "x-verify-token" not in headers
    assert headers["content-type"] == "application/json"
    assert account.verify_token not in json.dumps(headers)


@pytest.mark.parametrize(
    "subpath", ["api/v1/message/receive", "api/v1/contact/info", "api/v1/action/event"]
)
def test_the_platform_sub_paths_reach_the_same_handler(account, post_callback, subpath):
    response = post_callback(account, TEXT, subpath=subpath)

    assert response.status_code == 200
    assert Message.objects.count() == 1
    assert WebhookEvent.objects.get().path == subpath


def test_dispatch_follows_the_body_shape_not_the_path(account, post_callback):
    # A message wrapper posted to contact/info is still a message callback (spec §4.0).
    response = post_callback(account, TEXT, subpath="api/v1/contact/info")

    assert response.json() == {}
    assert Message.objects.count() == 1


def test_the_callback_url_without_a_trailing_slash_is_accepted(account, api_client):
    url = account.webhook_path.rstrip("/")
    response = api_client.post(url, TEXT, format="json", HTTP_X_VERIFY_TOKEN=account.verify_token)

    assert response.status_code == 200


def test_an_unknown_sub_path_is_404(account, post_callback):
    response = post_callback(account, TEXT, subpath="api/v1/unknown")

    assert response.status_code == 404
    assert not WebhookEvent.objects.exists()


def test_a_missing_token_is_401_and_writes_nothing(account, post_callback):
    response = post_callback(account, TEXT, token="")

    assert response.status_code == 401
    assert response.json()["error"] == "missing_token"
    assert not WebhookEvent.objects.exists()
    assert not Message.objects.exists()


def test_a_wrong_token_is_401_and_writes_nothing(account, post_callback):
    response = post_callback(account, TEXT, token="not-the-token")

    assert response.status_code == 401
    assert response.json()["error"] == "wrong_token"
    assert "x-verify-token" in response.headers["WWW-Authenticate"]
    assert not WebhookEvent.objects.exists()
    assert not Message.objects.exists()


def test_another_accounts_token_is_rejected(account, post_callback):
    other = ProviderAccountFactory(verify_token="the-other-accounts-token")

    response = post_callback(account, TEXT, token=other.verify_token)

    assert response.status_code == 401


def test_an_unknown_account_is_404(api_client, db):
    response = api_client.post(
        f"/webhooks/xms/{uuid.uuid4()}/", TEXT, format="json", HTTP_X_VERIFY_TOKEN="x"
    )

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_account"


def test_a_malformed_account_id_is_404(api_client, db):
    response = api_client.post("/webhooks/xms/not-a-uuid/", TEXT, format="json")

    assert response.status_code == 404


def test_an_account_of_another_kind_in_the_url_is_404(account, api_client):
    response = api_client.post(
        f"/webhooks/messagewhiz/{account.id}/",
        TEXT,
        format="json",
        HTTP_X_VERIFY_TOKEN=account.verify_token,
    )

    assert response.status_code == 404


def test_an_inactive_account_is_404(account, post_callback):
    account.is_active = False
    account.save()

    assert post_callback(account, TEXT).status_code == 404


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2, 3]", "not an array"),
        (b'"a string"', "not a string"),
        (b"42", "not a number"),
        (b"null", "not null"),
        (b"   ", "empty"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_400_with_a_reason(account, post_callback, raw, says):
    response = post_callback(account, None, raw=raw)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "parse_error"
    assert says in body["detail"]
    assert not WebhookEvent.objects.exists()
    assert not Message.objects.exists()


def test_an_empty_body_is_400(account, post_callback):
    response = post_callback(account, None, raw=b"")

    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@override_settings(WEBHOOK_MAX_BODY_BYTES=2048)
def test_a_body_over_the_size_limit_is_413_and_writes_nothing(account, post_callback):
    big = dict(TEXT, padding="x" * 4096)

    response = post_callback(account, big)

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert not WebhookEvent.objects.exists()
    assert not Message.objects.exists()


def test_the_default_size_limit_is_one_mebibyte(account, post_callback, settings):
    assert settings.WEBHOOK_MAX_BODY_BYTES == 1024 * 1024
    big = dict(TEXT, padding="x" * (1024 * 1024))

    assert post_callback(account, big).status_code == 413


def test_a_json_body_with_another_content_type_is_still_accepted(account, post_callback):
    response = post_callback(
        account, None, raw=json.dumps(TEXT).encode(), content_type="text/plain"
    )

    assert response.status_code == 200
    assert Message.objects.count() == 1


def test_get_is_not_allowed(account, api_client):
    response = api_client.get(account.webhook_path, HTTP_X_VERIFY_TOKEN=account.verify_token)

    assert response.status_code == 405


def test_a_body_of_unknown_shape_is_stored_and_ignored_with_a_reason(account, post_callback):
    response = post_callback(account, {"hello": "world"})

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.IGNORED
    assert "unrecognised callback shape" in event.error


def test_contact_info_is_answered_synchronously_with_our_view_of_the_contact(
    account, post_callback
):
    body = load_fixture("xms", "inbound-contact-info-2023")

    response = post_callback(account, body, subpath="api/v1/contact/info")

    assert response.status_code == 200
    reply = response.json()
    contact = Contact.objects.get()
    assert reply == {
        "profileId": "C34567",
        "name": "John Doe",
        "email": "abc@xyz.com",
        "mobile": "919988776655",
    }
    assert contact.business_profile_id == "C34567"
    assert WebhookEvent.objects.get().state == WebhookEvent.State.PROCESSED


def test_contact_info_reply_reflects_what_an_agent_changed(account, post_callback):
    body = load_fixture("xms", "inbound-contact-info-2022")
    post_callback(account, body)
    Contact.objects.update(name="Johnny D.", email="johnny@example.com")

    reply = post_callback(account, body).json()

    assert reply["name"] == "Johnny D."
    assert reply["email"] == "johnny@example.com"


def test_contact_info_for_a_contact_without_business_id_returns_our_own_id(account, post_callback):
    body = load_fixture("xms", "inbound-contact-info-2023")
    del body["businessProfile"]

    reply = post_callback(account, body).json()

    assert reply["profileId"] == str(Contact.objects.get().uid)


def test_after_a_token_rotation_the_old_token_works_for_the_grace_period_only(
    account, post_callback, settings
):
    from datetime import timedelta

    from django.utils import timezone

    old = account.verify_token
    account.rotate_verify_token()

    assert post_callback(account, TEXT, token=old).status_code == 200
    assert post_callback(account, TEXT, token=account.verify_token).status_code == 200
    account.verify_token_rotated_at = timezone.now() - timedelta(
        hours=settings.WEBHOOK_TOKEN_GRACE_HOURS + 1
    )
    account.save()
    assert post_callback(account, TEXT, token=old).status_code == 401


@pytest.fixture
def cached_accounts(settings):
    from integrations.webhooks import accounts_cache_clear

    settings.WEBHOOK_ACCOUNT_CACHE_SECONDS = 60
    accounts_cache_clear()
    yield
    accounts_cache_clear()


def _account_reads(queries) -> int:
    return sum(1 for q in queries if 'FROM "integrations_provideraccount"' in q["sql"])


def test_a_busy_accounts_next_callback_is_authenticated_without_reading_the_account_again(
    account, post_callback, cached_accounts
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as first:
        assert post_callback(account, TEXT).status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert post_callback(account, TEXT).status_code == 200

    assert _account_reads(first.captured_queries) >= 1
    # (Processing the event reads the account for its own reasons; the webhook itself doesn't.)
    assert _account_reads(second.captured_queries) < _account_reads(first.captured_queries)


def test_a_rotated_token_is_accepted_at_once_although_the_account_is_cached(
    account, post_callback, cached_accounts
):
    assert post_callback(account, TEXT).status_code == 200
    account.rotate_verify_token()

    assert post_callback(account, TEXT, token=account.verify_token).status_code == 200


def test_a_deactivated_account_stops_receiving_when_its_cache_time_is_over(
    account, post_callback, cached_accounts, monkeypatch
):
    import time

    from integrations import webhooks

    assert post_callback(account, TEXT).status_code == 200
    account.is_active = False
    account.save()
    later = time.monotonic() + 61
    monkeypatch.setattr(webhooks._accounts, "_clock", lambda: later)

    assert post_callback(account, TEXT).status_code == 404
