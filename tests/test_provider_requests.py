"""Each provider verifies its own inbound requests and checks its own bodies.

The generic webhook view and service know no platform: they ask the account's provider whether
a request is authentic (`Provider.verify_request`), which headers are secret, and what doubts a
parsed callback raises (`Provider.callback_check`). XMS: the x-verify-token header (spec §1.3)
and the `meta` tenant (appId, domain).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from integrations import registry
from integrations.base import JSON, Callback, InboundSecrets, Provider, RequestCheck
from integrations.models import ProviderAccount, WebhookEvent
from integrations.xms.provider import XmsProvider
from tests.conftest import load_fixture

TEXT = load_fixture("xms", "inbound-message-text")
SECRETS = InboundSecrets(verify_tokens=("current-token", "previous-token"))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-verify-token": "current-token"}, RequestCheck.ACCEPTED),
        ({"X-Verify-Token": "current-token"}, RequestCheck.ACCEPTED),
        ({"x-verify-token": "previous-token"}, RequestCheck.ACCEPTED),
        ({"x-verify-token": "current-token "}, RequestCheck.WRONG),
        ({"x-verify-token": "current"}, RequestCheck.WRONG),
        ({"x-verify-token": ""}, RequestCheck.MISSING),
        ({"authorization": "Bearer current-token"}, RequestCheck.MISSING),
        ({}, RequestCheck.MISSING),
    ],
)
def test_xms_accepts_a_request_only_with_one_of_the_accounts_verify_tokens(headers, expected):
    assert XmsProvider().verify_request(SECRETS, headers) == expected


def test_xms_refuses_every_token_when_the_account_accepts_none():
    none = InboundSecrets(verify_tokens=())

    assert XmsProvider().verify_request(none, {"x-verify-token": ""}) == RequestCheck.MISSING
    assert XmsProvider().verify_request(none, {"x-verify-token": "x"}) == RequestCheck.WRONG


def test_a_provider_that_does_not_say_how_it_verifies_requests_refuses_them_all():
    class Silent(Provider):
        kind = "silent"
        label = "Silent"

        def parse_callback(self, body: JSON) -> Callback:
            return Callback()

    assert Silent().verify_request(SECRETS, {"x-verify-token": "current-token"}) == (
        RequestCheck.MISSING
    )


def test_xms_warns_about_a_callback_for_another_app_or_domain():
    options = {"app_id": "another-app", "domain": "another-domain"}

    callback = XmsProvider().read_callback(TEXT, options=options)

    # (after what fitting the values found: this example's timestamp is neither ms nor s)
    assert callback.warnings[-2:] == [
        "meta.appId is '61ec7d9c2ce85742b201c5ab', but this account expects 'another-app'",
        "meta.domain is 'alex', but this account expects 'another-domain'",
    ]


@pytest.mark.parametrize(
    "options", [{}, {"app_id": "61ec7d9c2ce85742b201c5ab", "domain": "alex"}, {"domain": ""}]
)
def test_xms_has_no_doubt_about_a_callback_for_this_account_or_one_that_expects_nothing(options):
    warnings = XmsProvider().read_callback(TEXT, options=options).warnings

    assert not [w for w in warnings if w.startswith("meta.")]


@pytest.mark.django_db
def test_the_stored_event_of_a_callback_for_another_tenant_carries_the_providers_warning(
    post_callback,
):
    from tests.factories import ProviderAccountFactory

    account = ProviderAccountFactory(options={"domain": "another-domain"})

    post_callback(account, TEXT)

    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.PROCESSED
    assert "meta.domain is 'alex', but this account expects 'another-domain'" in event.warnings


class SignedProvider(Provider):
    """A platform unlike XMS: it signs its callbacks with a header of its own."""

    kind = "signed"
    label = "Signed"
    request_auth_scheme = "Signature"
    request_secret_headers = frozenset({"x-signature"})

    def verify_request(self, secrets: InboundSecrets, headers: Mapping[str, str]) -> RequestCheck:
        given = {k.lower(): v for k, v in headers.items()}.get("x-signature", "")
        if not given:
            return RequestCheck.MISSING
        accepted = {f"signed:{token}" for token in secrets.verify_tokens}
        return RequestCheck.ACCEPTED if given in accepted else RequestCheck.WRONG

    def parse_callback(self, body: JSON) -> Callback:
        return Callback()


@pytest.fixture
def signed_account(db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProviderAccount]:
    monkeypatch.setitem(registry.PROVIDERS, "signed", f"{__name__}.SignedProvider")
    registry.get_provider.cache_clear()
    yield ProviderAccount.objects.create(
        kind="signed", name="Signed", base_url="https://signed.example", verify_token="t0k3n"
    )
    registry.get_provider.cache_clear()


def _post(api_client: Any, account: ProviderAccount, **headers: str) -> Any:
    body = json.dumps({"hello": "world"}).encode()
    return api_client.generic(
        "POST", account.webhook_path, body, content_type="application/json", **headers
    )


def test_the_webhook_lets_the_accounts_provider_verify_the_request(api_client, signed_account):
    response = _post(api_client, signed_account, HTTP_X_SIGNATURE="signed:t0k3n")

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert "x-signature" not in event.headers  # the provider's secret header is not stored
    assert "t0k3n" not in json.dumps(event.headers)


def test_the_webhook_refuses_what_the_accounts_provider_refuses_with_its_scheme(
    api_client, signed_account
):
    # An XMS token means nothing to this platform.
    missing = _post(api_client, signed_account, HTTP_X_VERIFY_TOKEN="t0k3n")
    wrong = _post(api_client, signed_account, HTTP_X_SIGNATURE="signed:guess")

    assert (missing.status_code, missing.json()["error"]) == (401, "missing_token")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "wrong_token")
    assert wrong.headers["WWW-Authenticate"] == "Signature"
    assert not WebhookEvent.objects.exists()
