"""How long a test waits for something that is bound to happen: one number for the whole suite.

Tests never assert how fast something happens (the benchmark measures that). They wait for a
condition, and give up only after PATIENCE_SECONDS so that a broken build fails instead of
hanging. A passing test never waits this long, so the bound is generous: on a machine whose
cores are busy with something else, a worker or a browser may take many seconds to get its
turn, and that must not fail the suite. `TEST_PATIENCE_SECONDS` overrides it. The number lives
in `devstack.waiting`, so that the end-to-end stack's waits (`wait_for`) share it.
"""

from __future__ import annotations

from devstack.waiting import PATIENCE_SECONDS

PATIENCE_MS = int(PATIENCE_SECONDS * 1000)

__all__ = ["PATIENCE_MS", "PATIENCE_SECONDS"]
