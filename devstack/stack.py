"""Start and stop the real processes: the ASGI web server, the Celery workers, beat and the sandbox.

The same set as `make run` and docker-compose: a prefork worker for inbound callbacks and
housekeeping (the default queue), a thread-pool worker for platform calls (`<queue>.platform`)
and beat (the sweeps and reapers).

Used by the end-to-end tests (tests/e2e) and the benchmark (bench/). Every process runs in its own process group and
is killed with its children on `stop()` (and at interpreter exit), so nothing is left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from devstack.waiting import PATIENCE_SECONDS, wait_for

ROOT = Path(__file__).resolve().parents[1]
# The Celery workers of the production set, by the name of their process here.
WORKERS = ("worker", "platform", "media")
PYTHON = sys.executable


def free_port() -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(eq=False)
class Process:
    """One started process and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


_running: set[Process] = set()


def _kill_group(process: Process, grace: float = 8.0, *, hard: bool = False) -> None:
    try:
        pgid = os.getpgid(process.popen.pid)
    except ProcessLookupError:
        return
    if not hard:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=grace)
    # Children (Celery's pool) may outlive their parent: end the whole group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=5)


@atexit.register
def _kill_everything() -> None:
    for process in list(_running):
        _kill_group(process, grace=2)
        _running.discard(process)


def group_alive(pid: int) -> bool:
    """Say whether any process of the group led by `pid` still exists."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Stack:
    """The production process set on loopback, against the given PostgreSQL and Redis."""

    database_url: str
    redis_url: str
    api_key: str = "e2e-api-key-0123456789"
    verify_token: str = "e2e-verify-token-0123456789"  # noqa: S105 - a loopback-only secret
    web_workers: int = 1
    worker_concurrency: int = 2
    platform_concurrency: int = 16
    beat: bool = True
    sandbox_args: Sequence[str] = ("--no-customers", "--receipt-delays", "0.2,0.5,0.9")
    # The MessageWhiz sandbox (a platform we poll), started beside the XMS one.
    mw_sandbox_args: Sequence[str] = ("--no-customers", "--status-delays", "0.2,0.5,0.9")
    mw_email: str = "e2e@example.com"
    mw_password: str = "e2e-password-0123456789"  # noqa: S105 - a loopback-only secret
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    processes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.var_dir = Path(tempfile.mkdtemp(prefix="switchboard-e2e-"))
        self.log_dir = self.log_dir or self.var_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.web_port = free_port()
        self.sandbox_port = free_port()
        self.mw_sandbox_port = free_port()
        self.queue = f"e2e-{uuid.uuid4().hex[:10]}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def mw_sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.mw_sandbox_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.base",
            DJANGO_DEBUG="0",
            DJANGO_SECURE_COOKIES="0",
            DJANGO_HTTPS="0",  # plain HTTP on loopback: no redirect to HTTPS, no HSTS
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            CELERY_BROKER_URL=self.redis_url,
            CELERY_TASK_DEFAULT_QUEUE=self.queue,
            CELERY_TASK_ALWAYS_EAGER="0",
            PUBLIC_BASE_URL=self.web_url,
            SWITCHBOARD_VAR_DIR=str(self.var_dir),
            PYTHONUNBUFFERED="1",
        )
        # Secrets must match the test process, which encrypts the rows these processes read.
        for name in ("DJANGO_SECRET_KEY", "FIELD_ENCRYPTION_KEYS"):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, args: Sequence[str]) -> Process:
        assert self.log_dir is not None
        log = self.log_dir / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(  # noqa: S603 - our own commands
            list(args),
            cwd=ROOT,
            env=self.env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()
        process = Process(name=name, popen=popen, log=log)
        self.processes[name] = process
        _running.add(process)
        return process

    def _manage(self, *args: str) -> None:
        subprocess.run(  # noqa: S603
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> Stack:
        self._manage("collectstatic", "--noinput", "-v0")
        self._spawn("web", self._web_args())
        self.start_sandbox()
        self.start_mw_sandbox()
        try:
            self.start_worker()
            if self.beat:
                self.start_beat()
            wait_for(
                lambda: requests.get(f"{self.web_url}/healthz", timeout=1).ok, what="web server"
            )
        except TimeoutError:
            self.stop()
            raise
        return self

    def _web_args(self) -> list[str]:
        web = [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1"]
        web += ["--port", str(self.web_port), "--workers", str(self.web_workers), "--no-access-log"]
        return web

    def restart_web(self) -> None:
        """Stop the web server and start it again on the same port (a deploy, a crash)."""
        old = self.processes.pop("web", None)
        if old is not None:
            _kill_group(old)
            _running.discard(old)
        self._spawn("web", self._web_args())
        wait_for(lambda: requests.get(f"{self.web_url}/healthz", timeout=1).ok, what="web server")

    @property
    def platform_queue(self) -> str:
        return f"{self.queue}.platform"

    def start_worker(self, lanes: Sequence[str] = WORKERS) -> None:
        """Start the Celery workers (every lane, or those named) and wait until they take tasks.

        "worker": inbound callbacks and housekeeping, prefork; "platform": platform calls, a
        thread pool; "media": media downloads, a thread pool (config/settings/base.py,
        CELERY_TASK_ROUTES).
        """
        for lane in lanes:
            running = self.processes.get(lane)
            if running is not None and running.alive():
                continue
            log = (self.log_dir or self.var_dir) / f"{lane}.log"
            offset = log.stat().st_size if log.exists() else 0
            args = [PYTHON, "-m", "celery", "-A", "config", "worker"]
            if lane == "media":
                # A lower CPU priority, as in Procfile.dev and compose: files yield to texts.
                args = ["nice", "-n", "10", *args]
            if lane == "platform":
                args += ["-Q", self.platform_queue, "--pool", "threads"]
                args += ["--concurrency", str(self.platform_concurrency)]
            elif lane == "media":
                args += ["-Q", f"{self.queue}.media", "--pool", "threads", "--concurrency", "4"]
            else:
                args += ["-Q", self.queue, "--concurrency", str(self.worker_concurrency)]
            args += ["--loglevel", "INFO", "--without-mingle", "--without-gossip"]
            args += ["--hostname", f"{lane}-{self.queue}@%h"]
            self._spawn(lane, args)

            def ready(log: Path = log, offset: int = offset) -> bool:
                with log.open("rb") as handle:
                    handle.seek(offset)
                    return b"ready." in handle.read()

            wait_for(ready, what=f"celery {lane} worker")

    def stop_worker(self, lanes: Sequence[str] = WORKERS, *, kill: bool = False) -> None:
        """Stop the Celery workers (and their pools), as when they crash or are redeployed.

        `kill`: SIGKILL at once, as when a machine or the OOM killer takes them: no warm
        shutdown, nothing acknowledged or handed back.
        """
        for lane in lanes:
            worker = self.processes.pop(lane, None)
            if worker is not None:
                _kill_group(worker, grace=0 if kill else 8.0, hard=kill)
                _running.discard(worker)

    def start_beat(self) -> None:
        """Start Celery beat: the sweeps and reapers that recover lost work."""
        args = [PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"]
        args += ["--schedule", str(self.var_dir / "celerybeat-schedule")]
        self._spawn("beat", args)

    def start_sandbox(self, args: Sequence[str] | None = None) -> None:
        """(Re)start the sandbox, with other arguments if given."""
        old = self.processes.pop("sandbox", None)
        if old is not None:
            _kill_group(old)
            _running.discard(old)
        self._spawn(
            "sandbox",
            [
                PYTHON,
                "manage.py",
                "sandbox",
                "--port",
                str(self.sandbox_port),
                "--api-key",
                self.api_key,
                "--verify-token",
                self.verify_token,
                *(self.sandbox_args if args is None else args),
            ],
        )
        wait_for(lambda: requests.get(f"{self.sandbox_url}/healthz", timeout=1).ok, what="sandbox")

    def start_mw_sandbox(self, args: Sequence[str] | None = None) -> None:
        """(Re)start the MessageWhiz sandbox, with other arguments if given (its state is
        in memory: a restart is a new platform with the same seeded channels)."""
        old = self.processes.pop("mwsandbox", None)
        if old is not None:
            _kill_group(old)
            _running.discard(old)
        self._spawn(
            "mwsandbox",
            [
                PYTHON,
                "manage.py",
                "mwsandbox",
                "--port",
                str(self.mw_sandbox_port),
                "--email",
                self.mw_email,
                "--password",
                self.mw_password,
                *(self.mw_sandbox_args if args is None else args),
            ],
        )
        wait_for(
            lambda: requests.get(f"{self.mw_sandbox_url}/_sandbox/state", timeout=1).ok,
            what="MessageWhiz sandbox",
        )

    def stop(self) -> None:
        for process in list(self.processes.values()):
            _kill_group(process)
            _running.discard(process)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Talking to the sandbox -----------------------------------------------------------------

    def sandbox(self, method: str, path: str, body: Any = None) -> Any:
        """Call the sandbox's control API (`/_sandbox/...`) and return its JSON."""
        response = requests.request(
            method, f"{self.sandbox_url}/_sandbox/{path}", json=body, timeout=PATIENCE_SECONDS
        )
        response.raise_for_status()
        return response.json()

    def account(self, name: str) -> Any:
        """Create an XMS account at the sandbox, its callback URL registered there.

        Needs Django set up against the same database (the test or benchmark process).
        """
        from integrations.models import ProviderAccount
        from integrations.services.accounts import account_webhook_register

        account = ProviderAccount.objects.create(
            kind="xms",
            name=name,
            base_url=f"{self.sandbox_url}/xms",
            api_key=self.api_key,
            verify_token=self.verify_token,
        )
        account_webhook_register(account)
        return account

    def mw(self, method: str, path: str, body: Any = None) -> Any:
        """Call the MessageWhiz sandbox's control API (`/_sandbox/...`) and return its JSON."""
        response = requests.request(
            method, f"{self.mw_sandbox_url}/_sandbox/{path}", json=body, timeout=PATIENCE_SECONDS
        )
        response.raise_for_status()
        return response.json()

    def mw_account(self, name: str, *, options: dict[str, Any] | None = None) -> Any:
        """Create a MessageWhiz account at its sandbox, its channels active and synced, its
        templates synced (polling needs nothing registered).

        Needs Django set up against the same database (the test or benchmark process).
        """
        from integrations.models import ProviderAccount
        from integrations.services.channels import channels_sync
        from integrations.services.templates import templates_sync

        account = ProviderAccount.objects.create(
            kind="messagewhiz",
            name=name,
            base_url=self.mw_sandbox_url,
            api_id=self.mw_email,
            api_key=self.mw_password,
            options={"activate_new_channels": True, **(options or {})},
        )
        channels_sync(account)
        templates_sync(account, trigger="e2e")
        return account

    def logs(self) -> str:
        """Return the tail of every process's output, for a failing test's report."""
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes.values())


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[Stack]:
    """Start a Stack for the duration of a `with` block."""
    stack = Stack(**kwargs)
    with stack:
        yield stack


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
