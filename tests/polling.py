"""Waiting in tests for what another thread or process does, with a bound."""

from __future__ import annotations

import time
from typing import Any


def wait_for(check: Any, what: str, seconds: float = 30, interval: float = 0.02) -> Any:
    """``check()``'s first truthy value; AssertionError naming ``what`` after ``seconds``."""
    limit = time.monotonic() + seconds
    while time.monotonic() < limit:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
