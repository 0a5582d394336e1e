"""End to end, with real processes: a killed worker or a stopped Redis mid-burst loses no reply
and duplicates none, counted at the platform (the sandbox's own record of accepted sends).

No test here times anything: each waits for its condition within the suite's patience and
logs how long recovery took (the README quotes those figures).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from devstack import Stack, free_port, wait_for
from inbox.models import Message
from tests.e2e.test_outbound_e2e import customer_session, sandbox_sends

logger = logging.getLogger(__name__)
BURST = 50
UNSETTLED = (Message.Status.QUEUED, Message.Status.SENDING)
DELIVERED = (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ)


def burst(api: Any, session_id: int, tag: str) -> tuple[list[int], list[str]]:
    texts = [f"{tag} reply {index:02d}" for index in range(BURST)]
    answers = [api.post(f"sessions/{session_id}/messages/", {"body": text}) for text in texts]
    assert [a.status_code for a in answers] == [201] * BURST, [a.text for a in answers][:3]
    return [a.json()["id"] for a in answers], texts


def accepted_at_the_platform(stack: Stack, texts: list[str]) -> Counter[str]:
    wanted = set(texts)
    return Counter(s["text"] for s in sandbox_sends(stack) if s["text"] in wanted)


def settled(ids: list[int]) -> bool:
    return not Message.objects.filter(pk__in=ids, status__in=UNSETTLED).exists()


def assert_each_delivered_once(stack: Stack, ids: list[int], texts: list[str]) -> None:
    statuses = Counter(Message.objects.filter(pk__in=ids).values_list("status", flat=True))
    assert set(statuses) <= set(DELIVERED), statuses
    assert accepted_at_the_platform(stack, texts) == Counter(texts)  # each once, none lost
    assert not Message.objects.filter(pk__in=ids, external_id="").exists()


def allow_resend_after_the_evidence_window(account: Any) -> None:
    """Let the account send again what no evidence shows the platform has (off by default).

    A send the dead worker never got to the platform leaves no receipt and no history entry;
    the sandbox's history lists every send it accepted (no lag injected here), so sending
    again after the evidence window is safe, and the counts below prove no copy went twice.
    """
    account.options = {**account.options, "resend_unconfirmed": True}
    account.save(update_fields=["options"])


def test_killing_the_platform_worker_mid_burst_of_50_replies_delivers_each_once(
    stack, e2e_account, api, record_property
):
    allow_resend_after_the_evidence_window(e2e_account)
    session = customer_session(stack, "mei")
    tag = f"Kill {uuid.uuid4().hex[:6]}"
    # The platform holds every send it is given until the worker is dead, so the kill finds
    # sends in flight whatever the machine's speed; let go then, the platform takes them and
    # their answers reach nobody (the ambiguous case), and the rest go after the restart.
    stack.sandbox("POST", "faults", {"hold_sends": True})
    try:
        ids, texts = burst(api, session.pk, tag)
        wait_for(
            lambda: stack.sandbox("GET", "state")["heldSends"] >= 1,
            what="sends in flight at the platform",
        )
        stack.stop_worker(["platform"], kill=True)
        killed = time.monotonic()
        in_flight = Message.objects.filter(pk__in=ids, status=Message.Status.SENDING).count()
    finally:
        stack.sandbox("POST", "faults", {"hold_sends": False})
    stack.start_worker(["platform"])

    wait_for(lambda: settled(ids), what="every reply settled after the kill")
    recovery = time.monotonic() - killed

    record_property("recovery_seconds", round(recovery, 1))
    logger.warning(
        "killed with %s sends in flight; all %s settled %.1f s later", in_flight, BURST, recovery
    )
    assert in_flight > 0
    assert_each_delivered_once(stack, ids, texts)


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[str, Any]]:
    """A Redis of this test's own (the shared one must not be stopped), and its controls."""
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no"]
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        processes.append(
            subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        )
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        wait_for(client.ping, what="the private Redis")

    def stop() -> None:
        process = processes.pop()
        process.kill()
        process.wait(timeout=10)

    class Controls:
        pass

    controls = Controls()
    controls.start = start  # type: ignore[attr-defined]
    controls.stop = stop  # type: ignore[attr-defined]
    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", controls
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def stack_on_private_redis(stack: Stack, transactional_db: None) -> Iterator[tuple[Stack, Any]]:
    """The production set on a Redis the test may stop (the shared `stack` stays untouched).

    Stopped before the test's database is emptied (it depends on `transactional_db`).
    """
    try:
        subprocess.run(["redis-server", "--version"], check=True, capture_output=True)  # noqa: S607
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs redis-server to stop and start a Redis of its own")
    # The shared stack's reapers see the same database: paused, so that what recovers these
    # replies is this stack's own set, through the Redis that was stopped.
    stack.stop_worker(["beat"])
    try:
        with private_redis() as (url, controls):
            own = Stack(
                database_url=stack.database_url,
                redis_url=url,
                extra_env=dict(stack.extra_env),
                sandbox_args=stack.sandbox_args,
            )
            with own:
                yield own, controls
    finally:
        stack.start_beat()


def test_redis_stopped_mid_burst_of_50_replies_loses_none_and_duplicates_none(
    stack_on_private_redis, settings, record_property
):
    from accounts.models import User
    from accounts.services import api_token_create

    own, controls = stack_on_private_redis
    settings.PUBLIC_BASE_URL = own.web_url
    account = own.account("E2E private Redis")
    assert account.pk
    user = User.objects.create_superuser("e2e-redis-admin", password="not-used-0123")
    _, key = api_token_create(user, name="e2e")

    import requests

    http = requests.Session()
    http.headers["Authorization"] = f"Token {key}"

    class Api:
        def post(self, path: str, body: Any = None) -> requests.Response:
            return http.post(f"{own.web_url}/api/v1/{path}", json=body, timeout=30)

    session = customer_session(own, "joao")
    tag = f"Redis {uuid.uuid4().hex[:6]}"
    own.sandbox("POST", "faults", {"latency_ms": 200})
    texts = [f"{tag} reply {index:02d}" for index in range(BURST)]
    ids: list[int] = []
    stopped_at = 0.0
    try:
        for index, text in enumerate(texts):
            if index == BURST // 3:
                controls.stop()  # queued tasks, the rate limit and live updates go with it
                stopped_at = time.monotonic()
            if index == 2 * BURST // 3:
                # Down long enough for every worker to notice, then back empty: whatever was
                # queued in it is gone.
                wait_for(
                    lambda: all(
                        b"Connection to broker lost" in own.processes[lane].log.read_bytes()
                        for lane in ("worker", "platform")
                    ),
                    what="the workers noticing the outage",
                )
                controls.start()
                restarted = time.monotonic()
            answer = Api().post(f"sessions/{session.pk}/messages/", {"body": text})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    finally:
        own.sandbox("POST", "faults", {"latency_ms": 0})

    wait_for(lambda: settled(ids), what="every reply settled after Redis came back")
    recovery = time.monotonic() - restarted

    record_property("recovery_seconds", round(recovery, 1))
    logger.warning(
        "Redis down %.1f s mid-burst; all %s settled %.1f s after it was back",
        restarted - stopped_at,
        BURST,
        recovery,
    )
    assert_each_delivered_once(own, ids, texts)
