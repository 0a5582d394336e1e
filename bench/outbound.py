"""Stage 4: sends through the platform lane to the sandbox, against the sandbox's own speed."""

from __future__ import annotations

import json
import threading
import time

import requests
from django.db import transaction
from django.utils import timezone

from bench.context import Bench
from bench.report import ms, percentile
from devstack import wait_for
from inbox.models import Message, Session
from inbox.services.send import Draft, message_send
from integrations.models import Channel

SECTION = "4. Outbound"
# Replies in one conversation go one after another (the customer reads them in order), so the
# platform's speed is reached across conversations: a support team's replies on two WhatsApp
# numbers, spread over this many customers.
CONVERSATIONS = 120
CHANNELS = ("wa360:918828218374", "wa360:918828218375")
# Replies sent with the rate limit on: five seconds' worth, in quick runs too (fewer would fit
# in one second's budget and measure nothing).
LIMITED = 800
PER_CHANNEL = 80


def _sessions(bench: Bench) -> list[Session]:
    keys = []
    for index in range(CONVERSATIONS):
        customer = f"outbound-{index:03d}"
        bench.stack.sandbox(
            "POST",
            "customers",
            {
                "key": customer,
                "name": f"Outbound customer {index}",
                "channelId": CHANNELS[index % len(CHANNELS)],
                "phone": f"4915{index:08d}",
            },
        )
        sent = bench.stack.sandbox("POST", "inbound", {"customer": customer, "type": "text"})
        keys.append(sent["sessionId"])

    def found() -> list[Session]:
        # The sandbox may announce a session (an event) before its first message lands, and
        # a free-text reply needs that message: wait for the customer's message, not the row.
        sessions = list(Session.objects.filter(external_id__in=keys, last_inbound_at__isnull=False))
        return sessions if len(sessions) == len(keys) else []

    return wait_for(found, timeout=120, what="the customers' first messages")


def _floor(bench: Bench, body: dict[str, object], count: int, threads: int) -> float:
    """Post the same send straight to the sandbox from `threads` threads; return sends/s."""
    url = f"{bench.stack.sandbox_url}/xms/api/v1/message/send"
    headers = {"x-api-key": bench.stack.api_key, "Content-Type": "application/json"}
    data = json.dumps(body)
    share = count // threads
    failures: list[int] = []

    def post_many() -> None:
        with requests.Session() as session:
            for _ in range(share):
                answer = session.post(url, data=data, headers=headers, timeout=10)
                if answer.status_code != 200:
                    failures.append(answer.status_code)

    workers = [threading.Thread(target=post_many) for _ in range(threads)]
    began = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    took = time.monotonic() - began
    if failures:
        raise RuntimeError(f"the sandbox refused {len(failures)} baseline sends: {failures[:5]}")
    return share * threads / took


def _burst(sessions: list[Session], count: int) -> tuple[float, float, list[float], int, int]:
    """Queue `count` replies at once and wait until every one is settled.

    Settled: accepted by the platform, failed, or left without an answer (a connection the
    sandbox dropped under load: such a send is settled later by evidence, never sent again,
    and counted here rather than waited for). Returns sends/s (accepted ones), seconds, each
    accepted reply's enqueue → accepted, how many failed and how many got no answer.
    """
    # All sends are queued in one transaction, so their drains start together at commit.
    ids: list[int] = []
    with transaction.atomic():
        for index in range(count):
            message, _ = message_send(
                sessions[index % len(sessions)], Draft(body=f"Bench reply {index} 👋")
            )
            ids.append(message.pk)
        enqueued = timezone.now()

    def settled() -> bool:
        return not (
            Message.objects.filter(pk__in=ids, accepted_at__isnull=True, outcome_unknown=False)
            .exclude(status=Message.Status.FAILED)
            .exists()
        )

    wait_for(settled, timeout=600, interval=0.2, what="every send accepted or settled")
    rows = list(
        Message.objects.filter(pk__in=ids).values_list("accepted_at", "status", "outcome_unknown")
    )
    accepted = [at for at, _, _ in rows if at is not None]
    took = (max(accepted) - enqueued).total_seconds()
    delays = [(at - enqueued).total_seconds() for at in accepted]
    failed = sum(1 for _, status, _ in rows if status == Message.Status.FAILED)
    unanswered = sum(1 for at, _, unknown in rows if at is None and unknown)
    return len(accepted) / took, took, delays, failed, unanswered


def _limited(sessions: list[Session]) -> tuple[float, float, list[float], int, int]:
    """A burst with the rate limit as the only brake: each number at WhatsApp's 80/s."""
    Channel.objects.filter(external_id__in=CHANNELS).update(send_rate_limit=PER_CHANNEL)
    try:
        return _burst(sessions, LIMITED)
    finally:
        Channel.objects.filter(external_id__in=CHANNELS).update(send_rate_limit=None)


def run(bench: Bench) -> None:
    count = 200 if bench.quick else 2000
    bench.stack.start_worker()  # (both lanes; those running are left as they are)
    # What earlier stages left for the worker would be measured here too: let it finish.
    bench.drain(timeout=900)
    sessions = _sessions(bench)
    # The sandbox's callbacks are dropped while sends are measured, here and in the baseline:
    # it is one Python process on the same two cores, and posting three receipts per send
    # slowed its answers to sends several-fold, which measured the sandbox, not us. Receipts
    # are measured in stages 1 to 3. They stay dropped for the whole stage: receipts let
    # through between two measurements were applied while the next burst was being queued.
    bench.stack.sandbox("POST", "faults", {"drop_rate": 1})
    try:
        rate, took, delays, failed, unanswered = _burst(sessions, count)
        # The floor: the very body our client sent, posted to the sandbox directly, with as
        # many threads as the platform lane has.
        body = bench.stack.sandbox("GET", "state")["outbound"][-1]["body"]
        threads = bench.stack.platform_concurrency
        floor = _floor(bench, body, count, threads=threads)
        limited = _limited(sessions)
    finally:
        bench.stack.sandbox("POST", "faults", {"drop_rate": 0})
    bench.report.add(
        SECTION,
        "sends through the platform lane (rate limit off)",
        f"{count:,} in {took:.1f} s: {rate:,.0f} sends/s · {failed} failed"
        f" · {unanswered} without an answer",
        baseline=f"direct posts to the sandbox: {floor:,.0f} sends/s",
        ratio=rate / floor if floor else None,
        note=f"one thread-pool worker, {threads} threads; {CONVERSATIONS} conversations on "
        f"{len(CHANNELS)} channels; the baseline posts from {threads} threads; callbacks "
        "dropped in both; target >= 0.5 and >= 160 sends/s",
        sends=count,
        per_second=round(rate, 1),
        baseline_per_second=round(floor, 1),
        failed=failed,
        unanswered=unanswered,
    )
    bench.report.add(
        SECTION,
        "enqueue → accepted by the platform",
        f"p50 {ms(percentile(delays, 0.5))} · p99 {ms(percentile(delays, 0.99))}",
        note="all sends enqueued at once: the p99 is the whole burst's tail",
        p50_ms=round(percentile(delays, 0.5) * 1000, 1),
        p99_ms=round(percentile(delays, 0.99) * 1000, 1),
    )

    limited_rate, limited_took, limited_delays, limited_failed, limited_unanswered = limited
    per_channel = PER_CHANNEL
    allowed = per_channel * len(CHANNELS)
    bench.report.add(
        SECTION,
        f"sends with the rate limit on ({per_channel}/s on each of {len(CHANNELS)} numbers)",
        f"{LIMITED:,} in {limited_took:.1f} s: {limited_rate:,.0f} sends/s"
        f" · {limited_failed} failed · {limited_unanswered} without an answer",
        baseline=f"what the limits allow: {allowed} sends/s",
        ratio=limited_rate / allowed,
        note="the limit is the only brake when this is near 1 (it counts per calendar second, "
        "so a burst's first, partial second also gets a whole second's budget: up to one "
        f"second's worth more); p99 enqueue → accepted {ms(percentile(limited_delays, 0.99))}",
        sends=LIMITED,
        per_second=round(limited_rate, 1),
        baseline_per_second=allowed,
        failed=limited_failed,
        unanswered=limited_unanswered,
    )
