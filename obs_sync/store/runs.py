"""A run's own record (``sync_run``): its start under a liveness lock, its heartbeat, its
close, an abort, and the runs whose process is gone (docs/semantics.md, "Concurrency",
run liveness). Part of :class:`obs_sync.store.store.Store` (a mixin: the same pool,
statements and database clock).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from obs_sync.db.pool import Lease, Pool
from obs_sync.results import DEFAULT_SOURCE, INT4_MAX, VDN_STATUSES, RunStatus, VdnResult
from obs_sync.store.changes import StoreError

if TYPE_CHECKING:
    from obs_sync.store.sql import Statements

log = logging.getLogger("obs_sync.store")

_INT4 = INT4_MAX
_RELOCK_TRIES = 20  # connections tried when taking a run's lock again (dead pooled ones fail)
ABANDONED_ERROR = (
    "the process running it ended before finishing (killed, crashed, or lost its database "
    "connection); it ended at its last heartbeat; VDNs without a sync_run_vdn row were not "
    "applied"
)
# The same, for an earlier run of the process that notices it (it is alive: its run lost
# its database connection and could not close its record).
LOST_ERROR = (
    "this run's database connection was lost before its record was closed (the process "
    "went on); it ended at its last heartbeat; VDNs without a sync_run_vdn row were not "
    "applied"
)
_RUN_ID_TRIES = 1000  # run ids skipped at most because other sessions hold their lock key


@dataclass
class RunHandle:
    """A started run: its id, and the connection holding its liveness lock (replaced by
    :meth:`Store.heartbeat` when that connection was lost)."""

    run_id: int
    started_at: datetime
    lease: Lease


class RunRecords:
    """The run-record half of the store (see the module doc)."""

    pool: Pool
    sql: Statements
    run_lock: int

    def _observe(self, reading: datetime) -> None:
        raise NotImplementedError

    def record_later(self, run_id: int, result: VdnResult) -> VdnResult:
        raise NotImplementedError

    def flush_records(self, run_id: int, connection: psycopg.Connection[Any] | None = None) -> None:
        raise NotImplementedError

    def start_run(
        self,
        *,
        trigger: str,
        hostname: str,
        pid: int,
        version: str,
        heartbeat_seconds: float = 5,
        sources: Sequence[str] = (DEFAULT_SOURCE,),
    ) -> RunHandle:
        """Insert the ``running`` row and hold its liveness lock until :meth:`finish_run`.

        The session-level lock is taken before the row is committed, so no other process can
        see the row without its lock; runs whose lock is free are marked ``abandoned``.
        """
        lease = self.pool.acquire()
        lease.hold_session_state()  # the run lock: reset if the lease is ever lost
        connection = lease.connection
        try:
            run_id = self._locked_run_id(connection)
            with connection.transaction():
                row = connection.execute(
                    self.sql.start_run,
                    {
                        "id": run_id,
                        "trigger": trigger,
                        "hostname": hostname,
                        "pid": pid,
                        "version": version,
                        "sources": list(sources),
                    },
                ).fetchone()
                assert row is not None
                run_id, started_at = row
                self._observe(started_at)
            abandoned = connection.execute(
                self.sql.abandon, self._abandon_params(run_id, hostname, pid, heartbeat_seconds)
            ).fetchall()
        except BaseException:
            lease.discard()  # closing the session also frees the lock
            raise
        gone = [str(row[0]) for row in abandoned if not row[1]]
        lost = [str(row[0]) for row in abandoned if row[1]]
        if gone:
            log.warning(
                "marked %d earlier run(s) as abandoned (their process is gone or lost its "
                "database connection): %s",
                len(gone),
                ", ".join(gone),
            )
        if lost:
            log.warning(
                "marked %d earlier run(s) of this process as abandoned (they lost their "
                "database connection before their record was closed): %s",
                len(lost),
                ", ".join(lost),
            )
        return RunHandle(int(run_id), started_at, lease)

    def _locked_run_id(self, connection: psycopg.Connection[Any]) -> int:
        """A new run id whose liveness lock this session now holds (session-level).

        The key is tried, never waited for: a key held by another session (any role can
        take an advisory lock) costs one skipped id, not a run."""
        skipped: list[int] = []
        for _ in range(_RUN_ID_TRIES):
            row = connection.execute(self.sql.next_run_id, {"cls": self.run_lock}).fetchone()
            assert row is not None
            run_id, locked = int(row[0]), bool(row[1])
            if locked:
                if skipped:
                    log.warning(
                        "run id(s) %d..%d skipped: other sessions hold their liveness lock "
                        "keys (see pg_locks, locktype advisory)",
                        skipped[0],
                        skipped[-1],
                    )
                return run_id
            skipped.append(run_id)
        raise StoreError(
            f"{_RUN_ID_TRIES} run ids in a row had their liveness lock key held by other "
            "sessions (see pg_locks, locktype advisory); end those sessions"
        )

    def heartbeat(self, handle: RunHandle) -> None:
        """The run's process is alive: ``sync_run.heartbeat_at`` on the database clock.

        When the run's connection was lost (the database restarted), its liveness lock
        went with it: it is taken again on a new connection at once, so the run is never
        taken for dead while its process goes on."""
        connection = handle.lease.connection
        if not (connection.broken or connection.closed):
            try:
                connection.execute(self.sql.heartbeat, {"run": handle.run_id})
                return
            except psycopg.OperationalError:
                if not (connection.broken or connection.closed):
                    raise
        handle.lease.discard()
        # Pooled connections may have died with it: each dead one fails at once.
        for attempt in range(_RELOCK_TRIES):
            lease = self.pool.acquire()
            lease.hold_session_state()
            try:
                row = lease.connection.execute(
                    self.sql.relock, {"cls": self.run_lock, "key": handle.run_id % _INT4}
                ).fetchone()
            except psycopg.OperationalError:
                lease.discard()
                if attempt + 1 == _RELOCK_TRIES:
                    raise
                continue
            except BaseException:
                lease.discard()
                raise
            break
        if not (row and row[0]):
            lease.release()
            raise StoreError(f"run {handle.run_id}: its liveness lock is held elsewhere")
        handle.lease = lease
        log.info("run %d: liveness lock taken again on a new connection", handle.run_id)
        lease.connection.execute(self.sql.heartbeat, {"run": handle.run_id})

    def abandon_dead_runs(self, *, hostname: str, pid: int, heartbeat_seconds: float) -> list[int]:
        """Mark ``abandoned`` every run whose process is gone (no liveness lock, no recent
        heartbeat), ended at its last heartbeat; the daemon calls it between runs too."""
        with self.pool.connection() as connection:
            rows = connection.execute(
                self.sql.abandon, self._abandon_params(-1, hostname, pid, heartbeat_seconds)
            ).fetchall()
        return [int(row[0]) for row in rows]

    def _abandon_params(
        self, me: int, hostname: str, pid: int, heartbeat_seconds: float
    ) -> dict[str, object]:
        """The abandon statement's arguments; ``me``: this process's own run (-1: none)."""
        return {
            "me": me,
            "cls": self.run_lock,
            "error": ABANDONED_ERROR,
            "lost": LOST_ERROR,
            "hostname": hostname,
            "pid": pid,
            "heartbeat": heartbeat_seconds,
        }

    def finish_run(
        self,
        handle: RunHandle,
        status: RunStatus,
        results: Sequence[VdnResult],
        *,
        unrecorded: Sequence[VdnResult] = (),
        error: str | None = None,
    ) -> datetime:
        """Record VDNs never started (batched), close the run row, release its lock.

        When the run's own connection was lost (the database restarted), the record is
        closed on a fresh one: the lock went with the lost session."""
        for result in unrecorded:
            self.record_later(handle.run_id, result)
        connection = handle.lease.connection
        if connection.broken or connection.closed:
            handle.lease.discard()
            with self.pool.connection() as fresh:
                return self._finish(handle, fresh, status, results, error, lost=True)
        try:
            return self._finish(handle, connection, status, results, error)
        except BaseException as failure:
            broken = connection.broken or connection.closed
            handle.lease.discard()  # the lock goes with the session
            if not (broken and isinstance(failure, psycopg.OperationalError)):
                raise
        with self.pool.connection() as fresh:  # once more, on a connection that works
            return self._finish(handle, fresh, status, results, error, lost=True)

    def _finish(
        self,
        handle: RunHandle,
        connection: psycopg.Connection[Any],
        status: RunStatus,
        results: Sequence[VdnResult],
        error: str | None,
        *,
        lost: bool = False,
    ) -> datetime:
        counts: dict[str, int] = {
            name: sum(1 for r in results if r.status == name) for name in VDN_STATUSES
        }
        sums = {
            name: sum(getattr(r, name) for r in results)
            for name in ("inserted", "updated", "deleted", "restored", "unchanged")
        }
        with connection.transaction():
            self.flush_records(handle.run_id, connection)
            row = connection.execute(
                self.sql.finish_lost if lost else self.sql.finish_run,
                {
                    "run": handle.run_id,
                    "status": status,
                    "vdns": len(results),
                    "error": error,
                    **counts,
                    **sums,
                },
            ).fetchone()
            if row is None:  # lost: another run marked it abandoned meanwhile
                raise StoreError(f"run {handle.run_id} was marked abandoned meanwhile")
            finished_at: datetime = row[0]
        if not lost:
            handle.lease.release()  # resets the session: the run lock is released
        return finished_at

    def abort_run(self, handle: RunHandle, error: str) -> None:
        """Close a run at once, on a connection of its own (the caller exits next; the
        run's connections, and their open VDN transactions, then go with the process).

        The run's counts are those of its committed VDN records."""
        with self.pool.fresh() as connection, connection.transaction():
            self.flush_records(handle.run_id, connection)
            connection.execute(self.sql.abort_run, {"run": handle.run_id, "error": error})
