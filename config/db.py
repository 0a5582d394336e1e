"""Database connections outside Django's request cycle."""

from __future__ import annotations

from django.db import connections


def release_connections() -> None:
    """Hand this thread's database connections back to the pool (or close them).

    For work that outlives its database use: a streamed response, an open live stream between
    its re-checks. Call it in the thread that used the connections (Django binds a connection
    to its thread); a connection inside a transaction is left alone.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()
