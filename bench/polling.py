"""Stage 10: a platform we poll (MessageWhiz): what an idle cycle costs, and the lag.

MessageWhiz calls no one (spec §4.3). Beat queues a poll of the account every
POLL_INTERVAL_SECONDS; the platform worker lists customers by `last_message_time`, newest
first, down to the watermark less MW_POLL_OVERLAP_SECONDS, reads the changed customers'
histories and stores each page as a WebhookEvent; the inbound worker's drain applies it like a
callback. Everything here runs through those production processes, and the sandbox counts
every API call it answers, so calls are counted at the far end.

First the idle cycle, at 100 customers and at 10,000. The 100 each wrote once in the past hour
(the sandbox's `sent`, spread evenly) and a new account reads them; then the API calls of a few
polls with nothing new are counted, per poll (polls by the account's PollCursor: an idle poll
stores one page). Then 9,900 more customers: those who will write in the lag run wrote once
in the past hour, the others longer ago than a new account reads (MW_BACKFILL_HOURS), and a second account
reads the recent ones (the backfill figure: how long, what it cost, how the polls and drains
went); its idle polls are counted the same way. The two must be equal: an idle cycle reads one
page of customers however many exist.

Then the lag: customers of a pool of 5,000 (those who write are known to the inbox) write at
the sandbox at 50 messages/s, open loop; each message's time from the inbound call that wrote
it until it is on a signed-in agent's live stream (SSE). The bar is POLL_INTERVAL_SECONDS + 1 s
at p99; the baseline is the same through the XMS webhook path in the same run (returning
customers of the XMS sandbox writing at the same rate). Every message the sandbox accepted must
be in the inbox once: lost and duplicated are counted by message id. Where the time goes is
read from the rows: each poll's claim on the cursor (watched), each stored page (received,
claimed by a drain, processed) and the stream's arrival. Last, what an idle cycle costs right
after the run stopped.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from django.conf import settings
from django.db import connection
from django.db.models import Max

from bench.callbacks import CHANNEL_ID
from bench.context import Bench
from bench.e2e import LiveStream, _cookie
from bench.loadgen import LoadResult, open_loop
from bench.report import ms, percentile
from devstack import wait_for
from inbox import live
from inbox.models import Message
from integrations.models import PollCursor, ProviderAccount, WebhookEvent
from integrations.services.accounts import account_webhook_register

SECTION = "10. Polling"
RATE = 50.0  # customer messages per second
WRITERS = 5_000  # the customers they are spread over
IDLE_SIZES = (100, 10_000)
SPREAD_SECONDS = 3600.0  # the one message each customer wrote: their times spread this long
MARK = "poll bench"  # every text this stage writes starts with it
CUSTOMERS_ROUTE = "GET /api/customers"
HISTORY_ROUTE = "GET /api/messages/{identifier}"
INBOUND_CHUNK = 1_000  # customer messages per call of the sandbox's control API


@dataclass(frozen=True)
class Sizes:
    seconds: float  # the polled customers write this long
    baseline_seconds: float  # the webhook path's customers write this long
    baseline_customers: int
    idle_cycles: int  # counted at each size
    after_cycles: int  # counted after the run stopped
    patience: float  # seconds a backfill may take


FULL = Sizes(
    seconds=60.0,
    baseline_seconds=20.0,
    baseline_customers=300,
    idle_cycles=12,
    after_cycles=4,
    patience=600.0,
)
QUICK = Sizes(
    seconds=15.0,
    baseline_seconds=5.0,
    baseline_customers=100,
    idle_cycles=3,
    after_cycles=3,
    patience=300.0,
)


# --- The account's cursor, watched ------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The PollCursor as read at `at` (epoch seconds): who holds it, when it last stored."""

    at: float
    claimed: float | None
    polled: float | None


@dataclass(frozen=True)
class Cycle:
    """One poll: from its claim on the cursor to its release (None: still holding it)."""

    start: float
    end: float | None

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


def poll_cycles(samples: Sequence[Sample]) -> list[Cycle]:
    """Return the polls the samples saw, from each claim (its exact time, the row's) to the
    first sample after its release.

    A claim that changes while held is the lease renewing it (every CLAIM_RENEW_SECONDS), not
    a new poll: polls of one account run one at a time, seconds apart.
    """
    cycles: list[Cycle] = []
    start: float | None = None
    for sample in samples:
        if sample.claimed is None:
            if start is not None:
                cycles.append(Cycle(start, sample.at))
                start = None
        elif start is None:
            start = sample.claimed
    if start is not None:
        cycles.append(Cycle(start, None))
    return cycles


def pages_stored(samples: Sequence[Sample]) -> int:
    """Count how often `polled_at` moved: once per page fetched, so once per idle poll."""
    values = [s.polled for s in samples]
    return sum(1 for before, after in itertools.pairwise(values) if after != before)


class CursorWatch:
    """Read an account's PollCursor every few tens of milliseconds, in a thread of its own."""

    def __init__(self, account: ProviderAccount, interval: float = 0.05) -> None:
        self.account = account
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rows = PollCursor.objects.filter(account=self.account)
        try:
            while not self._stop.is_set():
                row = rows.values_list("claimed_at", "polled_at").first()
                claimed, polled = row if row else (None, None)
                self.samples.append(
                    Sample(
                        time.time(),
                        claimed.timestamp() if claimed else None,
                        polled.timestamp() if polled else None,
                    )
                )
                time.sleep(self.interval)
        finally:
            connection.close()

    def __enter__(self) -> CursorWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def mark(self) -> int:
        return len(self.samples)

    def pages_since(self, mark: int) -> int:
        return pages_stored(self.samples[max(mark - 1, 0) :])

    def wait_pages(self, count: int, what: str) -> int:
        """Wait until `count` more pages are stored (idle polls, one page each); return the
        mark at the last of them."""
        mark = self.mark()
        patience = count * float(settings.POLL_INTERVAL_SECONDS) * 3 + 30
        wait_for(
            lambda: self.pages_since(mark) >= count, timeout=patience, interval=0.02, what=what
        )
        return self.mark()


# --- The sandbox's customers ------------------------------------------------------------------


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for index in range(0, len(items), size):
        yield items[index : index + size]


def customers_make(bench: Bench, count: int, prefix: str) -> list[str]:
    """Create customers at the MessageWhiz sandbox (none has written yet); return their phones."""
    made = bench.stack.mw("POST", "customers/bulk", {"count": count, "prefix": prefix})
    return [customer["phone"] for customer in made["customers"]]


def history_write(bench: Bench, phones: Sequence[str], *, newest: float) -> None:
    """Have each customer write one text, the platform's `sent` times spread evenly over the
    SPREAD_SECONDS that end at `newest` (epoch seconds, not after now)."""
    step = SPREAD_SECONDS / max(len(phones), 1)
    items = [
        {
            "customer": phone,
            "medium": "sms",
            "text": f"{MARK} hello from {phone}",
            "sent": _iso(newest - index * step),
        }
        for index, phone in enumerate(phones)
    ]
    for chunk in _chunks(items, INBOUND_CHUNK):
        bench.stack.mw("POST", "inbound", {"messages": chunk})


def lag_plan(pool: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """Return who writes each of `count` messages: customers of `pool`, at random."""
    return [rng.choice(pool) for _ in range(count)]


def calls_read(bench: Bench) -> dict[str, int]:
    calls: dict[str, int] = bench.stack.mw("GET", "calls")["calls"]
    return calls


def calls_line(calls: dict[str, int]) -> str:
    """Say what the calls were: customers pages, histories, anything else by its route."""
    others = {k: v for k, v in calls.items() if k not in (CUSTOMERS_ROUTE, HISTORY_ROUTE)}
    words = [
        f"{calls.get(CUSTOMERS_ROUTE, 0):,} customers pages",
        f"{calls.get(HISTORY_ROUTE, 0):,} histories",
    ]
    words += [f"{n:,} {route}" for route, n in sorted(others.items())]
    return ", ".join(words)


# --- Stored pages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A polled page as stored: received (the poll stored it), claimed by a drain, processed
    (epoch seconds), and the platform message ids it carried."""

    received: float
    claimed: float | None
    processed: float | None
    message_ids: tuple[str, ...]


def pages_read(account: ProviderAccount, since: float) -> list[Page]:
    """The account's polled pages stored since `since`, oldest first."""
    events = WebhookEvent.objects.filter(
        account=account, path="poll", received_at__gte=datetime.fromtimestamp(since, UTC)
    ).order_by("received_at", "pk")
    pages = []
    for received, claimed, processed, body in events.values_list(
        "received_at", "claimed_at", "processed_at", "body"
    ):
        messages = json.loads(body).get("messages") or []
        pages.append(
            Page(
                received.timestamp(),
                claimed.timestamp() if claimed else None,
                processed.timestamp() if processed else None,
                tuple(str(m.get("message_id")) for m in messages),
            )
        )
    return pages


def apply_cost(pages: Sequence[Page]) -> float:
    """Seconds of applying per message, by drain batch: the pages a drain claimed together
    (one claim time) are applied one after another, so a batch lasts from its claim to its
    last page processed."""
    batches: dict[float, list[Page]] = {}
    for page in pages:
        if page.claimed is not None and page.processed is not None:
            batches.setdefault(page.claimed, []).append(page)
    seconds = sum(max(p.processed or 0 for p in b) - claimed for claimed, b in batches.items())
    messages = sum(len(p.message_ids) for b in batches.values() for p in b)
    return seconds / messages if messages else float("nan")


def _spread(values: Sequence[float]) -> str:
    return f"p50 {ms(percentile(values, 0.5))} · max {ms(max(values, default=float('nan')))}"


# --- Idle cycles and the backfill -------------------------------------------------------------


@dataclass
class Idle:
    customers: int  # at the sandbox, all of them
    cycles: int
    calls: dict[str, int]
    about: str = ""  # who the customers are

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def per_cycle(self) -> float:
        return self.total / self.cycles if self.cycles else float("nan")


@dataclass
class Backfill:
    messages: int  # customer messages waiting at the sandbox
    stored: int  # of them in the inbox when it settled (or patience ran out)
    seconds: float  # from the account's creation to the last message row
    calls: dict[str, int]
    cycles: list[Cycle]
    pages: list[Page]

    def line(self) -> str:
        """Say how the polls and the drains went."""
        starts = [c.start for c in self.cycles]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        sizes = [len(p.message_ids) for p in self.pages]
        waited = [p.claimed - p.received for p in self.pages if p.claimed is not None]
        return (
            f"{len(self.cycles)} polls begun, the gaps between them {_spread(gaps)}; "
            f"{len(self.pages)} pages of p50 {percentile(sizes, 0.5):.0f} messages, each waiting"
            f" for a drain {_spread(waited)}, applied at {ms(apply_cost(self.pages))} a message"
        )


def idle_count(bench: Bench, watch: CursorWatch, cycles: int) -> Idle:
    """Count the sandbox's API calls over `cycles` polls with nothing new.

    The counter is reset just after a poll stored its page and read just after the last
    counted one stored its own: the next poll is a whole interval away on either side.
    """
    watch.wait_pages(1, "a poll")
    bench.stack.mw("POST", "calls/reset")
    mark = watch.mark()
    watch.wait_pages(cycles, f"{cycles} idle polls")
    calls = calls_read(bench)
    customers = int(bench.stack.mw("GET", "state")["customers"])
    return Idle(customers, watch.pages_since(mark), calls)


def backfill(bench: Bench, name: str, expected: int, patience: float) -> tuple[Any, Backfill]:
    """Connect a new account to the sandbox and wait until its first polls have brought in
    the `expected` customer messages it reads back; return it and what that took."""
    bench.stack.mw("POST", "calls/reset")
    began = time.time()
    account = bench.stack.mw_account(name)
    rows = Message.objects.filter(account=account, direction=Message.Direction.INBOUND)
    with CursorWatch(account) as watch:
        try:
            wait_for(
                lambda: rows.count() >= expected,
                timeout=patience,
                interval=0.5,
                what="the backfill",
            )
        except TimeoutError:
            bench.log(f"   backfill: {rows.count():,} of {expected:,} after {patience:.0f} s")
    last = rows.aggregate(last=Max("created_at"))["last"]
    seconds = last.timestamp() - began if last else float("nan")
    done = Backfill(
        expected,
        rows.count(),
        seconds,
        calls_read(bench),
        poll_cycles(watch.samples),
        pages_read(account, began),
    )
    bench.log(f"   backfill of {expected:,}: {done.stored:,} in {seconds:.1f} s; {done.line()}")
    return account, done


def account_retire(account: ProviderAccount) -> None:
    """Stop polling an account (an admin deactivates it), and wait for its last poll to end."""
    ProviderAccount.objects.filter(pk=account.pk).update(is_active=False)
    cursor = PollCursor.objects.filter(account=account, claimed_at__isnull=False)
    wait_for(lambda: not cursor.exists(), timeout=120, interval=0.1, what="the last poll")


# --- Lag --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What became of the messages customers wrote: lags, and how many arrived how often."""

    lags: list[float]
    accepted: int  # by the platform (its own count)
    stored: int  # distinct message ids in our inbox
    rows: int  # message rows in our inbox
    streamed: int  # of those on the agent's live stream

    @property
    def lost(self) -> int:
        return self.accepted - self.stored

    @property
    def duplicated(self) -> int:
        return self.rows - self.stored

    def p(self, share: float) -> float:
        return percentile(self.lags, share)

    def line(self) -> str:
        return (
            f"p50 {ms(self.p(0.5))} · p99 {ms(self.p(0.99))} · max {ms(max(self.lags, default=0))}"
            f" · {len(self.lags):,} of {self.accepted:,}"
        )

    def data(self) -> dict[str, Any]:
        return {
            "p50_ms": round(self.p(0.5) * 1000, 1),
            "p99_ms": round(self.p(0.99) * 1000, 1),
            "max_ms": round(max(self.lags, default=0) * 1000, 1),
            "count": len(self.lags),
            "accepted": self.accepted,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "not_streamed": self.stored - self.streamed,
        }


def first_arrivals(arrived: Sequence[tuple[float, dict[str, Any]]]) -> dict[int, float]:
    """When each message first showed on the stream (its `message.created`)."""
    first: dict[int, float] = {}
    for at, event in arrived:
        message = event.get("message")
        if event.get("type") == live.MESSAGE_CREATED and isinstance(message, int):
            first.setdefault(message, at)
    return first


def outcome(
    sent_at: dict[str, float],
    rows: Sequence[tuple[int, str, str]],
    arrived: Sequence[tuple[float, dict[str, Any]]],
    accepted: int,
) -> Outcome:
    """Match our rows (pk, platform message id, the key the load generator sent it as) to
    the stream's arrivals and to when each was written."""
    first = first_arrivals(arrived)
    lags = [first[pk] - sent_at[key] for pk, _, key in rows if pk in first and key in sent_at]
    stored = {external_id for _, external_id, _ in rows}
    streamed = {external_id for pk, external_id, _ in rows if pk in first}
    return Outcome(lags, accepted, len(stored), len(rows), len(streamed))


async def _written(
    stream: LiveStream, url: str, items: list[tuple[str, bytes]], patience: float
) -> tuple[LoadResult, dict[str, float]]:
    """Have customers write at RATE, open loop; wait until as many messages are on the stream
    (or patience runs out)."""
    sent_at: dict[str, float] = {}
    stream.arrived.clear()
    result = await open_loop(
        url,
        iter(items),
        rate=RATE,
        count=len(items),
        on_send=lambda key, at: sent_at.__setitem__(key, at),
    )
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline and len(first_arrivals(stream.arrived)) < result.ok:
        await asyncio.sleep(0.2)
    return result, sent_at


def write_through(
    bench: Bench, url: str, items: list[tuple[str, bytes]], patience: float
) -> tuple[LoadResult, dict[str, float], list[tuple[float, dict[str, Any]]]]:
    """Open an agent's live stream, then have customers write (see `_written`)."""
    cookie = _cookie()

    async def scenario() -> tuple[LoadResult, dict[str, float], list[tuple[float, Any]]]:
        async with LiveStream(f"{bench.web_url}/live/events/", cookie) as stream:
            result, sent_at = await _written(stream, url, items, patience)
            return result, sent_at, list(stream.arrived)

    return asyncio.run(scenario())


class XmsCustomers:
    """Customers of the XMS sandbox on the bench channel, each of whom has written once: the
    webhook path's baseline, returning customers like the polled ones."""

    def __init__(self, bench: Bench, count: int) -> None:
        self.bench = bench
        self.http = requests.Session()
        # An earlier stage (sync) restarts the XMS sandbox, which forgets where its callbacks
        # go: register them again, as an admin would after the platform lost it.
        account_webhook_register(bench.account)
        self.keys = [f"bpx{index}" for index in range(count)]
        for index, key in enumerate(self.keys):
            self._post(
                "customers", {"key": key, "channelId": CHANNEL_ID, "phone": f"96{index:08d}"}
            )
        ids = [f"bpx-hello-{key}" for key in self.keys]
        for key, message_id in zip(self.keys, ids, strict=True):
            self._post("inbound", self.body(key, message_id))
        rows = Message.objects.filter(account=bench.account, external_id__in=ids)
        wait_for(lambda: rows.count() >= len(ids), timeout=120, what="the XMS customers")

    def _post(self, route: str, body: dict[str, Any]) -> None:
        url = f"{self.bench.stack.sandbox_url}/_sandbox/{route}"
        self.http.post(url, json=body, timeout=10).raise_for_status()

    @staticmethod
    def body(key: str, message_id: str) -> dict[str, Any]:
        return {"customer": key, "type": "text", "text": f"{MARK} {message_id}", "id": message_id}

    def run(self, seconds: float) -> Outcome:
        rng = random.Random(11)
        count = int(RATE * seconds)
        items = [
            (f"bpx-{n}", json.dumps(self.body(rng.choice(self.keys), f"bpx-{n}")).encode())
            for n in range(count)
        ]
        url = f"{self.bench.stack.sandbox_url}/_sandbox/inbound"
        result, sent_at, arrived = write_through(self.bench, url, items, patience=30)
        rows = Message.objects.filter(account=self.bench.account, external_id__in=sent_at)
        found = [(pk, eid, eid) for pk, eid in rows.values_list("pk", "external_id")]
        return outcome(sent_at, found, arrived, result.ok)


@dataclass
class Polled:
    """The polled run: its outcome, the polls that carried it and the pages they stored."""

    outcome: Outcome
    cycles: list[Cycle]
    calls: dict[str, int]
    pages: list[Page]
    traced: list[Traced] = field(default_factory=list)


def polled_run(bench: Bench, account: Any, plan: list[str]) -> Polled:
    """Have customers the inbox knows write at the MessageWhiz sandbox at RATE, one message
    each of `plan` (who writes it)."""
    items = []
    for n, phone in enumerate(plan):
        body = {"messages": [{"customer": phone, "medium": "sms", "text": f"{MARK} bp{n}"}]}
        items.append((f"bp{n}", json.dumps(body).encode()))
    url = f"{bench.stack.mw_sandbox_url}/_sandbox/inbound"
    before = bench.stack.mw("GET", "state")["counters"].get("inbound", 0)
    bench.stack.mw("POST", "calls/reset")
    began = time.time()
    patience = 3 * float(settings.POLL_INTERVAL_SECONDS) + 60
    with CursorWatch(account) as watch:
        result, sent_at, arrived = write_through(bench, url, items, patience)
    calls = calls_read(bench)
    accepted = bench.stack.mw("GET", "state")["counters"].get("inbound", 0) - before
    bench.log(f"   polled: {result.ok:,} written ({result.summary()['statuses']})")
    rows = Message.objects.filter(account=account, body__startswith=f"{MARK} bp")
    found = [
        (pk, eid, body.removeprefix(f"{MARK} "))
        for pk, eid, body in rows.values_list("pk", "external_id", "body")
    ]
    done = outcome(sent_at, found, arrived, accepted)
    cycles = [c for c in poll_cycles(watch.samples) if c.end is None or c.end >= began]
    pages = pages_read(account, began - 1)
    traced = trace(sent_at, found, first_arrivals(arrived), cycles, pages)
    return Polled(done, cycles, calls, pages, traced)


# --- Where the time goes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Traced:
    """One polled message's way (epoch seconds; None where not seen): written, the poll that
    found it began, its page stored, claimed by a drain, applied, the message on the stream."""

    written: float
    poll_began: float | None
    stored: float
    claimed: float | None
    applied: float | None
    arrived: float | None
    page: int = 1  # which of its poll's pages carried it (1: the first stored)
    pages: int = 1  # how many pages that poll stored


STEPS = (
    "waiting for a poll",
    "polling (listing, histories)",
    "page waiting for a drain",
    "page applied (claimed → processed)",
    "published → on the stream",
)


def steps(traced: Sequence[Traced]) -> dict[str, list[float]]:
    """Split each message's lag into the steps of STEPS (a message written while the poll
    that found it was already under way waited for none)."""
    out: dict[str, list[float]] = {name: [] for name in STEPS}
    for t in traced:
        if t.poll_began is not None:
            began = max(t.poll_began, t.written)
            out[STEPS[0]].append(began - t.written)
            out[STEPS[1]].append(t.stored - began)
        if t.claimed is not None:
            out[STEPS[2]].append(t.claimed - t.stored)
            if t.applied is not None:
                out[STEPS[3]].append(t.applied - t.claimed)
        if t.applied is not None and t.arrived is not None:
            out[STEPS[4]].append(t.arrived - t.applied)
    return out


def slowest(traced: Sequence[Traced], share: float = 0.01) -> tuple[dict[str, float], int, int]:
    """The mean of each step over the slowest `share` of the messages that reached the
    stream; with how many they were and how many of them came in their poll's last page."""
    seen = sorted(
        (t for t in traced if t.arrived is not None), key=lambda t: t.written - (t.arrived or 0)
    )
    tail = seen[: max(1, math.ceil(len(seen) * share))] if seen else []
    means = {name: sum(values) / len(values) for name, values in steps(tail).items() if values}
    return means, len(tail), sum(1 for t in tail if t.page == t.pages)


def poll_began(cycles: Sequence[Cycle], stored: float) -> float | None:
    """The start of the poll that stored a page at `stored` (the last one begun before)."""
    starts = [c.start for c in cycles]
    index = bisect.bisect_right(starts, stored)
    return starts[index - 1] if index else None


def trace(
    sent_at: dict[str, float],
    rows: Sequence[tuple[int, str, str]],
    arrivals: dict[int, float],
    cycles: Sequence[Cycle],
    pages: Sequence[Page],
) -> list[Traced]:
    """Trace each message through the first page that carried it (a customer's history is
    read again from the overlap when they write again, so later pages repeat it)."""
    first: dict[str, Page] = {}
    by_poll: dict[float | None, list[float]] = {}
    for page in sorted(pages, key=lambda p: p.received):
        by_poll.setdefault(poll_began(cycles, page.received), []).append(page.received)
        for message_id in page.message_ids:
            first.setdefault(message_id, page)
    traced = []
    for pk, external_id, key in rows:
        carrier = first.get(external_id)
        if carrier is None or key not in sent_at:
            continue
        began = poll_began(cycles, carrier.received)
        siblings = by_poll[began]
        traced.append(
            Traced(
                sent_at[key],
                began,
                carrier.received,
                carrier.claimed,
                carrier.processed,
                arrivals.get(pk),
                siblings.index(carrier.received) + 1,
                len(siblings),
            )
        )
    return traced


# --- The report -------------------------------------------------------------------------------


def _report_idle(bench: Bench, small: Idle, large: Idle, filled: Backfill) -> None:
    for idle, against in ((small, None), (large, small)):
        equal = against is not None and idle.per_cycle == against.per_cycle
        bench.report.add(
            SECTION,
            f"idle poll cycle, {idle.customers:,} customers at the platform: API calls",
            f"{idle.per_cycle:.2f} calls per cycle ({idle.total:,} in {idle.cycles} cycles)",
            baseline=""
            if against is None
            else f"{against.customers:,} customers: {against.per_cycle:.2f} calls per cycle",
            ratio=None if against is None else idle.per_cycle / against.per_cycle,
            note=("" if against is None else ("EQUAL; " if equal else "NOT EQUAL; "))
            + f"counted by the sandbox: {calls_line(idle.calls)}; {idle.about}",
            customers=idle.customers,
            cycles=idle.cycles,
            calls=idle.total,
            per_cycle=round(idle.per_cycle, 3),
            by_route=idle.calls,
        )
    rate = filled.stored / filled.seconds if filled.seconds > 0 else float("nan")
    bench.report.add(
        SECTION,
        f"backfill: a new account reads the {filled.messages:,} customers who wrote in the past"
        " hour (each once, new to the inbox)",
        f"{filled.stored:,} of {filled.messages:,} in {filled.seconds:.1f} s: {rate:,.0f} messages/s"
        f" · {sum(filled.calls.values()):,} API calls",
        note=f"{filled.line()}; {calls_line(filled.calls)}; from the account's creation to the"
        " last message row",
        messages=filled.messages,
        stored=filled.stored,
        seconds=round(filled.seconds, 2),
        by_route=filled.calls,
    )


def _report_lag(bench: Bench, sizes: Sizes, polled: Polled, webhook: Outcome) -> None:
    done = polled.outcome
    interval = float(settings.POLL_INTERVAL_SECONDS)
    bar = interval + 1.0
    p99 = done.p(0.99)
    counted = (
        "NOTHING LOST, NOTHING TWICE"
        if not done.lost and not done.duplicated
        else f"LOST {done.lost}, DUPLICATED {done.duplicated}"
    )
    unstreamed = done.stored - done.streamed
    bench.report.add(
        SECTION,
        f"customer message at the platform → agent's live stream, polled: {RATE:.0f}/s over"
        f" {WRITERS:,} customers for {sizes.seconds:.0f} s",
        f"{done.line()} · {done.lost} lost · {done.duplicated} duplicated",
        baseline=f"the bar: poll interval + 1 s = {bar:.1f} s",
        ratio=p99 / bar,
        note=("p99 within the bar" if p99 <= bar else "P99 OVER THE BAR")
        + f"; {counted} (the sandbox's count against message ids in our inbox)"
        + (f"; {unstreamed} in the inbox but NOT ON THE STREAM" if unstreamed else ""),
        poll_interval_s=interval,
        rate=RATE,
        **done.data(),
    )
    bench.report.add(
        SECTION,
        f"the same, against the webhook path (XMS, {RATE:.0f}/s over "
        f"{sizes.baseline_customers} customers)",
        f"polled: p50 {ms(done.p(0.5))} · p99 {ms(p99)}",
        baseline=f"webhook: {webhook.line()}",
        ratio=done.p(0.5) / webhook.p(0.5) if webhook.lags else None,
        note=f"ratio of p50; of p99: {p99 / webhook.p(0.99):.1f}; webhook path lost "
        f"{webhook.lost}, duplicated {webhook.duplicated}; customer writes at its sandbox →"
        " callback → worker → stream",
        **{f"webhook_{key}": value for key, value in webhook.data().items()},
    )
    _report_steps(bench, polled)


def _report_steps(bench: Bench, polled: Polled) -> None:
    cycles = polled.cycles
    starts = [c.start for c in cycles]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    durations = [c.seconds for c in cycles if c.seconds is not None]
    by_step = steps(polled.traced)
    parts = [
        f"{name} {ms(percentile(values, 0.5))} / {ms(percentile(values, 0.99))}"
        for name, values in by_step.items()
    ]
    tail, count, last = slowest(polled.traced)
    pages = [p for p in polled.pages if p.claimed is not None and p.processed is not None]
    sizes = [len(p.message_ids) for p in pages]
    per_message = apply_cost(pages)
    listing = polled.calls.get(CUSTOMERS_ROUTE, 0)
    histories = polled.calls.get(HISTORY_ROUTE, 0)
    polls = max(len(cycles), 1)
    bench.report.add(
        SECTION,
        "where the polled lag goes (p50 / p99 of each step)",
        " · ".join(parts),
        note=f"the slowest {count} (1 %), mean of each step: "
        + ", ".join(f"{name} {ms(value)}" for name, value in tail.items())
        + f"; {last} of them in the last page their poll stored. {len(cycles)} polls, begun"
        f" every {ms(percentile(gaps, 0.5))} (p50; longest gap {ms(max(gaps, default=0))}),"
        f" each taking p50 {ms(percentile(durations, 0.5))} · max"
        f" {ms(max(durations, default=0))}, with {listing / polls:.1f} customers pages and"
        f" {histories / polls:.1f} histories; {len(pages)} pages of p50"
        f" {percentile(sizes, 0.5):.0f} messages, applied at {ms(per_message)} a message (by"
        f" drain batch) ({calls_line(polled.calls)})",
        steps_ms={
            name: {
                "p50": round(percentile(values, 0.5) * 1000, 1),
                "p99": round(percentile(values, 0.99) * 1000, 1),
                "max": round(max(values, default=0) * 1000, 1),
                "n": len(values),
            }
            for name, values in by_step.items()
        },
        slowest_ms={name: round(value * 1000, 1) for name, value in tail.items()},
        slowest_count=count,
        slowest_in_last_page=last,
        polls=len(cycles),
        poll_gap_p50_ms=round(percentile(gaps, 0.5) * 1000, 1),
        poll_gap_max_ms=round(max(gaps, default=0) * 1000, 1),
        poll_p50_ms=round(percentile(durations, 0.5) * 1000, 1),
        poll_max_ms=round(max(durations, default=0) * 1000, 1),
        pages=len(pages),
        page_messages_p50=percentile(sizes, 0.5),
        apply_ms_per_message=round(per_message * 1000, 2),
        by_route=polled.calls,
    )


def _report_after(bench: Bench, after: Idle, quiet: Idle) -> None:
    overlap = float(settings.MW_POLL_OVERLAP_SECONDS)
    bench.report.add(
        SECTION,
        f"idle poll cycle right after the {RATE:.0f}/s run stopped: API calls",
        f"{after.per_cycle:.2f} calls per cycle ({after.total:,} in {after.cycles} cycles)",
        baseline=f"{quiet.customers:,} customers, quiet: {quiet.per_cycle:.2f} calls per cycle",
        ratio=after.per_cycle / quiet.per_cycle,
        note=f"{calls_line(after.calls)}; the customers who wrote within the {overlap:.0f} s"
        " overlap before the newest message are listed again each cycle, until the watermark"
        f" has been quiet for twice the overlap ({2 * overlap:.0f} s; these cycles are the"
        " first after the run)",
        customers=after.customers,
        cycles=after.cycles,
        calls=after.total,
        per_cycle=round(after.per_cycle, 3),
        by_route=after.calls,
    )


def _about(idle: Idle, ours: int, wrote: str) -> str:
    seeded = idle.customers - ours
    return f"{ours:,} customers {wrote}" + (
        f"; the sandbox's {seeded} seeded customers never wrote" if seeded else ""
    )


# --- The stage --------------------------------------------------------------------------------


def run(bench: Bench) -> None:
    sizes = QUICK if bench.quick else FULL
    bench.stack.start_worker()
    rng = random.Random(12)
    small_phones = customers_make(bench, IDLE_SIZES[0], "1990")
    history_write(bench, small_phones, newest=time.time())
    first, _ = backfill(bench, "Bench MessageWhiz (100)", IDLE_SIZES[0], sizes.patience)
    with CursorWatch(first) as watch:
        small = idle_count(bench, watch, sizes.idle_cycles)
    small.about = _about(small, IDLE_SIZES[0], "each wrote once in the past hour")
    account_retire(first)

    # The other customers: those who write in the lag run wrote once in the past hour (a new
    # account reads them, so they are known); the rest longer ago than a new account
    # reads (MW_BACKFILL_HOURS), so they are only listed.
    rest = customers_make(bench, IDLE_SIZES[1] - IDLE_SIZES[0], "1991")
    plan = lag_plan(rng.sample(rest, WRITERS), int(RATE * sizes.seconds), rng)
    writers = set(plan)
    history_write(bench, [p for p in rest if p in writers], newest=time.time())
    day_ago = time.time() - (float(settings.MW_BACKFILL_HOURS) * 3600 + SPREAD_SECONDS)
    history_write(bench, [p for p in rest if p not in writers], newest=day_ago)
    expected = IDLE_SIZES[0] + len(writers)
    account, filled = backfill(bench, "Bench MessageWhiz", expected, sizes.patience)
    with CursorWatch(account) as watch:
        large = idle_count(bench, watch, sizes.idle_cycles)
    large.about = _about(
        large,
        IDLE_SIZES[1],
        f"each wrote once: {expected:,} in the past hour, {IDLE_SIZES[1] - expected:,} longer ago"
        " (older than a new account reads)",
    )
    _report_idle(bench, small, large, filled)
    bench.log(f"   idle: {small.per_cycle:.2f} and {large.per_cycle:.2f} calls per cycle")

    webhook = XmsCustomers(bench, sizes.baseline_customers).run(sizes.baseline_seconds)
    bench.log(f"   webhook path: {webhook.line()}")
    polled = polled_run(bench, account, plan)
    bench.log(f"   polled: {polled.outcome.line()}")
    _report_lag(bench, sizes, polled, webhook)
    with CursorWatch(account) as watch:
        after = idle_count(bench, watch, sizes.after_cycles)
    _report_after(bench, after, small)
    # Later stages (in a run that lists this one first) measure without a platform to poll.
    account_retire(account)
