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


def test_polls_are_read_from_the_cursor_claims_and_a_renewed_claim_is_the_same_poll():
    from bench.polling import Cycle, Sample, pages_stored, poll_cycles

    samples = [
        Sample(at=0.0, claimed=None, polled=None),
        Sample(at=1.0, claimed=0.9, polled=None),
        Sample(at=3.0, claimed=2.9, polled=1.5),  # the lease renewed the claim
        Sample(at=3.5, claimed=None, polled=3.2),
        Sample(at=5.5, claimed=None, polled=3.2),
        Sample(at=6.0, claimed=5.8, polled=5.9),  # still held when the watch stopped
    ]

    assert poll_cycles(samples) == [Cycle(0.9, 3.5), Cycle(5.8, None)]
    assert pages_stored(samples) == 3


def test_a_polled_message_is_lost_or_twice_by_its_platform_id_and_timed_to_its_first_arrival():
    from bench.polling import outcome

    sent_at = {"k1": 100.0, "k2": 100.5, "k3": 101.0}
    rows = [(1, "m1", "k1"), (2, "m2", "k2"), (3, "m2", "k2")]  # m2 stored twice; k3 never
    arrived = [
        (104.0, {"type": "message.created", "message": 1}),
        (104.5, {"type": "session.updated", "message": 2}),
        (105.0, {"type": "message.created", "message": 2}),
        (109.0, {"type": "message.created", "message": 1}),  # again: the first one counts
    ]

    result = outcome(sent_at, rows, arrived, accepted=3)

    assert sorted(result.lags) == [4.0, 4.5]
    assert (result.lost, result.duplicated, result.streamed) == (1, 1, 2)


def test_a_polled_message_is_traced_through_the_first_page_that_carried_it():
    from bench.polling import STEPS, Cycle, Page, slowest, steps, trace

    cycles = [Cycle(10.0, 11.0), Cycle(15.0, 16.0)]
    pages = [
        Page(received=15.6, claimed=15.7, processed=16.2, message_ids=("m1", "m2")),
        Page(received=10.4, claimed=10.5, processed=11.0, message_ids=("m1",)),
        Page(received=15.3, claimed=15.3, processed=15.5, message_ids=("m3",)),
    ]
    rows = [(1, "m1", "k1"), (2, "m2", "k2")]
    sent_at = {"k1": 9.0, "k2": 15.2}  # k2 written while the poll that found it was listing

    traced = trace(sent_at, rows, {1: 11.1, 2: 16.3}, cycles, pages)
    by_step = steps(traced)

    assert [(t.stored, t.page, t.pages) for t in traced] == [(10.4, 1, 1), (15.6, 2, 2)]
    assert by_step[STEPS[0]] == pytest.approx([1.0, 0.0])  # waiting for a poll
    assert by_step[STEPS[1]] == pytest.approx([0.4, 0.4])  # polling
    assert by_step[STEPS[3]] == pytest.approx([0.5, 0.5])  # page applied
    means, count, last = slowest(traced, share=0.5)
    assert (count, last) == (1, 1)
    assert means[STEPS[0]] == pytest.approx(1.0)


def test_the_lag_plan_draws_its_writers_from_the_pool_the_same_way_each_run():
    import random

    from bench.polling import lag_plan

    pool = [f"1991{n:07d}" for n in range(50)]
    plan = lag_plan(pool, 200, random.Random(3))

    assert plan == lag_plan(pool, 200, random.Random(3))
    assert set(plan) <= set(pool) and len(set(plan)) > 30


def test_applying_is_timed_per_drain_batch_not_per_page_claimed_with_others():
    from bench.polling import Page, apply_cost

    pages = [
        Page(received=0.0, claimed=1.0, processed=2.0, message_ids=("a", "b")),
        Page(received=0.1, claimed=1.0, processed=3.0, message_ids=("c", "d")),  # same batch
        Page(received=5.0, claimed=5.0, processed=5.5, message_ids=("e",)),
        Page(received=6.0, claimed=None, processed=None, message_ids=("f",)),  # not yet
    ]

    assert apply_cost(pages) == pytest.approx((2.0 + 0.5) / 5)
