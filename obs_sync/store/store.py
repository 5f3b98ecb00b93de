"""The PostgreSQL store: one transaction per VDN under its row lock, run records.

Knows SQL, not HTTP. Plain SQL on psycopg connections, from its own small pool (a one-shot
``obs-sync sync``, which then never imports SQLAlchemy) or from a SQLAlchemy engine's pool
(the daemon, tests), both from :mod:`obs_sync.db.pool`; the tables as SQLAlchemy metadata
are in :mod:`obs_sync.store.tables`, and migrations (Alembic) in :mod:`obs_sync.db.migrate`.
What a VDN's changes and result are is decided by its :class:`~obs_sync.results.VdnPlan`.

A VDN starts with one unlocked SELECT of its stored codes (which also reads the database
clock, so the store's estimate of it stays fresh: see :meth:`Store.now`). When the diff
is empty (the usual re-sync) that is all, and its ``sync_run_vdn`` row is batched with
others. Otherwise it is applied in one transaction
with a fixed, small number of statements whatever its code count (set-based SQL over
``unnest`` arrays):

1. the VDN's row lock (its ``vdn_state`` row, ``FOR NO KEY UPDATE NOWAIT``: only a role
   that may write the table can take it), and the database clock (when the lock is held
   by another session: who holds it, and how many runs in a row found it held);
2. one SELECT of the VDN's stored codes, and when the fetch of the snapshot that wrote
   them began: a snapshot whose fetch began earlier is not applied over them (superseded);
3. only when something changed: close the superseded versions, mark deleted codes,
   insert new codes with their first version, update changed/restored codes with their
   new version (one statement each, only those needed);
4. the ``sync_run_vdn`` record with its times from the database clock, and the instant
   this snapshot's fetch began, in the same transaction (so a killed process leaves either
   the VDN's changes with their record, or neither).

Every timestamp one VDN transaction writes is one instant, read from the database after
the lock is taken (and later than anything stored for that VDN), so a closed version's
``valid_to`` equals its successor's ``valid_from`` and versions never overlap, whichever
process or host wrote them. docs/semantics.md states the rules; docs/bi.md the tables.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg

from obs_sync.db.pool import EnginePool, Lease, Pool
from obs_sync.db.url import quote_identifier
from obs_sync.diff import StoredCode
from obs_sync.results import RunStatus, VdnPlan, VdnResult
from obs_sync.store.retention import prune_run_records
from obs_sync.store.sql import RECORD_COLUMNS, lock_class, statements
from obs_sync.store.writes import (
    StoreError,
    bounded,
    db_message,
    describe_holder,
    insert_applied,
    no_changes,
    present,
    same,
    write_changes,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__package__)  # "obs_sync.store", as logs have always said

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
_MICROSECOND = timedelta(microseconds=1)
RECORD_BATCH = 500
_INT4 = 2**31 - 1


# ------------------------------------------------------------------------------ store


@dataclass
class RunHandle:
    """A started run: its id, and the connection holding its liveness lock (replaced by
    :meth:`Store.heartbeat` when that connection was lost)."""

    run_id: int
    started_at: datetime
    lease: Lease


class _Locked(Exception):
    """The VDN's row lock is held by another transaction (its own one is aborted)."""


class Store:
    """SQL for one schema. Thread-safe: every method takes its own pooled connection."""

    def __init__(self, pool: Pool | Engine, schema: str) -> None:
        self.pool = pool if isinstance(pool, Pool) else EnginePool(pool)
        self.schema = schema
        self.run_lock = lock_class(schema, "run")

        self.sql = statements(schema)
        # Records of VDNs that wrote no data are batched (one INSERT per RECORD_BATCH VDNs):
        # nothing to keep consistent with, and a no-change VDN then costs one round trip.
        self._pending: list[VdnResult] = []
        self._pending_lock = threading.Lock()
        # True when this run created the tables (a first sync): every VDN starts empty.
        self.created = False
        # The latest database clock reading, and this host's monotonic clock just after it
        # came back, so VDN records carry database time without asking the server each
        # time. (This host's own clock until the run starts.)
        self._clock = (datetime.now(timezone.utc), time.monotonic())

    def now(self) -> datetime:
        """The database clock, estimated from the latest reading and this host's monotonic
        clock since. Readings come with the run's statements (start, every unlocked read,
        every lock), so the estimate is never extrapolated far; it errs early by about one
        statement's return trip (a reading is noted when its statement has come back)."""
        return self.db_time(time.monotonic())

    def db_time(self, monotonic: float) -> datetime:
        """This host's ``time.monotonic()`` instant on the database clock.

        The reading was taken before the monotonic instant recorded with it, so for an
        earlier instant this errs early, never late (safe for a fetch-start instant: an
        earlier start can only make a snapshot count as older).
        """
        reading, at = self._clock
        return reading + timedelta(seconds=monotonic - at)

    def _observe(self, reading: datetime) -> None:
        self._clock = (reading, time.monotonic())

    # -------------------------------------------------------------------------- runs

    def start_run(
        self,
        *,
        trigger: str,
        hostname: str,
        pid: int,
        version: str,
        heartbeat_seconds: float = 5,
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
                    },
                ).fetchone()
                assert row is not None
                run_id, started_at = row
                self._observe(started_at)
            abandoned = connection.execute(
                self.sql.abandon,
                {
                    "me": run_id,
                    "cls": self.run_lock,
                    "error": ABANDONED_ERROR,
                    "lost": LOST_ERROR,
                    "hostname": hostname,
                    "pid": pid,
                    "heartbeat": heartbeat_seconds,
                },
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
        went with it: it is taken again on a new connection first, so the run is never
        taken for dead while its process goes on."""
        if handle.lease.connection.broken or handle.lease.connection.closed:
            handle.lease.discard()
            lease = self.pool.acquire()
            lease.hold_session_state()
            try:
                row = lease.connection.execute(
                    self.sql.relock, {"cls": self.run_lock, "key": handle.run_id % _INT4}
                ).fetchone()
            except BaseException:
                lease.discard()
                raise
            if not (row and row[0]):
                lease.release()
                raise StoreError(f"run {handle.run_id}: its liveness lock is held elsewhere")
            handle.lease = lease
            log.info("run %d: liveness lock taken again on a new connection", handle.run_id)
        handle.lease.connection.execute(self.sql.heartbeat, {"run": handle.run_id})

    def abandon_dead_runs(self, *, hostname: str, pid: int, heartbeat_seconds: float) -> list[int]:
        """Mark ``abandoned`` every run whose process is gone (no liveness lock, no recent
        heartbeat), ended at its last heartbeat; the daemon calls it between runs too."""
        with self.pool.connection() as connection:
            rows = connection.execute(
                self.sql.abandon,
                {
                    "me": -1,
                    "cls": self.run_lock,
                    "error": ABANDONED_ERROR,
                    "lost": LOST_ERROR,
                    "hostname": hostname,
                    "pid": pid,
                    "heartbeat": heartbeat_seconds,
                },
            ).fetchall()
        return [int(row[0]) for row in rows]

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
        counts = {
            name: sum(1 for r in results if r.status == name)
            for name in ("succeeded", "failed", "incomplete", "guarded", "skipped")
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

    # -------------------------------------------------------------------------- VDNs

    def _read(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """One read statement's rows. A pooled connection found dead (the server ended
        it: a restart, a terminated backend) is dropped, and the read tried once more."""
        try:
            with self.pool.connection() as connection:
                return connection.execute(sql, params).fetchall()
        except psycopg.OperationalError as error:
            if bounded(error):
                raise
        with self.pool.connection() as connection:
            return connection.execute(sql, params).fetchall()

    def tables_exist(self) -> bool:
        rows = self._read(
            "SELECT to_regclass(%(name)s) IS NOT NULL",
            {"name": f"{quote_identifier(self.schema)}.result_code"},
        )
        return bool(rows and rows[0][0])

    def _read_rows(self, vdn_id: int) -> list[tuple[str, str, bool]]:
        """The VDN's stored codes, unlocked; the database clock read with them is noted."""
        rows = self._read(self.sql.read, {"vdn": vdn_id})
        self._observe(rows[0][3])
        return [(code, desc, deleted) for code, desc, deleted, _ in rows if code is not None]

    def read_codes(self, vdn_id: int) -> dict[str, StoredCode]:
        """The VDN's stored codes (present and deleted), unlocked, in one round trip."""
        return {
            code: StoredCode(code, desc, deleted) for code, desc, deleted in self._read_rows(vdn_id)
        }

    def record_later(self, run_id: int, result: VdnResult) -> VdnResult:
        """Queue the ``sync_run_vdn`` row of a VDN that wrote no data; flushed in batches."""
        with self._pending_lock:
            self._pending.append(result)
            full = len(self._pending) >= RECORD_BATCH
        if full:
            try:
                self.flush_records(run_id)
            except Exception:  # kept queued: the run's finish tries again
                log.warning("cannot write run records yet (will retry)", exc_info=True)
        return result

    def prune_run_records(self, keep_days: float) -> int:
        """Delete old ``sync_run_vdn`` rows (:mod:`obs_sync.store.retention`); return how many."""

        def execute(sql: str, params: Mapping[str, Any]) -> int:
            with self.pool.connection() as connection:  # autocommit: each batch commits
                return connection.execute(sql, params).rowcount

        return prune_run_records(execute, self.schema, keep_days)

    def flush_records(self, run_id: int, connection: psycopg.Connection[Any] | None = None) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            if connection is None:
                with self.pool.connection() as own:  # one statement: atomic in autocommit
                    self._insert_records(own, run_id, batch)
            else:
                self._insert_records(connection, run_id, batch)
        except BaseException:
            with self._pending_lock:
                self._pending[:0] = batch
            raise

    def _insert_records(
        self, connection: psycopg.Connection[Any], run_id: int, results: Sequence[VdnResult]
    ) -> None:
        params: dict[str, Any] = {"run": run_id}
        for name, _ in RECORD_COLUMNS:
            params[name] = [getattr(r, "vdn_id" if name == "vdn" else name) for r in results]
        connection.execute(self.sql.record, params)

    def apply_vdn(self, run_id: int, plan: VdnPlan) -> VdnResult:
        """Apply one VDN's snapshot in one transaction and record it; never raises for data.

        ``plan`` says what changes and what the VDN's result is; the store reads and writes.
        A value PostgreSQL cannot store, or a database error, makes the VDN ``failed`` with
        its rows untouched.

        Fast path: an unlocked read first. When it shows nothing to write (the common
        re-sync), the VDN is done: no lock, no transaction, its record batched. Otherwise
        the VDN is re-read and applied under its lock.
        """
        problem = plan.unstorable()
        if problem is not None:
            return self.record_later(run_id, plan.failed(problem, self.now(), "data"))
        codes = plan.codes
        for attempt in (1, 2):
            lease: Lease | None = None
            try:
                # On tables this run created, a VDN with codes certainly has something to
                # write: straight to the locked path, whose read is authoritative anyway.
                if not (self.created and codes):
                    rows = self._read_rows(plan.vdn_id)
                    if same(rows, codes):  # the usual re-sync: no StoredCode objects, no diff
                        result = plan.outcome(no_changes(len(codes)), len(rows), self.now())
                        return self.record_later(run_id, result)
                    stored = {code: StoredCode(code, d, deleted) for code, d, deleted in rows}
                    changes = plan.changes(stored)
                    if changes.is_empty:
                        result = plan.outcome(changes, present(stored), self.now())
                        return self.record_later(run_id, result)
                lease = self.pool.acquire()
                try:
                    with lease.connection.transaction():
                        applied = self._apply(lease.connection, run_id, plan)
                except _Locked:  # rolled back: nothing written; who holds it, outside it
                    applied = self._locked(lease.connection, plan)
                lease.release()
                if applied.skip_reason is not None:  # locked or superseded: nothing written
                    return self.record_later(run_id, applied)
                return applied
            except psycopg.Error as error:
                broken = lease is not None and (lease.connection.broken or lease.connection.closed)
                if lease is not None:
                    lease.release()
                # A pooled connection found dead (database restarted): once more, fresh.
                if attempt == 1 and (
                    broken or (isinstance(error, psycopg.OperationalError) and not bounded(error))
                ):
                    continue
                message = f"database error: {db_message(error)}"
                return self.record_later(run_id, plan.failed(message, self.now(), "database"))
            except StoreError as error:
                if lease is not None:
                    lease.release()
                return self.record_later(run_id, plan.failed(str(error), self.now(), "database"))
            except BaseException:
                if lease is not None:
                    lease.release()
                raise
        raise AssertionError("unreachable")

    def _lock(self, connection: psycopg.Connection[Any], plan: VdnPlan) -> datetime:
        """Take the VDN's row lock in the open transaction; the database clock then."""
        vdn = plan.vdn_id
        got, now = self._try_lock(connection, vdn)
        if not got:  # the VDN's first write: its row, which locks it too
            claimed = connection.execute(
                self.sql.claim, {"vdn": vdn, "started_at": plan.started_at}
            ).fetchone()
            if claimed is not None:
                now = claimed[0]
            else:  # inserted by another transaction that has committed since
                got, now = self._try_lock(connection, vdn)
                assert got
        self._observe(now)
        return now

    def _try_lock(self, connection: psycopg.Connection[Any], vdn: int) -> tuple[bool, datetime]:
        try:
            row = connection.execute(self.sql.lock, {"vdn": vdn}).fetchone()
        except psycopg.errors.LockNotAvailable:  # NOWAIT: held by another transaction
            raise _Locked from None
        assert row is not None
        return bool(row[0]), row[1]

    def _locked(self, connection: psycopg.Connection[Any], plan: VdnPlan) -> VdnResult:
        holder = connection.execute(self.sql.lock_holder, {"vdn": plan.vdn_id}).fetchone()
        assert holder is not None
        *who, skips = holder
        return plan.locked(self.now(), describe_holder(*who), int(skips) + 1)

    def _apply(self, connection: psycopg.Connection[Any], run_id: int, plan: VdnPlan) -> VdnResult:
        vdn = plan.vdn_id
        now = self._lock(connection, plan)
        stored: dict[str, StoredCode] = {}
        latest: datetime = now
        newer: datetime | None = None
        rows = connection.execute(self.sql.read_locked, {"vdn": vdn}).fetchall()
        for code, desc, deleted, changed_at, snapshot_at in rows:
            stored[code] = StoredCode(code, desc, deleted)
            if changed_at >= latest:
                latest = changed_at + _MICROSECOND
            newer = snapshot_at
        changes = plan.changes(stored)
        if not changes.is_empty and newer is not None and newer > plan.started_at:
            # Its fetch began before that of the snapshot the stored state comes from.
            return plan.superseded(newer, self.now())
        if not changes.is_empty:
            write_changes(connection, self.sql, run_id, vdn, changes, latest)
        result = plan.outcome(changes, present(stored), self.now())
        # In the VDN's transaction: its changes and its record commit together.
        return insert_applied(
            connection, self.sql, run_id, result, latest, wrote=not changes.is_empty
        )
