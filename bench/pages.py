"""Stage 5: the agent pages at scale (session list, a long thread, search).

The inbox is seeded at 1/100 of the full size and measured, then grown to full size and measured
again. Each page is timed over HTTP against the running server (p50, p99) and its SQL queries
are counted in this process with Django's test client; the figure that must hold is that the
query count is the same at both sizes. Times are read against the floor of any agent page: a
signed-in request that renders a tiny page (`/_bench/floor/`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import requests
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import Team, User
from bench.context import ADMIN_PASSWORD, ADMIN_USERNAME, Bench
from bench.report import ms, percentile
from bench.seed import (
    AGENT_PASSWORD,
    COMMON_WORD,
    RARE_WORD,
    SeedStep,
    Size,
    World,
    seed_to,
    seed_world,
    sizes,
)
from inbox.models import Label, Message
from integrations.models import Channel

SECTION = "5. Pages at scale"
FLOOR = "/_bench/floor/"
HTMX = {"HX-Request": "true", "HX-Target": "conversation"}
TARGET_P99 = 0.200


@dataclass(frozen=True)
class Page:
    """One request the benchmark times: who asks for what."""

    name: str
    who: str  # "agent" or "admin"
    path: str
    htmx: bool = False


@dataclass(frozen=True)
class Group:
    """Pages reported on one row (a view's filters, say); every page is measured."""

    name: str
    pages: tuple[Page, ...]
    # The target for list and thread pages: p99 under 200 ms at full size.
    target: float | None = TARGET_P99


@dataclass
class Measured:
    """A page's timings (seconds) and SQL query count at one size."""

    times: list[float] = field(default_factory=list)
    queries: int = 0

    @property
    def p50(self) -> float:
        return percentile(self.times, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.times, 0.99)


def groups_for(world: World, size: Size) -> list[Group]:
    """Return every page the stage measures, grouped as the table reports them."""
    support = Channel.objects.get(account=world.account, name="WhatsApp Support")
    team = Team.objects.get(pk=world.teams[0].pk)
    label = Label.objects.get(name="refund")
    thread = world.thread
    newest = list(
        Message.objects.filter(session=thread)
        .order_by("-sent_at", "-id")
        .values_list("pk", flat=True)[: size.thread]
    )
    # The first "older" link a reader follows (the same message at every size), and one from
    # the middle of the thread.
    first_older = newest[min(39, len(newest) - 1)]
    middle = newest[len(newest) // 2]
    s = f"/s/{thread.pk}/"
    return [
        *_list_groups(support, team, label, thread.contact.phone),
        Group("Thread page `/s/<id>/`, the long thread", (Page("thread", "agent", s),)),
        Group("Conversation pane (htmx)", (Page("conversation", "agent", s, htmx=True),)),
        Group(
            "Older messages: first page back, mid-thread",
            (
                Page("first older", "agent", f"{s}older/?before={first_older}"),
                Page("mid-thread", "agent", f"{s}older/?before={middle}"),
            ),
        ),
    ]


def _list_groups(support: Channel, team: Team, label: Label, phone: str) -> list[Group]:
    """The inbox page and the list: views, filters, sorts, the last page and searches."""
    return [
        Group("Inbox page `/` (agent)", (Page("inbox", "agent", "/"),)),
        Group(
            "Inbox page `/` and list, all sessions (superuser)",
            (
                Page("inbox", "admin", "/"),
                Page("all, any status", "admin", "/list/?status=any"),
            ),
        ),
        Group(
            "List views: mine, unassigned, my teams, all (agent)",
            tuple(
                Page(view, "agent", f"/list/?view={view}")
                for view in ("mine", "unassigned", "teams", "all")
            ),
        ),
        Group(
            "Status filters: open, pending, resolved, closed, any (agent)",
            tuple(
                Page(status, "agent", f"/list/?status={status}")
                for status in ("open", "pending", "resolved", "closed", "any")
            ),
        ),
        Group(
            "Filters: channel, medium, team, label (agent)",
            (
                Page("channel", "agent", f"/list/?channel={support.pk}"),
                Page("medium", "agent", "/list/?medium=sms"),
                Page("team", "agent", f"/list/?team={team.pk}"),
                Page("label", "agent", f"/list/?label={label.pk}&status=any"),
            ),
        ),
        Group(
            "Sorts: longest waiting, window closing (agent)",
            (
                Page("waiting", "agent", "/list/?sort=waiting"),
                Page("window", "agent", "/list/?sort=window"),
            ),
        ),
        Group(
            "List, last page, any status (agent)",
            (Page("last page", "agent", "/list/?status=any&page=100000"),),
        ),
        Group(
            "Search: contact name, phone (agent)",
            (
                Page("name", "agent", "/list/?status=any&q=Garc%C3%ADa"),
                Page("phone", "agent", f"/list/?status=any&q={phone[-7:]}"),
            ),
            target=None,
        ),
        Group(
            f"Search: a rare word in messages, “{RARE_WORD}” (agent)",
            (Page("rare word", "agent", f"/list/?status=any&q={RARE_WORD}"),),
            target=None,
        ),
        Group(
            f"Search: a common word in messages, “{COMMON_WORD}” (agent, superuser)",
            (
                Page("agent", "agent", f"/list/?status=any&q={COMMON_WORD}"),
                Page("superuser", "admin", f"/list/?status=any&q={COMMON_WORD}"),
            ),
            target=None,
        ),
    ]


def _signed_in(base: str, username: str, password: str) -> requests.Session:
    """Return an HTTP session signed in through the sign-in form, as a browser does."""
    http = requests.Session()
    form = http.get(f"{base}/login/", timeout=30)
    form.raise_for_status()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, "no CSRF token on the sign-in page"
    answer = http.post(
        f"{base}/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token[1]},
        headers={"Referer": f"{base}/login/"},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code == 302, f"sign-in as {username} failed: {answer.status_code}"
    return http


@dataclass(frozen=True)
class Sampling:
    """How often each page is asked for: `warm` untimed, then `timed` timed requests, or
    fewer (not under `least`) once a page has taken `budget` seconds."""

    warm: int
    timed: int
    least: int
    budget: float


SAMPLING = Sampling(warm=2, timed=30, least=10, budget=1.5)
# A smoke run: each page once (the query counts are still compared).
QUICK_SAMPLING = Sampling(warm=0, timed=1, least=1, budget=0.0)


def _time(
    base: str, clients: dict[str, requests.Session], pages: list[Page], sampling: Sampling
) -> dict[Page, list[float]]:
    """Time the pages in interleaved rounds, as `sampling` says.

    Rounds spread whatever else the machine does over all pages alike; the budget keeps a
    slow page (a search through a hundred thousand messages) from taking the run's minutes.
    """
    times: dict[Page, list[float]] = {page: [] for page in pages}
    active = list(pages)
    for round_ in range(sampling.warm + sampling.timed):
        for page in list(active):
            http = clients[page.who]
            began = time.perf_counter()
            answer = http.get(base + page.path, headers=HTMX if page.htmx else None, timeout=60)
            elapsed = time.perf_counter() - began
            if answer.status_code != 200:
                raise RuntimeError(f"{page.path} answered {answer.status_code}")
            if round_ < sampling.warm:
                continue
            times[page].append(elapsed)
            if len(times[page]) >= sampling.least and sum(times[page]) >= sampling.budget:
                active.remove(page)
    return times


def count_queries(client: Client, page: Page) -> int:
    """Return how many SQL queries the page takes, asked in this process."""
    headers = HTMX if page.htmx else None
    client.get(page.path, headers=headers)  # the same state the timed requests see
    with CaptureQueriesContext(connection) as queries:
        answer = client.get(page.path, headers=headers)
    if answer.status_code != 200:
        raise RuntimeError(f"{page.path} answered {answer.status_code} in process")
    return len(queries.captured_queries)


def measure(
    bench: Bench,
    world: World,
    size: Size,
    sampling: Sampling,
    clients: dict[str, requests.Session],
) -> tuple[Measured, dict[tuple[str, str], Measured], list[Group]]:
    """Return the floor's and every page's timings and query counts at the current size."""
    groups = groups_for(world, size)
    pages = [page for group in groups for page in group.pages]
    floor_page = Page("floor", "agent", FLOOR)
    times = _time(bench.web_url, clients, [floor_page, *pages], sampling)
    local = {"agent": Client(), "admin": Client()}
    local["agent"].force_login(world.agent)
    local["admin"].force_login(User.objects.get(username=ADMIN_USERNAME))
    results = {
        (group.name, page.name): Measured(times[page], count_queries(local[page.who], page))
        for group in groups
        for page in group.pages
    }
    return Measured(times[floor_page]), results, groups


def _queries_text(counts: Iterable[int]) -> str:
    values = sorted(set(counts))
    if len(values) == 1:
        return f"{values[0]} queries"
    return f"{values[0]}–{values[-1]} queries"


def _pooled(measured: list[Measured]) -> Measured:
    return Measured([t for m in measured for t in m.times], max(m.queries for m in measured))


def run(bench: Bench) -> None:
    """Seed at 1/100 and at full size; time and count the queries of every page at each."""
    small, full = sizes(bench.quick)
    sampling = QUICK_SAMPLING if bench.quick else SAMPLING
    world = seed_world()
    clients = {
        "agent": _signed_in(bench.web_url, world.agent.username, AGENT_PASSWORD),
        "admin": _signed_in(bench.web_url, ADMIN_USERNAME, ADMIN_PASSWORD),
    }
    floors: dict[str, Measured] = {}
    measured: dict[str, dict[tuple[str, str], Measured]] = {}
    groups: list[Group] = []
    for label, size in (("1/100", small), ("full", full)):
        # The seed locks the inbox tables; a worker still applying earlier stages' callbacks
        # (late receipts) would deadlock with it, and would skew the timings besides.
        bench.drain(timeout=900)
        time.sleep(1.0)  # the sandbox's last receipts are at most this late
        bench.drain(timeout=60)
        bench.log(f"seeding to {size}")
        step = seed_to(world, size)
        _report_seed(bench, label, step)
        bench.log(
            f"measuring pages at {label} size ({sampling.warm} warm-up and up to"
            f" {sampling.timed} timed requests each)"
        )
        floors[label], measured[label], groups = measure(bench, world, size, sampling, clients)
        floor = floors[label]
        bench.report.add(
            SECTION,
            f"Floor `/_bench/floor/` (signed in), {label}",
            f"p50 {ms(floor.p50)} · p99 {ms(floor.p99)}",
            note="the baseline of every page below at this size",
            size=label,
            p50_ms=round(floor.p50 * 1000, 2),
            p99_ms=round(floor.p99 * 1000, 2),
        )
    for group in groups:
        _report_group(bench, group, floors, measured)


def _report_seed(bench: Bench, label: str, step: SeedStep) -> None:
    rows = ", ".join(
        f"{count:,} {table.removeprefix('inbox_')}" for table, count in step.rows.items()
    )
    bench.report.add(
        SECTION,
        f"Seed to {label} size ({step.size.sessions:,} sessions)",
        f"added {step.sessions:,} sessions, {step.messages:,} messages in {step.seconds:.1f} s",
        note=f"COPY; thread {step.size.thread:,} messages; rows added: {rows}",
        size=label,
        seconds=round(step.seconds, 2),
        sessions=step.size.sessions,
        messages=step.size.messages,
        thread=step.size.thread,
        rows_added=step.rows,
    )


def _report_group(
    bench: Bench,
    group: Group,
    floors: dict[str, Measured],
    measured: dict[str, dict[tuple[str, str], Measured]],
) -> None:
    pooled: dict[str, Measured] = {}
    for label in ("1/100", "full"):
        members = [measured[label][(group.name, page.name)] for page in group.pages]
        pool = pooled[label] = _pooled(members)
        floor = floors[label]
        slowest = max(group.pages, key=lambda p: measured[label][(group.name, p.name)].p99)
        notes = []
        if len(group.pages) > 1:
            worst = measured[label][(group.name, slowest.name)]
            notes.append(f"slowest: {slowest.name}, p99 {ms(worst.p99)}")
        if group.target is not None and label == "full":
            met = "met" if pool.p99 < group.target else "MISSED"
            notes.append(f"target p99 < {ms(group.target)}: {met}")
        note = "; ".join(notes)
        bench.report.add(
            SECTION,
            f"{group.name}, {label}",
            f"p50 {ms(pool.p50)} · p99 {ms(pool.p99)} · "
            + _queries_text(measured[label][(group.name, p.name)].queries for p in group.pages),
            baseline=f"floor p50 {ms(floor.p50)}",
            ratio=pool.p50 / floor.p50 if floor.p50 else None,
            note=note,
            size=label,
            p50_ms=round(pool.p50 * 1000, 2),
            p99_ms=round(pool.p99 * 1000, 2),
            pages={
                page.name: {
                    "path": page.path,
                    "who": page.who,
                    "p50_ms": round(measured[label][(group.name, page.name)].p50 * 1000, 2),
                    "p99_ms": round(measured[label][(group.name, page.name)].p99 * 1000, 2),
                    "queries": measured[label][(group.name, page.name)].queries,
                    "requests": len(measured[label][(group.name, page.name)].times),
                }
                for page in group.pages
            },
        )
    grew = [
        f"{page.name} {small.queries}→{big.queries}"
        for page in group.pages
        if (small := measured["1/100"][(group.name, page.name)]).queries
        != (big := measured["full"][(group.name, page.name)]).queries
    ]
    small_pool, full_pool = pooled["1/100"], pooled["full"]
    growth = full_pool.p99 / small_pool.p99 if small_pool.p99 else None
    median_growth = full_pool.p50 / small_pool.p50 if small_pool.p50 else None
    verdict = "queries equal" if not grew else "QUERY COUNT GREW: " + ", ".join(grew)
    bench.report.add(
        SECTION,
        f"{group.name}: full vs 1/100",
        f"p99 {ms(full_pool.p99)} vs {ms(small_pool.p99)}"
        + (f" (p50 ×{median_growth:.2f})" if median_growth is not None else "")
        + f" · {verdict}",
        baseline=f"1/100 p99 {ms(small_pool.p99)}",
        ratio=growth,
        note="ratio: p99 at full size / p99 at 1/100",
        queries_equal=not grew,
        query_growth=grew,
        p99_ratio=round(growth, 3) if growth is not None else None,
        p50_ratio=round(median_growth, 3) if median_growth is not None else None,
    )
