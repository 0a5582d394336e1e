"""What both sandbox commands do once their server listens: set up the demo account."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

from integrations.base import ProviderError

logger = logging.getLogger("sandbox")


def when_listening(
    host: str, port: int, setup: Callable[[], None], *, what: str, attempts: int = 30
) -> bool:
    """Wait (up to a minute) until `host:port` takes connections, then run `setup`, again with
    backoff while the platform refuses (`ProviderError`); return whether it succeeded."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    for attempt in range(attempts):
        try:
            setup()
        except ProviderError as exc:
            logger.warning("%s failed (%s); retrying", what, exc)
            time.sleep(min(2**attempt, 5))
            continue
        return True
    logger.error("%s failed for good", what)
    return False
