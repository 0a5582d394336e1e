"""Stage 8: a whole team online: pages and the webhook with hundreds of open live streams.

The inbox page (p50/p99 over HTTP) and the webhook (answers/s over keep-alive connections) are
measured with no stream open, then again with STREAMS_PER_PROCESS open live streams (SSE) per
web process, each signed in. A stream holds no database connection while it waits, so the
ratios should stay near 1.0. Then one event is published and every stream must receive it:
a stream that failed to open, or stopped, counts as not live.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from bench.callbacks import Mix, encode
from bench.context import ADMIN_PASSWORD, ADMIN_USERNAME, Bench
from bench.loadgen import LoadResult, closed_loop
from bench.memory import process_tree
from bench.pages import _signed_in
from bench.report import ms, percentile
from inbox import live
from integrations.models import Channel

SECTION = "8. Open live streams"
PROBE = "bench.probe"


@dataclass(frozen=True)
class Sizes:
    streams_per_process: int
    quiet_seconds: float  # the last round leaves every stream this long without an event
    rounds: int  # without and with streams, alternately: a busy machine's drift hits both
    page_requests: int  # per round and side
    webhook_seconds: float  # per round and side
    webhook_concurrency: int


FULL = Sizes(
    streams_per_process=200,
    quiet_seconds=60.0,
    rounds=3,
    page_requests=30,
    webhook_seconds=3.0,
    webhook_concurrency=8,
)
QUICK = Sizes(
    streams_per_process=20,
    quiet_seconds=10.0,
    rounds=2,
    page_requests=15,
    webhook_seconds=2.0,
    webhook_concurrency=4,
)


def _pooled(results: list[LoadResult]) -> LoadResult:
    pooled = LoadResult()
    for result in results:
        pooled.requests.extend(result.requests)
        pooled.errors.update(result.errors)
        pooled.elapsed += result.elapsed
    return pooled


@dataclass
class Stream:
    """One agent's open EventSource, reduced to what the stage checks."""

    status: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    types: list[str] = field(default_factory=list)
    arrived: dict[str, list[float]] = field(default_factory=dict)  # type -> monotonic times
    ended: bool = False


async def _listen(url: str, cookie: str, stream: Stream) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Accept: text/event-stream\r\nCookie: sessionid={cookie}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status_line = (await reader.readline()).decode()
        stream.status = int(status_line.split(" ", 2)[1]) if status_line else 0
        if stream.status != 200:
            return
        while True:
            line = (await reader.readline()).decode()
            if not line:
                return
            if line.startswith("retry:"):
                stream.opened.set()
            elif line.startswith("event:"):
                kind = line[6:].strip()
                stream.types.append(kind)
                stream.arrived.setdefault(kind, []).append(time.monotonic())
    finally:
        stream.ended = True
        stream.opened.set()
        writer.close()


IDLE_SECONDS = 5.0


def web_cpu_seconds(bench: Bench) -> float:
    """Return the CPU time (user + system) the web processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(bench.stack.processes["web"].popen.pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


async def _idle_cpu(bench: Bench) -> float:
    """Return the web processes' share of one core over IDLE_SECONDS of nothing happening."""
    began, cpu = time.monotonic(), web_cpu_seconds(bench)
    await asyncio.sleep(IDLE_SECONDS)
    return (web_cpu_seconds(bench) - cpu) / (time.monotonic() - began)


def _inbox_times(base: str, http: requests.Session, count: int) -> list[float]:
    times = []
    for _ in range(count + 2):
        began = time.perf_counter()
        answer = http.get(f"{base}/", timeout=60)
        elapsed = time.perf_counter() - began
        if answer.status_code != 200:
            raise RuntimeError(f"the inbox page answered {answer.status_code}")
        times.append(elapsed)
    return times[2:]  # the first two warm up


def _webhook(bench: Bench, mix: Mix, sizes: Sizes) -> LoadResult:
    count = int(3000 * sizes.webhook_seconds)
    bodies = iter([(str(i), encode(mix.message())) for i in range(count)])
    return asyncio.run(
        closed_loop(
            bench.webhook_url(),
            bodies,
            concurrency=sizes.webhook_concurrency,
            duration=sizes.webhook_seconds,
            headers={"x-verify-token": bench.stack.verify_token},
        )
    )


async def _customer_writes(bench: Bench, mix: Mix, streams: list[Stream]) -> list[float]:
    """Post one customer message; return how long each stream took to show it (seconds)."""
    kind = "message.created"
    before = [len(s.arrived.get(kind, [])) for s in streams]
    began = time.monotonic()
    answer = await asyncio.to_thread(
        requests.post,
        bench.webhook_url(),
        data=encode(mix.message()),
        headers={"x-verify-token": bench.stack.verify_token, "content-type": "application/json"},
        timeout=60,
    )
    answer.raise_for_status()
    deadline = began + 60
    while time.monotonic() < deadline and not all(
        len(s.arrived.get(kind, [])) > n for s, n in zip(streams, before, strict=True)
    ):
        await asyncio.sleep(0.02)
    return [
        s.arrived[kind][n] - began if len(s.arrived.get(kind, [])) > n else float("inf")
        for s, n in zip(streams, before, strict=True)
    ]


async def _with_streams(
    bench: Bench,
    cookie: str,
    http: requests.Session,
    sizes: Sizes,
    mix: Mix,
    total: int,
    quiet: bool = False,
) -> tuple[list[Stream], list[float], LoadResult, float, float, tuple[list[float], list[float]]]:
    url = f"{bench.web_url}/live/events/"
    streams = [Stream() for _ in range(total)]
    tasks = []
    began = time.monotonic()
    for index, stream in enumerate(streams):
        tasks.append(asyncio.create_task(_listen(url, cookie, stream)))
        if index % 20 == 19:  # open them in waves, as a team signing in does
            await asyncio.gather(*(s.opened.wait() for s in streams[: index + 1]))
    await asyncio.wait_for(asyncio.gather(*(s.opened.wait() for s in streams)), timeout=120)
    opening = time.monotonic() - began
    latency: tuple[list[float], list[float]] = ([], [])
    try:
        if quiet:  # a message at once, then one after every stream was left quiet
            at_once = await _customer_writes(bench, mix, streams)
            await asyncio.sleep(sizes.quiet_seconds)
            latency = (at_once, await _customer_writes(bench, mix, streams))
        idle = await _idle_cpu(bench)  # streams open, nothing happening
        page_times = await asyncio.to_thread(_inbox_times, bench.web_url, http, sizes.page_requests)
        webhook = await asyncio.to_thread(_webhook, bench, mix, sizes)
        channel = await asyncio.to_thread(
            lambda: Channel.objects.filter(account=bench.account).values_list("pk", flat=True)[0]
        )
        await asyncio.to_thread(live.send, [live.Event(PROBE, session=0, channel=channel)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(PROBE in s.types for s in streams):
            await asyncio.sleep(0.1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return streams, page_times, webhook, opening, idle, latency


@dataclass
class _Measured:
    """What the stage measured, for the report."""

    total: int
    streams: list[Stream]
    opening: float
    quiet_idle: float
    busy_idle: float
    quiet_pages: list[float]
    busy_pages: list[float]
    quiet_webhook: LoadResult
    busy_webhook: LoadResult
    at_once: list[float]
    after_quiet: list[float]


def run(bench: Bench) -> None:
    sizes = QUICK if bench.quick else FULL
    processes = bench.stack.web_workers
    if "worker" not in bench.stack.processes:
        bench.stack.start_worker()
    measured = _measure(bench, sizes, sizes.streams_per_process * processes)
    label = f"{sizes.streams_per_process * processes} streams open"
    label += f" ({sizes.streams_per_process} per web process × {processes})"
    _report_streams(bench, sizes, label, measured)
    _report_load(bench, sizes, label, measured)


def _measure(bench: Bench, sizes: Sizes, total: int) -> _Measured:
    """Rounds of pages and webhooks without streams, then with `total` streams open; the last
    round also leaves the streams quiet before a customer writes."""
    http = _signed_in(bench.web_url, ADMIN_USERNAME, ADMIN_PASSWORD)
    cookie = http.cookies["sessionid"]
    mix = Mix("bs", 50, tenant=bench.tenant(), media_base=bench.stack.sandbox_url)

    quiet_pages: list[float] = []
    busy_pages: list[float] = []
    quiet_hooks: list[LoadResult] = []
    busy_hooks: list[LoadResult] = []
    streams: list[Stream] = []
    openings: list[float] = []
    at_once: list[float] = []
    after_quiet: list[float] = []
    # Untimed: every customer of the mix writes once, and what follows their first message
    # (new sessions, their tasks) is done before anything is timed.
    _webhook(bench, mix, sizes)
    bench.drain(timeout=300)
    quiet_idle = asyncio.run(_idle_cpu(bench))
    busy_idle = 0.0
    for round_ in range(sizes.rounds):
        bench.log(f"round {round_ + 1}: no stream open ({sizes.page_requests} pages, webhook)")
        quiet_pages += _inbox_times(bench.web_url, http, sizes.page_requests)
        quiet_hooks.append(_webhook(bench, mix, sizes))
        bench.drain(timeout=300)
        bench.log(f"round {round_ + 1}: {total} streams open ({sizes.streams_per_process} each)")
        last = round_ == sizes.rounds - 1
        if last:
            bench.log(f"then quiet for {sizes.quiet_seconds:.0f} s, and a customer writes")
        round_streams, pages, hook, opening, idle, measured = asyncio.run(
            _with_streams(bench, cookie, http, sizes, mix, total, quiet=last)
        )
        if last:
            at_once, after_quiet = measured
        streams += round_streams
        busy_pages += pages
        busy_hooks.append(hook)
        openings.append(opening)
        busy_idle = max(busy_idle, idle)
        bench.drain(timeout=300)
    quiet_webhook, busy_webhook = _pooled(quiet_hooks), _pooled(busy_hooks)
    opening = max(openings)
    total *= sizes.rounds

    return _Measured(
        total=total,
        streams=streams,
        opening=opening,
        quiet_idle=quiet_idle,
        busy_idle=busy_idle,
        quiet_pages=quiet_pages,
        busy_pages=busy_pages,
        quiet_webhook=quiet_webhook,
        busy_webhook=busy_webhook,
        at_once=at_once,
        after_quiet=after_quiet,
    )


def _report_streams(bench: Bench, sizes: Sizes, label: str, m: _Measured) -> None:
    """Streams opened and live, the web processes' idle CPU with them open."""
    streams, total, opening = m.streams, m.total, m.opening
    busy_idle, quiet_idle = m.busy_idle, m.quiet_idle
    opened = sum(1 for s in streams if s.status == 200)
    live_ = sum(1 for s in streams if s.status == 200 and PROBE in s.types)
    errors = sum(1 for s in streams if "live.error" in s.types)
    bench.report.add(
        SECTION,
        "streams opened, and live (received a test event)",
        f"{opened:,} of {total:,} opened · {live_:,} live · {errors} live.error",
        note=("EVERY STREAM LIVE" if live_ == total else "STREAMS NOT LIVE")
        + f"; {sizes.rounds} rounds; opening {total // sizes.rounds} took up to {opening:.1f} s",
        streams=total,
        opened=opened,
        live=live_,
        errors=errors,
        statuses=sorted({s.status for s in streams}),
        open_seconds=round(opening, 2),
    )
    bench.report.add(
        SECTION,
        f"web processes' CPU while nothing happens, {label}",
        f"{busy_idle:.1%} of a core",
        baseline=f"no stream open: {quiet_idle:.1%}",
        note=f"over {IDLE_SECONDS:.0f} s; streams wait on Redis and ping every few seconds",
        cpu_share=round(busy_idle, 4),
        baseline_cpu_share=round(quiet_idle, 4),
    )


def _report_load(bench: Bench, sizes: Sizes, label: str, m: _Measured) -> None:
    """A message after a quiet spell, pages and the webhook with the streams open."""
    at_once, after_quiet = m.at_once, m.after_quiet
    quiet_pages, busy_pages = m.quiet_pages, m.busy_pages
    quiet_webhook, busy_webhook = m.quiet_webhook, m.busy_webhook
    reached = sum(1 for t in after_quiet if t != float("inf"))
    late_p50, late_max = percentile(after_quiet, 0.5), max(after_quiet)
    soon_p50, soon_max = percentile(at_once, 0.5), max(at_once)
    bench.report.add(
        SECTION,
        f"A customer message after {sizes.quiet_seconds:.0f} s with no event, {label}",
        f"{reached:,} of {len(after_quiet):,} streams showed it · p50 {ms(late_p50)}"
        f" · slowest {ms(late_max)}",
        baseline=f"right after opening: p50 {ms(soon_p50)} · slowest {ms(soon_max)}",
        ratio=late_p50 / soon_p50 if soon_p50 else None,
        note="webhook POST → the worker applies it → every open stream has message.created",
        quiet_seconds=sizes.quiet_seconds,
        reached=reached,
        p50_ms=round(late_p50 * 1000, 2),
        max_ms=round(late_max * 1000, 2) if reached == len(after_quiet) else None,
        baseline_p50_ms=round(soon_p50 * 1000, 2),
        baseline_max_ms=round(soon_max * 1000, 2) if soon_max != float("inf") else None,
    )
    quiet_p50, busy_p50 = percentile(quiet_pages, 0.5), percentile(busy_pages, 0.5)
    quiet_p99, busy_p99 = percentile(quiet_pages, 0.99), percentile(busy_pages, 0.99)
    bench.report.add(
        SECTION,
        f"Inbox page `/` (superuser), {label}",
        f"p50 {ms(busy_p50)} · p99 {ms(busy_p99)}",
        baseline=f"no stream open: p50 {ms(quiet_p50)} · p99 {ms(quiet_p99)}",
        ratio=busy_p50 / quiet_p50 if quiet_p50 else None,
        note=f"ratio of p50; of p99: {busy_p99 / quiet_p99:.2f}" if quiet_p99 else "",
        p50_ms=round(busy_p50 * 1000, 2),
        p99_ms=round(busy_p99 * 1000, 2),
        baseline_p50_ms=round(quiet_p50 * 1000, 2),
        baseline_p99_ms=round(quiet_p99 * 1000, 2),
        requests=len(busy_pages),
    )
    bench.report.add(
        SECTION,
        f"Webhook, {sizes.webhook_concurrency} concurrent, {label}",
        f"{busy_webhook.rate:,.0f} answers/s · p99 {ms(busy_webhook.p(0.99))}"
        f" · {busy_webhook.failed} errors",
        baseline=f"no stream open: {quiet_webhook.rate:,.0f} answers/s"
        f" · p99 {ms(quiet_webhook.p(0.99))} · {quiet_webhook.failed} errors",
        ratio=busy_webhook.rate / quiet_webhook.rate if quiet_webhook.rate else None,
        note="customer messages; the worker processes them meanwhile",
        webhook=busy_webhook.summary(),
        baseline_run=quiet_webhook.summary(),
    )
