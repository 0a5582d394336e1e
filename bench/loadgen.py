"""An HTTP/1.1 load generator on asyncio streams: keep-alive connections, exact counts.

Light enough to share two cores with the server it measures (no HTTP library per request),
and it records every request: its latency, its status, or the error that ended it. Two modes:
closed loop (`concurrency` connections each sending as fast as answers come) and open loop
(`rate` requests per second on a schedule, whatever the answers do).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.report import percentile


@dataclass
class Sent:
    """What happened to one request."""

    started: float
    latency: float
    status: int  # 0 when no answer came
    key: str = ""


@dataclass
class LoadResult:
    requests: list[Sent] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def ok(self) -> int:
        return sum(1 for r in self.requests if 200 <= r.status < 300)

    @property
    def failed(self) -> int:
        return len(self.requests) - self.ok

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def p(self, share: float) -> float:
        return percentile([r.latency for r in self.requests if r.status], share)

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        statuses = Counter(str(r.status) for r in self.requests)
        return {
            "sent": len(self.requests),
            "ok": self.ok,
            "failed": self.failed,
            "statuses": dict(statuses),
            "errors": dict(self.errors),
            "seconds": round(self.elapsed, 3),
            "per_second": round(self.rate, 1),
            "p50_ms": round(self.p(0.5) * 1000, 2),
            "p99_ms": round(self.p(0.99) * 1000, 2),
        }


Body = tuple[str, bytes]  # (key, body): the key names the request in the results


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, head: bytes, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(head + body)
        await self.writer.drain()
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _head(url: str, extra_headers: dict[str, str], length: int) -> bytes:
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *(f"{name}: {value}" for name, value in extra_headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _one(
    connection: _Connection, url: str, headers: dict[str, str], item: Body, result: LoadResult
) -> None:
    key, body = item
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(
            connection.request(_head(url, headers, len(body)), body), timeout=30
        )
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        connection.close()
        result.errors[type(exc).__name__] += 1
        status = 0
    result.requests.append(Sent(started, time.perf_counter() - started, status, key))


async def closed_loop(
    url: str,
    bodies: Iterator[Body],
    *,
    concurrency: int,
    duration: float,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Keep `concurrency` requests in flight for `duration` seconds (or until bodies run out)."""
    parts = urlsplit(url)
    result = LoadResult()
    deadline = time.perf_counter() + duration
    extra = headers or {}

    async def worker() -> None:
        connection = _Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            while time.perf_counter() < deadline:
                item = next(bodies, None)
                if item is None:
                    return
                await _one(connection, url, extra, item, result)
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - began
    return result


async def open_loop(
    url: str,
    bodies: Iterator[Body],
    *,
    rate: float,
    count: int,
    headers: dict[str, str] | None = None,
    connections: int = 64,
    on_send: Callable[[str, float], None] | None = None,
) -> LoadResult:
    """Send `count` requests at `rate` per second on a fixed schedule."""
    parts = urlsplit(url)
    result = LoadResult()
    extra = headers or {}
    pool: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(_Connection(parts.hostname or "127.0.0.1", parts.port or 80))

    async def send(item: Body) -> None:
        connection = await pool.get()
        try:
            if on_send is not None:
                on_send(item[0], time.time())
            await _one(connection, url, extra, item, result)
        finally:
            pool.put_nowait(connection)

    began = time.perf_counter()
    tasks = []
    for index in range(count):
        item = next(bodies, None)
        if item is None:
            break
        delay = began + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(item)))
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - began
    while not pool.empty():
        pool.get_nowait().close()
    return result
