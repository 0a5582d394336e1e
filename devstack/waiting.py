"""Wait for something that is bound to happen, with one bound for the whole stack.

Nothing here asserts how fast anything happens (the benchmark measures that): a wait gives up
only after PATIENCE_SECONDS, so that a broken build fails instead of hanging. A passing run never
waits this long, so the bound is generous: on a machine whose cores are busy with something
else, a worker or a browser may take many seconds to get its turn. `TEST_PATIENCE_SECONDS`
overrides it (the tests' `tests/patience.py` is this same number).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

PATIENCE_SECONDS = float(os.environ.get("TEST_PATIENCE_SECONDS", "120"))
T = TypeVar("T")


def wait_for(
    check: Callable[[], T],
    *,
    timeout: float = PATIENCE_SECONDS,
    interval: float = 0.1,
    what: str = "",
) -> T:
    """Call `check` until it returns something truthy; raise TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # the thing being waited for may not be up yet
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or check}: {last_error}")
