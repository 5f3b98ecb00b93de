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
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg

from obs_sync.db.pool import EnginePool, Lease, Pool
from obs_sync.db.url import quote_identifier
from obs_sync.diff import StoredCode, matches, no_changes, present
from obs_sync.results import VdnKey, VdnPlan, VdnResult
from obs_sync.store.changes import StoreError, bounded, db_message, insert_applied, write_changes
from obs_sync.store.locks import describe_holder, lock_class
from obs_sync.store.retention import prune_run_records
from obs_sync.store.runs import RunRecords
from obs_sync.store.sql import RECORD_COLUMNS, statements

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__package__)  # "obs_sync.store", as logs have always said

_MICROSECOND = timedelta(microseconds=1)
RECORD_BATCH = 500


# ------------------------------------------------------------------------------ store


class _Locked(Exception):
    """The VDN's row lock is held by another transaction (its own one is aborted)."""


class Store(RunRecords):
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

    def sources_exist(self) -> bool:
        """Whether the schema has the source registry (migration 0006)."""
        rows = self._read(
            "SELECT to_regclass(%(name)s) IS NOT NULL",
            {"name": f"{quote_identifier(self.schema)}.source"},
        )
        return bool(rows and rows[0][0])

    def _read_rows(self, key: VdnKey) -> tuple[list[tuple[str, str, bool]], bool]:
        """The VDN's stored codes, unlocked, and whether its initial load is under way;
        the database clock read with them is noted."""
        rows = self._read(self.sql.read, {"source": key[0], "vdn": key[1]})
        self._observe(rows[0][3])
        codes = [(code, desc, deleted) for code, desc, deleted, _, _ in rows if code is not None]
        return codes, bool(rows[0][4])

    def read_codes(self, key: VdnKey) -> dict[str, StoredCode]:
        """The VDN's stored codes (present and deleted), unlocked, in one round trip."""
        return {
            code: StoredCode(code, desc, deleted) for code, desc, deleted in self._read_rows(key)[0]
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
                    result, writes = self._judge_unlocked(plan, *self._read_rows(plan.key))
                    if not writes:  # the usual re-sync: done, its record batched
                        if plan.relabel:  # nothing differs in the new language either
                            self._mark_locale(plan)
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

    def _mark_locale(self, plan: VdnPlan) -> None:
        """The VDN's descriptions are in ``plan.locale`` now (a switch that changed none of
        them): later changes are changes again, not relabels."""
        with self.pool.connection() as connection:
            connection.execute(
                f"UPDATE {quote_identifier(self.schema)}.vdn SET locale = %(locale)s "
                "WHERE source = %(source)s AND vdn_id = %(vdn)s",
                {"locale": plan.locale, "source": plan.source, "vdn": plan.vdn_id},
            )

    def _lock(self, connection: psycopg.Connection[Any], plan: VdnPlan) -> tuple[datetime, bool]:
        """Take the VDN's row lock in the open transaction; the database clock then, and
        whether the VDN's initial load is under way."""
        key = plan.key
        got, now, pending = self._try_lock(connection, key)
        if not got:  # the VDN's first write: its row, which locks it too
            claimed = connection.execute(
                self.sql.claim, {"source": key[0], "vdn": key[1], "started_at": plan.started_at}
            ).fetchone()
            if claimed is not None:
                now, pending = claimed[0], True
            else:  # inserted by another transaction that has committed since
                got, now, pending = self._try_lock(connection, key)
                assert got
        self._observe(now)
        return now, pending

    def _try_lock(
        self, connection: psycopg.Connection[Any], key: VdnKey
    ) -> tuple[bool, datetime, bool]:
        try:
            row = connection.execute(self.sql.lock, {"source": key[0], "vdn": key[1]}).fetchone()
        except psycopg.errors.LockNotAvailable:  # NOWAIT: held by another transaction
            raise _Locked from None
        assert row is not None
        return bool(row[0]), row[1], bool(row[2])

    def _locked(self, connection: psycopg.Connection[Any], plan: VdnPlan) -> VdnResult:
        holder = connection.execute(
            self.sql.lock_holder, {"source": plan.source, "vdn": plan.vdn_id}
        ).fetchone()
        assert holder is not None
        *who, skips = holder
        return plan.locked(self.now(), describe_holder(*who), int(skips) + 1)

    def dry_apply(self, plan: VdnPlan, *, stored: bool = True) -> VdnResult:
        """What :meth:`apply_vdn` would do, decided as it decides from its unlocked read;
        writes nothing. ``stored=False`` (no obs-sync tables yet): against an empty store."""
        problem = plan.unstorable()
        if problem is not None:
            return plan.failed(problem, self.now(), "data")
        rows, pending = self._read_rows(plan.key) if stored else ([], True)
        return self._judge_unlocked(plan, rows, pending)[0]

    def _judge_unlocked(
        self, plan: VdnPlan, rows: Sequence[tuple[str, str, bool]], pending: bool
    ) -> tuple[VdnResult, bool]:
        """The VDN's result judged from an unlocked read of its stored ``rows``, and whether
        applying it writes anything (then :meth:`_apply` decides again, under the lock):
        changes, or the end of its initial load (``pending`` and a complete snapshot)."""
        codes = plan.codes
        ends_load = pending and plan.snapshot.complete
        if matches(rows, codes):  # the usual re-sync: no StoredCode objects, no diff
            return plan.outcome(no_changes(len(codes)), len(rows), self.now()), ends_load
        stored = {code: StoredCode(code, desc, deleted) for code, desc, deleted in rows}
        changes = plan.changes(stored)
        result = plan.outcome(changes, present(stored), self.now())
        return result, ends_load or not changes.is_empty

    def _apply(self, connection: psycopg.Connection[Any], run_id: int, plan: VdnPlan) -> VdnResult:
        now, pending = self._lock(connection, plan)
        stored: dict[str, StoredCode] = {}
        latest: datetime = now
        newer: datetime | None = None
        rows = connection.execute(
            self.sql.read_locked, {"source": plan.source, "vdn": plan.vdn_id}
        ).fetchall()
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
            write_changes(
                connection,
                self.sql,
                run_id,
                plan.key,
                changes,
                latest,
                relabel=plan.relabel,
                initial=pending,
                baseline=plan.baseline,
            )
        if pending and plan.snapshot.complete:  # the initial load ends with this snapshot
            connection.execute(
                self.sql.finish_baseline, {"source": plan.source, "vdn": plan.vdn_id, "ts": latest}
            )
        result = plan.outcome(changes, present(stored), self.now())
        # In the VDN's transaction: its changes and its record commit together.
        return insert_applied(
            connection,
            self.sql,
            run_id,
            result,
            latest,
            wrote=not changes.is_empty,
            locale=plan.locale,
        )
