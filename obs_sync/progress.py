"""A run's progress off a terminal: a log line every ``logging.progress_interval_seconds``.

Cron and systemd see no progress bar: without these lines a 9,999-VDN sync is silent for
25 minutes. Counting (:class:`Progress`) and wording (:func:`progress_line`) are plain; the
reporter thread (:class:`ProgressLogger`) only wakes up, reads the counts and logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from obs_sync import logcontext
from obs_sync.observability import FIELDS
from obs_sync.results import FAILING, VdnResult
from obs_sync.text import duration, plural

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Counts:
    """What a run has done so far."""

    total: int  # VDNs in the run
    done: int = 0
    failed: int = 0  # failed, incomplete or guarded
    pages: int = 0
    requests: int = 0


class Progress:
    """Thread-safe counts of a run's finished VDNs (workers call :meth:`record`)."""

    def __init__(self, total: int) -> None:
        self._counts = Counts(total)
        self._lock = threading.Lock()

    def record(self, result: VdnResult) -> None:
        with self._lock:
            c = self._counts
            self._counts = Counts(
                c.total,
                c.done + 1,
                c.failed + (result.status in FAILING),
                c.pages + result.pages,
                c.requests + result.requests,
            )

    @property
    def counts(self) -> Counts:
        with self._lock:
            return self._counts


def progress_line(counts: Counts, elapsed: float) -> str:
    """``progress: 120 of 9999 VDNs (1.2%), 360 pages, 2 failed; 4.1 VDNs/s, about 40 min
    left`` (no rate or estimate before the first VDN finished)."""
    share = 100 * counts.done / counts.total if counts.total else 100.0
    line = (
        f"progress: {counts.done} of {plural(counts.total, 'VDN')} ({share:.1f}%), "
        f"{plural(counts.pages, 'page')}, {counts.failed} failed"
    )
    if counts.done and elapsed > 0:
        rate = counts.done / elapsed
        left = (counts.total - counts.done) / rate
        line += f"; {rate:.1f} VDNs/s, about {duration(left, largest='h')} left"
    return line


class ProgressLogger:
    """Logs :func:`progress_line` every ``interval`` seconds while the ``with`` block runs.

    The thread binds the run's log context, so its lines name the run like the workers'.
    Nothing is logged when ``interval`` is 0 or the run ends before the first interval.
    """

    def __init__(
        self,
        progress: Progress,
        interval: float,
        run: logcontext.PendingRun | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.progress = progress
        self.interval = interval
        self.run = run
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="obs-sync-progress", daemon=True)
        self._started = clock()

    def __enter__(self) -> ProgressLogger:
        if self.interval > 0:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        with logcontext.bind(run=self.run):
            while not self._stop.wait(self.interval):
                counts = self.progress.counts
                elapsed = self.clock() - self._started
                log.info("%s", progress_line(counts, elapsed), extra=_fields(counts, elapsed))


def _fields(counts: Counts, elapsed: float) -> dict[str, object]:
    rate = counts.done / elapsed if elapsed > 0 else 0.0
    left = (counts.total - counts.done) / rate if rate else None
    return {
        FIELDS: {
            "event": "progress",
            "vdns_done": counts.done,
            "vdns_total": counts.total,
            "vdns_failed": counts.failed,
            "pages": counts.pages,
            "requests": counts.requests,
            "vdns_per_second": round(rate, 3),
            "seconds_left": round(left, 1) if left is not None else None,
        }
    }
