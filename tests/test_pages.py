"""The agent pages: who sees what, the list, the thread, the composer and the actions."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AgentProfile, User
from config.redis import redis_client
from inbox.models import (
    Contact,
    MediaFile,
    Message,
    Note,
    Session,
    SessionAction,
    TimelineEntry,
)
from inbox.services.timeline import timeline_add
from integrations.base import Capability
from integrations.models import Channel, ProviderAccount, Template
from integrations.xms.provider import XmsProvider
from tests.factories import (
    AgentProfileFactory,
    CannedReplyFactory,
    ChannelFactory,
    ContactFactory,
    InboundMessageFactory,
    LabelFactory,
    NoteFactory,
    OutboundMessageFactory,
    TeamFactory,
    TemplateApprovalFactory,
    TemplateFactory,
    UserFactory,
    make_session,
)

pytestmark = pytest.mark.django_db

API = "https://api.mehery.example/xms/api/v1"
SEND = f"{API}/message/send"
ACCEPTED = {"data": {"id": "abc"}, "statusKey": "SUCCESS", "status": 200, "errors": []}
SUCCESS_LIST = {"results": [], "status": 200, "statusKey": "SUCCESS", "message": "ok"}
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_ATTRIBUTE = '"><img src=x onerror=alert(1)>'


def browser(user: User | None) -> Client:
    """Return a test browser signed in as `user` (or signed out)."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def htmx(**extra: str) -> dict[str, str]:
    """Return the headers htmx sends with a request."""
    return {"HTTP_HX_REQUEST": "true", **{f"HTTP_{k.upper()}": v for k, v in extra.items()}}


def text_of(response: Any) -> str:
    return response.content.decode()


def client_events(response: Any) -> set[str]:
    """Return the events the response asks htmx to trigger (HX-Trigger, a name or JSON)."""
    header = response.get("HX-Trigger", "")
    return set(json.loads(header)) if header.startswith("{") else {header} - {""}


@pytest.fixture
def channel(account: ProviderAccount) -> Channel:
    return ChannelFactory(
        account=account, external_id="wa360:918828218374", medium="whatsapp", name="Support"
    )


@pytest.fixture
def other_channel(account: ProviderAccount) -> Channel:
    return ChannelFactory(account=account, medium="telegram", name="Telegram bot")


@pytest.fixture
def team(channel: Channel):
    team = TeamFactory(name="Support team")
    team.channels.add(channel)
    return team


@pytest.fixture
def agent(team) -> User:
    """An agent in a team that serves `channel` (and nothing else)."""
    profile = AgentProfileFactory(role=AgentProfile.Role.AGENT, user__display_name="Ana Agent")
    team.members.add(profile.user)
    return profile.user


@pytest.fixture
def colleague(team) -> User:
    profile = AgentProfileFactory(role=AgentProfile.Role.AGENT, user__display_name="Carl Colleague")
    team.members.add(profile.user)
    return profile.user


@pytest.fixture
def supervisor() -> User:
    return AgentProfileFactory(
        role=AgentProfile.Role.SUPERVISOR, user__display_name="Sue Supervisor"
    ).user


@pytest.fixture
def session(account: ProviderAccount, channel: Channel) -> Session:
    contact = ContactFactory(
        account=account, name="Anna Müller", phone="4915112345678", email="anna@example.de"
    )
    return make_session(account, channel, contact=contact, external_id="xsds34434")


@pytest.fixture
def foreign_session(account: ProviderAccount, other_channel: Channel) -> Session:
    """A session on a channel the agent's teams do not serve."""
    return make_session(account, other_channel, external_id="foreign-1")


@pytest.fixture
def as_agent(agent: User) -> Client:
    return browser(agent)


@pytest.fixture
def as_supervisor(supervisor: User) -> Client:
    return browser(supervisor)


def url(name: str, *args: Any) -> str:
    from django.urls import reverse

    return reverse(f"inbox:{name}", args=args)


# --- Sign-in and roles ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/s/1/", "/list/", "/s/1/updates/", "/changes/"])
def test_a_signed_out_visitor_is_sent_to_the_sign_in_page(path):
    response = browser(None).get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_an_agent_signs_in_with_the_login_form_and_lands_in_the_inbox(agent):
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200
    html = text_of(page)
    for test_id in ("login-form", "login-username", "login-password", "login-submit"):
        assert f'data-testid="{test_id}"' in html

    response = client.post("/login/", {"username": agent.username, "password": "pass-word-123"})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_a_wrong_password_is_refused_with_a_message(agent):
    response = Client().post("/login/", {"username": agent.username, "password": "nope"})

    assert response.status_code == 200
    assert 'data-testid="login-error"' in text_of(response)


def test_signing_out_returns_to_the_sign_in_page(as_agent):
    response = as_agent.post("/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert as_agent.get("/").status_code == 302


def test_an_agent_gets_404_for_another_teams_session_by_url_and_by_partial(
    as_agent, foreign_session
):
    sid = foreign_session.pk
    message = InboundMessageFactory(session=foreign_session)

    for path in (
        f"/s/{sid}/",
        f"/s/{sid}/updates/",
        f"/s/{sid}/older/?before={message.pk}",
        f"/s/{sid}/template-form/",
    ):
        assert as_agent.get(path).status_code == 404, path
        assert as_agent.get(path, **htmx(HX_Target="conversation")).status_code == 404, path


def test_an_agent_cannot_act_on_another_teams_session(as_agent, foreign_session, agent):
    sid = foreign_session.pk
    failed = OutboundMessageFactory(session=foreign_session, status=Message.Status.FAILED)
    label = LabelFactory()
    posts = {
        f"/s/{sid}/send/": {"mode": "reply", "body": "hi", "idempotency_key": "k1"},
        f"/s/{sid}/send/#note": {"mode": "note", "body": "psst", "idempotency_key": "k2"},
        f"/s/{sid}/send-template/": {"template": "1"},
        f"/s/{sid}/resolve/": {},
        f"/s/{sid}/close/": {},
        f"/s/{sid}/reopen/": {},
        f"/s/{sid}/assign/": {"assignee": "me"},
        f"/s/{sid}/route/": {"queue": "billing"},
        f"/s/{sid}/labels/": {"label": [label.pk]},
        f"/s/{sid}/language/": {"lang": "de_DE"},
        f"/s/{sid}/m/{failed.pk}/retry/": {},
    }

    for path, data in posts.items():
        assert as_agent.post(path.split("#")[0], data).status_code == 404, path
        assert as_agent.post(path.split("#")[0], data, **htmx()).status_code == 404, path

    foreign_session.refresh_from_db()
    assert foreign_session.assignee is None
    assert not foreign_session.labels.exists()
    assert not Note.objects.exists()
    assert Message.objects.filter(session=foreign_session).count() == 1
    assert not SessionAction.objects.exists()


def test_an_agent_sees_only_sessions_of_the_channels_their_teams_serve(
    as_agent, session, foreign_session
):
    html = text_of(as_agent.get("/"))

    assert f'data-session-id="{session.pk}"' in html
    assert f'data-session-id="{foreign_session.pk}"' not in html


def test_a_supervisor_sees_every_session(as_supervisor, session, foreign_session):
    html = text_of(as_supervisor.get("/"))

    assert f'data-session-id="{session.pk}"' in html
    assert f'data-session-id="{foreign_session.pk}"' in html
    assert as_supervisor.get(f"/s/{foreign_session.pk}/").status_code == 200


def test_only_staff_reach_django_admin(agent, supervisor):
    assert browser(agent).get("/admin/").status_code == 302
    assert browser(supervisor).get("/admin/").status_code == 302
    staff = UserFactory(is_staff=True, is_superuser=True)
    assert browser(staff).get("/admin/").status_code == 200


def test_the_header_links_to_admin_only_for_staff(as_agent, session):
    assert 'data-testid="admin-link"' not in text_of(as_agent.get("/"))
    staff = UserFactory(is_staff=True, is_superuser=True)
    assert 'data-testid="admin-link"' in text_of(browser(staff).get("/"))


def test_anonymous_users_are_not_users_for_the_pages():
    # The helpers refuse anything but our User (AnonymousUser never reaches a view).
    from django.http import Http404
    from django.test import RequestFactory

    from inbox.views.common import request_user

    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    with pytest.raises(Http404):
        request_user(request)


# --- The list ---------------------------------------------------------------------------------


def _bulk_sessions(account: ProviderAccount, channel: Channel, count: int) -> None:
    """Create `count` sessions cheaply, five per contact, as a busy inbox has them."""
    now = timezone.now()
    contacts = Contact.objects.bulk_create(
        [
            Contact(
                account=account, name=f"Bulk customer {count}-{i}", phone=f"49{count:06d}{i:05d}"
            )
            for i in range(count // 5 + 1)
        ],
        batch_size=2000,
    )
    Session.objects.bulk_create(
        [
            Session(
                account=account,
                channel=channel,
                contact=contacts[i // 5],
                external_id=f"bulk-{count}-{i}",
                opened_at=now,
                last_activity_at=now - timedelta(seconds=i),
                last_inbound_at=now - timedelta(minutes=i % 2000),
                unread_count=i % 3,
            )
            for i in range(count)
        ],
        batch_size=2000,
    )


def _list_queries(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries.captured_queries)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/?view=mine&status=any&sort=waiting",
        "/?view=unassigned&q=Customer&sort=window",
        "/list/?view=teams",
    ],
)
def test_the_list_query_count_is_the_same_with_10_and_10000_sessions(
    account, channel, team, agent, path
):
    client = browser(agent)
    label = LabelFactory()
    _bulk_sessions(account, channel, 10)
    for session in Session.objects.all()[:3]:
        session.labels.add(label)
        session.team = team
        session.save()
    with_ten = _list_queries(client, path)

    _bulk_sessions(account, channel, 10_000)
    with_ten_thousand = _list_queries(client, path)

    assert with_ten == with_ten_thousand
    assert with_ten <= 12


def test_the_views_count_mine_unassigned_my_teams_and_all(as_agent, agent, account, channel, team):
    make_session(account, channel, assignee=agent)
    make_session(account, channel, assignee=agent, team=team)
    make_session(account, channel, team=team)
    make_session(account, channel)

    html = text_of(as_agent.get("/"))

    counts = dict(re.findall(r'data-testid="view-count-(\w+)">(\d+)<', html))
    assert counts == {"mine": "2", "unassigned": "2", "teams": "2", "all": "4"}
    mine = text_of(as_agent.get("/?view=mine"))
    assert mine.count('data-testid="session-row"') == 2


def test_an_agent_without_teams_has_no_my_teams_view(session):
    loner = AgentProfileFactory(role=AgentProfile.Role.SUPERVISOR).user

    html = text_of(browser(loner).get("/"))

    assert 'data-testid="view-teams"' not in html
    assert 'data-testid="view-all"' in html


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ("active", {"open", "pending"}),
        ("open", {"open"}),
        ("pending", {"pending"}),
        ("resolved", {"resolved"}),
        ("closed", {"closed"}),
        ("any", {"open", "pending", "resolved", "closed"}),
    ],
)
def test_the_status_filter_shows_sessions_of_that_status(as_agent, account, channel, status, shown):
    for value in ("open", "pending", "resolved", "closed"):
        make_session(account, channel, status=value)

    html = text_of(as_agent.get(f"/?status={status}"))

    assert (
        set(
            re.findall(r'data-testid="session-row" data-session-id="\d+" data-status="(\w+)"', html)
        )
        == shown
    )


def test_channel_medium_team_and_label_filters_narrow_the_list(
    as_supervisor, account, channel, other_channel, team
):
    on_whatsapp = make_session(account, channel)
    on_telegram = make_session(account, other_channel)
    in_team = make_session(account, channel, team=team)
    labelled = make_session(account, other_channel)
    vip = LabelFactory(name="vip")
    labelled.labels.add(vip)

    def shown(query: str) -> set[int]:
        html = text_of(as_supervisor.get(f"/?{query}"))
        return {
            int(i) for i in re.findall(r'data-testid="session-row" data-session-id="(\d+)"', html)
        }

    assert shown(f"channel={channel.pk}") == {on_whatsapp.pk, in_team.pk}
    assert shown("medium=telegram") == {on_telegram.pk, labelled.pk}
    assert shown(f"team={team.pk}") == {in_team.pk}
    assert shown(f"label={vip.pk}") == {labelled.pk}


def test_search_finds_sessions_by_contact_name_phone_and_message_text(as_agent, account, channel):
    by_name = make_session(
        account, channel, contact=ContactFactory(account=account, name="Lucas Martin")
    )
    by_phone = make_session(
        account, channel, contact=ContactFactory(account=account, phone="33612345678")
    )
    by_text = make_session(account, channel)
    InboundMessageFactory(session=by_text, body="Ma facture de novembre est incorrecte")
    make_session(account, channel)

    def found(q: str) -> set[int]:
        html = text_of(as_agent.get("/", {"q": q}))
        return {
            int(i) for i in re.findall(r'data-testid="session-row" data-session-id="(\d+)"', html)
        }

    assert found("lucas") == {by_name.pk}
    assert found("3361234") == {by_phone.pk}
    assert found("facture") == {by_text.pk}
    assert 'data-testid="list-empty"' in text_of(as_agent.get("/", {"q": "zzz-nothing"}))


def test_longest_waiting_sort_puts_unanswered_sessions_first_oldest_first(
    as_agent, account, channel
):
    now = timezone.now()
    answered = make_session(account, channel, last_activity_at=now)
    OutboundMessageFactory(session=answered)
    answered.last_message = answered.messages.get()
    answered.save()
    waiting = []
    for minutes in (5, 50, 20):
        session = make_session(account, channel, inbound_ago=timedelta(minutes=minutes))
        session.last_message = InboundMessageFactory(session=session)
        session.save()
        waiting.append((minutes, session.pk))

    html = text_of(as_agent.get("/?sort=waiting"))

    order = [int(i) for i in re.findall(r'data-testid="session-row" data-session-id="(\d+)"', html)]
    assert order[:3] == [pk for _, pk in sorted(waiting, reverse=True)]
    assert order[-1] == answered.pk


def test_window_sort_puts_the_soonest_closing_window_first(
    as_agent, account, channel, other_channel
):
    closing = make_session(account, channel, inbound_ago=timedelta(hours=23))
    fresh = make_session(account, channel, inbound_ago=timedelta(minutes=1))
    closed = make_session(account, channel, inbound_ago=timedelta(hours=30))

    html = text_of(as_agent.get("/?sort=window"))

    order = [int(i) for i in re.findall(r'data-testid="session-row" data-session-id="(\d+)"', html)]
    assert order == [closing.pk, fresh.pk, closed.pk]


def test_a_list_row_shows_contact_channel_preview_time_unread_assignee_and_window(
    as_agent, session, agent
):
    message = InboundMessageFactory(session=session, body="Where is my parcel?")
    Session.objects.filter(pk=session.pk).update(
        last_message=message, unread_count=3, assignee=agent
    )

    html = text_of(as_agent.get("/"))

    row = html[html.index('data-testid="session-row"') :]
    row = row[: row.index("</li>")]
    assert "Anna Müller" in row
    assert 'data-testid="row-channel"' in row and "Support" in row
    assert "Where is my parcel?" in row
    assert 'data-testid="row-time"' in row
    assert re.search(
        r'data-testid="row-unread"><span class="visually-hidden">Unread: </span>3<', row
    )
    assert "Ana Agent" in row
    assert 'data-window-state="open"' in row and "left" in row


def test_a_window_closing_within_two_hours_stands_out_and_a_closed_one_says_template_only(
    as_agent, account, channel
):
    soon = make_session(account, channel, inbound_ago=timedelta(hours=23))
    make_session(account, channel, inbound_ago=timedelta(hours=30))

    html = text_of(as_agent.get("/"))

    assert 'class="sb-window sb-window-soon"' in html
    assert 'data-window-state="closed"' in html and "Template only" in html
    thread = text_of(as_agent.get(f"/s/{soon.pk}/"))
    assert re.search(r'data-testid="thread-window" data-window-state="soon"', thread)
    assert "Window closes in 59 min" in thread or "Window closes in 1 h" in thread


def test_the_list_is_paginated(as_agent, account, channel):
    _bulk_sessions(account, channel, 120)

    first = text_of(as_agent.get("/"))
    third = text_of(as_agent.get("/?page=3"))

    assert first.count('data-testid="session-row"') == 50
    assert "1\u201350 of 120" in first and 'data-testid="page-next"' in first
    assert third.count('data-testid="session-row"') == 20
    assert 'data-testid="page-previous"' in third and 'data-testid="page-next"' not in third


def test_the_list_partial_is_the_list_region_alone_with_the_open_session_marked(as_agent, session):
    response = as_agent.get(f"/list/?current={session.pk}")

    html = text_of(response)
    assert 'data-testid="session-list"' in html
    assert "<html" not in html and 'id="list-filters"' not in html
    assert 'class="sb-row is-current' in html
    assert f'href="/s/{session.pk}/?view=mine' in html.replace("&amp;", "&") or "view=mine" in html


# --- The thread -------------------------------------------------------------------------------


def _thread_item(html: str, test_id: str, pk: int | None = None) -> str:
    marker = f'id="message-{pk}"' if pk is not None else f'data-testid="{test_id}"'
    start = html.index(marker)
    return html[start : html.index("</li>", start)]


def stored(message: Message, content_type: str, **fields: Any) -> MediaFile:
    """Give a message the stored file the media task would have made of its platform link."""
    return MediaFile.objects.create(
        account=message.account,
        channel=message.session.channel,
        message=message,
        state=MediaFile.State.STORED,
        source_url=message.media_url,
        path=f"media/test/{message.pk}",
        filename=fields.pop("filename", f"file-{message.pk}"),
        content_type=content_type,
        inline=content_type.split("/")[0] in ("image", "video", "audio"),
        **fields,
    )


def test_the_thread_renders_every_message_type_as_what_it_is(as_agent, session):
    text = InboundMessageFactory(session=session, body="See https://example.com/track?id=1&x=2.")
    image = InboundMessageFactory(
        session=session,
        type="image",
        body="",
        caption="My receipt",
        media_url="https://cdn.example/receipt.jpg",
        media_mime_type="image/jpeg",
    )
    video = InboundMessageFactory(
        session=session, type="video", body="", media_url="https://cdn.example/clip.mp4"
    )
    audio = InboundMessageFactory(
        session=session, type="audio", body="", media_url="https://cdn.example/a.mp3"
    )
    voice = InboundMessageFactory(
        session=session, type="voice", body="", media_url="https://cdn.example/v.ogg"
    )
    document = InboundMessageFactory(
        session=session,
        type="document",
        body="",
        media_url="https://cdn.example/invoice.pdf",
        media_filename="invoice.pdf",
        media_size=123_456,
        media_mime_type="application/pdf",
    )
    location = InboundMessageFactory(
        session=session,
        type="location",
        body="",
        latitude=48.8584,
        longitude=2.2945,
        location_name="Eiffel Tower",
        location_address="Champ de Mars, Paris",
    )
    contact = InboundMessageFactory(
        session=session,
        type="contact",
        body="",
        attachments=[
            {
                "name": {"formatted_name": "John Smith"},
                "phones": [{"phone": "+1 940 555 1234"}],
                "emails": [{"email": "john@example.com"}],
                "org": {"company": "WhatsApp", "title": "Manager"},
            }
        ],
    )
    files = {
        image.pk: stored(image, "image/jpeg", thumbnail_path="media/test/t", width=800, height=600),
        video.pk: stored(video, "video/mp4"),
        audio.pk: stored(audio, "audio/mpeg"),
        voice.pk: stored(voice, "audio/ogg", duration_seconds=12.4),
        document.pk: stored(document, "application/pdf", filename="invoice.pdf", size=123_456),
    }
    template = TemplateFactory(account=session.account, code="ORDER_UPDATE", text="Hi {{name}}")
    sent_template = OutboundMessageFactory(
        session=session,
        type="template",
        body="Hi Anna",
        template=template,
        status=Message.Status.READ,
    )
    system = InboundMessageFactory(session=session, type="system", body="Customer joined")
    timeline_add(
        session.account,
        session=session,
        kind=TimelineEntry.Kind.ROUTED,
        summary="Routed to queue billing",
        occurred_at=timezone.now(),
    )

    html = text_of(as_agent.get(f"/s/{session.pk}/"))

    assert (
        '<a href="https://example.com/track?id=1&amp;x=2" rel="noopener noreferrer nofollow" target="_blank">'
        in html
    )
    # Every file from our storage, through the media view: never the platform's link.
    assert "cdn.example" not in html
    item = _thread_item(html, "", image.pk)
    assert (
        f'src="/media/{files[image.pk].pk}/thumbnail/"' in item
        and f'href="/media/{files[image.pk].pk}/"' in item
        and 'width="480" height="360"' in item
        and "data-viewer" in item
        and "My receipt" in item
    )
    assert '<video class="sb-video" controls' in _thread_item(html, "", video.pk)
    assert '<audio class="sb-audio" controls' in _thread_item(html, "", audio.pk)
    item = _thread_item(html, "", voice.pk)
    assert "Voice message" in item and "0:12" in item
    item = _thread_item(html, "", document.pk)
    assert (
        "invoice.pdf" in item
        and "120.6\xa0KB" in item
        and f'href="/media/{files[document.pk].pk}/"' in item
    )
    item = _thread_item(html, "", location.pk)
    assert "Eiffel Tower" in item and "48.858400, 2.294500" in item
    assert "https://www.openstreetmap.org/?mlat=48.858400&amp;mlon=2.294500" in item
    item = _thread_item(html, "", contact.pk)
    assert "John Smith" in item and "+1 940 555 1234" in item and "Manager, WhatsApp" in item
    item = _thread_item(html, "", sent_template.pk)
    assert "Template ORDER_UPDATE" in item and "Hi Anna" in item
    assert "Customer joined" in _thread_item(html, "", system.pk)
    assert 'data-testid="thread-event" data-kind="event" data-event-kind="routed"' in html
    assert "Routed to queue billing" in html
    assert _thread_item(html, "", text.pk)


@pytest.mark.parametrize("payload", [XSS_SCRIPT, XSS_ATTRIBUTE])
def test_html_and_script_in_messages_notes_and_names_are_shown_as_text(
    as_agent, account, channel, payload
):
    contact = ContactFactory(account=account, name=payload)
    session = make_session(account, channel, contact=contact)
    message = InboundMessageFactory(session=session, body=payload + " https://x.example/" + payload)
    Session.objects.filter(pk=session.pk).update(last_message=message)
    NoteFactory(session=session, body=payload)
    InboundMessageFactory(
        session=session, type="image", caption=payload, media_url="https://cdn.example/i.png"
    )

    for path in (f"/s/{session.pk}/", "/list/", f"/s/{session.pk}/updates/"):
        html = text_of(as_agent.get(path))
        assert "<script>alert(1)</script>" not in html, path
        assert "<img src=x onerror=alert(1)>" not in html, path
        assert "onerror=alert(1)>" not in html.replace("onerror=alert(1)&gt;", ""), path
    html = text_of(as_agent.get(f"/s/{session.pk}/"))
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        or "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    )


def test_media_links_that_are_not_http_are_not_links(as_agent, session):
    message = InboundMessageFactory(
        session=session,
        type="document",
        body="",
        media_url="javascript:alert(1)",
        media_filename="x.pdf",
    )

    html = text_of(as_agent.get(f"/s/{session.pk}/"))

    item = _thread_item(html, "", message.pk)
    assert "javascript:" not in item
    assert "Document not available" in item


@pytest.mark.parametrize(
    ("status", "symbol"),
    [
        ("queued", 'class="sb-clock"'),
        ("sending", 'class="sb-clock"'),
        ("sent", ">✓<"),
        ("delivered", ">✓✓<"),
        ("read", ">✓✓<"),
        ("failed", ">⚠<"),
    ],
)
def test_outbound_messages_show_their_delivery_state_with_a_text_alternative(
    as_agent, session, status, symbol
):
    message = OutboundMessageFactory(session=session, status=status)

    item = _thread_item(text_of(as_agent.get(f"/s/{session.pk}/")), "", message.pk)

    ticks = item[item.index('data-testid="delivery-state"') :]
    assert f'data-state="{status}"' in ticks
    assert symbol in ticks
    assert f'<span class="sb-tick-text">{status.title()}</span>' in ticks


def test_a_message_the_window_refused_offers_send_as_template_and_no_retry(as_agent, session):
    failed = OutboundMessageFactory(
        session=session,
        status=Message.Status.FAILED,
        error_code="470",
        error_title="Message failed to send because more than 24 hours have passed",
    )

    item = _thread_item(text_of(as_agent.get(f"/s/{session.pk}/")), "", failed.pk)

    assert "more than 24 hours have passed" in item and "(code 470)" in item
    assert 'data-testid="message-send-as-template"' in item
    assert 'data-testid="message-retry"' not in item


def test_a_failed_message_with_the_window_open_can_be_retried(
    as_agent, session, django_capture_on_commit_callbacks
):
    failed = OutboundMessageFactory(
        session=session, status=Message.Status.FAILED, error_code="500", error_title="Platform down"
    )
    item = _thread_item(text_of(as_agent.get(f"/s/{session.pk}/")), "", failed.pk)
    assert 'data-testid="message-retry"' in item
    assert 'data-testid="message-send-as-template"' not in item

    with responses.RequestsMock() as stub:
        stub.post(SEND, json=ACCEPTED)
        with django_capture_on_commit_callbacks(execute=True):
            response = as_agent.post(f"/s/{session.pk}/m/{failed.pk}/retry/", **htmx())
    assert response.status_code == 200
    assert "Retrying" in text_of(response)
    failed.refresh_from_db()
    assert failed.status == Message.Status.SENT
    assert TimelineEntry.objects.filter(session=session, summary__contains="retried").exists()


def test_older_messages_load_by_keyset_without_gaps_or_repeats(as_agent, session):
    from inbox.selectors.thread import THREAD_PAGE_SIZE

    start = timezone.now() - timedelta(hours=2)
    messages = [
        InboundMessageFactory(session=session, sent_at=start + timedelta(seconds=i // 2))
        for i in range(THREAD_PAGE_SIZE * 2 + 5)
    ]
    note = NoteFactory(session=session)
    Note.objects.filter(pk=note.pk).update(created_at=start + timedelta(seconds=3))

    def ids(html: str) -> list[int]:
        return [
            int(i)
            for i in re.findall(
                r'data-testid="thread-message" data-kind="message" data-message-id="(\d+)"', html
            )
        ]

    page = text_of(as_agent.get(f"/s/{session.pk}/"))
    seen = ids(page)
    pages = [page]
    assert len(seen) == THREAD_PAGE_SIZE
    while True:
        match = re.search(r"/older/\?before=(\d+)", page)
        if not match:
            break
        page = text_of(as_agent.get(f"/s/{session.pk}/older/?before={match.group(1)}"))
        seen = ids(page) + seen
        pages.append(page)
    assert seen == [m.pk for m in messages]
    assert len(pages) == 3
    # The note shows once, in the page whose stretch of time holds it.
    assert sum(p.count(f'id="note-{note.pk}"') for p in pages) == 1


def test_older_messages_also_page_without_javascript(as_agent, session):
    from inbox.selectors.thread import THREAD_PAGE_SIZE

    for _ in range(THREAD_PAGE_SIZE + 3):
        InboundMessageFactory(session=session)
    page = text_of(as_agent.get(f"/s/{session.pk}/"))
    before = re.search(r'href="/s/\d+/\?before=(\d+)', page).group(1)

    older = text_of(as_agent.get(f"/s/{session.pk}/?before={before}"))

    assert older.count('data-testid="thread-message"') == 3
    assert "Back to the latest messages" in older


def test_opening_a_session_marks_it_read(as_agent, session):
    Session.objects.filter(pk=session.pk).update(unread_count=4)

    as_agent.get(f"/s/{session.pk}/")

    session.refresh_from_db()
    assert session.unread_count == 0


def test_htmx_gets_the_conversation_pane_alone_with_its_title(as_agent, session):
    response = as_agent.get(f"/s/{session.pk}/", **htmx(HX_Target="conversation"))

    html = text_of(response)
    assert html.lstrip().startswith("<title>Anna Müller")
    assert 'id="conversation"' in html and 'id="list-filters"' not in html
    assert "HX-Request" in response["Vary"]


def test_thread_updates_return_new_items_changed_messages_and_a_fresh_header(as_agent, session):
    old = InboundMessageFactory(session=session)
    pending = OutboundMessageFactory(session=session, status=Message.Status.SENT)
    newer = InboundMessageFactory(session=session, body="Are you there?")
    note = NoteFactory(session=session, body="Call her back")
    Message.objects.filter(pk=pending.pk).update(status=Message.Status.DELIVERED)

    response = as_agent.get(
        f"/s/{session.pk}/updates/?m={pending.pk}&n=0&t=0&st={pending.pk}.sent,{old.pk}.received&w=open"
    )

    html = text_of(response)
    items, changed = html.split('<template data-part="changed">')
    assert f'id="message-{newer.pk}"' in items and f'id="note-{note.pk}"' in items
    assert f'id="message-{old.pk}"' not in items
    changed = changed.split("</template>")[0]
    assert f'id="message-{pending.pk}"' in changed and 'data-state="delivered"' in changed
    assert f'id="message-{old.pk}"' not in changed
    assert '<template data-part="header">' in html and '<template data-part="panel">' in html
    assert '<template data-part="composer">' not in html


def test_thread_updates_bring_a_new_composer_when_the_window_changed(as_agent, session):
    html = text_of(as_agent.get(f"/s/{session.pk}/updates/?w=closed"))

    assert '<template data-part="composer">' in html


# --- Linkify ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        (
            "see https://example.com/a?b=1&c=2.",
            'see <a href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer nofollow" target="_blank">https://example.com/a?b=1&amp;c=2</a>.',
        ),
        (
            "(http://example.com/x)",
            '(<a href="http://example.com/x" rel="noopener noreferrer nofollow" target="_blank">http://example.com/x</a>)',
        ),
        (
            "https://en.wikipedia.org/wiki/Foo_(bar)",
            '<a href="https://en.wikipedia.org/wiki/Foo_(bar)" rel="noopener noreferrer nofollow" target="_blank">https://en.wikipedia.org/wiki/Foo_(bar)</a>',
        ),
        (XSS_SCRIPT, "&lt;script&gt;alert(1)&lt;/script&gt;"),
        (
            'https://x.example/"><img src=x onerror=alert(1)>',
            '<a href="https://x.example/" rel="noopener noreferrer nofollow" target="_blank">https://x.example/</a>&quot;&gt;&lt;img src=x onerror=alert(1)&gt;',
        ),
        ("javascript:alert(1)", "javascript:alert(1)"),
        ("ftp://example.com", "ftp://example.com"),
        ("https://", "https://"),
        (
            "line one\nhttps://a.example",
            'line one\n<a href="https://a.example" rel="noopener noreferrer nofollow" target="_blank">https://a.example</a>',
        ),
    ],
)
def test_linkify_escapes_first_and_links_only_http_urls(text, expected):
    from inbox.templatetags.inbox_tags import linkify

    assert linkify(text) == expected


def test_linkify_never_lets_a_quote_out_of_the_link():
    from inbox.templatetags.inbox_tags import linkify

    html = linkify("https://a.example/?q='onmouseover=alert(1)")

    assert "'" not in html and "onmouseover=alert(1)" in html
    assert html.startswith('<a href="https://a.example/?q=" ')


def test_safe_url_only_passes_http_urls():
    from inbox.templatetags.inbox_tags import safe_url

    assert safe_url("https://cdn.example/a.jpg") == "https://cdn.example/a.jpg"
    assert safe_url("javascript:alert(1)") == ""
    assert safe_url("data:text/html,<script>") == ""
    assert safe_url("/relative") == ""


# --- The composer -----------------------------------------------------------------------------


def sent_bodies(calls: Any) -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in calls if c.request.url == SEND]


def test_a_reply_sent_from_the_page_reaches_the_platform(
    as_agent, agent, session, django_capture_on_commit_callbacks
):
    with responses.RequestsMock() as stub:
        stub.post(SEND, json=ACCEPTED)
        with django_capture_on_commit_callbacks(execute=True):
            response = as_agent.post(
                f"/s/{session.pk}/send/",
                {"mode": "reply", "body": "Your parcel ships today.", "idempotency_key": "form-1"},
            )
        bodies = sent_bodies(stub.calls)
    assert response.status_code == 302
    assert response["Location"] == f"/s/{session.pk}/"
    assert bodies[0]["text"] == {"body": "Your parcel ships today."}
    message = Message.objects.get(idempotency_key="form-1")
    assert message.status == Message.Status.SENT and message.author == agent
    html = text_of(as_agent.get(response["Location"]))
    assert "Your parcel ships today." in html and 'data-state="sent"' in html


def test_a_reply_sent_with_htmx_answers_with_a_fresh_composer(
    as_agent, session, django_capture_on_commit_callbacks
):
    with responses.RequestsMock() as stub:
        stub.post(SEND, json=ACCEPTED)
        with django_capture_on_commit_callbacks(execute=True):
            response = as_agent.post(
                f"/s/{session.pk}/send/?view=mine",
                {"mode": "reply", "body": "Hello", "idempotency_key": "form-2"},
                **htmx(HX_Target="composer"),
            )
    html = text_of(response)
    assert response.status_code == 200
    assert client_events(response) == {"sb:changed"}
    assert html.lstrip().startswith('<div id="composer"')
    assert 'name="idempotency_key" value="form-2"' not in html
    assert "<textarea" in html and "Hello</textarea>" not in html


def test_a_double_submit_with_the_same_key_sends_one_message(
    as_agent, session, django_capture_on_commit_callbacks
):
    form = {"mode": "reply", "body": "Only once please", "idempotency_key": "double-1"}
    with responses.RequestsMock() as stub:
        stub.post(SEND, json=ACCEPTED)
        with django_capture_on_commit_callbacks(execute=True):
            as_agent.post(f"/s/{session.pk}/send/", form, **htmx())
            as_agent.post(f"/s/{session.pk}/send/", form, **htmx())
            as_agent.post(f"/s/{session.pk}/send/", form)
        assert len(sent_bodies(stub.calls)) == 1
    assert Message.objects.filter(session=session, direction="out").count() == 1


def test_with_the_window_closed_the_composer_offers_templates_and_refuses_free_text(
    as_agent, account, channel
):
    session = make_session(account, channel, inbound_ago=timedelta(hours=30))
    TemplateApprovalFactory(template__account=account, template__code="FOLLOW_UP", channel=channel)

    html = text_of(as_agent.get(f"/s/{session.pk}/"))

    assert 'data-testid="composer-window-closed"' in html
    assert 'data-mode="template"' in html
    assert re.search(r'value="reply" form="reply-form" disabled', html)
    assert "FOLLOW_UP" in html
    response = as_agent.post(
        f"/s/{session.pk}/send/", {"mode": "reply", "body": "Hi!", "idempotency_key": "w1"}
    )
    assert response.status_code == 422
    refused = text_of(response)
    assert 'data-testid="composer-error"' in refused
    assert "only an approved template can be sent" in refused
    assert "Hi!</textarea>" in refused
    assert not Message.objects.filter(session=session).exists()
    response = as_agent.post(
        f"/s/{session.pk}/send/",
        {"mode": "reply", "body": "Hi!", "idempotency_key": "w2"},
        **htmx(),
    )
    assert response.status_code == 422 and "only an approved template" in text_of(response)


def test_a_template_is_prefilled_from_the_contact_previewed_and_sent(
    as_agent, session, django_capture_on_commit_callbacks
):
    template = TemplateFactory(
        account=session.account,
        code="ORDER_UPDATE",
        lang="en_US",
        text="Hi {{name}}, order {{order_id}} arrives {{eta}}.",
        placeholders=[
            {"name": "name", "label": "Customer name", "sample": "Amira", "source": "contact.name"},
            {"name": "order_id", "label": "Order number", "sample": "48213"},
            {"name": "eta", "label": "Delivery date", "sample": "Friday"},
        ],
    )
    TemplateApprovalFactory(template=template, channel=session.channel)

    form = text_of(as_agent.get(f"/s/{session.pk}/template-form/?template={template.pk}"))

    assert 'name="ph:name" value="Anna Müller"' in form
    assert 'name="ph:order_id" value=""' in form and 'placeholder="e.g. 48213"' in form
    assert 'data-testid="template-preview"' in form
    assert "Hi Anna Müller, order  arrives ." in form
    assert 'data-template-text="Hi {{name}}, order {{order_id}} arrives {{eta}}."' in form
    with responses.RequestsMock() as stub:
        stub.post(SEND, json=ACCEPTED)
        with django_capture_on_commit_callbacks(execute=True):
            response = as_agent.post(
                f"/s/{session.pk}/send-template/",
                {
                    "template": template.pk,
                    "ph:name": "Anna Müller",
                    "ph:order_id": "48213",
                    "ph:eta": "Friday",
                    "idempotency_key": "t1",
                },
            )
        body = sent_bodies(stub.calls)[0]
    assert response.status_code == 302
    assert body["type"] == "template"
    message = Message.objects.get(idempotency_key="t1")
    assert message.body == "Hi Anna Müller, order 48213 arrives Friday."
    assert message.template_data == {"name": "Anna Müller", "order_id": "48213", "eta": "Friday"}


def test_a_template_with_an_empty_placeholder_is_refused_with_the_reason(as_agent, session):
    template = TemplateFactory(account=session.account)
    TemplateApprovalFactory(template=template, channel=session.channel)

    response = as_agent.post(
        f"/s/{session.pk}/send-template/",
        {"template": template.pk, "ph:name": "", "idempotency_key": "t2"},
        **htmx(),
    )

    assert response.status_code == 422
    assert "Fill in the template&#x27;s placeholders: name" in text_of(response)


def test_only_templates_approved_on_the_sessions_channel_are_offered(as_agent, session, account):
    approved = TemplateApprovalFactory(
        template__account=account, template__code="APPROVED_HERE", channel=session.channel
    )
    TemplateApprovalFactory(
        template__account=account,
        template__code="PENDING_HERE",
        channel=session.channel,
        status="PENDING",
    )
    elsewhere = ChannelFactory(account=account)
    TemplateApprovalFactory(
        template__account=account, template__code="APPROVED_ELSEWHERE", channel=elsewhere
    )

    html = text_of(as_agent.get(f"/s/{session.pk}/?compose=template"))

    assert "APPROVED_HERE" in html
    assert "PENDING_HERE" not in html and "APPROVED_ELSEWHERE" not in html
    response = as_agent.post(
        f"/s/{session.pk}/send-template/",
        {
            "template": Template.objects.get(code="PENDING_HERE").pk,
            "ph:name": "x",
            "idempotency_key": "t3",
        },
    )
    assert response.status_code == 422
    assert approved.template.code in html


def test_a_message_the_window_refused_is_resent_as_a_template(
    as_agent, account, channel, django_capture_on_commit_callbacks
):
    session = make_session(account, channel, inbound_ago=timedelta(hours=30))
    failed = OutboundMessageFactory(session=session, status=Message.Status.FAILED, error_code="470")
    template = TemplateFactory(account=account)
    TemplateApprovalFactory(template=template, channel=channel)

    page = text_of(as_agent.get(f"/s/{session.pk}/?compose=template&replaces={failed.pk}"))
    assert f'name="replaces" value="{failed.pk}"' in page
    with responses.RequestsMock() as stub:
        stub.post(SEND, json=ACCEPTED)
        with django_capture_on_commit_callbacks(execute=True):
            as_agent.post(
                f"/s/{session.pk}/send-template/",
                {
                    "template": template.pk,
                    "ph:name": "Anna",
                    "replaces": failed.pk,
                    "idempotency_key": "t4",
                },
            )
    replacement = Message.objects.get(idempotency_key="t4")
    assert replacement.replaces == failed
    item = _thread_item(text_of(as_agent.get(f"/s/{session.pk}/")), "", failed.pk)
    assert "Re-sent as a template" in item and 'data-testid="message-send-as-template"' not in item


def test_notes_never_reach_the_platform_and_look_different(
    as_agent, agent, session, django_capture_on_commit_callbacks
):
    with responses.RequestsMock() as stub:
        with django_capture_on_commit_callbacks(execute=True):
            response = as_agent.post(
                f"/s/{session.pk}/send/",
                {"mode": "note", "body": "VIP, be nice", "idempotency_key": "n1"},
            )
        assert len(stub.calls) == 0
    assert response.status_code == 302
    note = Note.objects.get()
    assert note.author == agent and note.body == "VIP, be nice"
    assert not Message.objects.exists()
    html = text_of(as_agent.get(f"/s/{session.pk}/"))
    item = html[html.index(f'id="note-{note.pk}"') :]
    assert 'class="sb-item sb-note"' in html and "Private note by Ana Agent" in item
    assert "not sent to the customer" in item


def test_a_double_submitted_note_is_stored_once(as_agent, session):
    form = {"mode": "note", "body": "Once", "idempotency_key": "n2"}

    as_agent.post(f"/s/{session.pk}/send/", form, **htmx())
    as_agent.post(f"/s/{session.pk}/send/", form, **htmx())

    assert Note.objects.count() == 1


def test_a_note_may_be_written_when_the_window_is_closed(as_agent, account, channel):
    session = make_session(account, channel, inbound_ago=timedelta(hours=30))

    response = as_agent.post(
        f"/s/{session.pk}/send/",
        {"mode": "note", "body": "Waiting on her", "idempotency_key": "n3"},
    )

    assert response.status_code == 302
    assert Note.objects.filter(session=session).exists()


def test_an_empty_reply_is_refused_with_the_reason(as_agent, session):
    response = as_agent.post(
        f"/s/{session.pk}/send/", {"mode": "reply", "body": "  ", "idempotency_key": "e1"}, **htmx()
    )

    assert response.status_code == 422
    assert "The message is empty." in text_of(response)


def test_canned_replies_are_offered_filled_in_and_scoped_to_teams(as_agent, agent, session, team):
    CannedReplyFactory(
        shortcut="hello", title="Greeting", body="Hi {{contact.first_name}}, {{agent.name}} here."
    )
    CannedReplyFactory(shortcut="team-only", team=team)
    CannedReplyFactory(shortcut="other-team", team=TeamFactory())

    html = text_of(as_agent.get(f"/s/{session.pk}/"))

    data = json.loads(
        re.search(
            r'<script id="canned-data" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    shortcuts = {c["shortcut"]: c for c in data}
    assert set(shortcuts) == {"hello", "team-only"}
    assert shortcuts["hello"]["body"] == "Hi Anna, Ana Agent here."
    assert 'data-testid="canned-open"' in html


def test_canned_replies_with_markup_stay_inert_in_the_page(as_agent, session):
    CannedReplyFactory(shortcut="evil", body="</script><script>alert(1)</script>")

    html = text_of(as_agent.get(f"/s/{session.pk}/"))

    assert "<script>alert(1)</script>" not in html


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f"
    b"\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00"
    b"\x00IEND\xaeB`\x82"
)


def test_an_uploaded_png_is_stored_and_sent_as_an_image_with_a_link_signed_for_the_platform(
    as_agent, session, settings, django_capture_on_commit_callbacks
):
    from django.core.files.storage import default_storage
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.PUBLIC_BASE_URL = "https://inbox.example.com"
    upload = SimpleUploadedFile("My receipt (1).png", PNG, content_type="image/png")
    with responses.RequestsMock() as stub:
        stub.post(SEND, json=ACCEPTED)
        with django_capture_on_commit_callbacks(execute=True):
            as_agent.post(
                f"/s/{session.pk}/send/",
                {"mode": "reply", "body": "Here it is", "idempotency_key": "u1", "file": upload},
            )
        body = sent_bodies(stub.calls)[0]
    message = Message.objects.get(idempotency_key="u1")
    assert message.type == "image" and message.caption == "Here it is"
    assert message.media_mime_type == "image/png" and message.media_filename == "My_receipt_1.png"
    assert re.match(
        r"^https://inbox\.example\.com/media/uploads/\d{4}/\d{2}/[\w-]{20,}/My_receipt_1\.png$",
        message.media_url,
    )
    assert body["image"]["caption"] == "Here it is"
    assert body["image"]["link"].startswith(f"{message.media_url}?sig=")
    stored = message.media_url.split("/media/", 1)[1]
    assert default_storage.exists(stored)
    # The platform fetches it by the signed link, without signing in; the bare link serves nothing.
    served = browser(None).get(body["image"]["link"].removeprefix("https://inbox.example.com"))
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert b"".join(served.streaming_content) == PNG
    bare = message.media_url.removeprefix("https://inbox.example.com")
    assert browser(None).get(bare).status_code == 404
    # Agents see it as they see the session, through the media view.
    media = MediaFile.objects.get(message=message)
    assert (media.state, media.path, media.content_type) == ("stored", stored, "image/png")
    assert b"".join(as_agent.get(f"/media/{media.pk}/").streaming_content) == PNG


@pytest.mark.parametrize(
    ("name", "content_type", "reason"),
    [
        ("page.html", "text/html", "cannot be sent"),
        ("logo.svg", "image/svg+xml", "cannot be sent"),
        ("tool.exe", "application/octet-stream", "cannot be sent"),
    ],
)
def test_an_upload_of_a_refused_type_is_refused_with_the_reason(
    as_agent, session, name, content_type, reason
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile(name, b"<svg onload=alert(1)>", content_type=content_type)
    response = as_agent.post(
        f"/s/{session.pk}/send/",
        {"mode": "reply", "body": "", "idempotency_key": "u2", "file": upload},
        **htmx(),
    )

    assert response.status_code == 422
    assert reason in text_of(response)
    assert not Message.objects.exists()


def test_an_upload_over_16_mib_is_refused(as_agent, session):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile(
        "big.pdf", b"0" * (16 * 1024 * 1024 + 1), content_type="application/pdf"
    )
    response = as_agent.post(
        f"/s/{session.pk}/send/",
        {"mode": "reply", "idempotency_key": "u3", "file": upload},
        **htmx(),
    )

    assert response.status_code == 422
    assert "at most 16 MiB" in text_of(response)


def platform_link(path: str) -> str:
    """The link a delivery gives the platform for a stored upload (signed), as a local path."""
    from inbox.services.stored_files import upload_link_for_platform, upload_url

    return upload_link_for_platform(upload_url(path)).split("://", 1)[1].split("/", 1)[1]


def test_uploads_are_served_only_by_their_full_path_with_a_signature_for_that_path(settings):
    from django.core import signing
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    default_storage.save("uploads/2025/11/abcdefghijklmnopqrstuvwx/a.png", ContentFile(PNG))
    default_storage.save("uploads/2025/11/abcdefghijklmnopqrstuvwx/b.png", ContentFile(PNG))
    client = browser(None)
    signed = "/" + platform_link("uploads/2025/11/abcdefghijklmnopqrstuvwx/a.png")
    signature = signed.split("?sig=", 1)[1]

    assert client.get(signed).status_code == 200
    assert client.get(signed.split("?", 1)[0]).status_code == 404
    other = f"/media/uploads/2025/11/abcdefghijklmnopqrstuvwx/b.png?sig={signature}"
    assert client.get(other).status_code == 404
    with mock.patch.object(signing, "time") as clock:  # a link signed two days ago
        clock.time.return_value = time.time() - 2 * 24 * 3600
        old = "/" + platform_link("uploads/2025/11/abcdefghijklmnopqrstuvwx/a.png")
    assert client.get(old).status_code == 404
    assert client.get("/media/uploads/2025/11/abcdefghijklmnopqrstuvwx/").status_code == 404
    assert client.get("/media/uploads/2025/11/").status_code == 404
    assert (
        client.get("/media/uploads/2025/11/abcdefghijklmnopqrstuvwx/missing.png").status_code == 404
    )
    assert client.get("/media/uploads/2025/11/short/a.png").status_code == 404
    assert client.get("/media/uploads/../../settings.py").status_code == 404


# --- Actions ----------------------------------------------------------------------------------


def test_assign_to_me_shows_in_the_thread_and_the_list(as_agent, agent, session):
    response = as_agent.post(f"/s/{session.pk}/assign/", {"assignee": "me"}, **htmx())

    assert response.status_code == 200 and client_events(response) == {"sb:changed"}
    assert "Assigned to you" in text_of(response)
    session.refresh_from_db()
    assert session.assignee == agent
    page = text_of(as_agent.get(f"/s/{session.pk}/?view=mine"))
    assert "Assigned to Ana Agent by Ana Agent" in page
    assert f'data-session-id="{session.pk}"' in page
    assert 'data-testid="action-unassign"' in page


def test_an_agent_cannot_assign_to_someone_else_but_a_supervisor_can(
    as_agent, as_supervisor, colleague, session, team
):
    response = as_agent.post(f"/s/{session.pk}/assign/", {"assignee": colleague.pk}, **htmx())
    assert response.status_code == 403
    assert "Only a supervisor" in text_of(response)

    response = as_supervisor.post(
        f"/s/{session.pk}/assign/", {"assignee": colleague.pk, "team": team.pk}
    )
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.assignee == colleague and session.team == team
    assert "Carl Colleague" in text_of(as_supervisor.get(f"/s/{session.pk}/"))


def test_a_session_cannot_be_assigned_to_someone_who_cannot_see_it(as_supervisor, session):
    stranger = AgentProfileFactory(role=AgentProfile.Role.AGENT).user

    response = as_supervisor.post(f"/s/{session.pk}/assign/", {"assignee": stranger.pk}, **htmx())

    assert response.status_code == 422
    assert "does not serve this channel" in text_of(response)


@pytest.mark.parametrize(
    ("action", "form", "endpoint", "status", "summary"),
    [
        ("resolve", {}, "session/resolve", "resolved", "Resolved by Ana Agent"),
        ("close", {}, "session/close", "closed", "Closed by Ana Agent"),
        (
            "route",
            {"queue": "billing", "skills": "de, refunds"},
            "session/routing",
            "open",
            "Routed to queue billing with skills de, refunds by Ana Agent",
        ),
    ],
)
def test_route_resolve_and_close_go_to_the_platform_and_show_in_the_thread_and_list(
    as_agent, session, django_capture_on_commit_callbacks, action, form, endpoint, status, summary
):
    with responses.RequestsMock() as stub:
        stub.post(f"{API}/{endpoint}", json=SUCCESS_LIST)
        with django_capture_on_commit_callbacks(execute=True):
            response = as_agent.post(f"/s/{session.pk}/{action}/", form, **htmx())
    assert response.status_code == 200
    assert "waiting for the platform" in text_of(response)
    session.refresh_from_db()
    assert session.status == status
    page = text_of(as_agent.get(f"/s/{session.pk}/?status=any"))
    assert summary in page
    row = page[page.index(f'data-session-id="{session.pk}"') :]
    if status != "open":
        assert f'data-status="{status}"' in row[:200]


def test_a_pending_platform_action_is_shown_until_the_platform_answers(as_agent, session):
    # No on-commit run: the worker has not picked it up yet.
    as_agent.post(f"/s/{session.pk}/resolve/", **htmx())

    page = text_of(as_agent.get(f"/s/{session.pk}/"))

    assert 'data-testid="actions-pending"' in page and "Resolve: waiting for the platform" in page


def test_a_refused_action_says_why(as_agent, account, channel):
    session = make_session(account, channel, external_id="")

    response = as_agent.post(f"/s/{session.pk}/resolve/", **htmx())

    assert response.status_code == 422
    assert "not known to the platform" in text_of(response)


@pytest.mark.parametrize(
    ("action", "form", "menu", "words"),
    [
        ("route", {"queue": "billing"}, "action-route-menu", "route sessions"),
        ("resolve", {}, "action-resolve", "resolve sessions"),
        ("close", {}, "action-close", "close sessions"),
    ],
)
def test_an_action_the_platform_cannot_do_is_neither_offered_nor_sent(
    as_agent, session, monkeypatch, action, form, menu, words
):
    lacking = {"route": Capability.ROUTE, "resolve": Capability.RESOLVE, "close": Capability.CLOSE}
    monkeypatch.setattr(XmsProvider, "capabilities", frozenset(Capability) - {lacking[action]})

    page = text_of(as_agent.get(f"/s/{session.pk}/"))
    with responses.RequestsMock():  # no platform call may be made
        response = as_agent.post(f"/s/{session.pk}/{action}/", form, **htmx())

    assert f'data-testid="{menu}"' not in page
    others = {"action-route-menu", "action-resolve", "action-close"} - {menu}
    assert all(f'data-testid="{other}"' in page for other in others)
    assert response.status_code == 422
    assert f"Mehery XMS cannot {words}." in text_of(response)
    assert not SessionAction.objects.filter(session=session).exists()


def test_reopen_brings_a_resolved_session_back_with_a_timeline_line(as_agent, session):
    Session.objects.filter(pk=session.pk).update(status=Session.Status.RESOLVED)
    assert 'data-testid="action-reopen"' in text_of(as_agent.get(f"/s/{session.pk}/"))

    response = as_agent.post(f"/s/{session.pk}/reopen/")

    assert response.status_code == 302
    session.refresh_from_db()
    assert session.status == Session.Status.OPEN
    assert "Reopened (was resolved) by Ana Agent" in text_of(as_agent.get(f"/s/{session.pk}/"))
    assert as_agent.post(f"/s/{session.pk}/reopen/", **htmx()).status_code == 422


def test_labels_are_set_and_shown_in_the_thread_the_list_and_the_contact_panel(
    as_agent, account, channel, session
):
    vip = LabelFactory(name="vip", color="purple")
    billing = LabelFactory(name="billing", color="orange")
    earlier = make_session(account, channel, contact=session.contact, status=Session.Status.CLOSED)
    earlier.labels.add(billing)

    response = as_agent.post(f"/s/{session.pk}/labels/", {"label": [vip.pk]}, **htmx())

    assert "Labels saved" in text_of(response)
    assert list(session.labels.all()) == [vip]
    page = text_of(as_agent.get(f"/s/{session.pk}/"))
    assert "Labelled vip by Ana Agent" in page
    row = page[page.index(f'data-session-id="{session.pk}"') :]
    assert '<span class="sb-label sb-label-purple">vip</span>' in row[: row.index("</li>")]
    panel = page[page.index('data-testid="contact-labels"') :]
    assert "vip" in panel[:400] and "billing" in panel[:400]
    as_agent.post(f"/s/{session.pk}/labels/", {}, **htmx())
    assert not session.labels.exists()
    assert "Removed vip by Ana Agent" in text_of(as_agent.get(f"/s/{session.pk}/"))


def test_the_contact_language_is_saved_at_the_platform(
    as_agent, session, django_capture_on_commit_callbacks
):
    with responses.RequestsMock() as stub:
        stub.post(f"{API}/contact/prefs/lang", json=SUCCESS_LIST)
        with django_capture_on_commit_callbacks(execute=True):
            as_agent.post(f"/s/{session.pk}/language/", {"lang": "de_DE"}, **htmx())
        assert json.loads(stub.calls[0].request.body)["lang"] == "de_DE"
    session.contact.refresh_from_db()
    assert session.contact.language == "de_DE"
    assert "Language set to de_DE by Ana Agent" in text_of(as_agent.get(f"/s/{session.pk}/"))


@pytest.mark.parametrize("action", ["assign", "reopen", "labels", "resolve"])
def test_actions_without_javascript_redirect_back_to_the_session_with_the_filters(
    as_agent, session, action
):
    Session.objects.filter(pk=session.pk).update(
        status=Session.Status.RESOLVED if action == "reopen" else "open"
    )

    response = as_agent.post(f"/s/{session.pk}/{action}/?view=mine&q=anna", {"assignee": "me"})

    assert response.status_code == 302
    assert response["Location"] == f"/s/{session.pk}/?view=mine&q=anna"
    assert 'data-testid="flash"' in text_of(as_agent.get(response["Location"]))


# --- The contact panel ------------------------------------------------------------------------


def test_the_contact_panel_shows_details_identities_and_only_visible_other_sessions(
    as_agent, account, channel, other_channel, session
):
    mine = make_session(account, channel, contact=session.contact, status=Session.Status.RESOLVED)
    hidden = make_session(account, other_channel, contact=session.contact)

    html = text_of(as_agent.get(f"/s/{session.pk}/"))

    panel = html[html.index('data-testid="contact-panel"') :]
    assert "+4915112345678" in panel and "anna@example.de" in panel
    assert 'data-testid="contact-language"' in panel
    assert "WhatsApp · 4915112345678" in panel
    assert f'href="/s/{mine.pk}/"' in panel
    assert f'href="/s/{hidden.pk}/"' not in panel


# --- Live updates -----------------------------------------------------------------------------


def test_the_page_carries_the_live_update_contract(as_agent, session, settings):

    settings.REDIS_URL = ""
    redis_client.cache_clear()
    try:
        html = text_of(as_agent.get(f"/s/{session.pk}/"))
    finally:
        redis_client.cache_clear()

    assert 'data-live="poll"' in html
    assert 'data-live-url="/live/events/"' in html
    assert 'data-live-last="0-0"' in html
    assert "data-live-status" in html
    assert (
        "inbox/live.js" in html
        and "inbox/inbox.js" in html
        and "vendor/htmx/htmx-2.0.4.min.js" in html
    )


def test_the_changes_stamp_moves_when_a_message_arrives_or_a_receipt_changes_a_status(
    as_agent, session
):
    def stamp() -> dict[str, str]:
        return as_agent.get(f"/changes/?session={session.pk}").json()

    first = stamp()
    message = OutboundMessageFactory(session=session, status=Message.Status.SENT)
    second = stamp()
    Message.objects.filter(pk=message.pk).update(status=Message.Status.DELIVERED)
    third = stamp()
    Session.objects.filter(pk=session.pk).update(unread_count=2)
    fourth = stamp()

    assert first["thread"] != second["thread"] != third["thread"]
    assert third["list"] != fourth["list"]
    assert as_agent.get("/changes/?session=999999").json()["thread"] == ""


def test_every_testid_the_browser_tests_rely_on_is_on_the_page(as_agent, session):
    LabelFactory()
    OutboundMessageFactory(session=session, status=Message.Status.DELIVERED)
    template = TemplateFactory(account=session.account)
    TemplateApprovalFactory(template=template, channel=session.channel)

    html = text_of(as_agent.get(f"/s/{session.pk}/?template={template.pk}"))

    for test_id in (
        "session-row",
        "thread-message",
        "composer",
        "composer-text",
        "composer-send",
        "composer-mode-note",
        "composer-file",
        "template-picker",
        "template-select",
        "template-preview",
        "template-send",
        "action-assign-me",
        "action-resolve",
        "action-route",
        "action-labels",
        "action-close",
        "delivery-state",
        "live-status",
        "search-input",
        "help-overlay",
        "contact-panel",
        "view-all",
    ):
        assert f'data-testid="{test_id}"' in html, test_id


def test_without_javascript_choosing_a_template_shows_its_form_and_sends_nothing(as_agent, session):
    template = TemplateFactory(account=session.account, text="Hello {{name}}")
    TemplateApprovalFactory(template=template, channel=session.channel)

    response = as_agent.post(
        f"/s/{session.pk}/send-template/",
        {"template": template.pk, "choose": "1", "idempotency_key": "c1"},
    )

    html = text_of(response)
    assert response.status_code == 200
    assert 'name="ph:name" value="Anna Müller"' in html
    assert "Hello Anna Müller" in html
    assert not Message.objects.exists()


def test_a_document_upload_is_served_as_a_download_and_media_inline():
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    default_storage.save(
        "uploads/2025/11/abcdefghijklmnopqrstuvwx/invoice.pdf", ContentFile(b"%PDF-1.4")
    )
    default_storage.save("uploads/2025/11/abcdefghijklmnopqrstuvwx/voice.ogg", ContentFile(b"OggS"))
    client = browser(None)

    pdf = client.get("/" + platform_link("uploads/2025/11/abcdefghijklmnopqrstuvwx/invoice.pdf"))
    ogg = client.get("/" + platform_link("uploads/2025/11/abcdefghijklmnopqrstuvwx/voice.ogg"))

    assert pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"].startswith("attachment")
    assert ogg["Content-Type"] == "audio/ogg"
    assert ogg["Content-Disposition"].startswith("inline")
    assert pdf["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_the_label_service_writes_one_timeline_line_per_change_and_nothing_when_unchanged(
    session, agent
):
    from inbox.services.labels import session_label_add, session_label_remove, session_label_set

    vip, billing = LabelFactory(name="vip"), LabelFactory(name="billing")

    assert session_label_set(session, [vip, billing], by=agent)
    assert not session_label_set(session, [billing, vip], by=agent)
    assert not session_label_add(session, vip, by=agent)
    assert session_label_remove(session, vip, by=agent)

    lines = list(TimelineEntry.objects.filter(session=session).values_list("summary", flat=True))
    assert lines == ["Labelled billing, vip by Ana Agent", "Removed vip by Ana Agent"]


def test_reopening_an_open_session_is_refused(session, agent):
    from inbox.services.refusals import SendRefused
    from inbox.services.sessions_local import session_reopen

    with pytest.raises(SendRefused):
        session_reopen(session, by=agent)


def test_marking_read_writes_only_when_there_is_something_unread(session, agent):
    from inbox.services.sessions_local import session_mark_read

    assert not session_mark_read(session, by=agent)
    Session.objects.filter(pk=session.pk).update(unread_count=3)
    assert session_mark_read(session, by=agent)
    session.refresh_from_db()
    assert session.unread_count == 0


def test_templates_in_the_contacts_language_come_first(as_agent, session, account):
    session.contact.language = "de_DE"
    session.contact.save()
    for lang in ("ar_AE", "de_DE", "en_US", "de_AT"):
        TemplateApprovalFactory(
            template__account=account, template__lang=lang, channel=session.channel
        )

    html = text_of(as_agent.get(f"/s/{session.pk}/?compose=template"))

    groups = re.findall(r'<optgroup label="([\w]+)">', html)
    assert groups == ["de_DE", "de_AT", "ar_AE", "en_US"]


def test_the_conversation_query_count_does_not_grow_with_its_messages(as_agent, session, agent):
    def add(count: int) -> None:
        template = TemplateFactory(account=session.account)
        for i in range(count):
            InboundMessageFactory(
                session=session, type="image", media_url="https://cdn.example/a.png"
            )
            failed = OutboundMessageFactory(
                session=session, status="failed", author=agent, error_code="470"
            )
            OutboundMessageFactory(
                session=session, type="template", template=template, replaces=failed
            )
            NoteFactory(session=session, author=agent)
            timeline_add(
                session.account,
                session=session,
                kind="assigned",
                summary=f"Assigned {i}",
                occurred_at=timezone.now(),
            )

    add(2)
    few = _list_queries(as_agent, f"/s/{session.pk}/")
    add(20)
    many = _list_queries(as_agent, f"/s/{session.pk}/")

    assert few == many


def test_the_open_session_stays_in_the_list_after_it_was_assigned_away_until_another_is_opened(
    as_agent, session, account, channel
):
    other = make_session(account, channel)
    Session.objects.filter(pk=session.pk).update(assignee=UserFactory())

    while_open = text_of(as_agent.get(f"/list/?view=unassigned&current={session.pk}"))
    elsewhere = text_of(as_agent.get(f"/list/?view=unassigned&current={other.pk}"))

    assert f'data-session-id="{session.pk}" data-status="open"' in while_open
    assert f'data-session-id="{session.pk}"' not in elsewhere
    assert 'data-testid="view-count-unassigned">1<' in while_open  # counts follow the filters


def test_a_resolved_session_leaves_the_open_and_pending_list_while_it_is_open(
    as_agent, session, account, channel
):
    make_session(account, channel)
    Session.objects.filter(pk=session.pk).update(status=Session.Status.RESOLVED)

    while_open = text_of(as_agent.get(f"/list/?current={session.pk}"))
    any_status = text_of(as_agent.get(f"/list/?status=any&current={session.pk}"))

    assert f'data-session-id="{session.pk}"' not in while_open
    assert f'data-session-id="{session.pk}" data-status="resolved"' in any_status


def test_a_session_out_of_reach_gets_the_inbox_not_found_page(as_agent, foreign_session):
    response = as_agent.get(f"/s/{foreign_session.pk}/")

    assert response.status_code == 404
    assert 'data-testid="not-found"' in text_of(response)
    assert "Back to the inbox" in text_of(response)


def test_the_api_still_answers_unknown_addresses_with_json(as_agent):
    response = as_agent.get("/api/v1/nothing-here/")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_an_unconfirmed_message_shows_it_may_not_have_been_delivered_with_send_again(
    as_agent, session
):
    from inbox.models import MessageCopy

    twice = OutboundMessageFactory(session=session, status=Message.Status.READ, external_id="a-1")
    MessageCopy.objects.create(account=session.account, message=twice, external_id="a-2")
    unconfirmed = OutboundMessageFactory(
        session=session,
        status=Message.Status.UNCONFIRMED,
        error_code="unconfirmed",
        sent_at=twice.sent_at + timedelta(seconds=1),
    )

    html = text_of(as_agent.get(f"/s/{session.pk}/"))
    item = _thread_item(html, "", unconfirmed.pk)
    copied = _thread_item(html, "", twice.pk)
    rows = text_of(as_agent.get("/"))

    assert 'data-testid="message-unconfirmed"' in item
    assert "Unconfirmed." in item and "may not have been delivered" in item
    assert 'data-testid="message-send-again"' in item and "get it twice" in item
    assert 'data-state="unconfirmed"' in item
    assert 'data-testid="message-copies"' in copied and "Delivered twice" in copied
    assert 'data-testid="row-unconfirmed"' in rows
