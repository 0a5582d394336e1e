"""Our calls to XMS have the shape the spec documents, and failures land where admins see them."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from unittest import mock

import pytest
import requests
import responses
from responses import matchers

from integrations import http
from integrations.base import AuthenticationError
from integrations.models import Channel, SyncRun
from integrations.services import channels as channels_module
from integrations.services.accounts import account_webhook_register
from integrations.services.channels import channels_sync
from integrations.xms.client import EnvelopeError, XmsClient
from tests.conftest import load_fixture
from tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db
BASE = "https://api.mehery.example/xms/api/v1"


@responses.activate
def test_registering_the_webhook_posts_our_callback_url_with_both_api_headers(account):
    # The documented example is a schema placeholder whose `errors` hold "string" entries; a
    # real success has none.
    body = load_fixture("xms", "response-config-webhook")
    body.update(errors=[], warnings=[])
    responses.post(
        f"{BASE}/config/webhook",
        json=body,
        match=[
            matchers.json_params_matcher({"url": account.webhook_url}),
            matchers.header_matcher(
                {"x-api-key": "test-api-key-0123456789", "x-api-id": "61ec7d9c2ce85742b201c5ab"}
            ),
        ],
    )

    body["data"].update(id="61ec7d9c2ce85742b201c5ab", webhook=account.webhook_url)
    responses.replace(responses.POST, f"{BASE}/config/webhook", json=body)

    answer = account_webhook_register(account)

    assert answer["webhook"] == account.webhook_url
    account.refresh_from_db()
    assert account.last_success_at is not None
    assert account.options["app_id"] == "61ec7d9c2ce85742b201c5ab"
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {"url": account.webhook_url}


@responses.activate
def test_a_wrong_api_key_marks_the_account_unhealthy_with_the_reason(account):
    responses.post(f"{BASE}/config/webhook", status=401, json={"status": 401})

    with pytest.raises(AuthenticationError):
        account_webhook_register(account)

    account.refresh_from_db()
    assert not account.is_healthy
    assert "HTTP 401" in account.last_error


@responses.activate
def test_an_error_envelope_with_http_200_is_a_failure_that_says_which_field(account):
    responses.post(
        f"{BASE}/config/webhook",
        json={
            "status": 400,
            "statusKey": "VALIDATION_ERROR",
            "errors": [{"field": "url", "description": "url must be https", "obzect": "Webhook"}],
        },
    )

    with pytest.raises(EnvelopeError, match="url: url must be https"):
        XmsClient(account.config()).set_webhook("http://x")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, http.TransientError),
        (503, http.TransientError),
        (429, http.TransientError),
        (404, http.RejectedError),
        (403, http.AuthError),
    ],
)
@responses.activate
def test_http_failures_are_classified_for_retry_decisions(account, status, error):
    responses.get(f"{BASE}/config/channels", status=status)

    with pytest.raises(error):
        XmsClient(account.config()).list_channels()


@responses.activate
def test_a_connection_error_is_transient(account):
    responses.get(f"{BASE}/config/channels", body=requests.ConnectionError("refused"))

    with pytest.raises(http.TransientError):
        XmsClient(account.config()).list_channels()


@responses.activate
def test_channel_sync_asks_for_sandbox_channels_in_both_spellings_and_upserts(account):
    responses.get(
        f"{BASE}/config/channels",
        json=load_fixture("xms", "response-config-channels"),
        match=[matchers.query_param_matcher({"sabdnox": "true", "sandbox": "true"})],
    )

    result = channels_sync(account)

    channel = Channel.objects.get()
    assert (result.created, result.updated) == (1, 0)
    assert (channel.external_id, channel.name, channel.lane, channel.medium) == (
        "wa360:918828218374",
        "Customer Support",
        "919999998888",
        "whatsapp",
    )
    assert not channel.is_active  # new channels wait for an admin
    assert not channel.discovered
    run = SyncRun.objects.get()
    assert (run.kind, run.state, run.created) == ("channels", "succeeded", 1)


@responses.activate
def test_channel_sync_names_a_channel_first_seen_in_traffic_and_keeps_it_active(account):
    seen = ChannelFactory(
        account=account,
        external_id="wa360:918828218374",
        name="918828218374",
        discovered=True,
        is_active=True,
    )
    responses.get(f"{BASE}/config/channels", json=load_fixture("xms", "response-config-channels"))

    result = channels_sync(account)

    seen.refresh_from_db()
    assert result.updated == 1
    assert seen.name == "Customer Support"
    assert seen.is_active
    assert not seen.discovered


@responses.activate
def test_a_channel_traffic_discovers_while_the_sync_runs_is_still_named_by_the_sync(account):
    responses.get(f"{BASE}/config/channels", json=load_fixture("xms", "response-config-channels"))
    real_find = channels_module.channel_find

    def traffic_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = real_find(*args, **kwargs)
        # A customer's message on that number is applied between the look and the insert.
        ChannelFactory(
            account=account,
            external_id="wa360:918828218374",
            name="918828218374",
            discovered=True,
            is_active=True,
        )
        return found

    with mock.patch.object(channels_module, "channel_find", side_effect=traffic_meanwhile):
        result = channels_sync(account)

    channel = Channel.objects.get()
    assert (channel.name, channel.discovered, channel.is_active) == (
        "Customer Support",
        False,
        True,
    )
    assert (result.created, result.updated) == (0, 1)


@responses.activate
def test_channel_sync_activates_new_channels_when_the_account_says_so(account):
    account.options = {"activate_new_channels": True}
    account.save()
    responses.get(f"{BASE}/config/channels", json=load_fixture("xms", "response-config-channels"))

    channels_sync(account)

    assert Channel.objects.get().is_active


def test_secret_headers_are_redacted_for_logs():
    assert http.redact({"x-api-key": "k", "X-Api-Id": "i", "Accept": "a"}) == {
        "x-api-key": "***",
        "X-Api-Id": "***",
        "Accept": "a",
    }


@responses.activate
def test_a_redirect_is_not_followed_so_the_api_key_never_leaves_for_another_host(account):
    responses.get(
        f"{BASE}/config/channels", status=302, headers={"location": "https://evil.example/"}
    )

    with pytest.raises(http.RejectedError, match="redirect"):
        XmsClient(account.config()).list_channels()

    assert len(responses.calls) == 1


@responses.activate
def test_the_credential_test_reports_success_and_records_health(account):
    from integrations.services.accounts import account_credentials_test

    responses.get(f"{BASE}/config/channels", json=load_fixture("xms", "response-config-channels"))

    assert "lists 1 channel(s)" in account_credentials_test(account)
    account.refresh_from_db()
    assert account.last_success_at is not None


@responses.activate
def test_the_credential_test_reports_a_refused_key(account):
    from integrations.services.accounts import account_credentials_test

    responses.get(f"{BASE}/config/channels", status=403)

    with pytest.raises(AuthenticationError):
        account_credentials_test(account)
    account.refresh_from_db()
    assert "Credential test failed" in account.last_error


def test_the_http_seam_masks_in_logs_every_header_it_does_not_know_to_be_harmless():
    # It knows no platform's header names: a new platform's secret is masked without a change.
    assert http.redact({"X-Signature": "s", "x-verify-token": "t", "Content-Type": "c"}) == {
        "X-Signature": "***",
        "x-verify-token": "***",
        "Content-Type": "c",
    }


@responses.activate
@pytest.mark.parametrize(("status", "level"), [(200, "DEBUG"), (400, "INFO")])
def test_the_xms_client_logs_the_envelopes_trace_id_for_the_platforms_support(
    account, caplog, status, level
):
    envelope = {
        "status": status,
        "statusKey": "SUCCESS" if status == 200 else "BAD_REQUEST",
        "traceid": "trace-42",
        "messageKey": "key-7",
        "results": [],
        "errors": [],
    }
    responses.get(f"{BASE}/config/channels", json=envelope, status=status)
    caplog.set_level("DEBUG", logger="integrations.xms.client")

    with pytest.raises(http.RejectedError) if status == 400 else contextlib.nullcontext():
        XmsClient(account.config()).list_channels()

    # A refusal is logged for whoever runs Switchboard; a success only when debugging.
    logged = [r for r in caplog.records if "traceid=trace-42 messageKey=key-7" in r.getMessage()]
    assert [r.levelname for r in logged] == [level]


@pytest.mark.parametrize(
    ("environ", "verify", "per_call"),
    [
        ({}, True, False),
        ({"REQUESTS_CA_BUNDLE": "/etc/ca.pem", "CURL_CA_BUNDLE": "/x.pem"}, "/etc/ca.pem", False),
        ({"CURL_CA_BUNDLE": "/x.pem"}, "/x.pem", False),
        ({"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "127.0.0.1"}, True, True),
    ],
)
def test_the_environment_is_read_once_except_proxies_whose_exceptions_depend_on_the_url(
    environ, verify, per_call
):
    assert http.environment_settings(environ) == (verify, per_call)
