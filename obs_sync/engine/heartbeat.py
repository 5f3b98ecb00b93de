"""A running run's heartbeat: ``sync_run.heartbeat_at`` every ``sync.heartbeat_seconds``.

The run's liveness lock says *whether* its process is alive (readers test it in pg_locks);
the heartbeat says *until when* it was known to be, so a run whose process is gone ends at
its last heartbeat, not when someone noticed. Written on the run's own connection (the one
holding the lock), from a thread of its own; a failed beat is logged once and retried.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from obs_sync.errors import one_line

if TYPE_CHECKING:
    from obs_sync.store.runs import RunHandle
    from obs_sync.store.store import Store

log = logging.getLogger(__name__)


class Heartbeat:
    """Beats until :meth:`stop` (which waits for a beat in progress: the run's connection
    is then free for closing the run)."""

    def __init__(self, store: Store, handle: RunHandle, interval: float) -> None:
        self.store = store
        self.handle = handle
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="obs-sync-heartbeat", daemon=True)
        self._failing = False

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.heartbeat(self.handle)
            except Exception as error:  # the database is away: the run's VDNs say more
                if not self._failing:
                    log.warning("run %d: heartbeat failed: %s", self.handle.run_id, one_line(error))
                self._failing = True
            else:
                self._failing = False
