"""Hostile MessageWhiz pages: whatever a polled page holds, it is settled and never holds up the
ordinary customers' messages stored around it (the production drain, caches on)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from inbox.models import Message
from integrations.models import ProviderAccount, WebhookEvent
from integrations.services.channels import channels_cache_clear
from integrations.services.polling import POLL_PATH
from integrations.services.webhooks import webhook_event_receive, webhook_events_drain
from integrations.webhooks import accounts_cache_clear
from tests.factories import ProviderAccountFactory

pytestmark = pytest.mark.postgres

AGENT = "agent-sms"
_numbers = itertools.count(1)

# Values a platform (or something pretending to be one) could put in any field.
_hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=256, max_size=5000),
    st.just("\x00"),
    st.just("a\x00b"),
    st.sampled_from(["", " ", "STOP", "stop ", "\u202e", "🙂" * 300]),
)
_hostile_scalar = st.one_of(
    _hostile_text,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@st.composite
def hostile_pages(draw: Any) -> dict[str, Any]:
    """A page shaped like a poll's, any of whose values may be anything."""
    cid = draw(st.one_of(st.just("cust-h"), _hostile_text))
    message = {
        "message_id": draw(st.one_of(st.just("m-h"), _hostile_text)),
        "customer_id": cid,
        "agent_id": draw(st.one_of(st.just(AGENT), _hostile_scalar)),
        "origin": draw(st.sampled_from(["CUSTOMER", "AGENT", "BOT", "BROADCAST", "??"])),
        "sent": draw(
            st.one_of(st.just("2026-12-06T09:00:00.000Z"), _hostile_text, _hostile_scalar)
        ),
        "status": draw(st.one_of(st.sampled_from(["READ", "ERROR", "SENT"]), _hostile_scalar)),
        "payload": draw(
            st.one_of(
                st.fixed_dictionaries({"type": st.just("TEXT"), "text": _hostile_text}),
                st.fixed_dictionaries(
                    {"src": st.fixed_dictionaries({"uri": _hostile_text, "mime": _hostile_text})}
                ),
                st.fixed_dictionaries({"latitude": _hostile_scalar, "longitude": _hostile_scalar}),
                st.dictionaries(st.text(max_size=10), _hostile_scalar, max_size=4),
                _hostile_scalar,
            )
        ),
    }
    customer = {
        "_id": cid,
        "name": draw(_hostile_text),
        "phone": draw(st.one_of(_hostile_text, _hostile_scalar)),
        "subscriptions": draw(
            st.one_of(st.just({AGENT: False}), st.dictionaries(st.text(max_size=8), st.booleans()))
        ),
    }
    return {
        "customers": [customer],
        "messages": [message],
        "agents": {AGENT: {"medium": draw(st.sampled_from(["sms", "viber", "", "nonsense"]))}},
        "keywords": draw(st.one_of(st.just({"OPT_OUT": ["stop"]}), st.just({}), _hostile_scalar)),
    }


def ordinary(n: int) -> dict[str, Any]:
    cid = f"cust-ordinary-{n}"
    return {
        "customers": [{"_id": cid, "name": f"Ordinary {n}", "phone": f"1555{n:07d}"}],
        "messages": [
            {
                "message_id": f"ordinary-{n}",
                "customer_id": cid,
                "agent_id": AGENT,
                "origin": "CUSTOMER",
                "sent": "2026-12-06T09:00:00.000Z",
                "status": "DELIVERED",
                "payload": {"type": "TEXT", "text": f"ordinary {n}"},
            }
        ],
        "agents": {AGENT: {"medium": "sms"}},
        "keywords": {},
    }


@pytest.fixture
def production_drain(settings: Any) -> Iterator[None]:
    settings.WEBHOOK_DRAIN = True
    settings.WEBHOOK_ACCOUNT_CACHE_SECONDS = 5.0
    settings.CHANNEL_CACHE_SECONDS = 5.0
    accounts_cache_clear()
    channels_cache_clear()
    yield
    accounts_cache_clear()
    channels_cache_clear()


@pytest.fixture
def mw_account() -> ProviderAccount:
    account: ProviderAccount = ProviderAccountFactory(
        kind="messagewhiz", name=f"MW {next(_numbers)}", base_url="https://mw.invalid"
    )
    return account


def _store(account: ProviderAccount, body: dict[str, Any]) -> None:
    webhook_event_receive(account, body=json.dumps(body), headers={}, path=POLL_PATH)


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(page=hostile_pages())
@example(page={**ordinary(0), "customers": [{"_id": "cust-ordinary-0", "name": "N" * 5000}]})
@example(
    page={**ordinary(0), "messages": [{**ordinary(0)["messages"][0], "message_id": "i" * 600}]}
)
def test_every_hostile_page_is_settled_and_never_holds_the_ordinary_ones(
    mw_account, production_drain, page
):
    numbers = [next(_numbers) for _ in range(3)]
    before = WebhookEvent.objects.filter(account=mw_account).count()
    _store(mw_account, ordinary(numbers[0]))
    _store(mw_account, ordinary(numbers[1]))
    _store(mw_account, page)
    _store(mw_account, ordinary(numbers[2]))

    webhook_events_drain()

    events = list(WebhookEvent.objects.filter(account=mw_account).order_by("id")[before:])
    hostile = events[2]
    assert hostile.state in (
        WebhookEvent.State.PROCESSED,
        WebhookEvent.State.IGNORED,
        WebhookEvent.State.FAILED,
    ), (hostile.state, hostile.error)
    if hostile.state != WebhookEvent.State.PROCESSED:
        assert hostile.error.strip()
    bodies = set(
        Message.objects.filter(account=mw_account, direction="in").values_list("body", flat=True)
    )
    assert {f"ordinary {n}" for n in numbers} <= bodies
    assert not WebhookEvent.objects.filter(state=WebhookEvent.State.PROCESSING).exists()
