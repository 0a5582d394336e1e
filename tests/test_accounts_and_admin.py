"""Admins set accounts up from the command line or admin; secrets never show or leak."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations.models import ProviderAccount, WebhookEvent
from tests.conftest import load_fixture
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def add_account(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    call_command("add_account", *args)
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_add_account_creates_an_account_and_prints_one_json_line(capsys):
    out = add_account(
        capsys,
        "xms",
        "--name=Main",
        "--base-url=https://api.mehery.xyz/xms/",
        "--api-key=key-123",
        "--api-id=app-9",
    )

    account = ProviderAccount.objects.get(pk=out["id"])
    assert out["created"] is True
    assert out["webhook_path"] == f"/webhooks/xms/{account.id}/"
    assert out["verify_token"] == account.verify_token
    assert len(account.verify_token) >= 32
    assert account.base_url == "https://api.mehery.xyz/xms"
    assert (account.api_key, account.api_id) == ("key-123", "app-9")


def test_add_account_prints_the_webhook_url_of_the_configured_public_base_url(capsys, settings):
    settings.PUBLIC_BASE_URL = "https://inbox.example.com"

    out = add_account(capsys, "xms", "--name=Main", "--base-url=https://a.example", "--api-key=k")

    assert out["webhook_url"] == f"https://inbox.example.com/webhooks/xms/{out['id']}/"
    assert capsys.readouterr().err == ""


def test_add_account_warns_when_the_public_base_url_is_local(capsys, settings):
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"

    call_command("add_account", "xms", "--name=Main", "--base-url=https://a.example", "--api-key=k")

    captured = capsys.readouterr()
    assert json.loads(captured.out)["webhook_url"].startswith("http://127.0.0.1:8000/webhooks/")
    assert "PUBLIC_BASE_URL" in captured.err


def test_add_account_again_with_the_same_name_updates_it_and_keeps_the_token(capsys):
    first = add_account(
        capsys, "xms", "--name=Main", "--base-url=https://a.example", "--api-key=k1"
    )

    second = add_account(
        capsys, "xms", "--name=Main", "--base-url=https://b.example", "--api-key=k2"
    )

    assert second["id"] == first["id"]
    assert second["created"] is False
    assert second["verify_token"] == first["verify_token"]
    account = ProviderAccount.objects.get()
    assert (account.base_url, account.api_key) == ("https://b.example", "k2")


def test_add_account_sets_a_given_verify_token(capsys):
    out = add_account(
        capsys,
        "xms",
        "--name=Main",
        "--base-url=https://a.example",
        "--api-key=k",
        "--verify-token=s1agenttoken$$$",
    )

    assert out["verify_token"] == "s1agenttoken$$$"


@pytest.mark.parametrize(
    "args",
    [
        ["xms", "--name=X", "--base-url=not a url", "--api-key=k"],
        ["xms", "--name=X", "--base-url=https://a.example", "--api-key=k", "--verify-token=short"],
    ],
)
def test_add_account_refuses_bad_input_with_a_clear_error(args):
    with pytest.raises(CommandError):
        call_command("add_account", *args)
    assert not ProviderAccount.objects.exists()


def test_credentials_are_encrypted_in_the_database(account):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key, api_id, verify_token FROM integrations_provideraccount WHERE id = %s",
            [account.id.hex if connection.vendor == "sqlite" else account.id],
        )
        stored = cursor.fetchone()

    assert stored is not None
    for value, plain in zip(
        stored,
        ("test-api-key-0123456789", "61ec7d9c2ce85742b201c5ab", "s1agenttoken$$$"),
        strict=True,
    ):
        assert value.startswith("fernet:")
        assert plain not in value
    account.refresh_from_db()
    assert account.api_key == "test-api-key-0123456789"


@pytest.fixture
def admin_client(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def test_the_account_admin_shows_the_callback_url_and_token_but_not_the_api_key(
    admin_client, account
):
    response = admin_client.get(f"/admin/integrations/provideraccount/{account.pk}/change/")

    page = response.content.decode()
    assert response.status_code == 200
    assert account.webhook_url in page
    assert account.verify_token in page
    assert "test-api-key-0123456789" not in page
    assert "••••••••6789" in page


def test_saving_the_account_form_with_blank_secrets_keeps_them(admin_client, account):
    response = admin_client.post(
        f"/admin/integrations/provideraccount/{account.pk}/change/",
        {
            "kind": "xms",
            "name": "Renamed",
            "base_url": "https://api.mehery.example/xms",
            "api_key": "",
            "api_id": "",
            "options": "{}",
            "is_active": "on",
            "channels-TOTAL_FORMS": "0",
            "channels-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    account.refresh_from_db()
    assert account.name == "Renamed"
    assert account.api_key == "test-api-key-0123456789"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/integrations/provideraccount/",
        "/admin/integrations/channel/",
        "/admin/integrations/webhookevent/",
        "/admin/integrations/webhookevent/?state__exact=failed",
        "/admin/inbox/contact/",
        "/admin/inbox/session/",
        "/admin/inbox/message/",
        "/admin/inbox/messagereceipt/",
        "/admin/accounts/team/",
        "/admin/accounts/user/",
    ],
)
def test_admin_pages_render(admin_client, account, post_callback, path):
    post_callback(account, load_fixture("xms", "inbound-wrapper-full-2023"))

    assert admin_client.get(path).status_code == 200


def test_the_session_and_event_detail_pages_render(admin_client, account, post_callback):
    post_callback(account, load_fixture("xms", "inbound-wrapper-full-2023"))
    from inbox.models import Contact, Message, Session

    for path in (
        f"/admin/inbox/session/{Session.objects.first().pk}/change/",
        f"/admin/inbox/contact/{Contact.objects.first().pk}/change/",
        f"/admin/inbox/message/{Message.objects.first().pk}/change/",
        f"/admin/integrations/webhookevent/{WebhookEvent.objects.first().pk}/change/",
    ):
        assert admin_client.get(path).status_code == 200, path


def test_the_replay_action_in_admin_replays_failed_events(
    admin_client, account, post_callback, django_capture_on_commit_callbacks
):
    with mock.patch(
        "inbox.services.inbound._session_note_inbound", side_effect=RuntimeError("bug")
    ):
        post_callback(account, load_fixture("xms", "inbound-message-text"))
    event = WebhookEvent.objects.get()
    assert event.state == WebhookEvent.State.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/integrations/webhookevent/",
            {"action": "replay", "_selected_action": [event.pk]},
            follow=True,
        )

    assert "Replaying 1 event(s)" in response.content.decode()
    event.refresh_from_db()
    assert event.state == WebhookEvent.State.PROCESSED
    assert event.attempts == 2


def test_admin_session_list_query_count_does_not_grow_with_sessions(
    admin_client, account, post_callback
):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get("/admin/inbox/session/").status_code == 200
        return len(ctx.captured_queries)

    body = load_fixture("xms", "inbound-message-text")
    post_callback(account, body)
    few = count_queries()
    for i in range(10):
        more = json.loads(json.dumps(body))
        more["messages"][0].update(id=f"m{i}", session={"sessionId": f"s{i}"})
        more["contacts"][0]["contactId"] = more["messages"][0]["contactId"] = f"c{i}"
        more["contacts"][0]["profile"]["phone"] = f"9100000000{i}"
        post_callback(account, more)

    assert count_queries() == few


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "lists 1 channel(s)"), (401, "HTTP 401")],
)
def test_platform_actions_in_admin_report_each_accounts_outcome(
    admin_client, account, status, expected
):
    import responses

    with responses.RequestsMock() as mocked:
        mocked.get(
            "https://api.mehery.example/xms/api/v1/config/channels",
            status=status,
            json=load_fixture("xms", "response-config-channels") if status == 200 else {},
        )
        response = admin_client.post(
            "/admin/integrations/provideraccount/",
            {"action": "test_credentials", "_selected_action": [account.pk]},
            follow=True,
        )

    assert expected in response.content.decode()


@pytest.mark.parametrize(
    ("states", "filtered"),
    [
        (["failed", "failed", "failed"], True),
        (["failed", "ignored", "failed"], False),
        (["failed", "processed", "ignored", "pending"], False),
        (["processed", "processed"], False),
        (["ignored", "ignored"], True),
    ],
)
def test_the_replay_action_reports_true_counts_whatever_is_selected_and_filtered(
    admin_client, account, states, filtered
):
    from django.utils import timezone

    events = [
        WebhookEvent.objects.create(
            account=account, received_at=timezone.now(), body="{}", state=state
        )
        for state in states
    ]
    replayable = sum(state in ("failed", "ignored") for state in states)
    # Filtered by one state, "select all" sends the filter along: the selection is the
    # changelist's queryset, which no longer matches once the events are pending again.
    query = f"?state__exact={states[0]}" if filtered else ""

    with mock.patch("integrations.services.webhooks.webhook_events_enqueue"):
        response = admin_client.post(
            f"/admin/integrations/webhookevent/{query}",
            {
                "action": "replay",
                "_selected_action": [e.pk for e in events],
                **({"select_across": "1"} if filtered else {}),
            },
            follow=True,
        )

    text = response.content.decode()
    assert f"Replaying {replayable} event(s)" in text
    skipped = len(states) - replayable
    if skipped:
        assert f"({skipped} skipped: only failed or ignored events are replayed)" in text
    else:
        assert "skipped" not in text
    assert WebhookEvent.objects.filter(state="pending").count() == replayable + states.count(
        "pending"
    )
