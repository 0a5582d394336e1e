"""Search finds a contact however an agent types the phone, and names regardless of accents.

The list's search box is the production path: these tests ask `/list/` and the page, as a
browser does.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inbox.models import Contact, Session
from inbox.search import contacts_matching, phone_search_digits
from integrations.models import Channel, ProviderAccount
from tests.factories import (
    ContactFactory,
    InboundMessageFactory,
    make_session,
)

pytestmark = pytest.mark.django_db


def rows(client: Client, path: str, params: dict[str, str] | None = None) -> list[int]:
    html = client.get(path, params or {}).content.decode()
    return [int(i) for i in re.findall(r'data-testid="session-row" data-session-id="(\d+)"', html)]


def search(client: Client, text: str) -> list[int]:
    return rows(client, "/list/", {"status": "any", "q": text})


# --- Phones ------------------------------------------------------------------------------------

# Lucas, +33 6 12 34 56 78 (stored as the inbound flow stores phones: digits, country code first).
COUNTRY, NATIONAL = "33", "612345678"


@st.composite
def typed_phone(draw: st.DrawFn) -> str:
    """Return Lucas's number as an agent might type it: international (+, 00) or national
    (trunk 0) or bare digits, grouped with spaces, dashes, dots or nothing, maybe a tail only."""
    prefix = draw(st.sampled_from(["+33", "0033", "33", "+33 (0)", "0", ""]))
    digits = NATIONAL
    if draw(st.booleans()):
        digits = digits[-draw(st.integers(min_value=6, max_value=len(digits))) :]
        prefix = ""  # the end of a number is typed without its country
    groups: list[str] = []
    rest = digits
    while rest:
        size = draw(st.integers(min_value=1, max_value=4))
        groups.append(rest[:size])
        rest = rest[size:]
    separator = draw(st.sampled_from([" ", "-", ".", "", " - "]))
    gap = draw(st.sampled_from([" ", ""]))
    return f"{prefix}{gap if prefix else ''}{separator.join(groups)}"


@pytest.fixture
def lucas(account: ProviderAccount, channel: Channel) -> Session:
    contact = ContactFactory(account=account, name="Lucas Martin", phone=COUNTRY + NATIONAL)
    return make_session(account, channel, contact=contact)


@pytest.fixture
def someone_else(account: ProviderAccount, channel: Channel) -> Session:
    contact = ContactFactory(account=account, name="Yossi Levi", phone="972521234567")
    return make_session(account, channel, contact=contact)


@pytest.mark.parametrize(
    "typed",
    [
        "+33 6 12 34 56 78",
        "+33612345678",
        "0033 6 12 34 56 78",
        "0033612345678",
        "33612345678",
        "06 12 34 56 78",
        "06-12-34-56-78",
        "+33 (0)6 12 34 56 78",
        "12 34 56 78",
    ],
)
def test_a_phone_is_found_however_the_agent_types_it(as_agent, lucas, someone_else, typed):
    assert search(as_agent, typed) == [lucas.pk]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(typed=typed_phone())
def test_any_way_of_typing_a_phone_finds_its_contact_and_no_other(
    as_agent, lucas, someone_else, typed
):
    assert search(as_agent, typed) == [lucas.pk]


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("+33 6 12 34 56 78", "33612345678"),
        ("0033 6 12 34 56 78", "33612345678"),
        ("06 12 34 56 78", "612345678"),
        ("(+33) 6.12.34.56.78", "33612345678"),
        ("Lucas", ""),
        ("order 48213", ""),
        ("12", ""),  # too short to say anything on its own
    ],
)
def test_only_what_looks_like_a_phone_is_searched_as_digits(typed, digits):
    assert phone_search_digits(typed) == digits


def test_a_phone_typed_with_spaces_still_finds_text_in_messages(as_agent, account, channel):
    session = make_session(account, channel)
    InboundMessageFactory(session=session, body="Call me on +33 6 12 34 56 78 please")

    assert search(as_agent, "+33 6 12 34 56 78") == [session.pk]


# --- Names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "typed"),
    [
        ("Jonas Müller", "muller"),
        ("Jonas Müller", "MÜLLER"),
        ("Jonas Muller", "müller"),
        ("José García", "jose garcia"),
        ("François Lefèvre", "francois lefevre"),
        ("Zoë Ørsted", "zoe"),
        ("Łukasz Kowalski", "lukasz"),
        ("Ana Conceição", "conceicao"),
        ("أميرة حداد", "أميرة"),
        ("יוסי לוי", "יוסי"),  # noqa: RUF001
        ("प्रिया शर्मा", "प्रिया"),
        ("王美", "美"),
    ],
)
def test_names_are_found_regardless_of_accents_in_any_script(
    as_agent, account, channel, someone_else, name, typed
):
    session = make_session(account, channel, contact=ContactFactory(account=account, name=name))

    assert search(as_agent, typed) == [session.pk]


def test_names_without_a_match_are_not_found_by_their_accents_alone(as_agent, account, channel):
    make_session(account, channel, contact=ContactFactory(account=account, name="Jonas Müller"))

    assert search(as_agent, "mueller") == []


# --- A conversation open -----------------------------------------------------------------------


def test_with_a_conversation_open_a_search_that_does_not_match_it_says_nothing_matches(
    as_agent, lucas, someone_else
):
    page = as_agent.get(f"/s/{lucas.pk}/", {"q": "Yossi"}).content.decode()
    listed = re.findall(r'data-testid="session-row" data-session-id="(\d+)"', page)
    assert listed == [str(someone_else.pk)]

    page = as_agent.get(f"/s/{lucas.pk}/", {"q": "nobody by that name"}).content.decode()
    assert re.findall(r'data-testid="session-row"', page) == []
    assert "Nothing matches" in page
    assert 'data-testid="thread"' in page  # the conversation itself stays open

    refreshed = rows(as_agent, "/list/", {"q": "nobody by that name", "current": str(lucas.pk)})
    assert refreshed == []


def test_with_a_conversation_open_a_search_that_matches_it_lists_it(as_agent, lucas, someone_else):
    assert rows(as_agent, "/list/", {"q": "+33 6 12", "current": str(lucas.pk)}) == [lucas.pk]


# --- Indexes (PostgreSQL) ----------------------------------------------------------------------


def _plan(sql: str, params: tuple) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("typed", "index"),
    [("muller", "contact_name_unaccent_trgm"), ("+33 6 12 34", "contact_phone_trgm")],
)
def test_contact_search_can_use_its_trigram_indexes(lucas, typed, index):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    ContactFactory.create_batch(20, account=lucas.account)
    sql, params = contacts_matching(typed).values("pk").query.sql_with_params()

    assert index in _plan(sql, params)


def test_the_accent_free_name_is_what_is_compared_on_every_database(account):
    ContactFactory(account=account, name="Jonas Müller")

    assert list(contacts_matching("MULLER").values_list("name", flat=True)) == ["Jonas Müller"]
    assert Contact.objects.count() == 1


@pytest.mark.parametrize("typed", ["%", "_", "M_ller", "%ller"])
def test_like_wildcards_in_a_search_are_taken_literally(as_agent, account, channel, typed):
    make_session(account, channel, contact=ContactFactory(account=account, name="Jonas Müller"))

    assert search(as_agent, typed) == []
