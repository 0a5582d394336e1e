"""The benchmark's own parts: what they generate and how they count (not how fast anything is)."""

from __future__ import annotations

import asyncio
import importlib
import json

import pytest
from django.test import Client
from django.urls import clear_url_caches

from bench.callbacks import Customer, Mix, encode
from bench.loadgen import closed_loop, open_loop
from bench.report import Report, percentile
from integrations.xms import schemas


def test_percentiles_are_nearest_rank_and_nan_for_nothing():
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN


def test_the_callback_mix_parses_as_xms_and_never_repeats_a_message_id():
    mix = Mix("t", customers=5)
    outbound = [(f"t-out{i}", mix.customers[i % 5]) for i in range(20)]
    mix.use_outbound(outbound)

    bodies = list(mix.realistic(300))
    parsed = [schemas.parse_callback(json.loads(encode(body))) for body in bodies]

    message_ids = [m.external_id for p in parsed for m in p.messages]
    receipts = [r for p in parsed for r in p.receipts]
    assert len(message_ids) == len(set(message_ids)) > 50
    assert {m.type.value for p in parsed for m in p.messages} >= {"text", "image", "location"}
    assert receipts and {r.external_id for r in receipts} <= {eid for eid, _ in outbound}
    assert any(p.events for p in parsed)
    assert not [w for p in parsed for w in p.warnings]


def test_the_mix_says_it_is_for_the_account_it_is_posted_to():
    from integrations.registry import get_provider

    options = {"app_id": "app-42", "domain": "shop"}
    mix = Mix("t", customers=3, tenant={"appId": "app-42", "domain": "shop"})
    mix.use_outbound([("t-out0", mix.customers[0])])

    for body in mix.realistic(30):
        callback = get_provider("xms").read_callback(json.loads(encode(body)), options=options)
        assert callback.tenant  # (it does say who it is for)
        assert callback.warnings == []


def test_customers_keep_their_numbers_from_one_run_to_the_next():
    assert Customer(3, "bi").phone == Customer(3, "bi").phone
    assert Customer(3, "bi").contact_id != Customer(4, "bi").contact_id


async def _server(statuses: list[int]) -> tuple[asyncio.AbstractServer, int]:
    answers = iter(statuses)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            status = next(answers, 200)
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}".encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_the_load_generator_counts_every_answer_by_its_status():
    async def scenario():
        server, port = await _server([200, 500, 200, 200, 503])
        async with server:
            bodies = iter([(str(i), b'{"n": %d}' % i) for i in range(12)])
            return await closed_loop(
                f"http://127.0.0.1:{port}/x/", bodies, concurrency=3, duration=30
            )

    result = asyncio.run(scenario())

    assert len(result.requests) == 12
    assert result.ok == 10
    assert result.failed == 2
    assert result.summary()["statuses"] == {"200": 10, "500": 1, "503": 1}


def test_the_open_loop_sends_each_body_once_and_reports_when():
    sent: list[str] = []

    async def scenario():
        server, port = await _server([])
        async with server:
            bodies = iter([(f"k{i}", b"{}") for i in range(20)])
            return await open_loop(
                f"http://127.0.0.1:{port}/x/",
                bodies,
                rate=400,
                count=20,
                on_send=lambda key, at: sent.append(key),
            )

    result = asyncio.run(scenario())

    assert result.ok == 20
    assert sorted(sent) == sorted(f"k{i}" for i in range(20))


def test_the_report_prints_each_section_once_with_its_ratios(tmp_path):
    report = Report(quick=True)
    report.add("1. Ingest", "4 concurrent", "900 req/s", baseline="1000 req/s", ratio=0.9)
    report.add("1. Ingest", "16 concurrent", "950 req/s", baseline="1100 req/s", ratio=0.864)
    report.add("7. Memory", "web", "250 MiB")

    table = report.table()
    written = json.loads(report.write(tmp_path).read_text())

    assert table.count("**1. Ingest**") == 1
    assert "| 4 concurrent | 900 req/s | 1000 req/s | 0.90 |" in table
    assert [f["name"] for f in written["figures"]] == ["4 concurrent", "16 concurrent", "web"]
    assert (tmp_path / "latest.json").exists()


@pytest.fixture
def bench_urls(settings):
    import config.urls

    settings.BENCH_ENDPOINTS = True
    importlib.reload(config.urls)
    clear_url_caches()
    yield
    settings.BENCH_ENDPOINTS = False
    importlib.reload(config.urls)
    clear_url_caches()


def test_the_baseline_endpoints_exist_only_when_the_benchmark_turns_them_on():
    assert Client().post("/_bench/raw/", b"{}", content_type="application/json").status_code == 404


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_raw_insert_baseline_stores_the_body_as_one_row(bench_urls):
    from django.db import connection

    from bench.views import RAW_TABLE

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {RAW_TABLE} (id bigserial, body text, received_at timestamptz)"
        )
    answer = Client().post("/_bench/raw/", b'{"a": 1}', content_type="application/json")

    assert answer.status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT body FROM {RAW_TABLE}")  # noqa: S608
        assert cursor.fetchall() == [('{"a": 1}',)]
