"""Fetch slots: at most N threads fetch at once (a counting semaphore).

``threading.BoundedSemaphore`` wakes a waiting thread from ``release()`` while holding the
GIL; on a loaded machine the kernel often switches to the woken thread right there, and
every other Python thread then waits for the switched-out holder (a profile of a 9,999-VDN
re-sync: a fifth of the GIL's time in that wake-up). On Linux the slots are an eventfd
semaphore instead: acquiring and releasing are system calls made with the GIL released.
"""

from __future__ import annotations

import contextlib
import os
import threading
from types import TracebackType


class FetchSlots:
    """``with slots:`` holds one of ``count`` slots; the same contract as a semaphore."""

    def __init__(self, count: int, *, use_eventfd: bool = True) -> None:
        self._fd: int | None = None
        self._semaphore: threading.BoundedSemaphore | None = None
        if count < 1:
            raise ValueError(f"count {count} must be >= 1")
        if use_eventfd and hasattr(os, "eventfd"):
            # (A sandbox refusing the call: the semaphore does the same job.)
            with contextlib.suppress(OSError):
                self._fd = os.eventfd(count, os.EFD_SEMAPHORE | os.EFD_CLOEXEC)
        if self._fd is None:
            self._semaphore = threading.BoundedSemaphore(count)

    def __enter__(self) -> None:
        if self._fd is not None:
            os.eventfd_read(self._fd)  # blocks (GIL released) until a slot is free
        else:
            assert self._semaphore is not None
            self._semaphore.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.eventfd_write(self._fd, 1)
        else:
            assert self._semaphore is not None
            self._semaphore.release()

    def close(self) -> None:
        """Free the descriptor; only once no thread can use the slots any more."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:  # (a run cut short before its close: no thread holds us)
        self.close()
