"""The PostgreSQL store: one transaction per VDN, advisory locks, run records.

Knows SQL, not HTTP. Plain SQL on psycopg connections, from its own small pool (a one-shot
``obs-sync sync``, which then never imports SQLAlchemy) or from a SQLAlchemy engine's pool
(the daemon, tests), both from :mod:`obs_sync.db.pool`; the tables as SQLAlchemy metadata
are in :mod:`obs_sync.store.tables`, and migrations (Alembic) in :mod:`obs_sync.db.migrate`.
What a VDN's changes and result are is decided by its :class:`~obs_sync.results.VdnPlan`.

A VDN starts with one unlocked SELECT of its stored codes; when the diff is empty (the
usual re-sync) that is all, and its ``sync_run_vdn`` row is batched with others. Otherwise
it is applied in one transaction with a fixed, small number of statements whatever its
code count (set-based SQL over ``unnest`` arrays):

1. ``pg_try_advisory_xact_lock`` on the VDN, and the database clock;
2. one SELECT of the VDN's stored codes;
3. only when something changed: close the superseded versions, mark deleted codes,
   insert new codes with their first version, update changed/restored codes with their
   new version (one statement each, only those needed);
4. the ``sync_run_vdn`` record, in the same transaction (so a killed process leaves either
   the VDN's changes with their record, or neither).

Every timestamp one VDN transaction writes is one instant, read from the database after
the lock is taken (and later than anything stored for that VDN), so a closed version's
``valid_to`` equals its successor's ``valid_from`` and versions never overlap, whichever
process or host wrote them. docs/semantics.md states the rules; docs/bi.md the tables.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg

from obs_sync.db.pool import EnginePool, Lease, Pool
from obs_sync.db.url import quote_identifier
from obs_sync.diff import Changes, StoredCode
from obs_sync.errors import ObsSyncError
from obs_sync.results import RunStatus, VdnPlan, VdnResult
from obs_sync.store.retention import prune_run_records
from obs_sync.store.sql import RECORD_COLUMNS, statements

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__package__)  # "obs_sync.store", as logs have always said

ABANDONED_ERROR = (
    "the process running it ended before finishing (killed, crashed, or lost its database "
    "connection); VDNs without a sync_run_vdn row were not applied"
)
_MICROSECOND = timedelta(microseconds=1)
RECORD_BATCH = 500
_INT4 = 2**31 - 1


class StoreError(ObsSyncError):
    """The stored data contradicts its own invariants; the VDN is not applied."""


def lock_class(schema: str, purpose: str) -> int:
    """First key of a two-key advisory lock, distinct per schema and purpose (int4 >= 0)."""
    return zlib.crc32(f"obs-sync:{schema}:{purpose}".encode()) & _INT4


# ------------------------------------------------------------------------------ store


@dataclass(frozen=True)
class RunHandle:
    """A started run: its id, and the connection holding its liveness lock."""

    run_id: int
    started_at: datetime
    lease: Lease


class Store:
    """SQL for one schema. Thread-safe: every method takes its own pooled connection."""

    def __init__(self, pool: Pool | Engine, schema: str) -> None:
        self.pool = pool if isinstance(pool, Pool) else EnginePool(pool)
        self.schema = schema
        self.vdn_lock = lock_class(schema, "vdn")
        self.run_lock = lock_class(schema, "run")

        self.sql = statements(schema)
        # Records of VDNs that wrote no data are batched (one INSERT per RECORD_BATCH VDNs):
        # nothing to keep consistent with, and a no-change VDN then costs one round trip.
        self._pending: list[VdnResult] = []
        self._pending_lock = threading.Lock()
        # True when this run created the tables (a first sync): every VDN starts empty.
        self.created = False
        # Database clock minus this host's, measured when the run starts, so VDN records
        # carry database time like everything else without asking the server each time.
        self.clock_offset = timedelta(0)

    def now(self) -> datetime:
        """The database clock, estimated from this host's."""
        return datetime.now(timezone.utc) + self.clock_offset

    # -------------------------------------------------------------------------- runs

    def start_run(self, *, trigger: str, hostname: str, pid: int, version: str) -> RunHandle:
        """Insert the ``running`` row and hold its liveness lock until :meth:`finish_run`.

        The session-level lock is taken before the row is committed, so no other process can
        see the row without its lock; runs whose lock is free are marked ``abandoned``.
        """
        lease = self.pool.acquire()
        connection = lease.connection
        try:
            with connection.transaction():
                row = connection.execute(
                    self.sql.start_run,
                    {"trigger": trigger, "hostname": hostname, "pid": pid, "version": version},
                ).fetchone()
                assert row is not None
                run_id, started_at = row
                self.clock_offset = started_at - datetime.now(timezone.utc)
                connection.execute(self.sql.run_lock, {"cls": self.run_lock, "key": run_id % _INT4})
            abandoned = connection.execute(
                self.sql.abandon,
                {"me": run_id, "cls": self.run_lock, "error": ABANDONED_ERROR},
            ).fetchall()
        except BaseException:
            lease.discard()  # closing the session also frees the lock
            raise
        if abandoned:
            log.warning(
                "marked %d earlier run(s) as abandoned (their process is gone): %s",
                len(abandoned),
                ", ".join(str(row[0]) for row in abandoned),
            )
        return RunHandle(int(run_id), started_at, lease)

    def finish_run(
        self,
        handle: RunHandle,
        status: RunStatus,
        results: Sequence[VdnResult],
        *,
        unrecorded: Sequence[VdnResult] = (),
        error: str | None = None,
    ) -> datetime:
        """Record VDNs never started (batched), close the run row, release its lock."""
        connection = handle.lease.connection
        try:
            for result in unrecorded:
                self.record_later(handle.run_id, result)
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
                    self.sql.finish_run,
                    {
                        "run": handle.run_id,
                        "status": status,
                        "vdns": len(results),
                        "error": error,
                        **counts,
                        **sums,
                    },
                ).fetchone()
                assert row is not None
                finished_at: datetime = row[0]
                connection.execute(
                    self.sql.run_unlock, {"cls": self.run_lock, "key": handle.run_id % _INT4}
                )
        except BaseException:
            handle.lease.discard()  # the lock goes with the session
            raise
        handle.lease.release()
        return finished_at

    # -------------------------------------------------------------------------- VDNs

    def tables_exist(self) -> bool:
        with self.pool.connection() as connection:
            row = connection.execute(
                "SELECT to_regclass(%s) IS NOT NULL",
                (f"{quote_identifier(self.schema)}.result_code",),
            ).fetchone()
        return bool(row and row[0])

    def _read_rows(self, vdn_id: int) -> list[tuple[str, str, bool]]:
        with self.pool.connection() as connection:
            return connection.execute(self.sql.read, {"vdn": vdn_id}).fetchall()

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
                    if _same(rows, codes):  # the usual re-sync: no StoredCode objects, no diff
                        result = plan.outcome(_no_changes(len(codes)), len(rows), self.now())
                        return self.record_later(run_id, result)
                    stored = {code: StoredCode(code, d, deleted) for code, d, deleted in rows}
                    changes = plan.changes(stored)
                    if changes.is_empty:
                        result = plan.outcome(changes, _present(stored), self.now())
                        return self.record_later(run_id, result)
                lease = self.pool.acquire()
                with lease.connection.transaction():
                    applied = self._apply(lease.connection, run_id, plan)
                lease.release()
                if applied.skip_reason == "locked":
                    return self.record_later(run_id, applied)
                return applied
            except psycopg.Error as error:
                broken = lease is not None and (lease.connection.broken or lease.connection.closed)
                if lease is not None:
                    lease.release()
                # A pooled connection found dead (database restarted): once more, fresh.
                if attempt == 1 and (broken or isinstance(error, psycopg.OperationalError)):
                    continue
                message = f"database error: {_db_message(error)}"
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

    def _apply(self, connection: psycopg.Connection[Any], run_id: int, plan: VdnPlan) -> VdnResult:
        vdn = plan.vdn_id
        row = connection.execute(self.sql.lock, {"cls": self.vdn_lock, "vdn": vdn}).fetchone()
        assert row is not None
        got, now = row
        if not got:
            return plan.locked(self.now())
        stored: dict[str, StoredCode] = {}
        latest: datetime = now
        rows = connection.execute(self.sql.read_locked, {"vdn": vdn}).fetchall()
        for code, desc, deleted, changed_at in rows:
            stored[code] = StoredCode(code, desc, deleted)
            if changed_at >= latest:
                latest = changed_at + _MICROSECOND
        changes = plan.changes(stored)
        if not changes.is_empty:
            self._write(connection, run_id, vdn, changes, latest)
        result = plan.outcome(changes, _present(stored), self.now())
        # In the VDN's transaction: its changes and its record commit together.
        self._insert_records(connection, run_id, [result])
        return result

    def _write(
        self,
        connection: psycopg.Connection[Any],
        run_id: int,
        vdn: int,
        changes: Changes,
        ts: datetime,
    ) -> None:
        """The set-based statements for one VDN's changes; row counts are verified."""

        def run(statement: str, expected: int, **params: Any) -> None:
            count = connection.execute(statement, {"vdn": vdn, "ts": ts, **params}).rowcount
            if count != expected:
                raise StoreError(
                    f"stored data inconsistent for VDN {vdn}: a statement changed {count} rows, "
                    f"expected {expected}; nothing applied for this VDN"
                )

        closed = [c for c, _, _ in changes.updates] + list(changes.deletes)
        if closed:
            run(self.sql.close_versions, len(closed), codes=closed, run=run_id)
        if changes.deletes:
            run(self.sql.delete_codes, len(changes.deletes), codes=list(changes.deletes))
        if changes.inserts:
            run(
                self.sql.insert_codes,
                len(changes.inserts),
                codes=[c for c, _ in changes.inserts],
                descs=[d for _, d in changes.inserts],
                run=run_id,
            )
        rewritten = [(c, new) for c, _, new in changes.updates] + list(changes.restores)
        if rewritten:
            run(
                self.sql.update_codes,
                len(rewritten),
                codes=[c for c, _ in rewritten],
                descs=[d for _, d in rewritten],
                run=run_id,
            )


def _same(rows: Sequence[tuple[str, str, bool]], codes: Mapping[str, str]) -> bool:
    """True when the stored rows are exactly the snapshot: all present, same descriptions."""
    if len(rows) != len(codes):
        return False
    get = codes.get
    return all(not deleted and get(code) == desc for code, desc, deleted in rows)


def _no_changes(unchanged: int) -> Changes:
    return Changes(
        inserts=(),
        updates=(),
        deletes=(),
        restores=(),
        unchanged=unchanged,
        guarded=False,
        withheld_deletes=(),
    )


def _present(stored: Mapping[str, StoredCode]) -> int:
    return sum(1 for row in stored.values() if not row.deleted)


def _db_message(error: psycopg.Error) -> str:
    """The database's own message, one line, without SQL or parameters (they may be huge)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
