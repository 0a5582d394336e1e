"""The MessageWhiz sandbox speaks reference/messagewhiz.md, including how it refuses things.

Everything runs in-process through the ASGI app, on a clock the tests move: no test sleeps or
depends on the wall clock.
"""

from __future__ import annotations

import base64
import io
import json
import random
import socket
from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from integrations.management.commands.mwsandbox import Command, _delays
from integrations.models import ProviderAccount
from integrations.mwsandbox import catalog, media
from integrations.mwsandbox.server import MessageWhizServer
from integrations.mwsandbox.state import MessageWhizPlatform, SortedIndex, iso
from tests.mwsandbox_client import Answer, call, multipart

# The documented example bodies (mw-examples), as tests/fixtures/messagewhiz holds them.
EXAMPLES = Path(__file__).parent / "fixtures" / "messagewhiz"
EMAIL = "owner@example.com"
PASSWORD = "s3cret-pass"
BASE = "http://127.0.0.1:8012"
ERROR_KEYS = {"success", "statusCode", "error", "message", "reason"}
RANK = {"CREATED": 0, "SENT": 1, "DELIVERED": 2, "READ": 3}
# §3.2, as the spec writes it (WeChat: TEXT only, G17).
MATRIX = {
    "rcs": {"TEXT", "MEDIA", "IMAGE", "CAROUSEL"},
    "sms": {"TEXT"},
    "telegram": {"TEXT", "MEDIA", "IMAGE", "LOCATION", "CONTACT"},
    "viber": {"TEXT", "IMAGE"},
    "whatsapp": {"TEXT", "IMAGE", "MEDIA", "LOCATION", "CONTACT", "CARD"},
    "wechat": {"TEXT"},
}
AGENTS = {
    "sms": "sms-usa",
    "whatsapp": "whatsapp-support",
    "viber": "viber",
    "telegram": "telegram",
    "rcs": "rcs",
    "wechat": "wechat",
}
# A persona per medium, by the number a send gives as customerNumber (Noah: his chat id).
NUMBERS = {
    "sms": "14155550111",
    "whatsapp": "919876543210",
    "viber": "380671234567",
    "telegram": "584712390",
    "rcs": "447700900123",
    "wechat": "8613812345678",
}
# The same personas by phone, as the control API makes them write (Noah has one too).
PHONES = {**NUMBERS, "telegram": "4915112345678"}


def documented(name: str) -> Any:
    """Return a documented example body from tests/fixtures/messagewhiz."""
    return json.loads((EXAMPLES / f"{name}.json").read_text())


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def platform(clock: Clock) -> MessageWhizPlatform:
    return MessageWhizPlatform(
        email=EMAIL, password=PASSWORD, base_url=BASE, clock=clock, rng=random.Random(7)
    )


@pytest.fixture
def server(platform: MessageWhizPlatform) -> MessageWhizServer:
    return MessageWhizServer(platform, rng=random.Random(7), simulate=False)


@pytest.fixture
def token(server: MessageWhizServer) -> str:
    return login(server)


def login(server: MessageWhizServer) -> str:
    answer = call(server, "POST", "/api/auth", {"email": EMAIL, "password": PASSWORD})
    assert answer.status == 200, answer.body
    return str(answer.body["token"])


def agent(medium: str, index: int = 0) -> str:
    return catalog.channel_seed(AGENTS[medium]).agent_id(index)


def assert_error(answer: Answer, status: int, *words: str) -> None:
    """The §1.4 shape: {success: false, statusCode, error, message, reason}."""
    assert answer.status == status, answer.body
    assert set(answer.body) == ERROR_KEYS
    assert answer.body["success"] is False
    assert answer.body["statusCode"] == status
    for word in words:
        assert word.lower() in answer.body["message"].lower(), answer.body


def write_in(server: MessageWhizServer, customer: str, medium: str, **item: Any) -> Any:
    item.setdefault("text", "Hello there")
    answer = call(
        server, "POST", "/_sandbox/inbound", {"customer": customer, "medium": medium, **item}
    )
    assert answer.status == 200, answer.body
    return answer.body


def send(
    server: MessageWhizServer,
    token: str,
    medium: str,
    payload: Any,
    number: str | None = None,
    agent_id: str | None = None,
) -> Answer:
    body = {"customerNumber": number or NUMBERS[medium], "payload": payload}
    path = f"/api/agents/{medium}/{agent_id or agent(medium)}/send"
    return call(server, "POST", path, body, token=token)


def text(words: str = "Hello from the inbox") -> dict[str, Any]:
    return {"type": "TEXT", "text": words}


def upload(
    server: MessageWhizServer,
    token: str,
    name: str = "photo.png",
    mime: str = "image/png",
    data: bytes | None = None,
    field: str = "file",
) -> Answer:
    if data is None:
        data = media.png(64, 48, (10, 20, 30), (200, 100, 50))
    body, headers = multipart([(field, name, mime, data)])
    return call(server, "POST", "/api/media", raw=body, headers=headers, token=token)


def file_object(item: dict[str, Any], size_type: str = "") -> dict[str, Any]:
    uri = item[size_type] if size_type else item["url"]
    return {"mime": item["mime_type"], "size": item["full_size"], "uri": uri}


def history(server: MessageWhizServer, token: str, who: str, query: str = "") -> Any:
    answer = call(server, "GET", f"/api/messages/{who}", token=token, query=query)
    assert answer.status == 200, answer.body
    return answer.body


def status_of(server: MessageWhizServer, token: str, who: str, message_id: str) -> str:
    messages = history(server, token, who, "limit=50")["messages"]
    return str(next(m["status"] for m in messages if m["message_id"] == message_id))


def jwt_part(token: str, index: int) -> Any:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# --- Auth (E01, §1.2) ---------------------------------------------------------------------------


def test_login_answers_a_jwt_and_an_expires_at_shaped_like_the_example(
    server: MessageWhizServer,
) -> None:
    answer = call(server, "POST", "/api/auth", {"email": EMAIL, "password": PASSWORD})

    assert answer.status == 200
    assert set(answer.body) == set(documented("auth-response-200"))
    token = answer.body["token"]
    assert token.count(".") == 2
    assert jwt_part(token, 0) == {"typ": "JWT", "alg": "RS256", "kid": "omni"}
    claims = jwt_part(token, 1)
    assert {"id", "sub", "iss", "iat", "exp"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 86400
    # G10: expires_at says years, the token's exp says a day.
    assert answer.body["expires_at"] > claims["exp"] + 365 * 86400


def test_wrong_credentials_are_401_and_missing_ones_400(server: MessageWhizServer) -> None:
    wrong = call(server, "POST", "/api/auth", {"email": EMAIL, "password": "nope"})
    missing = call(server, "POST", "/api/auth", {"email": EMAIL})

    assert_error(wrong, 401)
    assert_error(missing, 400, '"password"')


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/channels"),
        ("GET", "/api/customers"),
        ("GET", "/api/messages/14155550111"),
        ("GET", "/api/keyword_events"),
        ("POST", "/api/media"),
        ("GET", "/api/media/anything"),
        ("POST", "/api/agents/sms/{agent}/send"),
        ("GET", "/api/agents/whatsapp/{wa}/templates"),
    ],
)
def test_every_route_but_auth_wants_the_token_media_included(
    server: MessageWhizServer, method: str, path: str
) -> None:
    path = path.format(agent=agent("sms"), wa=agent("whatsapp"))

    assert_error(call(server, method, path), 401)
    assert_error(call(server, method, path, token="eyJ0eXAi.not.issued"), 401)


def test_a_bearer_token_is_accepted_as_well_as_the_raw_one(
    server: MessageWhizServer, token: str
) -> None:
    raw = call(server, "GET", "/api/channels", token=token)
    bearer = call(server, "GET", "/api/channels", token=f"Bearer {token}")

    assert raw.status == bearer.status == 200


def test_a_token_past_its_exp_is_401_though_expires_at_is_years_away(
    server: MessageWhizServer, platform: MessageWhizPlatform, clock: Clock
) -> None:
    platform.faults.token_ttl_seconds = 60
    token = login(server)
    clock.advance(59)
    assert call(server, "GET", "/api/channels", token=token).status == 200

    clock.advance(2)

    assert_error(call(server, "GET", "/api/channels", token=token), 401, "expired")
    assert call(server, "GET", "/api/channels", token=login(server)).status == 200


def test_revoking_tokens_makes_every_issued_one_401_until_a_new_login(
    server: MessageWhizServer,
) -> None:
    first, second = login(server), login(server)

    revoked = call(server, "POST", "/_sandbox/tokens/revoke")

    assert revoked.body == {"revoked": 2}
    assert_error(call(server, "GET", "/api/customers", token=first), 401)
    assert_error(call(server, "GET", "/api/customers", token=second), 401)
    assert call(server, "GET", "/api/customers", token=login(server)).status == 200


# --- Channels (E02, E04, E07) -------------------------------------------------------------------


def test_the_channel_list_has_the_example_keys_and_every_channel_type(
    server: MessageWhizServer, token: str
) -> None:
    example = documented("channels-list-response-200")

    answer = call(server, "GET", "/api/channels", token=token)

    assert set(answer.body) == set(example)
    channels = answer.body["channels"]
    assert all(set(example["channels"][0]) <= set(c) for c in channels)
    assert {c["type"] for c in channels} == {"SMS", "WA", "VI", "TG", "RCS", "WECHAT"}
    sms = next(c for c in channels if c["config"]["name"] == "SMS USA")
    assert (sms["config"]["region"], sms["config"]["country"]) == ("NA", "US")
    assert [set(a) for a in sms["agents"]] == [set(example["channels"][0]["agents"][0])] * 2
    assert all(a["config"]["vln"].isdigit() for a in sms["agents"])
    telegram = next(c for c in channels if c["type"] == "TG")
    assert telegram["agents"][0]["config"]["bot_name"]
    assert {c["status"] for c in channels} == {"ACTIVE", "ON_APPROVAL"}
    assert all(c["keyword_events_messages"]["opt_out_message"] for c in channels)


def test_channels_filter_by_type_and_status_and_order_asc_or_desc_only(
    server: MessageWhizServer, token: str
) -> None:
    wa = call(server, "GET", "/api/channels", token=token, query="type=WA&status=ACTIVE")
    ascending = call(server, "GET", "/api/channels", token=token, query="order=asc")
    descending = call(server, "GET", "/api/channels", token=token, query="order=desc")
    numeric = call(server, "GET", "/api/channels", token=token, query="order=-1")

    assert [c["config"]["name"] for c in wa.body["channels"]] == ["WhatsApp Support"]
    assert wa.body["total"] == 1
    assert descending.body["channels"] == list(reversed(ascending.body["channels"]))
    assert_error(numeric, 400, '"order"')  # G32: asc/desc here, 1/-1 elsewhere


def test_a_channel_and_an_agent_are_read_one_by_one_and_unknown_ones_are_404(
    server: MessageWhizServer, token: str
) -> None:
    seed = catalog.channel_seed("sms-usa")

    channel = call(server, "GET", f"/api/channels/{seed.id}", token=token)
    one = call(server, "GET", f"/api/channels/{seed.id}/agents/{seed.agent_id(1)}", token=token)
    foreign = call(server, "GET", f"/api/channels/{seed.id}/agents/{agent('viber')}", token=token)

    assert set(channel.body) == {"channel"}
    assert channel.body["channel"]["_id"] == seed.id
    assert set(one.body) == {"_id", "created", "modified", "config"}
    assert one.body["config"] == {"vln": "14155550101"}
    assert_error(foreign, 404)
    assert_error(call(server, "GET", "/api/channels/nope", token=token), 404)


# --- Paging (§1.5) ------------------------------------------------------------------------------


def test_a_limit_over_fifty_is_capped_and_offset_and_total_page_through(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform
) -> None:
    call(server, "POST", "/_sandbox/customers/bulk", {"count": 120})
    total = len(platform.customers)

    pages, offset = [], 0
    while True:
        answer = call(
            server, "GET", "/api/customers", token=token, query=f"offset={offset}&limit=200"
        )
        assert answer.body["limit"] == 50
        assert answer.body["total"] == total
        if not answer.body["customers"]:
            break
        pages.append(len(answer.body["customers"]))
        offset += len(answer.body["customers"])

    assert pages == [50, 50, total - 100]
    assert offset == total


@pytest.mark.parametrize("query", ["limit=abc", "offset=-1", "limit=0", "order=desc", "sort=age"])
def test_bad_list_parameters_are_400(server: MessageWhizServer, token: str, query: str) -> None:
    assert_error(call(server, "GET", "/api/customers", token=token, query=query), 400)


# --- Customers (E12-E14) ------------------------------------------------------------------------


def test_the_customer_list_and_a_customer_have_the_example_keys(
    server: MessageWhizServer, token: str
) -> None:
    example = documented("customers-list-response-200")
    one = documented("customer-get-response-200")

    listed = call(server, "GET", "/api/customers", token=token)
    got = call(server, "GET", "/api/customers/14155550111", token=token)

    assert set(listed.body) == set(example)
    assert all(set(example["customers"][0]) <= set(c) for c in listed.body["customers"])
    assert set(got.body) == set(one)
    assert set(one["customer"]) <= set(got.body["customer"])
    assert got.body["customer"]["name"] == "Maria Gonzalez"
    noah = call(server, "GET", "/api/customers/4915112345678", token=token).body["customer"]
    assert noah["telegram_chat_id"] == "584712390"
    assert "telegram_chat_id" not in got.body["customer"]


def test_a_customer_is_found_by_id_or_digits_but_not_by_a_plus_number(
    server: MessageWhizServer, token: str
) -> None:
    by_phone = call(server, "GET", "/api/customers/14155550111", token=token)
    by_id = call(server, "GET", f"/api/customers/{by_phone.body['customer']['_id']}", token=token)

    assert by_id.body == by_phone.body
    assert_error(call(server, "GET", "/api/customers/+14155550111", token=token), 404)


def test_customers_sorted_by_last_message_time_desc_put_the_latest_writer_first(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    for number, medium in (
        ("14155550112", "sms"),
        ("380671234567", "viber"),
        ("12025550199", "sms"),
    ):
        write_in(server, number, medium)
        clock.advance(5)

    answer = call(
        server,
        "GET",
        "/api/customers",
        token=token,
        query="sort=last_message_time&order=-1&limit=4",
    )

    phones = [c["phone"] for c in answer.body["customers"]]
    assert phones[:3] == ["12025550199", "380671234567", "14155550112"]
    times = [c["last_message_time"] for c in answer.body["customers"][:3]]
    assert times == sorted(times, reverse=True)
    assert answer.body["customers"][3]["last_message_time"] is None  # never wrote nor got one


def test_a_status_change_moves_neither_last_message_time_nor_modified(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    write_in(server, "14155550111", "sms")
    message_id = send(server, token, "sms", text()).body["message_id"]
    before = call(server, "GET", "/api/customers/14155550111", token=token).body["customer"]
    assert status_of(server, token, "14155550111", message_id) == "CREATED"

    clock.advance(10)

    after = call(server, "GET", "/api/customers/14155550111", token=token).body["customer"]
    assert status_of(server, token, "14155550111", message_id) == "READ"
    # G3: a poller watching the customer list never learns of it; it must re-read statuses.
    assert (after["last_message_time"], after["modified"]) == (
        before["last_message_time"],
        before["modified"],
    )


def test_customers_filter_by_name_and_phone_and_sort_by_modified(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    clock.advance(1)
    write_in(server, "14155550113", "sms")

    by_name = call(server, "GET", "/api/customers", token=token, query="name=maria")
    by_phone = call(server, "GET", "/api/customers", token=token, query="phone=380671234567")
    modified = call(server, "GET", "/api/customers", token=token, query="sort=modified&order=-1")

    assert [c["name"] for c in by_name.body["customers"]] == ["Maria Gonzalez"]
    assert [c["name"] for c in by_phone.body["customers"]] == ["Yulia Kovalenko"]
    assert modified.body["customers"][0]["name"] == "Olivia Brown"


def test_creating_a_known_customer_is_409(server: MessageWhizServer, token: str) -> None:
    created = call(
        server, "POST", "/api/customers", {"phone": "12025550100", "name": "Ann"}, token=token
    )
    again = call(server, "POST", "/api/customers", {"phone": "12025550100"}, token=token)

    assert created.status == 201
    assert set(created.body) == {"success", "customer"}
    assert created.body["customer"]["country"] == "US"
    assert_error(again, 409)


@given(st.lists(st.tuples(st.integers(0, 15), st.none() | st.integers(0, 50)), max_size=80))
def test_the_sorted_customer_index_always_equals_a_full_sort(
    changes: list[tuple[int, int | None]],
) -> None:
    index, values = SortedIndex(), {}
    for who, value in changes:
        index.put(f"c{who}", value, who)
        values[f"c{who}"] = value

    expected = sorted(values, key=lambda c: (-1 if values[c] is None else values[c], int(c[1:])))
    assert list(index.ids(descending=False)) == expected
    assert index.page(0, 5, descending=True) == expected[::-1][:5]
    assert index.page(3, 4, descending=True) == expected[::-1][3:7]


# --- History (E29) ------------------------------------------------------------------------------


def test_the_history_has_the_example_keys_and_is_newest_first(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    example = documented("messages-history-response-200")
    write_in(server, "14155550111", "sms", text="first")
    clock.advance(1)
    sent = send(server, token, "sms", text("second")).body["message_id"]
    clock.advance(1)
    write_in(server, "14155550111", "sms", text="third")

    body = history(server, token, "14155550111")

    assert set(body) == set(example)
    assert [set(m) for m in body["messages"]] == [set(example["messages"][0])] * 3
    assert [m["payload"]["text"] for m in body["messages"]] == ["third", "second", "first"]
    assert [m["origin"] for m in body["messages"]] == ["CUSTOMER", "AGENT", "CUSTOMER"]
    assert body["messages"][1]["message_id"] == sent
    assert body["messages"][0]["status"] == "DELIVERED"  # customer messages
    assert body["messages"][0]["sent"].endswith("Z") and "." in body["messages"][0]["sent"]
    oldest = history(server, token, "14155550111", "order=1")
    assert [m["payload"]["text"] for m in oldest["messages"]] == ["first", "second", "third"]


def test_the_history_filters_by_agent_and_origin(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    write_in(server, "14155550111", "sms", agent_id=agent("sms", 1), text="to the second VLN")
    clock.advance(1)
    write_in(server, "14155550111", "sms", agent_id=agent("sms", 0), text="to the first VLN")
    send(server, token, "sms", text("answer"), agent_id=agent("sms", 1))

    second = history(server, token, "14155550111", f"agentID={agent('sms', 1)}")
    ours = history(server, token, "14155550111", "origin=AGENT")

    assert [m["payload"]["text"] for m in second["messages"]] == ["answer", "to the second VLN"]
    assert [m["payload"]["text"] for m in ours["messages"]] == ["answer"]
    assert_error(
        call(server, "GET", "/api/messages/14155550111", token=token, query="origin=ME"), 400
    )
    assert_error(call(server, "GET", "/api/messages/19995550000", token=token), 404)


def test_offset_pages_of_the_history_shift_when_new_messages_arrive(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    for n in range(4):
        write_in(server, "14155550111", "sms", text=f"m{n}")
        clock.advance(1)
    first = history(server, token, "14155550111", "limit=2")

    write_in(server, "14155550111", "sms", text="new")
    second = history(server, token, "14155550111", "limit=2&offset=2")

    assert [m["payload"]["text"] for m in first["messages"]] == ["m3", "m2"]
    # The live list moved on by one: page two repeats m2, as offset paging does (§4.3).
    assert [m["payload"]["text"] for m in second["messages"]] == ["m2", "m1"]


# --- Sends (§3) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("medium", list(MATRIX))
def test_each_medium_takes_the_documented_text_example_and_records_it(
    server: MessageWhizServer, token: str, medium: str
) -> None:
    write_in(server, PHONES[medium], medium)
    example = documented("send-sms-request-text")

    answer = send(server, token, medium, example["payload"])

    assert answer.status == 200, answer.body
    assert set(answer.body) == set(documented("send-sms-response-200"))
    sent = call(server, "GET", "/_sandbox/sent", query=f"customer={NUMBERS[medium]}").body["sent"]
    assert [(s["message_id"], s["medium"], s["payload"]) for s in sent] == [
        (answer.body["message_id"], medium, example["payload"])
    ]
    mine = history(server, token, sent[0]["customer_id"], "origin=AGENT")["messages"]
    assert [(m["message_id"], m["payload"], m["agent_id"]) for m in mine] == [
        (answer.body["message_id"], example["payload"], agent(medium))
    ]


def _payload(kind: str, image: dict[str, Any], document: dict[str, Any], card: str) -> Any:
    payloads: dict[str, Any] = {
        "TEXT": text(),
        "IMAGE": {
            "type": "IMAGE",
            "category": "UNSPECIFIED",
            "name": "photo.png",
            "src": file_object(image),
            "thumbnail": file_object(image, "thumbnail"),
            "preview": file_object(image, "preview"),
        },
        "MEDIA": {
            "type": "MEDIA",
            "category": "APPLICATION",
            "name": "invoice.pdf",
            "src": file_object(document),
        },
        "LOCATION": {"type": "LOCATION", "latitude": 32.0853, "longitude": 34.7818},
        "CONTACT": {
            "type": "CONTACT",
            "firstname": "Jane",
            "lastname": "Doe",
            "phone": "14155550107",
        },
        "CARD": {"type": "CARD", "template_id": card, "body_variables": ["Jo", "A-1"]},
        "CAROUSEL": {
            "type": "CAROUSEL",
            "width": "MEDIUM",
            "content": [
                {
                    "type": "CARD",
                    "orientation": "VERTICAL",
                    "title": "Plan A",
                    "description": "Basic plan",
                    "media": {"tag": "plan-a", "height": "MEDIUM", "src": file_object(image)},
                    "suggestions": [{"reply": {"text": "Choose Plan A"}}],
                }
            ],
        },
    }
    return payloads[kind]


@pytest.mark.parametrize("medium", list(MATRIX))
@pytest.mark.parametrize(
    "kind", ["TEXT", "IMAGE", "MEDIA", "LOCATION", "CONTACT", "CARD", "CAROUSEL"]
)
def test_the_capability_matrix_decides_what_each_medium_carries(
    server: MessageWhizServer,
    token: str,
    platform: MessageWhizPlatform,
    medium: str,
    kind: str,
) -> None:
    write_in(server, PHONES[medium], medium)
    image = upload(server, token).body
    document = upload(server, token, "invoice.pdf", "application/pdf", b"%PDF-1.4 test").body
    card = next(
        t["id"] for t in platform.wa_templates[agent("whatsapp")] if t["name"] == "order_update"
    )

    answer = send(server, token, medium, _payload(kind, image, document, card))

    if kind in MATRIX[medium]:
        assert answer.status == 200, answer.body
    else:
        assert_error(answer, 400, '"payload.type"', kind)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customerNumber": "14155550111"}, '"payload"'),
        ({"payload": {"type": "TEXT", "text": "hi"}}, '"customerNumber"'),
        (
            {"customerNumber": "+14155550111", "payload": {"type": "TEXT", "text": "x"}},
            '"customerNumber"',
        ),
        ({"customerNumber": "14155550111", "payload": {"text": "hi"}}, '"payload.type"'),
        ({"customerNumber": "14155550111", "payload": {"type": "PICTURE"}}, '"payload.type"'),
        ({"customerNumber": "14155550111", "payload": {"type": "TEXT"}}, '"payload.text"'),
        (
            {"customerNumber": "14155550111", "payload": {"type": "TEXT", "text": " "}},
            '"payload.text"',
        ),
        (
            {
                "customerNumber": "14155550111",
                "payload": {"type": "TEXT", "text": "a", "caption": "b"},
            },
            '"payload.caption"',
        ),
        (
            {"customerNumber": "14155550111", "payload": {"type": "TEXT", "text": "a"}, "ref": "1"},
            '"ref"',
        ),
    ],
)
def test_a_send_missing_or_breaking_a_field_is_400_naming_it(
    server: MessageWhizServer, token: str, body: dict[str, Any], field: str
) -> None:
    answer = call(server, "POST", f"/api/agents/sms/{agent('sms')}/send", body, token=token)

    assert_error(answer, 400, field)


@pytest.mark.parametrize(
    ("medium", "payload", "field"),
    [
        (
            "telegram",
            {"type": "LOCATION", "latitude": "north", "longitude": 2},
            '"payload.latitude"',
        ),
        ("telegram", {"type": "LOCATION", "latitude": 91, "longitude": 2}, '"payload.latitude"'),
        ("telegram", {"type": "CONTACT", "firstname": "J", "phone": "1"}, '"payload.lastname"'),
        ("whatsapp", {"type": "CARD", "body_variables": []}, '"payload.template_id"'),
        (
            "whatsapp",
            {"type": "MEDIA", "src": {"mime": "a", "size": 1, "uri": "u"}},
            '"payload.category"',
        ),
        ("rcs", {"type": "CAROUSEL", "width": "HUGE", "content": []}, '"payload.width"'),
        ("rcs", {"type": "CAROUSEL", "width": "SMALL", "content": []}, '"payload.content"'),
    ],
)
def test_each_payload_type_checks_its_documented_fields(
    server: MessageWhizServer, token: str, medium: str, payload: dict[str, Any], field: str
) -> None:
    write_in(server, PHONES[medium], medium)

    assert_error(send(server, token, medium, payload), 400, field)


def test_an_image_payload_needs_all_three_renditions_of_an_issued_upload(
    server: MessageWhizServer, token: str
) -> None:
    write_in(server, "4915112345678", "telegram")
    image = upload(server, token).body
    payload = {
        "type": "IMAGE",
        "category": "UNSPECIFIED",
        "src": file_object(image),
        "preview": file_object(image, "preview"),
    }
    elsewhere = {
        **payload,
        "thumbnail": {"mime": "image/png", "size": 1, "uri": "https://example.com/a.png"},
    }

    assert_error(send(server, token, "telegram", payload), 400, '"payload.thumbnail"')
    assert_error(
        send(server, token, "telegram", elsewhere),
        400,
        '"payload.thumbnail.uri"',
        "media not found",
    )
    good = {**payload, "thumbnail": file_object(image, "thumbnail")}
    assert send(server, token, "telegram", good).status == 200


def test_a_send_on_a_path_of_another_medium_or_to_an_unknown_agent_is_404(
    server: MessageWhizServer, token: str
) -> None:
    wrong_medium = call(
        server,
        "POST",
        f"/api/agents/whatsapp/{agent('sms')}/send",
        {"customerNumber": "14155550111", "payload": text()},
        token=token,
    )
    unknown = call(
        server,
        "POST",
        "/api/agents/sms/00000000-0000-4000-8000-000000000000/send",
        {"customerNumber": "14155550111", "payload": text()},
        token=token,
    )

    assert_error(wrong_medium, 404)
    assert_error(unknown, 404)


def test_a_first_send_to_an_unknown_number_creates_the_customer_but_not_on_telegram(
    server: MessageWhizServer, token: str
) -> None:
    sms = send(server, token, "sms", text(), number="12125550147")
    telegram = send(server, token, "telegram", text(), number="12125550148")

    assert sms.status == 200
    customer = call(server, "GET", "/api/customers/12125550147", token=token).body["customer"]
    assert customer["subscriptions"] == {agent("sms"): True}
    assert_error(telegram, 404)
    assert_error(call(server, "GET", "/api/customers/12125550148", token=token), 404)


def test_telegram_takes_the_chat_id_or_the_phone_of_a_customer_who_wrote_to_the_bot(
    server: MessageWhizServer, token: str
) -> None:
    by_chat = send(server, token, "telegram", text(), number="584712390")
    by_phone = send(server, token, "telegram", text(), number="4915112345678")
    never_wrote = send(server, token, "telegram", text(), number="14155550111")

    assert by_chat.status == by_phone.status == 200
    assert_error(never_wrote, 404)


def test_a_channel_waiting_for_approval_refuses_sends(
    server: MessageWhizServer, token: str
) -> None:
    marketing = catalog.channel_seed("whatsapp-marketing").agent_id(0)

    answer = send(server, token, "whatsapp", text(), number="919876543210", agent_id=marketing)

    assert_error(answer, 403)


# --- Statuses (§4.5) ----------------------------------------------------------------------------


def test_a_send_goes_created_sent_delivered_read_as_the_clock_moves_and_never_back(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    message_id = send(server, token, "sms", text()).body["message_id"]

    seen = []
    for _ in range(40):
        seen.append(status_of(server, token, "14155550111", message_id))
        clock.advance(0.1)

    assert [RANK[s] for s in seen] == sorted(RANK[s] for s in seen)
    assert list(dict.fromkeys(seen)) == ["CREATED", "SENT", "DELIVERED", "READ"]


def test_the_status_delays_are_settable(clock: Clock) -> None:
    platform = MessageWhizPlatform(
        email=EMAIL, password=PASSWORD, clock=clock, status_delays=(1, 2, 60)
    )
    server = MessageWhizServer(platform, simulate=False)
    token = login(server)
    message_id = send(server, token, "sms", text()).body["message_id"]

    clock.advance(30)

    assert status_of(server, token, "14155550111", message_id) == "DELIVERED"


def test_with_status_errors_on_a_send_ends_error_or_undeliverable(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform, clock: Clock
) -> None:
    call(server, "POST", "/_sandbox/faults", {"status_error_rate": 1})
    ids = [send(server, token, "sms", text(f"m{n}")).body["message_id"] for n in range(6)]

    clock.advance(1)
    middle = {status_of(server, token, "14155550111", m) for m in ids}
    clock.advance(60)
    final = {status_of(server, token, "14155550111", m) for m in ids}

    assert middle == {"SENT"}
    assert final <= {"ERROR", "UNDELIVERABLE"}


def test_a_media_send_whose_upload_is_deleted_before_it_goes_out_ends_upload_error(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    write_in(server, "4915112345678", "telegram")
    document = upload(server, token, "invoice.pdf", "application/pdf", b"%PDF-1.4 x").body
    payload = {"type": "MEDIA", "category": "APPLICATION", "src": file_object(document)}
    message_id = send(server, token, "telegram", payload).body["message_id"]

    deleted = call(
        server, "DELETE", "/api/media", token=token, query=f"media_ids={document['_id']}"
    )
    before = status_of(server, token, "4915112345678", message_id)
    clock.advance(10)

    assert deleted.status == 200
    assert before == "CREATED"
    assert status_of(server, token, "4915112345678", message_id) == "UPLOAD_ERROR"


# --- Media (E24-E28) ----------------------------------------------------------------------------


def test_an_upload_in_the_field_file_answers_the_documented_media_object(
    server: MessageWhizServer, token: str
) -> None:
    data = media.png(640, 480, (0, 0, 0), (255, 255, 255))

    answer = upload(server, token, data=data)

    assert answer.status == 200, answer.body
    assert set(answer.body) == set(documented("media-upload-response-200"))
    item = answer.body
    assert (item["type"], item["mime_type"], item["full_size"]) == ("image", "image/png", len(data))
    # G13: the URLs carry no enterprise id.
    assert item["url"] == f"{BASE}/api/media/{item['_id']}"
    assert (item["thumbnail"], item["preview"]) == (
        f"{item['url']}/thumbnail",
        f"{item['url']}/preview",
    )
    full = call(server, "GET", item["url"].removeprefix(BASE), token=token)
    assert full.raw == data
    for size_type, edge in (("thumbnail", 400), ("preview", 160)):
        rendition = call(server, "GET", item[size_type].removeprefix(BASE), token=token)
        head = call(server, "HEAD", item[size_type].removeprefix(BASE), token=token)
        assert rendition.headers["content-type"] == head.headers["content-type"] == "image/jpeg"
        assert head.raw == b""
        assert int(head.headers["content-length"]) == len(rendition.raw)
        with Image.open(io.BytesIO(rendition.raw)) as image:
            assert max(image.size) == edge


def test_an_upload_in_another_field_is_400(server: MessageWhizServer, token: str) -> None:
    assert_error(upload(server, token, field="media"), 400, '"file"')


@pytest.mark.parametrize("mime", ["image/bmp", "audio/wav", "application/x-msdownload"])
def test_an_upload_outside_appendix_b_is_400(
    server: MessageWhizServer, token: str, mime: str
) -> None:
    assert_error(upload(server, token, "x.bin", mime, b"data"), 400, mime)


def test_a_body_that_is_not_multipart_is_400(server: MessageWhizServer, token: str) -> None:
    answer = call(
        server,
        "POST",
        "/api/media",
        raw=b"\x89PNG",
        headers={"Content-Type": "image/png"},
        token=token,
    )

    assert_error(answer, 400, "multipart")


def test_a_file_over_50_mb_is_refused(server: MessageWhizServer, token: str) -> None:
    answer = upload(
        server, token, "big.pdf", "application/pdf", b"0" * (media.MAX_UPLOAD_BYTES + 1)
    )

    assert_error(answer, 400, "50 MB")


def test_media_needs_the_token_and_is_served_on_the_enterprise_paths_too(
    server: MessageWhizServer, token: str
) -> None:
    item = upload(server, token).body
    enterprise = f"/api/media/{catalog.ENTERPRISE_ID}/{item['_id']}"

    assert_error(call(server, "GET", f"/api/media/{item['_id']}"), 401)
    assert call(server, "HEAD", f"/api/media/{item['_id']}/preview").status == 401
    assert (
        call(server, "GET", enterprise, token=token).raw
        == call(server, "GET", f"/api/media/{item['_id']}", token=token).raw
    )
    assert call(server, "GET", f"{enterprise}/thumbnail", token=token).status == 200
    assert_error(call(server, "GET", f"/api/media/not-ours/{item['_id']}", token=token), 404)


def test_only_images_have_a_thumbnail_and_a_preview(server: MessageWhizServer, token: str) -> None:
    document = upload(server, token, "invoice.pdf", "application/pdf", b"%PDF-1.4 x").body

    assert call(server, "GET", f"/api/media/{document['_id']}", token=token).status == 200
    assert_error(call(server, "GET", f"/api/media/{document['_id']}/thumbnail", token=token), 404)


def test_the_gallery_lists_uploads_by_type(server: MessageWhizServer, token: str) -> None:
    upload(server, token)
    upload(server, token, "invoice.pdf", "application/pdf", b"%PDF-1.4 x")

    images = call(server, "GET", "/api/media", token=token, query="type=image")

    assert set(images.body) == {"media", "total", "limit", "offset"}
    assert [m["type"] for m in images.body["media"]] == ["image"]


def test_media_customers_send_is_held_by_the_sandbox_and_needs_the_token(
    server: MessageWhizServer, token: str
) -> None:
    for kind in ("image", "voice", "video", "document"):
        write_in(server, "584712390", "telegram", kind=kind)

    messages = history(server, token, "584712390")["messages"]

    assert [m["payload"]["type"] for m in messages] == ["MEDIA", "MEDIA", "MEDIA", "IMAGE"]
    for message in messages:
        src = message["payload"]["src"]
        path = src["uri"].removeprefix(BASE)
        assert_error(call(server, "GET", path), 401)
        served = call(server, "GET", path, token=token)
        assert len(served.raw) == src["size"] > 100
        assert served.headers["content-type"] == src["mime"]
    image = messages[-1]["payload"]
    assert (
        call(server, "GET", image["thumbnail"]["uri"].removeprefix(BASE), token=token).status == 200
    )


# --- Keyword events and opt-out (E17, §4.7) -----------------------------------------------------


def test_keyword_events_are_listed_as_the_example_shows(
    server: MessageWhizServer, token: str
) -> None:
    example = documented("keyword-events-list-response-200")

    answer = call(server, "GET", "/api/keyword_events", token=token)

    assert set(answer.body) == set(example)
    assert all(set(e) == set(example["keyword_events"][0]) for e in answer.body["keyword_events"])
    by_type = {e["config"]["type"]: e["keywords"] for e in answer.body["keyword_events"]}
    assert by_type == {
        "OPT_OUT": ["stop", "unsubscribe"],
        "JOIN": ["start", "join"],
        "HELP": ["help"],
    }


def test_stop_unsubscribes_the_customer_and_the_bot_answers_with_the_opt_out_message(
    server: MessageWhizServer, token: str
) -> None:
    write_in(server, "14155550111", "sms", text="  Stop ")

    customer = call(server, "GET", "/api/customers/14155550111", token=token).body["customer"]
    messages = history(server, token, "14155550111")["messages"]
    refused = send(server, token, "sms", text())

    assert customer["subscriptions"][agent("sms")] is False
    assert [(m["origin"], m["payload"]["text"]) for m in messages] == [
        ("BOT", catalog.OPT_OUT_MESSAGE),
        ("CUSTOMER", "  Stop "),
    ]
    assert_error(refused, 403, "unsubscribed")
    assert call(server, "GET", "/_sandbox/sent").body["total"] == 0


def test_any_later_customer_message_subscribes_the_customer_again(
    server: MessageWhizServer, token: str
) -> None:
    write_in(server, "14155550111", "sms", text="unsubscribe")
    write_in(server, "14155550111", "sms", text="sorry, I still need help with my order")

    customer = call(server, "GET", "/api/customers/14155550111", token=token).body["customer"]

    assert customer["subscriptions"][agent("sms")] is True
    assert send(server, token, "sms", text()).status == 200


def test_an_opt_out_holds_only_on_the_agent_it_was_sent_to(
    server: MessageWhizServer, token: str
) -> None:
    write_in(server, "14155550111", "sms", agent_id=agent("sms", 0), text="STOP")

    assert_error(send(server, token, "sms", text()), 403)
    assert send(server, token, "sms", text(), agent_id=agent("sms", 1)).status == 200


@pytest.mark.parametrize(("word", "reply"), [("HELP", catalog.HELP_MESSAGE), ("join", None)])
def test_help_and_join_get_bot_answers(
    server: MessageWhizServer, token: str, word: str, reply: str | None
) -> None:
    write_in(server, "14155550111", "sms", text=word)

    latest = history(server, token, "14155550111")["messages"][0]

    join = next(e for e in catalog.KEYWORD_EVENTS if e["config"]["type"] == "JOIN")
    assert latest["origin"] == "BOT"
    assert latest["payload"]["text"] == (reply or join["config"]["message"])


# --- WhatsApp: the window and templates (§4.6, §5.1) --------------------------------------------


def test_free_form_whatsapp_outside_the_window_is_400_but_a_template_goes(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform, clock: Clock
) -> None:
    write_in(server, "919876543210", "whatsapp", sent=iso(int((clock.now - 25 * 3600) * 1000)))
    welcome = next(
        t["id"] for t in platform.wa_templates[agent("whatsapp")] if t["name"] == "welcome_back"
    )

    free = send(server, token, "whatsapp", text())
    template = send(server, token, "whatsapp", {"type": "CARD", "template_id": welcome})

    assert_error(free, 400, "24-hour", "window is closed")
    assert template.status == 200


def test_free_form_whatsapp_to_someone_who_never_wrote_is_400(
    server: MessageWhizServer, token: str
) -> None:
    assert_error(send(server, token, "whatsapp", text(), number="12125550111"), 400, "window")
    assert_error(send(server, token, "whatsapp", text()), 400, "window")


def test_a_customer_message_inside_the_window_opens_it(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    write_in(server, "919876543210", "whatsapp")
    clock.advance(23.9 * 3600)

    assert send(server, token, "whatsapp", text()).status == 200


@pytest.mark.parametrize(
    ("name", "body", "header", "ok"),
    [
        ("order_update", ["Jo", "A-1"], [], True),
        ("order_update", ["Jo"], [], False),
        ("order_update", ["Jo", "A-1", "x"], [], False),
        ("appointment_reminder", ["Monday 10:00"], ["Jo"], True),
        ("appointment_reminder", ["Monday 10:00"], [], False),
        ("welcome_back", [], [], True),
        ("welcome_back", ["x"], [], False),
        ("payment_due", ["Jo", "10 USD", "Friday"], [], True),
        ("payment_due", ["Jo", "10 USD"], [], False),
    ],
)
def test_a_card_needs_as_many_variables_as_its_template_has_placeholders(
    server: MessageWhizServer,
    token: str,
    platform: MessageWhizPlatform,
    name: str,
    body: list[str],
    header: list[str],
    ok: bool,
) -> None:
    template = next(t["id"] for t in platform.wa_templates[agent("whatsapp")] if t["name"] == name)
    payload = {
        "type": "CARD",
        "template_id": template,
        "body_variables": body,
        "header_variables": header,
    }

    answer = send(server, token, "whatsapp", payload)

    if ok:
        assert answer.status == 200, answer.body
    else:
        assert_error(answer, 400, "variables")


@pytest.mark.parametrize(
    ("name", "words"), [("summer_promo", "PENDING"), ("win_a_prize", "REJECTED"), ("", "not found")]
)
def test_a_card_of_a_template_not_approved_or_unknown_is_400(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform, name: str, words: str
) -> None:
    templates = platform.wa_templates[agent("whatsapp")]
    template = next((t["id"] for t in templates if t["name"] == name), "123456789")

    answer = send(
        server,
        token,
        "whatsapp",
        {"type": "CARD", "template_id": template, "body_variables": ["a", "b"]},
    )

    assert_error(answer, 400, words)


def test_templates_come_in_both_shapes_with_every_status_the_inbox_must_handle(
    server: MessageWhizServer, token: str
) -> None:
    example = documented("wa-templates-list-response-200")
    path = f"/api/agents/whatsapp/{agent('whatsapp')}/templates"

    listed = call(server, "GET", path, token=token)
    approved = call(server, "GET", path, token=token, query="status=APPROVED")

    assert set(listed.body) == set(example)
    templates = listed.body["templates"]
    components = [t for t in templates if "components" in t]
    flat = [t for t in templates if "body" in t]
    assert all(set(example["templates"][0]) == set(t) for t in components)
    assert flat and all(
        {"id", "name", "status", "body", "header", "buttons", "footer"} <= set(t) for t in flat
    )
    assert {t["status"] for t in templates} == {"APPROVED", "PENDING", "REJECTED"}
    assert len(approved.body["templates"]) >= 4
    assert {t["status"] for t in approved.body["templates"]} == {"APPROVED"}
    assert_error(call(server, "GET", path, token=token, query="status=FINE"), 400)


def test_a_template_is_read_by_id_with_the_namespace(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform
) -> None:
    template = platform.wa_templates[agent("whatsapp")][0]
    path = f"/api/agents/whatsapp/{agent('whatsapp')}/templates"

    one = call(server, "GET", f"{path}/{template['id']}", token=token)
    broadcast = call(
        server, "GET", f"{path}/active-broadcast", token=token, query="name=order_update"
    )

    assert set(one.body) == {"template", "namespace"}
    assert one.body["template"] == template
    assert broadcast.body == {"isActive": False}
    assert_error(call(server, "GET", f"{path}/1", token=token), 404)


def test_upstream_faults_answer_502_on_template_calls_only(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform
) -> None:
    platform.faults.upstream_error_rate = 1.0

    templates = call(
        server, "GET", f"/api/agents/whatsapp/{agent('whatsapp')}/templates", token=token
    )
    channels = call(server, "GET", "/api/channels", token=token)

    assert_error(templates, 502, "upstream")
    assert channels.status == 200


# --- Faults -------------------------------------------------------------------------------------


def test_injected_503s_are_answered_before_anything_is_processed(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform
) -> None:
    platform.faults.error_rate = 1.0

    answer = send(server, token, "sms", text())

    assert_error(answer, 503)
    assert platform.sent == []


def test_a_call_that_times_out_was_not_processed(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform
) -> None:
    call(server, "POST", "/_sandbox/faults", {"timeout_rate": 1, "timeout_seconds": 0})

    answer = send(server, token, "sms", text())

    assert_error(answer, 504)
    assert call(server, "GET", "/_sandbox/sent").body["total"] == 0


def test_an_ambiguous_send_is_accepted_and_recorded_but_never_answered(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform
) -> None:
    call(server, "POST", "/_sandbox/faults", {"ambiguous_rate": 1, "timeout_seconds": 0})

    answer = send(server, token, "sms", text("did it go?"))

    assert_error(answer, 504)
    sent = call(server, "GET", "/_sandbox/sent", query="customer=14155550111").body["sent"]
    assert [s["payload"]["text"] for s in sent] == ["did it go?"]
    listed = history(server, token, "14155550111", "origin=AGENT")["messages"]
    assert [m["message_id"] for m in listed] == [sent[0]["message_id"]]
    assert platform.counters["fault_ambiguous"] == 1


def test_an_ambiguous_fault_never_touches_a_refused_send(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform
) -> None:
    platform.faults.ambiguous_rate = 1.0
    platform.faults.timeout_seconds = 0

    assert_error(send(server, token, "sms", {"type": "TEXT"}), 400)
    assert call(server, "GET", "/api/channels", token=token).status == 200


def test_faults_are_changed_at_run_time_and_bad_ones_are_refused(
    server: MessageWhizServer, platform: MessageWhizPlatform
) -> None:
    changed = call(
        server, "POST", "/_sandbox/faults", {"ambiguous_rate": 0.25, "token_ttl_seconds": 30}
    )
    unknown = call(server, "POST", "/_sandbox/faults", {"explode": 1})
    too_big = call(server, "POST", "/_sandbox/faults", {"error_rate": 2})

    assert changed.status == 200
    assert (changed.body["ambiguous_rate"], changed.body["token_ttl_seconds"]) == (0.25, 30.0)
    assert platform.faults.ambiguous_rate == 0.25
    assert (unknown.status, too_big.status) == (400, 400)
    assert platform.faults.error_rate == 0.0


# --- Control API --------------------------------------------------------------------------------


def test_ten_thousand_bulk_customers_have_no_messages_and_page_like_the_rest(
    server: MessageWhizServer, token: str, clock: Clock
) -> None:
    made = call(server, "POST", "/_sandbox/customers/bulk", {"count": 10_000, "prefix": "1777"})
    one = made.body["customers"][4321]
    clock.advance(1)
    write_in(server, one["phone"], "sms")

    latest = call(
        server,
        "GET",
        "/api/customers",
        token=token,
        query="sort=last_message_time&order=-1&limit=2",
    )
    newest = call(server, "GET", "/api/customers", token=token, query="order=-1&limit=1")

    assert made.body["created"] == 10_000
    assert len({c["phone"] for c in made.body["customers"]}) == 10_000
    assert latest.body["total"] == 10_000 + len(catalog.PERSONAS)
    assert latest.body["customers"][0]["_id"] == one["_id"]
    assert newest.body["customers"][0]["last_message_time"] is None
    assert newest.body["customers"][0]["phone"].startswith("1777")


def test_inbound_takes_one_message_or_a_batch_and_answers_what_it_made(
    server: MessageWhizServer, token: str
) -> None:
    one = write_in(server, "14155550112", "sms", text="single")
    batch = call(
        server,
        "POST",
        "/_sandbox/inbound",
        {
            "messages": [
                {"customer": "12025550123", "name": "Newcomer", "medium": "viber", "text": "hi"},
                {
                    "customer": "14155550112",
                    "agent_id": agent("sms", 1),
                    "payload": {"type": "TEXT", "text": "p"},
                },
                {"customer": "12025550123", "medium": "viber", "kind": "image"},
            ]
        },
    )

    assert set(one) == {"message_id", "customer_id", "agent_id", "sent"}
    assert batch.status == 200
    assert [m["agent_id"] for m in batch.body["messages"]] == [
        agent("viber"),
        agent("sms", 1),
        agent("viber"),
    ]
    newcomer = call(server, "GET", "/_sandbox/customers/12025550123").body
    assert newcomer["customer"]["name"] == "Newcomer"
    assert [m["payload"]["type"] for m in newcomer["messages"]] == ["TEXT", "IMAGE"]


@pytest.mark.parametrize(
    "item",
    [
        {"medium": "sms", "text": "no customer"},
        {"customer": "Bob", "medium": "sms", "text": "not a phone"},
        {"customer": "14155550111", "text": "no medium"},
        {"customer": "14155550111", "medium": "fax", "text": "x"},
        {"customer": "14155550111", "medium": "sms"},
        {"customer": "14155550111", "medium": "sms", "text": "x", "sent": "2999-01-01T00:00:00Z"},
    ],
)
def test_inbound_refuses_a_bad_item_and_applies_none_of_the_batch(
    server: MessageWhizServer, platform: MessageWhizPlatform, item: dict[str, Any]
) -> None:
    good = {"customer": "14155550111", "medium": "sms", "text": "fine"}

    answer = call(server, "POST", "/_sandbox/inbound", {"messages": [good, item]})

    assert answer.status == 400
    assert answer.body["error"]
    assert platform.messages == {}


def test_calls_are_counted_by_method_and_route_template_and_reset(
    server: MessageWhizServer, token: str
) -> None:
    call(server, "POST", "/_sandbox/calls/reset")
    call(server, "GET", "/api/customers", token=token)
    call(server, "GET", "/api/customers")
    call(server, "GET", "/api/messages/14155550111", token=token)
    login(server)

    counted = call(server, "GET", "/_sandbox/calls").body
    reset = call(server, "POST", "/_sandbox/calls/reset").body

    assert counted == {
        "total": 4,
        "calls": {
            "GET /api/customers": 2,
            "GET /api/messages/{identifier}": 1,
            "POST /api/auth": 1,
        },
    }
    assert reset == {"total": 0, "calls": {}}


def test_the_state_summary_tells_counts_and_faults(server: MessageWhizServer) -> None:
    state = call(server, "GET", "/_sandbox/state").body

    assert state["customers"] == len(catalog.PERSONAS)
    assert state["faults"]["token_ttl_seconds"] == 86400
    assert state["email"] == EMAIL
    assert "password" not in json.dumps(state)


def test_a_fresh_sandbox_shows_some_recent_conversations(clock: Clock) -> None:
    platform = MessageWhizPlatform(
        email=EMAIL, password=PASSWORD, clock=clock, rng=random.Random(3), history=True
    )
    server = MessageWhizServer(platform, simulate=False)
    token = login(server)

    latest = call(
        server,
        "GET",
        "/api/customers",
        token=token,
        query="sort=last_message_time&order=-1&limit=10",
    )
    olivia = call(server, "GET", "/api/customers/14155550113", token=token).body["customer"]

    assert sum(1 for c in latest.body["customers"] if c["last_message_time"]) >= 8
    assert olivia["subscriptions"][agent("sms", 1)] is False  # wrote STOP
    assert_error(send(server, token, "whatsapp", text(), number="971501234567"), 400, "window")
    statuses = {
        m["status"] for m in history(server, token, "14155550111", "origin=AGENT")["messages"]
    }
    assert statuses == {"READ"}


def test_simulated_customers_write_on_sms_viber_telegram_and_whatsapp(clock: Clock) -> None:
    platform = MessageWhizPlatform(
        email=EMAIL, password=PASSWORD, clock=clock, rng=random.Random(5)
    )

    made = [platform.simulate_inbound() for _ in range(300)]

    messages = [m for m in made if m is not None]
    assert all(m.origin == "CUSTOMER" for m in messages)
    kinds = {platform.channels[platform.agents[m.agent_id].channel_id].type for m in messages}
    assert kinds == {"SMS", "VI", "TG", "WA"}
    assert {m.agent_id for m in messages} >= {agent("sms", 0), agent("sms", 1)}
    assert {m.payload["type"] for m in messages} >= {"TEXT", "IMAGE", "LOCATION"}
    assert any(m.payload.get("text") == "STOP" for m in messages)


def test_a_customer_answers_what_an_agent_sent(
    server: MessageWhizServer, token: str, platform: MessageWhizPlatform
) -> None:
    message_id = send(server, token, "viber", text("How can I help?")).body["message_id"]
    sent = platform.messages[message_id]

    answer = platform.reply(sent.customer_id, sent.agent_id)

    assert answer is not None
    assert (answer.origin, answer.agent_id) == ("CUSTOMER", agent("viber"))


# --- The command --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_points_a_messagewhiz_account_at_the_sandbox() -> None:
    command = Command()
    options = {"account": "MessageWhiz sandbox", "email": None, "password": None}

    first = command._account(options, "http://127.0.0.1:8012")
    again = command._account({**options, "email": None}, "http://127.0.0.1:8013")

    account = ProviderAccount.objects.get(kind="messagewhiz", name="MessageWhiz sandbox")
    assert account.pk == first.pk == again.pk
    assert account.base_url == "http://127.0.0.1:8013"
    assert account.api_id == first.api_id and "@" in account.api_id
    assert account.api_key == first.api_key and len(account.api_key) >= 16
    assert account.is_active
    assert account.options["activate_new_channels"] is True


@pytest.mark.parametrize("text_value", ["1,2", "a,b,c", "3,2,1"])
def test_status_delays_must_be_three_growing_numbers(text_value: str) -> None:
    with pytest.raises(CommandError):
        _delays(text_value)


class _Account:
    name = "MessageWhiz sandbox"


def _listening() -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener, listener.getsockname()[1]


def test_once_listening_the_command_syncs_channels_and_templates_retrying_provider_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from integrations.base import TransientError

    calls: list[str] = []

    def channels(account: Any) -> None:
        calls.append("channels")
        if calls.count("channels") < 3:
            raise TransientError("not yet")

    monkeypatch.setattr("integrations.services.channels.channels_sync", channels)
    monkeypatch.setattr(
        "integrations.services.templates.templates_sync",
        lambda account, trigger: calls.append(f"templates:{trigger}"),
    )
    monkeypatch.setattr("integrations.management.sandbox_setup.time.sleep", lambda s: None)
    listener, port = _listening()
    out = io.StringIO()

    with listener:
        Command(stdout=out)._sync(_Account(), "127.0.0.1", port)

    assert calls == ["channels", "channels", "channels", "templates:sandbox"]
    assert "synced" in out.getvalue()


def test_the_command_serves_on_when_the_platform_keeps_refusing_the_sync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from integrations.base import TransientError

    def refused(account: Any) -> None:
        raise TransientError("down")

    monkeypatch.setattr("integrations.services.channels.channels_sync", refused)
    monkeypatch.setattr("integrations.management.sandbox_setup.time.sleep", lambda s: None)
    listener, port = _listening()
    out = io.StringIO()

    with listener:
        Command(stdout=out)._sync(_Account(), "127.0.0.1", port)  # no raise

    assert "synced" not in out.getvalue()
