"""What a signal handler may do to a run in progress (``obs-sync sync``): stop it, abort it."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from obs_sync.errors import one_line

if TYPE_CHECKING:
    from obs_sync.engine.workers import Workers

log = logging.getLogger("obs_sync.sync")  # the name the run's log lines have always carried


class RunControl:
    """Given to :func:`obs_sync.engine.run.run_sync`, which attaches the run's workers.

    :meth:`request_stop`: no new VDN starts; after ``stop_timeout`` seconds the fetches
    still going are cancelled (they end at their next request or retry wait), the VDN
    transactions in flight commit or roll back, and the run is recorded as usual.
    :meth:`abort`: the caller exits at once after it; it only closes the run's record
    (``failed``, saying so) on a connection of its own. The process exit then rolls back
    every open VDN transaction: no VDN is half-applied.
    """

    def __init__(self, stop_timeout: float) -> None:
        self.stop = threading.Event()
        self.stop_timeout = stop_timeout
        self.workers: Workers | None = None
        self._timer: threading.Timer | None = None

    def request_stop(self) -> None:
        self.stop.set()
        if self._timer is None:
            self._timer = threading.Timer(self.stop_timeout, self._cancel_fetches)
            self._timer.daemon = True
            self._timer.start()

    def _cancel_fetches(self) -> None:
        workers = self.workers
        if workers is not None:
            log.warning(
                "the VDNs in flight did not finish within schedule.shutdown_timeout_seconds "
                "(%g s): cancelling their fetches",
                self.stop_timeout,
            )
            workers.interrupt()

    def abort(self, reason: str) -> None:
        """Close the run's record as aborted (best effort, bounded by connect_timeout and
        the statement timeout)."""
        workers = self.workers
        prepared = workers.prepared if workers is not None else None
        if prepared is None or prepared.handle is None or prepared.store is None:
            return
        try:
            prepared.store.abort_run(prepared.handle, reason)
        except Exception as error:
            log.error("cannot record the run as aborted: %s", one_line(error))
