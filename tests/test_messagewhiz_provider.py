"""The MessageWhiz provider at the one HTTP seam, against the documented bodies (mw-examples).

Requests are stubbed with `responses` and their shape is checked against the spec: the raw
JWT in Authorization (§1.2), offset paging (§1.5), per-medium send paths and payloads (§3),
the polling design (§4.3) and the status mapping (§4.5).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

import pytest
import responses
from django.core.cache import cache
from django.test import override_settings

from integrations.base import (
    AccountConfig,
    AmbiguousError,
    AuthenticationError,
    DeliveryStatus,
    Location,
    Media,
    MediaUpload,
    MessageType,
    OutboundRequest,
    PayloadError,
    RejectedError,
    SentMessage,
    TransientError,
    UnsupportedError,
    with_fresh_credentials,
)
from integrations.messagewhiz import provider as mw_provider
from integrations.messagewhiz import schemas
from integrations.messagewhiz.client import MessageWhizClient, _token_key, token_keep_seconds
from integrations.messagewhiz.provider import MessageWhizProvider
from tests.conftest import load_fixture

BASE = "https://omni.example.test"
ACCOUNT = AccountConfig(
    id="acc-1", kind="messagewhiz", base_url=BASE, api_key="s3cret", api_id="ops@example.com"
)
PROVIDER = MessageWhizProvider()
SMS_AGENT = "2818c969-05ee-43a1-b4eb-06d338f5e256"


def jwt(exp: float, sub: str = "api") -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    header = part({"typ": "JWT", "alg": "RS256", "kid": "omni"})
    return f"{header}.{part({'sub': sub, 'iat': int(time.time()), 'exp': int(exp)})}.c2ln"


@pytest.fixture(autouse=True)
def fresh_caches():
    cache.clear()
    mw_provider._agents.clear()
    mw_provider._keywords.clear()
    yield
    cache.clear()
    mw_provider._agents.clear()
    mw_provider._keywords.clear()


def login(rsps: responses.RequestsMock, token: str | None = None, expires_at: float = 1893456000):
    token = token or jwt(time.time() + 86400)
    rsps.post(f"{BASE}/api/auth", json={"token": token, "expires_at": expires_at})
    return token


def channels(rsps: responses.RequestsMock) -> None:
    listing = load_fixture("messagewhiz", "channels-list-response-200")
    wa = {
        "_id": "wa-channel",
        "type": "WA",
        "status": "ACTIVE",
        "config": {"type": "WA", "name": "WhatsApp support"},
        "agents": [{"_id": "wa-agent", "config": {}}],
    }
    listing = {**listing, "channels": [*listing["channels"], wa], "total": 2}
    rsps.get(f"{BASE}/api/channels", json=listing)


def test_the_token_goes_raw_in_authorization_and_is_reused_until_it_nears_expiry():
    with responses.RequestsMock() as rsps:
        token = login(rsps)
        rsps.get(f"{BASE}/api/channels", json={"channels": [], "total": 0})
        PROVIDER.list_channels(ACCOUNT)
        PROVIDER.list_channels(ACCOUNT)

        auth_calls = [c for c in rsps.calls if c.request.url.endswith("/api/auth")]
        assert len(auth_calls) == 1
        assert json.loads(auth_calls[0].request.body) == {
            "email": "ops@example.com",
            "password": "s3cret",
        }
        listed = [c for c in rsps.calls if "/api/channels" in c.request.url]
        assert [c.request.headers["Authorization"] for c in listed] == [token, token]


def test_a_token_is_kept_by_its_own_exp_when_expires_at_says_later():
    # §1.2, G10: the sample says 2030 for a token that lives a day; the earlier one counts.
    now = 1_700_000_000.0
    assert token_keep_seconds(jwt(now + 3600), 1893456000, now) == pytest.approx(3300, abs=1)
    assert token_keep_seconds(jwt(now + 86400), now + 600, now) == pytest.approx(540, abs=1)


def test_a_token_that_lives_less_than_the_margin_is_kept_for_part_of_its_life():
    now = 1_700_000_000.0
    assert 0 < token_keep_seconds(jwt(now + 100), 1893456000, now) <= 90


def test_an_expired_token_is_logged_in_again_not_reused():
    with responses.RequestsMock() as rsps:
        login(rsps, jwt(time.time() - 10), expires_at=time.time() - 10)
        fresh = login(rsps)
        client = MessageWhizClient(ACCOUNT)
        client.token()
        assert client.token() == fresh


def test_a_401_logs_in_again_once_and_the_call_goes_through():
    with responses.RequestsMock() as rsps:
        old = login(rsps)
        new = jwt(time.time() + 86400, sub="new")
        rsps.get(
            f"{BASE}/api/channels", status=401, json={"statusCode": 401, "message": "jwt expired"}
        )
        rsps.post(f"{BASE}/api/auth", json={"token": new, "expires_at": 1893456000})
        rsps.get(f"{BASE}/api/channels", json={"channels": [], "total": 0})

        listed = with_fresh_credentials(PROVIDER, ACCOUNT, PROVIDER.list_channels)

        assert listed == []
        used = [
            c.request.headers["Authorization"] for c in rsps.calls if "channels" in c.request.url
        ]
        assert used == [old, new]


def test_a_refused_token_already_renewed_by_another_process_is_not_renewed_again():
    with responses.RequestsMock() as rsps:
        login(rsps)
        client = MessageWhizClient(ACCOUNT)
        client.headers()  # this thread sent the first token, which the platform then refused
        renewed = jwt(time.time() + 86400, sub="other-process")
        cache.set(_token_key(ACCOUNT), {"token": renewed, "at": time.time()}, 600)

        assert PROVIDER.refresh_credentials(ACCOUNT)

        assert client.headers()["Authorization"] == renewed
        assert len([c for c in rsps.calls if c.request.url.endswith("/api/auth")]) == 1


def test_a_second_401_after_a_fresh_login_fails_the_call():
    with responses.RequestsMock() as rsps:
        login(rsps)
        rsps.get(f"{BASE}/api/channels", status=401, json={"message": "Unauthorized"})
        login(rsps)
        rsps.get(f"{BASE}/api/channels", status=401, json={"message": "Unauthorized"})
        with pytest.raises(AuthenticationError):
            with_fresh_credentials(PROVIDER, ACCOUNT, PROVIDER.list_channels)


def test_a_wrong_password_says_so_in_words():
    with responses.RequestsMock() as rsps:
        rsps.post(
            f"{BASE}/api/auth",
            status=401,
            json={
                "success": False,
                "statusCode": 401,
                "error": "Unauthorized",
                "message": "Invalid credentials",
            },
        )
        with pytest.raises(AuthenticationError) as refused:
            PROVIDER.list_channels(ACCOUNT)
    assert "refused the account's email and password" in refused.value.detail
    assert "Invalid credentials" in refused.value.detail


def test_channels_become_one_channel_per_agent_with_medium_and_number():
    with responses.RequestsMock() as rsps:
        login(rsps)
        channels(rsps)
        listed = PROVIDER.list_channels(ACCOUNT)
    by_id = {c.external_id: c for c in listed}
    assert by_id[SMS_AGENT].medium == "sms"
    assert by_id[SMS_AGENT].lane == "145044111206"
    assert by_id[SMS_AGENT].name == "SMS USA"
    assert by_id["wa-agent"].medium == "whatsapp"


def test_channels_are_read_page_by_page_by_what_came_back():
    first = [
        {
            "_id": f"c{i}",
            "type": "SMS",
            "config": {"name": f"n{i}"},
            "agents": [{"_id": f"a{i}", "config": {"vln": str(i)}}],
        }
        for i in range(30)
    ]
    second = [
        {
            "_id": f"c{i}",
            "type": "VI",
            "config": {"name": f"n{i}"},
            "agents": [{"_id": f"a{i}", "config": {}}],
        }
        for i in range(30, 45)
    ]
    with responses.RequestsMock() as rsps:
        login(rsps)
        # The server caps its pages at 30 whatever we ask: offset moves by what came back.
        rsps.get(
            f"{BASE}/api/channels",
            json={"channels": first, "total": 45, "offset": 0, "limit": 30},
            match=[responses.matchers.query_param_matcher({"offset": "0", "limit": "50"})],
        )
        rsps.get(
            f"{BASE}/api/channels",
            json={"channels": second, "total": 45, "offset": 30, "limit": 30},
            match=[responses.matchers.query_param_matcher({"offset": "30", "limit": "50"})],
        )
        listed = PROVIDER.list_channels(ACCOUNT)
    assert len(listed) == 45


def _now_iso(delta: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=delta)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def customer(cid: str, at: str, **extra: Any) -> dict[str, Any]:
    return {
        "_id": cid,
        "name": f"Customer {cid}",
        "phone": "1450" + cid[-4:].rjust(4, "0"),
        "last_message_time": at,
        "subscriptions": {},
        **extra,
    }


def message(
    mid: str,
    cid: str,
    at: str,
    *,
    origin: str = "CUSTOMER",
    agent: str = SMS_AGENT,
    status: str = "DELIVERED",
    payload: dict | None = None,
) -> dict[str, Any]:
    return {
        "message_id": mid,
        "customer_id": cid,
        "agent_id": agent,
        "origin": origin,
        "sent": at,
        "status": status,
        "payload": payload or {"type": "TEXT", "text": f"text {mid}"},
    }


def stub_listing(rsps: responses.RequestsMock, customers: list[dict[str, Any]]) -> None:
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        query = request.params
        assert query["sort"] == "last_message_time" and query["order"] == "-1"
        offset, limit = int(query["offset"]), int(query["limit"])
        page = customers[offset : offset + limit]
        return (
            200,
            {},
            json.dumps(
                {"customers": page, "total": len(customers), "offset": offset, "limit": limit}
            ),
        )

    rsps.add_callback(responses.GET, f"{BASE}/api/customers", callback=answer)


def stub_histories(
    rsps: responses.RequestsMock, histories: dict[str, list[dict[str, Any]]]
) -> None:
    for cid, items in histories.items():
        newest_first = sorted(items, key=lambda m: m["sent"], reverse=True)
        rsps.get(
            f"{BASE}/api/messages/{cid}",
            json={"messages": newest_first, "total": len(items), "offset": 0, "limit": 50},
        )


def poll_once(cursor: str = "") -> Any:
    return PROVIDER.poll(ACCOUNT, cursor)


def test_a_poll_reads_changed_customers_then_their_histories_into_one_page():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        channels(rsps)
        rsps.get(
            f"{BASE}/api/keyword_events",
            json=load_fixture("messagewhiz", "keyword-events-list-response-200"),
        )
        stub_listing(rsps, [customer("c-0001", _now_iso(-1)), customer("c-0002", _now_iso(-2))])
        stub_histories(
            rsps,
            {
                "c-0001": [message("m1", "c-0001", _now_iso(-1))],
                "c-0002": [
                    message("m2", "c-0002", _now_iso(-3)),
                    message("m3", "c-0002", _now_iso(-2), origin="AGENT", status="READ"),
                ],
            },
        )
        page = poll_once()
    assert page.items == 3 and not page.more
    callback = PROVIDER.read_callback(page.body)
    inbound = [m for m in callback.messages if not m.outbound]
    mirrored = [m for m in callback.messages if m.outbound]
    assert {m.external_id for m in inbound} == {"m1", "m2"}
    assert [m.external_id for m in mirrored] == ["m3"]
    assert mirrored[0].author == "An agent"
    assert [(r.external_id, r.status) for r in callback.receipts] == [("m3", DeliveryStatus.READ)]
    assert {c.channel_external_id for c in callback.contacts} == {SMS_AGENT}
    assert {c.medium for c in callback.contacts} == {"sms"}


@pytest.mark.parametrize("count", [100, 10_000])
def test_an_idle_cycle_costs_one_call_whatever_the_number_of_customers(count):
    old = _now_iso(-3600)
    everyone = [customer(f"c-{i:05d}", old) for i in range(count)]
    with responses.RequestsMock() as rsps:
        login(rsps)
        stub_listing(rsps, everyone)
        cursor = json.dumps({"v": 1, "t": _now_iso(-60), "seen": {}, "todo": []})
        first = poll_once(cursor)
        calls_before = len(rsps.calls)
        poll_once(first.cursor)
        idle_calls = len(rsps.calls) - calls_before
    assert first.items == 0
    assert idle_calls == 1


def test_after_a_burst_an_idle_cycle_costs_one_call_again_once_quiet_for_twice_the_overlap():
    # 120 customers wrote within the overlap of the watermark: while it may still move, an idle
    # scan reads them all again (3 pages); once it has been quiet long enough, one page.
    stamps = [_now_iso(-i * 0.01) for i in range(120)]
    people = [customer(f"c-{i:04d}", stamps[i]) for i in range(120)]
    seen = {p["_id"]: p["last_message_time"] for p in people}

    def idle_calls(moved_ago: float) -> int:
        cursor = json.dumps(
            {"v": 1, "t": stamps[0], "moved": _now_iso(-moved_ago), "seen": seen, "todo": []}
        )
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            login(rsps)  # (once: the token is cached after)
            stub_listing(rsps, [*people, customer("c-old", _now_iso(-3600))])
            page = poll_once(cursor)
            calls = len([c for c in rsps.calls if "/api/customers" in c.request.url])
        assert page.items == 0
        return calls

    assert idle_calls(moved_ago=1) == 3
    assert idle_calls(moved_ago=31) == 1  # (the overlap is 15 s)


def test_changed_customers_are_read_the_longest_waiting_first():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        stub_listing(rsps, [customer(f"c-{i:04d}", _now_iso(-i - 1)) for i in range(3)])
        state = PROVIDER._customers_scan(
            MessageWhizClient(ACCOUNT),
            {"t": _now_iso(-60), "seen": {}, "todo": []},
            timedelta(seconds=15),
        )
    assert [c["_id"] for c, _ in state["todo"]] == ["c-0002", "c-0001", "c-0000"]


def test_customers_seen_inside_the_overlap_are_not_read_again_until_they_change():
    recent = _now_iso(-1)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        channels(rsps)
        rsps.get(f"{BASE}/api/keyword_events", json={"keyword_events": [], "total": 0})
        stub_listing(rsps, [customer("c-0001", recent)])
        stub_histories(rsps, {"c-0001": [message("m1", "c-0001", recent)]})
        first = poll_once()
        second = poll_once(first.cursor)
        history_calls = [c for c in rsps.calls if "/api/messages/" in c.request.url]
    assert first.items == 1
    assert second.items == 0
    assert len(history_calls) == 1


def test_customers_read_again_when_writers_push_the_list_down_are_not_taken_for_disorder():
    # Two customers wrote between our first and second page: page 2 starts with the last two
    # of page 1 again, which are newer than page 1's last one. That is a live list, not one
    # out of order, and each customer is read once.
    people = [customer(f"c-{i:04d}", _now_iso(-i * 0.01 - 1)) for i in range(60)]
    pages = [people[:50], people[48:60]]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        channels(rsps)
        rsps.get(f"{BASE}/api/keyword_events", json={"keyword_events": [], "total": 0})
        for number, items in enumerate(pages):
            rsps.get(
                f"{BASE}/api/customers",
                json={"customers": items, "total": 62},
                match=[
                    responses.matchers.query_param_matcher(
                        {
                            "sort": "last_message_time",
                            "order": "-1",
                            "offset": str(50 * number),
                            "limit": "50",
                        }
                    )
                ],
            )
        rsps.get(f"{BASE}/api/customers", json={"customers": [], "total": 62})
        state = PROVIDER._customers_scan(
            MessageWhizClient(ACCOUNT),
            {"t": _now_iso(-60), "seen": {}, "todo": []},
            timedelta(seconds=15),
        )
    ids = [c["_id"] for c, _ in state["todo"]]
    assert sorted(ids) == sorted(p["_id"] for p in people) and len(ids) == len(set(ids))


def test_a_listing_not_sorted_by_last_message_time_stops_the_poll_in_words():
    with responses.RequestsMock() as rsps:
        login(rsps)
        stub_listing(rsps, [customer("c-0001", _now_iso(-10)), customer("c-0002", _now_iso(-1))])
        with pytest.raises(PayloadError, match="last_message_time"):
            poll_once()


@override_settings(MW_POLL_CUSTOMERS_PER_PAGE=2)
def test_a_busy_cycle_is_split_into_pages_and_the_rest_waits_in_the_cursor():
    people = [customer(f"c-{i:04d}", _now_iso(-i - 1)) for i in range(5)]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        channels(rsps)
        rsps.get(f"{BASE}/api/keyword_events", json={"keyword_events": [], "total": 0})
        stub_listing(rsps, people)
        stub_histories(
            rsps,
            {
                p["_id"]: [message(f"m-{p['_id']}", p["_id"], p["last_message_time"])]
                for p in people
            },
        )
        pages = [poll_once()]
        while pages[-1].more:
            pages.append(poll_once(pages[-1].cursor))
        listing_calls = [c for c in rsps.calls if "/api/customers" in c.request.url]
    assert [p.items for p in pages] == [2, 2, 1]
    assert len(listing_calls) == 1  # the rest came from the cursor, not a second listing


def test_an_opt_out_keyword_marks_the_customer_opted_out_at_that_message():
    at = _now_iso(-1)
    body = {
        "customers": [customer("c-0001", at, subscriptions={SMS_AGENT: False})],
        "messages": [message("m1", "c-0001", at, payload={"type": "TEXT", "text": " Stop "})],
        "agents": {SMS_AGENT: {"medium": "sms"}},
        "keywords": {"OPT_OUT": ["stop"]},
    }
    callback = PROVIDER.read_callback(body)
    assert callback.contacts[0].opted_out_at == schemas.parse_time(at)


def test_a_customer_still_subscribed_who_wrote_plain_text_is_not_opted_out():
    at = _now_iso(-1)
    body = {
        "customers": [customer("c-0001", at, subscriptions={SMS_AGENT: True})],
        "messages": [message("m1", "c-0001", at)],
        "agents": {SMS_AGENT: {"medium": "sms"}},
        "keywords": {"OPT_OUT": ["stop"]},
    }
    assert PROVIDER.read_callback(body).contacts[0].opted_out_at is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("CREATED", None),
        ("SENT", DeliveryStatus.SENT),
        ("DELIVERED", DeliveryStatus.DELIVERED),
        ("READ", DeliveryStatus.READ),
        ("ERROR", DeliveryStatus.FAILED),
        ("UNDELIVERABLE", DeliveryStatus.FAILED),
        ("UPLOAD_ERROR", DeliveryStatus.FAILED),
    ],
)
def test_statuses_map_as_the_spec_says(status, expected):
    body = {
        "customers": [],
        "messages": [message("m1", "c1", _now_iso(), origin="AGENT", status=status)],
        "agents": {},
    }
    receipts = PROVIDER.read_callback(body).receipts
    assert [r.status for r in receipts] == ([expected] if expected else [])
    if expected is DeliveryStatus.FAILED:
        assert receipts[0].error_code == status and receipts[0].error_title


def test_the_documented_history_example_reads_as_a_mirrored_agent_message():
    example = load_fixture("messagewhiz", "messages-history-response-200")
    callback = PROVIDER.read_callback({**example, "customers": [], "agents": {}})
    (only,) = callback.messages
    assert only.outbound and only.body == "hi" and only.type is MessageType.TEXT
    assert only.sent_at == datetime(2020, 11, 18, 15, 11, 58, 240000, tzinfo=UTC)


def test_inbound_media_location_and_unknown_payloads_are_read_defensively():
    items = [
        message(
            "m1",
            "c1",
            _now_iso(-3),
            payload={
                "type": "IMAGE",
                "category": "UNSPECIFIED",
                "name": "p.png",
                "src": {"mime": "image/png", "size": 10, "uri": f"{BASE}/api/media/x"},
            },
        ),
        message(
            "m2",
            "c1",
            _now_iso(-2),
            payload={"type": "LOCATION", "latitude": 32.08, "longitude": 34.78},
        ),
        message("m3", "c1", _now_iso(-1), payload={"type": "STICKER", "sticker": 1}),
    ]
    callback = PROVIDER.read_callback({"customers": [], "messages": items, "agents": {}})
    image, place, odd = callback.messages
    assert (
        image.type is MessageType.IMAGE
        and image.media is not None
        and image.media.link.endswith("/api/media/x")
    )
    assert place.type is MessageType.LOCATION and place.location == Location(
        latitude=32.08, longitude=34.78
    )
    assert odd.type is MessageType.UNKNOWN and "STICKER" in odd.body
    assert any("STICKER" in w for w in callback.warnings)


def send(
    request: OutboundRequest, rsps: responses.RequestsMock, path: str, **answer: Any
) -> dict[str, Any]:
    rsps.post(
        f"{BASE}{path}",
        **(answer or {"json": load_fixture("messagewhiz", "send-sms-response-200")}),
    )
    PROVIDER.send_message(ACCOUNT, request)
    call = next(c for c in rsps.calls if c.request.url == f"{BASE}{path}")
    return json.loads(call.request.body)


def test_a_text_on_sms_goes_to_the_agents_sms_path_with_the_documented_body():
    with responses.RequestsMock() as rsps:
        login(rsps)
        body = send(
            OutboundRequest(
                channel_external_id=SMS_AGENT,
                medium="sms",
                type=MessageType.TEXT,
                to_phone="+1 450 441 11206",
                body="Hello world",
            ),
            rsps,
            f"/api/agents/sms/{SMS_AGENT}/send",
        )
    assert body == load_fixture("messagewhiz", "send-sms-request-text") | {
        "customerNumber": "145044111206"
    }


def test_an_image_on_sms_is_refused_before_any_call():
    with pytest.raises(UnsupportedError, match=r"cannot send an? image"):
        PROVIDER.send_message(
            ACCOUNT,
            OutboundRequest(
                channel_external_id=SMS_AGENT,
                medium="sms",
                type=MessageType.IMAGE,
                to_phone="1450",
                media=Media(link=f"{BASE}/api/media/x"),
            ),
        )


def test_an_uploaded_image_is_sent_with_its_renditions_read_by_head():
    uploaded = load_fixture("messagewhiz", "media-upload-response-200")
    with responses.RequestsMock() as rsps:
        login(rsps)
        rsps.post(
            f"{BASE}/api/media",
            json={
                **uploaded,
                "url": f"{BASE}/api/media/abc",
                "thumbnail": f"{BASE}/api/media/abc/thumbnail",
                "preview": f"{BASE}/api/media/abc/preview",
            },
        )
        rsps.head(
            f"{BASE}/api/media/abc/thumbnail",
            headers={"Content-Type": "image/png", "Content-Length": "400"},
        )
        rsps.head(
            f"{BASE}/api/media/abc/preview",
            headers={"Content-Type": "image/png", "Content-Length": "160"},
        )
        media = PROVIDER.media_upload(
            ACCOUNT, MediaUpload(filename="p.png", mime_type="image/png", content=b"\x89PNG...")
        )
        upload_call = rsps.calls[1].request
        assert b'name="file"; filename="p.png"' in upload_call.body
        body = send(
            OutboundRequest(
                channel_external_id="wa-agent",
                medium="whatsapp",
                type=MessageType.IMAGE,
                to_phone="145044111206",
                media=media,
            ),
            rsps,
            "/api/agents/whatsapp/wa-agent/send",
        )
    payload = body["payload"]
    assert payload["type"] == "IMAGE" and payload["category"] == "UNSPECIFIED"
    assert payload["src"]["uri"] == f"{BASE}/api/media/abc"
    assert payload["thumbnail"] == {
        "mime": "image/png",
        "size": 400,
        "uri": f"{BASE}/api/media/abc/thumbnail",
    }
    assert payload["preview"]["size"] == 160


def test_a_whatsapp_template_goes_as_a_card_with_variables_in_placeholder_order():
    with responses.RequestsMock() as rsps:
        login(rsps)
        body = send(
            OutboundRequest(
                channel_external_id="wa-agent",
                medium="whatsapp",
                type=MessageType.TEMPLATE,
                to_phone="145044111206",
                template_id="493480348725846",
                template_data={"2": "12:30", "10": "ten", "1": "John", "header.1": "Order"},
            ),
            rsps,
            "/api/agents/whatsapp/wa-agent/send",
        )
    assert body["payload"] == {
        "type": "CARD",
        "template_id": "493480348725846",
        "body_variables": ["John", "12:30", "ten"],
        "header_variables": ["Order"],
    }


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 504, "json": {"message": "Gateway timeout"}}, AmbiguousError),
        ({"status": 500, "json": {"message": "oops"}}, AmbiguousError),
        ({"status": 503, "json": {"message": "busy"}}, TransientError),
        ({"status": 403, "json": {"message": "Customer unsubscribed"}}, RejectedError),
        (
            {
                "status": 400,
                "json": {
                    "success": False,
                    "statusCode": 400,
                    "error": "Bad Request",
                    "message": "payload.text is required",
                },
            },
            RejectedError,
        ),
    ],
)
def test_send_failures_are_classified_as_section_4_6_says(answer, error):
    request = OutboundRequest(
        channel_external_id=SMS_AGENT,
        medium="sms",
        type=MessageType.TEXT,
        to_phone="145044111206",
        body="hi",
    )
    with responses.RequestsMock() as rsps:
        login(rsps)
        rsps.post(f"{BASE}/api/agents/sms/{SMS_AGENT}/send", **answer)
        with pytest.raises(error) as raised:
            PROVIDER.send_message(ACCOUNT, request)
    assert not isinstance(raised.value, AuthenticationError)
    if error is RejectedError:
        assert answer["json"]["message"] in raised.value.detail
    if error is TransientError:
        assert not isinstance(raised.value, AmbiguousError)


def test_templates_of_both_documented_shapes_are_read_with_positional_placeholders():
    listing = load_fixture("messagewhiz", "wa-templates-list-response-200")
    flat = {
        "id": "777",
        "name": "order_ready",
        "language": "en",
        "category": "UTILITY",
        "status": "APPROVED",
        "body": "Hi {{1}}, order {{2}} is ready",
        "header": {"type": "TEXT", "value": "Order {{1}}"},
        "buttons": {"type": "QUICK_REPLY", "quickReplyBlocks": ["OK"]},
        "footer": "Thanks",
    }
    listing = {
        **listing,
        "templates": [*listing["templates"], flat],
        "total": len(listing["templates"]) + 1,
    }
    with responses.RequestsMock() as rsps:
        login(rsps)
        channels(rsps)
        rsps.get(f"{BASE}/api/agents/whatsapp/wa-agent/templates", json=listing)
        infos = PROVIDER.list_templates(ACCOUNT, "wa-agent")
        assert PROVIDER.list_templates(ACCOUNT, SMS_AGENT) == []  # SMS: none, and no call
    by_id = {i.external_id: i for i in infos}
    ready = by_id["777"]
    assert ready.header == "Order {{header.1}}" and ready.body == "Hi {{1}}, order {{2}} is ready"
    assert [p["name"] for p in ready.placeholders] == ["header.1", "1", "2"]
    assert ready.approvals == {"wa-agent": ("APPROVED", "777")}
    pending = by_id["408839324301065"]
    assert pending.body == "body" and pending.header == "header" and pending.footer == "footer"
    assert pending.approvals["wa-agent"][0] == "PENDING"


def test_receipts_are_looked_up_per_customer_and_agent_with_our_origin_only():
    sent_at = datetime.now(UTC) - timedelta(seconds=30)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        channels(rsps)
        rsps.get(
            f"{BASE}/api/messages/c1",
            json={
                "messages": [
                    message("out-1", "c1", _now_iso(-20), origin="AGENT", status="DELIVERED")
                ],
                "total": 1,
            },
            match=[
                responses.matchers.query_param_matcher(
                    {
                        "agentID": SMS_AGENT,
                        "origin": "AGENT",
                        "sort": "sent",
                        "order": "-1",
                        "offset": "0",
                        "limit": "50",
                    }
                )
            ],
        )
        page = PROVIDER.receipts_fetch(ACCOUNT, [SentMessage("out-1", "c1", SMS_AGENT, sent_at)])
    receipts = PROVIDER.read_callback(page.body).receipts
    assert [(r.external_id, r.status) for r in receipts] == [("out-1", DeliveryStatus.DELIVERED)]


def test_media_is_downloaded_with_the_token():
    with responses.RequestsMock() as rsps:
        token = login(rsps)
        rsps.get(f"{BASE}/api/media/abc", body=b"PNGDATA", content_type="image/png")
        into = BytesIO()
        got = PROVIDER.media_fetch(
            ACCOUNT, Media(link=f"{BASE}/api/media/abc"), into, max_bytes=1000
        )
        assert rsps.calls[1].request.headers["Authorization"] == token
    assert got.size == 7 and into.getvalue() == b"PNGDATA"


def test_a_customer_who_wrote_while_a_scan_was_shifted_is_read_from_that_scans_floor():
    # Scan k: page 2 starts with two customers again (writers pushed the list down); one of
    # those writers had an unread message older than the watermark less the overlap.
    people = [customer(f"c-{i:04d}", _now_iso(-i * 0.5 - 1)) for i in range(60)]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        for number, items in enumerate([people[:50], people[48:60], []]):
            rsps.get(
                f"{BASE}/api/customers",
                json={"customers": items, "total": 62},
                match=[
                    responses.matchers.query_param_matcher(
                        {
                            "sort": "last_message_time",
                            "order": "-1",
                            "offset": str([0, 50, 62][number]),
                            "limit": "50",
                        }
                    )
                ],
            )
        state = PROVIDER._customers_scan(
            MessageWhizClient(ACCOUNT),
            {"t": _now_iso(-120), "seen": {}, "todo": []},
            timedelta(seconds=15),
        )
    assert state["skipped_from"]
    writer = customer("c-writer", _now_iso())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        stub_listing(rsps, [writer])
        after = PROVIDER._customers_scan(
            MessageWhizClient(ACCOUNT), {**state, "todo": []}, timedelta(seconds=15)
        )
    ((brief, since),) = after["todo"]
    assert brief["_id"] == "c-writer" and since == state["skipped_from"] < state["t"]
    assert after["skipped_from"] == ""  # (this scan was not shifted)


def test_one_customer_whose_history_is_gone_does_not_stop_everyone_elses():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        channels(rsps)
        rsps.get(f"{BASE}/api/keyword_events", json={"keyword_events": [], "total": 0})
        stub_listing(rsps, [customer("c-gone", _now_iso(-1)), customer("c-0002", _now_iso(-2))])
        rsps.get(f"{BASE}/api/messages/c-gone", status=410, json={"message": "Entity was removed"})
        stub_histories(rsps, {"c-0002": [message("m2", "c-0002", _now_iso(-2))]})
        page = poll_once()
    assert [m["message_id"] for m in page.body["messages"]] == ["m2"]


def test_a_token_refused_in_a_history_call_is_renewed_and_the_look_made_again():
    sent_at = datetime.now(UTC) - timedelta(seconds=30)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        login(rsps)
        channels(rsps)
        rsps.get(f"{BASE}/api/messages/c1", status=401, json={"message": "jwt expired"})
        fresh = login(rsps, jwt(time.time() + 86400, sub="fresh"))
        rsps.get(
            f"{BASE}/api/messages/c1",
            json={
                "messages": [message("out-1", "c1", _now_iso(-20), origin="AGENT", status="READ")]
            },
        )
        page = with_fresh_credentials(
            PROVIDER,
            ACCOUNT,
            lambda a: PROVIDER.receipts_fetch(a, [SentMessage("out-1", "c1", SMS_AGENT, sent_at)]),
        )
        looks = [c for c in rsps.calls if "/api/messages/" in c.request.url]
        assert looks[-1].request.headers["Authorization"] == fresh
    assert [r.status for r in PROVIDER.read_callback(page.body).receipts] == [DeliveryStatus.READ]


def test_a_refused_login_is_not_tried_again_with_the_same_credentials():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{BASE}/api/auth", status=401, json={"message": "Invalid credentials"})
        for _ in range(3):
            with pytest.raises(AuthenticationError, match="Invalid credentials"):
                with_fresh_credentials(PROVIDER, ACCOUNT, PROVIDER.list_channels)
        assert len(rsps.calls) == 1
    changed = replace(ACCOUNT, api_key="new-password")
    with responses.RequestsMock() as rsps:
        login(rsps)
        rsps.get(f"{BASE}/api/channels", json={"channels": [], "total": 0})
        assert PROVIDER.list_channels(changed) == []


def test_an_unsubscription_listed_before_the_customer_wrote_again_is_not_read_as_an_opt_out():
    stop_at, hi_at = _now_iso(-5), _now_iso(-1)
    body = {
        # Listed when their last message was the STOP; "hi" came before the history was read.
        "customers": [customer("c1", stop_at, subscriptions={SMS_AGENT: False})],
        "messages": [
            message("m1", "c1", stop_at, payload={"type": "TEXT", "text": "STOP"}),
            message("m2", "c1", hi_at, payload={"type": "TEXT", "text": "hi"}),
        ],
        "agents": {SMS_AGENT: {"medium": "sms"}},
        "keywords": {"OPT_OUT": ["stop"]},
    }
    # Opted out at the STOP, which "hi" came after: so they are not opted out now.
    assert PROVIDER.read_callback(body).contacts[0].opted_out_at == schemas.parse_time(stop_at)


def test_a_bots_access_token_is_never_kept_with_its_channel():
    listing = {
        "channels": [
            {
                "_id": "tg",
                "type": "TG",
                "config": {"name": "Bot"},
                "agents": [
                    {"_id": "tg-agent", "config": {"bot_name": "B", "access_token": "123:SECRET"}}
                ],
            }
        ],
        "total": 1,
    }
    with responses.RequestsMock() as rsps:
        login(rsps)
        rsps.get(f"{BASE}/api/channels", json=listing)
        (info,) = PROVIDER.list_channels(ACCOUNT)
    assert "SECRET" not in json.dumps(info.raw) and info.lane == "B"


def test_our_token_goes_only_to_the_platforms_own_media_links():
    with responses.RequestsMock() as rsps:  # (and no login for it)
        rsps.get("https://cdn.elsewhere.test/f.png", body=b"PNG")
        PROVIDER.media_fetch(
            ACCOUNT, Media(link="https://cdn.elsewhere.test/f.png"), BytesIO(), max_bytes=10
        )
        elsewhere = [c for c in rsps.calls if "cdn.elsewhere" in c.request.url]
        assert "Authorization" not in elsewhere[0].request.headers
