"""Stage 3: a callback received → the message on an agent's live stream (SSE)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from urllib.parse import urlsplit

from django.test import Client

from accounts.models import User
from bench.callbacks import Mix, encode
from bench.context import ADMIN_USERNAME, Bench
from bench.loadgen import LoadResult, open_loop
from bench.report import ms, percentile
from inbox import live
from inbox.models import Message
from integrations.models import Channel

SECTION = "3. End to end"
RATE = 200.0  # callbacks per second, the figure
SETTLED_AFTER = 5.0  # seconds into the burst: by then nearly every customer has written once


class LiveStream:
    """An agent's browser, reduced to its EventSource: what arrived, and when."""

    def __init__(self, url: str, cookie: str) -> None:
        self.url = url
        self.cookie = cookie
        self.arrived: list[tuple[float, dict[str, object]]] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        parts = urlsplit(self.url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Accept: text/event-stream\r\nCookie: sessionid={self.cookie}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        try:
            data = ""
            while True:
                line = (await reader.readline()).decode()
                if not line:
                    return
                if line.startswith("retry:"):
                    self.ready.set()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif line.strip() == "" and data:
                    # Chunked framing lines (sizes) are neither "data:" nor blank: ignored.
                    with contextlib.suppress(ValueError):
                        self.arrived.append((time.time(), json.loads(data)))
                    data = ""
        finally:
            writer.close()

    async def __aenter__(self) -> LiveStream:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.ready.wait(), timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def _cookie() -> str:
    client = Client()
    client.force_login(User.objects.get(username=ADMIN_USERNAME))
    return client.cookies["sessionid"].value


async def _floor(stream: LiveStream, channel_id: int, count: int) -> list[float]:
    """Publish events straight to the stream; return each one's delay until it arrived."""
    published: dict[int, float] = {}
    for index in range(count):
        marker = -1 - index
        published[marker] = time.time()
        await asyncio.to_thread(
            live.send, [live.Event("bench.floor", session=0, channel=channel_id, message=marker)]
        )
        await asyncio.sleep(0.02)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = [e for _, e in stream.arrived if e.get("type") == "bench.floor"]
        if len(seen) >= count:
            break
        await asyncio.sleep(0.05)
    return [
        at - published[int(event["message"])]  # type: ignore[call-overload]
        for at, event in stream.arrived
        if event.get("type") == "bench.floor" and event.get("message") in published
    ]


def run(bench: Bench) -> None:
    seconds = 3.0 if bench.quick else 15.0
    count = int(RATE * seconds)
    mix = Mix(
        "be", 40 if bench.quick else 200, tenant=bench.tenant(), media_base=bench.stack.sandbox_url
    )
    items = []
    for _ in range(count):
        body = mix.message()
        items.append((body["messages"][0]["id"], encode(body)))
    if "worker" not in bench.stack.processes:
        bench.stack.start_worker()
    channel = Channel.objects.filter(account=bench.account).first()
    sent_at: dict[str, float] = {}

    cookie = _cookie()

    async def scenario() -> tuple[list[float], LoadResult, list[tuple[float, dict[str, object]]]]:
        async with LiveStream(f"{bench.web_url}/live/events/", cookie) as stream:
            floor = await _floor(stream, channel.pk if channel else 0, 20 if bench.quick else 100)
            stream.arrived.clear()
            result = await open_loop(
                bench.webhook_url(),
                iter(items),
                rate=RATE,
                count=count,
                headers={"x-verify-token": bench.stack.verify_token},
                on_send=lambda key, at: sent_at.__setitem__(key, at),
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                created = sum(1 for _, e in stream.arrived if e.get("type") == live.MESSAGE_CREATED)
                if created >= count:
                    break
                await asyncio.sleep(0.2)
            return floor, result, list(stream.arrived)

    floor, result, arrived = asyncio.run(scenario())
    first_seen: dict[int, float] = {}
    for at, event in arrived:
        if event.get("type") == live.MESSAGE_CREATED and isinstance(event.get("message"), int):
            first_seen.setdefault(int(event["message"]), at)  # type: ignore[call-overload]
    external = dict(
        Message.objects.filter(pk__in=first_seen, account=bench.account).values_list(
            "pk", "external_id"
        )
    )
    latencies = [first_seen[pk] - sent_at[eid] for pk, eid in external.items() if eid in sent_at]
    missing = count - len(latencies)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    # Every customer is new at the start, and a first message (new contact, session, timeline)
    # costs several times a returning customer's: the tail after the first seconds, apart.
    began = min(sent_at.values(), default=0.0)
    settled = [
        first_seen[pk] - sent_at[eid]
        for pk, eid in external.items()
        if eid in sent_at and sent_at[eid] >= began + SETTLED_AFTER
    ]
    settled_p99 = percentile(settled, 0.99)
    f50, f99 = percentile(floor, 0.5), percentile(floor, 0.99)
    bench.report.add(
        SECTION,
        f"callback → agent's live stream at {RATE:.0f}/s",
        f"p50 {ms(p50)} · p99 {ms(p99)} · {missing} missing of {count:,}",
        baseline=f"stream floor (publish → SSE): p50 {ms(f50)} · p99 {ms(f99)}",
        ratio=p50 / f50 if f50 else None,
        note=("p99 under 1 s" if p99 < 1 else "P99 OVER 1 S")
        + f"; sent after the first {SETTLED_AFTER:.0f} s (customers all known): p99 "
        + f"{ms(settled_p99)}; webhook p99 {ms(result.p(0.99))}",
        settled_p99_ms=round(settled_p99 * 1000, 1),
        rate=RATE,
        callbacks=count,
        seen=len(latencies),
        p50_ms=round(p50 * 1000, 1),
        p99_ms=round(p99 * 1000, 1),
        floor_p50_ms=round(f50 * 1000, 2),
        floor_p99_ms=round(f99 * 1000, 2),
        webhook=result.summary(),
    )
