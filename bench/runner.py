"""Set up a run (own database, production processes), run the stages, report."""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from bench.memory import MemorySampler
    from bench.report import Report
    from devstack import Stack
    from integrations.models import ProviderAccount

ROOT = Path(__file__).resolve().parents[1]
# Stage name -> (module in bench/, function taking the Bench), in the order they run.
STAGE_FUNCTIONS = {
    "ingest": ("ingest", "run_ingest"),
    "processing": ("ingest", "run_processing"),
    "e2e": ("e2e", "run"),
    "outbound": ("outbound", "run"),
    "media": ("media", "run"),
    "pages": ("pages", "run"),
    "sync": ("sync", "run"),
    "streams": ("streams", "run"),
    "polling": ("polling", "run"),
}
STAGES = tuple(STAGE_FUNCTIONS)


def _bench_database_url() -> str:
    """Return the run's own database: BENCH_DATABASE_URL, or DATABASE_URL's with `_bench`."""
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        return explicit
    base = os.environ.get("DATABASE_URL", "")
    if base.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(base)
        name = unquote(parts.path.lstrip("/")) or "switchboard"
        return urlunsplit(parts._replace(path="/" + quote(f"{name}_bench")))
    user = getpass.getuser()
    return f"postgres://{quote(user)}@127.0.0.1:5432/switchboard_bench_{user}"


def _recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        connection = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise SystemExit(
            f"make bench needs PostgreSQL: could not connect to {parts.hostname}:{parts.port} "
            f"({exc}). Set BENCH_DATABASE_URL or DATABASE_URL to a server where the user may "
            "create databases."
        ) from exc
    with connection:
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
            connection.execute(f"CREATE DATABASE {quoted}")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SystemExit(
                f"make bench recreates the database {name!r} at each run, and this user may not "
                f"({exc}). Drop it as its owner, or point BENCH_DATABASE_URL at another name."
            ) from exc


def _check_redis(url: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
    except redis.RedisError as exc:
        raise SystemExit(f"make bench needs Redis at {url}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run (<2 min)")
    parser.add_argument(
        "--only", action="append", choices=STAGES, help="run only this stage (repeatable)"
    )
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"), help="where JSON goes")
    args = parser.parse_args(argv)
    stages = tuple(args.only or STAGES)
    began = time.monotonic()

    database_url = _bench_database_url()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    print(f"database {database_url.split('@')[-1]} (recreated), redis {redis_url} (flushed)")
    _recreate_database(database_url)
    _check_redis(redis_url)

    stack = _stack(database_url, redis_url, Path(args.out) / "logs")
    os.environ.update(stack.env())
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    _prepare_database()

    from bench.context import Bench
    from bench.memory import MemorySampler
    from bench.report import Report, machine

    report = Report(quick=args.quick, machine=machine())
    runs: dict[str, Callable[[Bench], None]] = {
        name: getattr(importlib.import_module(f"bench.{module}"), function)
        for name, (module, function) in STAGE_FUNCTIONS.items()
        if name in stages
    }
    with stack:
        idle = MemorySampler(stack)
        idle.sample()
        with MemorySampler(stack) as memory:
            bench = Bench(quick=args.quick, stack=stack, report=report, account=_account(stack))
            for name in stages:
                with bench.stage(name):
                    runs[name](bench)
        _memory_figures(report, idle, memory)
    report.seconds = time.monotonic() - began
    print()
    print(report.table())
    path = report.write(Path(args.out))
    print(f"\n{len(report.figures)} figures in {report.seconds:.0f} s; JSON: {path}")
    return 0


def _stack(database_url: str, redis_url: str, log_dir: Path) -> Stack:
    """The real processes the benchmark measures, configured as in production."""
    # This process and the servers share one environment: production settings, the run's
    # own database, queue and secrets, and the baseline endpoints mounted.
    from cryptography.fernet import Fernet

    os.environ.update(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
    )
    sys.path.insert(0, str(ROOT))
    from devstack import Stack

    stack = Stack(
        database_url=database_url,
        redis_url=redis_url,
        web_workers=2,  # the Dockerfile's production setting on this 2-core machine
        worker_concurrency=2,  # docker-compose's worker
        sandbox_args=("--no-customers", "--receipt-delays", "0.2,0.4,0.6"),
        extra_env={
            "BENCH_ENDPOINTS": "1",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "SEND_RATE_LIMIT_PER_SECOND": "0",  # the issue: outbound with the rate limit off
            "IMPORT_SESSION_HISTORY": "0",  # bench sessions have no history at the sandbox
            # The normal path: workers process callbacks. The web process's fallback is for
            # worker outages, and stage 1 stops the worker on purpose, to measure the webhook
            # alone; with the fallback on, the web process would process them instead.
            "WEBHOOK_PROCESS_IN_WEB": "0",
            "LOG_LEVEL": "WARNING",
        },
        log_dir=log_dir,
    )
    return stack


def _prepare_database() -> None:
    from django.db import connection

    from accounts.models import User
    from bench.context import ADMIN_PASSWORD, ADMIN_USERNAME
    from bench.views import RAW_TABLE

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {RAW_TABLE} (id bigserial PRIMARY KEY, body text NOT NULL, "
            "received_at timestamptz NOT NULL)"
        )
    User.objects.create_superuser(ADMIN_USERNAME, password=ADMIN_PASSWORD)


def _account(stack: Stack) -> ProviderAccount:
    from integrations.models import Channel
    from integrations.services.channels import channels_sync

    account: ProviderAccount = stack.account("Bench")
    channels_sync(account)
    # An admin activates synced channels before agents reply on them.
    Channel.objects.filter(account=account).update(is_active=True)
    return account


def _memory_figures(report: Report, idle: MemorySampler, memory: MemorySampler) -> None:
    for role in memory.roles:
        peak = memory.peak_total[role] / 1024
        at_rest = idle.peak_total[role] / 1024
        report.add(
            "7. Memory",
            f"{role}: peak RSS, all {memory.processes[role]} processes",
            f"{peak:.0f} MiB",
            baseline=f"{at_rest:.0f} MiB at start",
            ratio=peak / at_rest if at_rest else None,
            note=f"largest single process {memory.peak_process[role] / 1024:.0f} MiB",
            peak_mib=round(peak, 1),
            start_mib=round(at_rest, 1),
            largest_process_mib=round(memory.peak_process[role] / 1024, 1),
        )
