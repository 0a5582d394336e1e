"""The real-process stack for the end-to-end tests and the benchmark.

`Stack` starts the production process set on loopback (the ASGI web server, both Celery
workers, beat and the XMS sandbox) against a given PostgreSQL and Redis, each process in its
own group and killed with its children at the end; `wait_for` waits for what is bound to
happen, within one bound (`PATIENCE_SECONDS`). `tests/e2e` and `bench/` both use it; it is not
imported by the product, and it imports nothing from `tests`.
"""

from __future__ import annotations

from devstack.stack import ROOT, Stack, free_port, group_alive, running
from devstack.waiting import PATIENCE_SECONDS, wait_for

__all__ = ["PATIENCE_SECONDS", "ROOT", "Stack", "free_port", "group_alive", "running", "wait_for"]
