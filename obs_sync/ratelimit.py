"""A process-wide requests-per-second limiter shared by every fetching thread.

Pacing rather than a bursty token bucket: requests are spaced at least ``1/rate`` apart,
so a production call-center server never sees more than the configured rate, even
for a moment. Idle time earns no credit (no burst after a pause).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Thread-safe pacing limiter; ``rate <= 0`` means unlimited."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0  # earliest moment the next request may start

    def acquire(self) -> float:
        """Block until one request may start; returns the seconds waited."""
        if self._interval == 0.0:
            return 0.0
        # Reserve a slot under the lock, then sleep outside it so waiters queue in order
        # without holding the lock.
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate!r})"
