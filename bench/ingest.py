"""Stages 1 and 2: the webhook taking callbacks, and the worker turning them into messages."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from itertools import islice

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from bench.callbacks import Customer, Mix, encode
from bench.context import Bench
from bench.loadgen import Body, LoadResult, closed_loop
from bench.report import ms
from bench.views import RAW_TABLE
from config.redis import redis_client
from inbox.models import Message, Session
from integrations.models import WebhookEvent
from integrations.services.webhooks import webhook_events_enqueue
from integrations.tasks import webhook_events_drain

SECTION_INGEST = "1. Webhook ingest"
SECTION_PROCESSING = "2. Processing"


@dataclass(frozen=True)
class Sizes:
    customers: int
    levels: tuple[int, ...]  # concurrent connections, one run each
    seconds: float  # per run
    outbound: int  # replies whose receipts the mix carries
    events: int  # customer messages in the processing stage


FULL = Sizes(customers=300, levels=(1, 8, 32, 64), seconds=8.0, outbound=6000, events=5000)
QUICK = Sizes(customers=20, levels=(4, 16), seconds=2.0, outbound=400, events=300)


def _bodies(mix: Mix, count: int) -> list[Body]:
    return [(str(i), encode(body)) for i, body in enumerate(mix.realistic(count))]


def _line(result: LoadResult) -> str:
    errors = result.failed
    return (
        f"{result.rate:,.0f} req/s · p50 {ms(result.p(0.5))} · p99 {ms(result.p(0.99))}"
        f" · {errors} error{'s' if errors != 1 else ''}"
    )


def _prepare(bench: Bench, mix: Mix, outbound_count: int) -> None:
    """Let every customer write once (a session each), then give them outbound messages."""
    bodies = [
        (str(i), encode(mix.message(customer, "text"))) for i, customer in enumerate(mix.customers)
    ]
    result = asyncio.run(
        closed_loop(
            bench.webhook_url(),
            iter(bodies),
            concurrency=4,
            duration=120,
            headers={"x-verify-token": bench.stack.verify_token},
        )
    )
    assert result.ok == len(bodies), result.summary()
    bench.drain(timeout=120)
    sessions = {
        s.external_id: s
        for s in Session.objects.filter(account=bench.account, external_id__startswith=mix.prefix)
    }
    now = timezone.now()
    outbound: list[tuple[str, Customer]] = []
    rows = []
    for index in range(outbound_count):
        customer = mix.customers[index % len(mix.customers)]
        session = sessions[customer.session_id]
        external_id = f"{mix.prefix}-out{index}"
        outbound.append((external_id, customer))
        rows.append(
            Message(
                account=bench.account,
                session=session,
                direction=Message.Direction.OUTBOUND,
                type="text",
                body=f"Reply {index}",
                external_id=external_id,
                status=Message.Status.SENT,
                sent_at=now,
                accepted_at=now,
            )
        )
    Message.objects.bulk_create(rows, batch_size=1000)
    mix.use_outbound(outbound)


def run_ingest(bench: Bench) -> None:
    """Callbacks at rising concurrency against the webhook and the raw-insert baseline."""
    sizes = QUICK if bench.quick else FULL
    mix = Mix("bi", sizes.customers, tenant=bench.tenant(), media_base=bench.stack.sandbox_url)
    _prepare(bench, mix, sizes.outbound)
    bench.notes["ingest_mix"] = mix
    # The worker is stopped: this stage measures the webhook; the events it stores wait for
    # the processing stage. (The web process's own in-line processing stays as deployed.)
    bench.stack.stop_worker()
    headers = {"x-verify-token": bench.stack.verify_token}
    seconds = sizes.seconds
    raw_url = f"{bench.web_url}/_bench/raw/"
    events_before = WebhookEvent.objects.filter(account=bench.account).count()
    ok_ingest = ok_raw = 0
    best = 0.0
    for level in sizes.levels:
        expected = int(2500 * seconds)
        raw = asyncio.run(
            closed_loop(raw_url, iter(_bodies(mix, expected)), concurrency=level, duration=seconds)
        )
        real = asyncio.run(
            closed_loop(
                bench.webhook_url(),
                iter(_bodies(mix, expected)),
                concurrency=level,
                duration=seconds,
                headers=headers,
            )
        )
        ok_raw += raw.ok
        ok_ingest += real.ok
        best = max(best, real.rate)
        bench.report.add(
            SECTION_INGEST,
            f"{level} concurrent",
            _line(real),
            baseline=f"raw insert: {_line(raw)}",
            ratio=real.rate / raw.rate if raw.rate else None,
            concurrency=level,
            ingest=real.summary(),
            baseline_run=raw.summary(),
        )
    stored = WebhookEvent.objects.filter(account=bench.account).count() - events_before
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {RAW_TABLE}")  # noqa: S608
        raw_rows = cursor.fetchone()[0]
    lost = ok_ingest - stored
    bench.report.add(
        SECTION_INGEST,
        "answered 200 vs rows stored",
        f"{ok_ingest:,} answered, {stored:,} stored: {lost:,} lost",
        baseline=f"raw insert: {ok_raw:,} answered, {raw_rows:,} stored",
        note="ZERO LOST" if lost == 0 else "CALLBACKS LOST",
        answered=ok_ingest,
        stored=stored,
        lost=lost,
        best_per_second=round(best, 1),
    )


def _backlog_drained(bench: Bench) -> None:
    """Report the ingest stage's backlog (the realistic mix) drained, and any event that drew a
    warning or failed on the way."""
    backlog = bench.pending()
    if backlog:
        took = bench.drain(timeout=600)
        bench.report.add(
            SECTION_PROCESSING,
            "ingest backlog (the realistic mix) drained",
            f"{backlog:,} events in {took:.1f} s: {backlog / took:,.0f} events/s",
            note="receipts, events and messages; includes worker start-up",
            events=backlog,
            seconds=round(took, 2),
        )
    warned = WebhookEvent.objects.filter(account=bench.account).exclude(warnings=[])
    example = warned.values_list("warnings", flat=True).first()
    if example is not None:
        bench.report.add(
            SECTION_PROCESSING,
            "events with warnings",
            f"{warned.count():,}",
            note="WARNINGS (the mix should draw none): " + str(example)[:200],
        )
    failed = WebhookEvent.objects.filter(account=bench.account, state=WebhookEvent.State.FAILED)
    if failed.exists():
        bench.report.add(
            SECTION_PROCESSING,
            "events failed",
            f"{failed.count():,}",
            note="FAILED EVENTS: " + "; ".join(failed.values_list("error", flat=True)[:3]),
        )


def run_processing(bench: Bench) -> None:
    """The worker's rate at turning stored callbacks into messages, against bulk inserts."""
    sizes = QUICK if bench.quick else FULL
    if "worker" not in bench.stack.processes:
        bench.stack.start_worker()
    _backlog_drained(bench)

    # A backlog of customer messages only, stored as the webhook stores them, processed by a
    # worker started afterwards: events/s is messages/s.
    mix = Mix("bp", sizes.customers, tenant=bench.tenant(), media_base=bench.stack.sandbox_url)
    count = sizes.events
    bench.stack.stop_worker()
    now = timezone.now()
    events = WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                account=bench.account,
                received_at=now,
                path="",
                headers={"content-type": "application/json"},
                body=encode(body).decode(),
                enqueued_at=now,
            )
            for body in islice((mix.message() for _ in range(count)), count)
        ],
        batch_size=1000,
    )
    if settings.WEBHOOK_DRAIN and redis_client() is not None:
        # As a stream of callbacks does: drains, one per worker process, each taking batches.
        for _ in range(bench.stack.worker_concurrency):
            webhook_events_drain.apply_async(retry=False)
    else:
        webhook_events_enqueue(event.pk for event in events)
    messages_before = Message.objects.filter(account=bench.account).count()
    bench.stack.start_worker()
    bench.drain(timeout=900)
    created = Message.objects.filter(account=bench.account).count() - messages_before
    # Timed by the events themselves, from the first claim to the last one processed: the
    # worker starts taking them before it says it is ready, so a clock started then missed
    # the first of them (a quick run's 300 were all done before it: "0.0 s").
    span = WebhookEvent.objects.filter(pk__in=[event.pk for event in events]).aggregate(
        first=Min("claimed_at"), last=Max("processed_at")
    )
    took = max((span["last"] - span["first"]).total_seconds(), 0.001)
    rate = created / took

    # The floor: the same messages written by one bulk insert per thousand.
    copies = list(
        Message.objects.filter(account=bench.account, external_id__startswith="bp-")
        .exclude(direction=Message.Direction.OUTBOUND)
        .order_by("id")
    )
    for message in copies:
        message.pk = None
        message.external_id += "-copy"
    began = time.monotonic()
    with transaction.atomic():
        Message.objects.bulk_create(copies, batch_size=1000)
    floor = time.monotonic() - began
    floor_rate = len(copies) / floor if floor else 0.0
    bench.report.add(
        SECTION_PROCESSING,
        "customer messages processed by one worker",
        f"{created:,} messages in {took:.1f} s: {rate:,.0f} messages/s",
        baseline=f"bulk insert: {floor_rate:,.0f} messages/s",
        ratio=rate / floor_rate if floor_rate else None,
        note="each event: new contact/session when first seen, message, live event; timed"
        " from the first claim to the last event processed",
        events=count,
        created=created,
        seconds=round(took, 2),
        baseline_per_second=round(floor_rate, 1),
    )
