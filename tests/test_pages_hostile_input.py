"""The agent pages answer bad input with a 4xx and a reason, never a 500.

Every page URL comes from the URLconf and every field name from the pages themselves (the
forms and links a signed-in agent is served) plus the few the page scripts add; each gets
NUL, garbage ids, numbers out of range and over-long text, by GET and by POST.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import AgentProfile, User
from inbox.models import MediaFile, Message, Note, Session, SessionAction
from integrations.models import Channel, ProviderAccount
from tests.factories import (
    AgentProfileFactory,
    CannedReplyFactory,
    ChannelFactory,
    ContactFactory,
    InboundMessageFactory,
    LabelFactory,
    NoteFactory,
    OutboundMessageFactory,
    ProviderAccountFactory,
    TeamFactory,
    TemplateApprovalFactory,
    make_session,
)

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999999999"
NUL_VALUES = ["\x00", "sales\x00", "12\x00"]
GARBAGE = ["²", "٣", HUGE, "-1", "0", "1e3", "abc", " ", "x" * 5000, "%", "None", "[]"]
# Names the page scripts add to requests (static/inbox/*.js), besides the forms' and links'.
SCRIPT_NAMES = ["m", "n", "t", "st", "w", "seen", "current", "session", "before", "last"]
# Not pages: the platforms' webhook, the integrator API (tests/test_api_schema_fuzz.py), the
# live stream (an endless response) and admin (Django's own).
SKIPPED = re.compile(r"^(webhooks/|api/v1/|live/|admin/|_bench/)")


def walk(patterns: list[Any], prefix: str = "") -> Iterator[str]:
    """Yield every route of the URLconf as a regex-free template, e.g. "s/<int:session_id>/"."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route


def page_routes() -> list[str]:
    """Return the page routes, signing out last (the sweeps sign in again before each round)."""
    routes = [r.lstrip("^").rstrip("$") for r in walk(get_resolver().url_patterns)]
    return sorted({r for r in routes if not SKIPPED.match(r)}, key=lambda r: (r == "logout/", r))


def fill(route: str, ids: dict[str, str]) -> str:
    """Return the URL of `route` with each converter replaced by the value for its name."""

    def value(match: re.Match[str]) -> str:
        return ids.get(match.group(2), "x")

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", value, route)


@pytest.fixture
def account() -> ProviderAccount:
    return ProviderAccountFactory()


@pytest.fixture
def channel(account: ProviderAccount) -> Channel:
    return ChannelFactory(account=account, external_id="wa360:918828218374", medium="whatsapp")


@pytest.fixture
def agent(channel: Channel) -> User:
    profile = AgentProfileFactory(role=AgentProfile.Role.AGENT, user__display_name="Ana")
    team = TeamFactory(name="Support")
    team.members.add(profile.user)
    team.channels.add(channel)
    return profile.user


@pytest.fixture
def session(account: ProviderAccount, channel: Channel) -> Session:
    contact = ContactFactory(account=account, name="Anna Müller", phone="4915112345678")
    session = make_session(account, channel, contact=contact, external_id="xsds34434")
    InboundMessageFactory(session=session, body="Where is my order?")
    photo = InboundMessageFactory(session=session, type="image", body="")
    MediaFile.objects.create(
        account=account, channel=channel, message=photo, state=MediaFile.State.FAILED
    )
    OutboundMessageFactory(session=session, status=Message.Status.FAILED, error_code="470")
    NoteFactory(session=session)
    TemplateApprovalFactory(template__account=account, channel=channel)
    LabelFactory()
    CannedReplyFactory()
    return session


@pytest.fixture
def as_agent(agent: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(agent)
    return client


def field_names(client: Client, session: Session) -> list[str]:
    """Return every field and query name the inbox page's forms and links use."""
    html = client.get(f"/s/{session.pk}/?compose=template").content.decode()
    names = set(re.findall(r'name="([^"]+)"', html))
    names |= set(re.findall(r"[?&;]([a-z_]+)=", html))
    names |= set(SCRIPT_NAMES)
    return sorted(names - {"csrfmiddlewaretoken", "htmx-config"})


def ids_for(session: Session) -> dict[str, str]:
    message = session.messages.order_by("id").first()
    assert message is not None
    media = MediaFile.objects.filter(message__session=session).first()
    assert media is not None
    return {"session_id": str(session.pk), "message_id": str(message.pk), "media_id": str(media.pk)}


def answers(
    client: Client, user: User, urls: list[str], data: dict[str, Any], **extra: str
) -> list[Any]:
    """Send `data` to each URL by GET and by POST as `user`; return (method, url, data, status)."""
    client.force_login(user)
    found = []
    for url in urls:
        for method in (client.get, client.post):
            response = method(url, data, **extra)
            found.append(
                (method.__name__, url, str(sorted(data.items()))[:60], response.status_code)
            )
    return found


def test_the_url_list_covers_the_pages(as_agent, session):
    routes = page_routes()

    assert "s/<int:session_id>/send/" in routes
    assert "s/<int:session_id>/language/" in routes
    assert "" in routes and "list/" in routes
    assert {"q", "body", "queue", "lang", "idempotency_key", "assignee"} <= set(
        field_names(as_agent, session)
    )


@pytest.mark.parametrize("value", NUL_VALUES, ids=repr)
def test_nul_in_any_field_of_any_page_is_refused_with_the_reason_and_changes_nothing(
    as_agent, agent, session, value
):
    urls = [fill(r, ids_for(session)) for r in page_routes()]
    names = field_names(as_agent, session)
    before = (Message.objects.count(), Note.objects.count(), SessionAction.objects.count())

    plain = answers(as_agent, agent, urls, dict.fromkeys(names, value))
    # htmx gets 422, which the pages' htmx config swaps into the flash region.
    partial = answers(as_agent, agent, urls, dict.fromkeys(names, value), HTTP_HX_REQUEST="true")

    assert [a for a in plain if a[3] != 400] == []
    assert [a for a in partial if a[3] != (400 if a[1].startswith("/api/") else 422)] == []
    assert (Message.objects.count(), Note.objects.count(), SessionAction.objects.count()) == before


@pytest.mark.parametrize("value", GARBAGE, ids=lambda v: repr(v[:12]))
def test_garbage_in_every_field_of_every_page_is_never_a_server_error(
    as_agent, agent, session, value
):
    urls = [fill(r, ids_for(session)) for r in page_routes()]
    names = field_names(as_agent, session)

    found = answers(as_agent, agent, urls, dict.fromkeys(names, value), HTTP_HX_REQUEST="true")

    assert [a for a in found if a[3] >= 500] == []


def test_garbage_in_one_field_at_a_time_is_never_a_server_error(as_agent, agent, session):
    urls = [fill(r, ids_for(session)) for r in page_routes()]
    names = field_names(as_agent, session)
    # One field at a time reaches what an earlier refusal would hide; forms are posted.
    posted = [u for u in urls if as_agent.post(u, HTTP_HX_REQUEST="true").status_code != 405]
    found = []

    for name in names:
        for value in ("²", HUGE):
            as_agent.force_login(agent)
            for url in posted:
                response = as_agent.post(url, {name: value}, HTTP_HX_REQUEST="true")
                found.append((name, value, url, response.status_code))

    assert len(names) > 25 and len(posted) > 10
    assert [a for a in found if a[3] >= 500] == []


@pytest.mark.parametrize("bad_id", ["0", HUGE])
def test_an_id_in_a_page_url_that_names_nothing_is_a_404(as_agent, agent, session, bad_id):
    routes = [r for r in page_routes() if "<int:" in r]
    urls = [fill(r, {"session_id": bad_id, "message_id": bad_id}) for r in routes]
    urls += [
        fill(r, {"session_id": str(session.pk), "message_id": bad_id})
        for r in routes
        if "<int:message_id>" in r
    ]

    found = answers(as_agent, agent, urls, {})

    assert len(found) > 20
    assert [a for a in found if a[3] not in (404, 405)] == []


@pytest.mark.parametrize("path", ["%00", "2025/11/abcdefghijklmnopqrstuvwx/a%00.png", "x" * 3000])
def test_an_upload_path_with_garbage_is_a_404(path):
    assert Client(raise_request_exception=False).get(f"/media/uploads/{path}").status_code == 404


# --- The reported fields, one by one ----------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "data"),
    [
        ("send", {"mode": "reply", "body": "hi\x00", "idempotency_key": "k1"}),
        ("send", {"mode": "note", "body": "hi\x00", "idempotency_key": "k2"}),
        ("send", {"mode": "reply", "body": "hi", "idempotency_key": "k\x003"}),
        ("send", {"mode": "note", "body": "hi", "idempotency_key": "k\x004"}),
        ("route", {"queue": "sales\x00"}),
        ("route", {"queue": "sales", "skills": "fr\x00"}),
        ("language", {"lang": "fr\x00"}),
        ("send-template", {"template": "1", "ph:name": "Anna\x00", "idempotency_key": "k5"}),
    ],
    ids=repr,
)
def test_each_reported_field_with_nul_is_refused_with_the_reason(as_agent, session, where, data):
    partial = as_agent.post(f"/s/{session.pk}/{where}/", data, HTTP_HX_REQUEST="true")
    page = as_agent.post(f"/s/{session.pk}/{where}/", data)

    assert (partial.status_code, partial["HX-Retarget"]) == (422, "#flash")
    assert page.status_code == 400
    for response in (partial, page):
        assert "NUL character" in response.content.decode()
    assert not Message.objects.filter(idempotency_key__startswith="k").exists()
    assert not Note.objects.filter(idempotency_key__startswith="k").exists()
    assert not SessionAction.objects.exists()


def test_the_search_box_with_nul_is_a_400_page_that_says_why(as_agent, session):
    response = as_agent.get("/", {"q": "anna\x00"})

    assert response.status_code == 400
    assert "NUL" in response.content.decode()


def test_a_file_name_with_nul_is_never_a_server_error(as_agent, session):
    upload = SimpleUploadedFile("a\x00b.png", b"\x89PNG\r\n\x1a\n", content_type="image/png")

    response = as_agent.post(
        f"/s/{session.pk}/send/",
        {"mode": "reply", "body": "", "idempotency_key": "f1", "file": upload},
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code < 500


def test_over_long_route_values_are_refused_with_the_reason(as_agent, session):
    response = as_agent.post(
        f"/s/{session.pk}/route/", {"queue": "q" * 256, "agent": "a"}, HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 422
    assert "255" in response.content.decode()
    assert not SessionAction.objects.exists()


# --- What was stored renders ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_message_with_a_non_finite_location_shows_without_a_map_link(as_agent, session, bad):
    InboundMessageFactory(
        session=session, type="location", latitude=bad, longitude=2.29, location_name="Tower"
    )

    response = as_agent.get(f"/s/{session.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Tower" in html
    assert "openstreetmap" not in html
    assert f"{bad:.6f}, 2.290000" not in html


def test_every_admin_list_answers_a_search_with_nul_with_a_400_and_garbage_with_no_500():
    from django.contrib import admin
    from django.urls import reverse

    from tests.factories import UserFactory

    client = Client(raise_request_exception=False)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    lists = [
        reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
        for m in admin.site._registry
    ]

    searched = [(url, client.get(url, {"q": "anna\x00"}).status_code) for url in lists]
    garbage = [
        (url, query, client.get(url, query).status_code)
        for url in lists
        for query in ({"q": HUGE}, {"p": HUGE}, {"o": "x"}, {"id__exact": "²"}, {"all": "\t"})
    ]

    assert len(lists) > 5
    assert [s for s in searched if s[1] != 400] == []
    assert [g for g in garbage if g[2] >= 500] == []
