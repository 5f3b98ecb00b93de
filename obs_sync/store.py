"""The PostgreSQL store: tables, one transaction per VDN, advisory locks, run records.

Knows SQL, not HTTP. A VDN starts with one unlocked SELECT of its stored codes; when the
diff is empty (the usual re-sync) that is all, and its ``sync_run_vdn`` row is batched with
others. Otherwise it is applied in one transaction with a fixed, small number of
statements whatever its code count (set-based SQL over ``unnest`` arrays):

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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.exc import DBAPIError

from obs_sync.diff import Changes, StoredCode, compute_changes, find_unstorable
from obs_sync.results import LOCKED_ERROR, RunStatus, VdnResult, VdnStatus

__all__ = [
    "BI_TABLES",
    "LOCKED_ERROR",
    "RunHandle",
    "RunStatus",
    "Store",
    "StoreError",
    "VdnResult",
    "VdnStatus",
    "lock_class",
    "outcome",
]

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.sql.elements import TextClause

log = logging.getLogger(__name__)

ABANDONED_ERROR = (
    "the process running it ended before finishing (killed, crashed, or lost its database "
    "connection); VDNs without a sync_run_vdn row were not applied"
)
_MICROSECOND = timedelta(microseconds=1)
RECORD_BATCH = 500
# sync_run_vdn columns written per VDN (the parameter name "vdn" is VdnResult.vdn_id).
_RECORD_COLUMNS = (
    ("vdn", "integer"),
    ("status", "text"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("pages", "integer"),
    ("requests", "integer"),
    ("total_count", "integer"),
    ("inserted", "integer"),
    ("updated", "integer"),
    ("deleted", "integer"),
    ("restored", "integer"),
    ("unchanged", "integer"),
    ("withheld", "integer"),
    ("error", "text"),
)
_INT4 = 2**31 - 1


# ------------------------------------------------------------------------------ tables
# The BI contract, as created by migrations/versions/0001_initial.py (schema-less here: the
# configured schema is applied with schema_translate_map / qualified names).

metadata = MetaData()
TZ = DateTime(timezone=True)

sync_run = Table(
    "sync_run",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("started_at", TZ, nullable=False),
    Column("finished_at", TZ),
    Column("status", Text, nullable=False),
    Column("trigger", Text, nullable=False),
    Column("hostname", Text),
    Column("pid", Integer),
    Column("obs_sync_version", Text),
    Column("dry_run", Boolean, nullable=False),
    *(Column(name, Integer, nullable=False) for name in ("vdns", "succeeded", "failed")),
    *(Column(name, Integer, nullable=False) for name in ("incomplete", "guarded", "skipped")),
    *(
        Column(name, BigInteger, nullable=False)
        for name in ("inserted", "updated", "deleted", "restored", "unchanged")
    ),
    Column("error", Text),
)

sync_run_vdn = Table(
    "sync_run_vdn",
    metadata,
    Column("sync_run_id", BigInteger, ForeignKey("sync_run.id"), primary_key=True),
    Column("vdn_id", Integer, primary_key=True),
    Column("status", Text, nullable=False),
    Column("started_at", TZ, nullable=False),
    Column("finished_at", TZ, nullable=False),
    Column("pages", Integer, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("total_count", Integer),
    *(
        Column(name, Integer, nullable=False)
        for name in ("inserted", "updated", "deleted", "restored", "unchanged", "withheld")
    ),
    Column("error", Text),
)

result_code = Table(
    "result_code",
    metadata,
    Column("vdn_id", Integer, primary_key=True),
    Column("obs_code", Text, primary_key=True),
    Column("obs_code_desc", Text, nullable=False),
    Column("first_seen_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("deleted_at", TZ),
)

result_code_history = Table(
    "result_code_history",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("vdn_id", Integer, nullable=False),
    Column("obs_code", Text, nullable=False),
    Column("obs_code_desc", Text, nullable=False),
    Column("valid_from", TZ, nullable=False),
    Column("valid_to", TZ),
    Column("sync_run_id", BigInteger, ForeignKey("sync_run.id"), nullable=False),
    Column("closed_by_sync_run_id", BigInteger, ForeignKey("sync_run.id")),
)

BI_TABLES = (result_code, result_code_history, sync_run, sync_run_vdn)


class StoreError(Exception):
    """The stored data contradicts its own invariants; the VDN is not applied."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def lock_class(schema: str, purpose: str) -> int:
    """First key of a two-key advisory lock, distinct per schema and purpose (int4 >= 0)."""
    return zlib.crc32(f"obs-sync:{schema}:{purpose}".encode()) & _INT4


@dataclass(frozen=True)
class RunHandle:
    """A started run: its id, and the connection holding its liveness lock."""

    run_id: int
    started_at: datetime
    connection: Connection


class Store:
    """SQL for one schema. Thread-safe: every method takes its own pooled connection."""

    def __init__(self, engine: Engine, schema: str) -> None:
        self.engine = engine
        self.schema = schema
        s = engine.dialect.identifier_preparer.quote_identifier(schema)
        self.vdn_lock = lock_class(schema, "vdn")
        self.run_lock = lock_class(schema, "run")

        def sql(statement: str) -> TextClause:
            return text(statement.format(s=s))

        self._lock_sql = sql("SELECT pg_try_advisory_xact_lock(:cls, :vdn), clock_timestamp()")
        # The unlocked read of the no-change path needs no timestamps; the locked one
        # also reads the latest change instant, so the VDN's new instant is later.
        self._read_sql = sql(
            "SELECT obs_code, obs_code_desc, deleted_at IS NOT NULL "
            "FROM {s}.result_code WHERE vdn_id = :vdn"
        )
        self._read_locked_sql = sql(
            "SELECT obs_code, obs_code_desc, deleted_at IS NOT NULL, "
            "greatest(updated_at, deleted_at) FROM {s}.result_code WHERE vdn_id = :vdn"
        )
        # Each statement that gives codes a description also opens their new version, from
        # its own RETURNING rows. Versions are closed first (_close_versions_sql): at most
        # one open version per code is enforced at every row.
        self._insert_codes_sql = sql(
            "WITH new AS (INSERT INTO {s}.result_code (vdn_id, obs_code, obs_code_desc, "
            "first_seen_at, updated_at) SELECT :vdn, c, d, :ts, :ts "
            "FROM unnest(CAST(:codes AS text[]), CAST(:descs AS text[])) AS u(c, d) "
            "RETURNING obs_code, obs_code_desc) "
            "INSERT INTO {s}.result_code_history (vdn_id, obs_code, obs_code_desc, valid_from, "
            "sync_run_id) SELECT :vdn, obs_code, obs_code_desc, :ts, :run FROM new"
        )
        # Changed and restored codes: new description, present again, new version instant.
        self._update_codes_sql = sql(
            "WITH changed AS (UPDATE {s}.result_code AS r SET obs_code_desc = u.d, "
            "updated_at = :ts, deleted_at = NULL "
            "FROM unnest(CAST(:codes AS text[]), CAST(:descs AS text[])) AS u(c, d) "
            "WHERE r.vdn_id = :vdn AND r.obs_code = u.c RETURNING r.obs_code, r.obs_code_desc) "
            "INSERT INTO {s}.result_code_history (vdn_id, obs_code, obs_code_desc, valid_from, "
            "sync_run_id) SELECT :vdn, obs_code, obs_code_desc, :ts, :run FROM changed"
        )
        self._delete_codes_sql = sql(
            "UPDATE {s}.result_code SET deleted_at = :ts "
            "WHERE vdn_id = :vdn AND obs_code = ANY(CAST(:codes AS text[])) "
            "AND deleted_at IS NULL"
        )
        self._close_versions_sql = sql(
            "UPDATE {s}.result_code_history SET valid_to = :ts, closed_by_sync_run_id = :run "
            "WHERE vdn_id = :vdn AND obs_code = ANY(CAST(:codes AS text[])) AND valid_to IS NULL"
        )
        # sync_run_vdn rows, one or many per statement (parallel arrays, one per column).
        self._record_sql = sql(
            "INSERT INTO {s}.sync_run_vdn (sync_run_id, vdn_id, status, started_at, finished_at, "
            "pages, requests, total_count, inserted, updated, deleted, restored, unchanged, "
            "withheld, error) SELECT :run, * FROM unnest("
            + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _RECORD_COLUMNS)
            + ")"
        )
        self._start_run_sql = sql(
            "INSERT INTO {s}.sync_run (started_at, status, trigger, hostname, pid, "
            "obs_sync_version, dry_run) VALUES (clock_timestamp(), 'running', :trigger, "
            ":hostname, :pid, :version, false) RETURNING id, started_at"
        )
        # A 'running' run whose liveness lock nobody holds belongs to a dead process.
        self._abandon_sql = sql(
            "UPDATE {s}.sync_run AS r SET status = 'abandoned', "
            "finished_at = clock_timestamp(), error = :error "
            "WHERE r.status = 'running' AND r.id <> :me AND NOT EXISTS ("
            " SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = :cls AND l.objid::bigint = r.id % 2147483647"
            " AND l.objsubid = 2) RETURNING r.id"
        )
        self._finish_run_sql = sql(
            "UPDATE {s}.sync_run SET finished_at = clock_timestamp(), status = :status, "
            "vdns = :vdns, succeeded = :succeeded, failed = :failed, incomplete = :incomplete, "
            "guarded = :guarded, skipped = :skipped, inserted = :inserted, updated = :updated, "
            "deleted = :deleted, restored = :restored, unchanged = :unchanged, error = :error "
            "WHERE id = :run RETURNING finished_at"
        )
        self._tables_exist_sql = sql("SELECT to_regclass('{s}.result_code') IS NOT NULL")
        # Records of VDNs that wrote no data are batched (one INSERT per RECORD_BATCH VDNs):
        # nothing to keep consistent with, and a no-change VDN then costs one round trip.
        self._pending: list[VdnResult] = []
        self._pending_lock = threading.Lock()
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
        connection = self.engine.connect()
        try:
            run_id, started_at = connection.execute(
                self._start_run_sql,
                {"trigger": trigger, "hostname": hostname, "pid": pid, "version": version},
            ).one()
            self.clock_offset = started_at - datetime.now(timezone.utc)
            connection.execute(
                text("SELECT pg_advisory_lock(:cls, :key)"),
                {"cls": self.run_lock, "key": run_id % _INT4},
            )
            connection.commit()
            abandoned = connection.execute(
                self._abandon_sql,
                {"me": run_id, "cls": self.run_lock, "error": ABANDONED_ERROR},
            ).all()
            connection.commit()
        except BaseException:
            connection.close()  # closing the session also frees the lock
            raise
        if abandoned:
            log.warning(
                "marked %d earlier run(s) as abandoned (their process is gone): %s",
                len(abandoned),
                ", ".join(str(row[0]) for row in abandoned),
            )
        return RunHandle(int(run_id), started_at, connection)

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
        connection = handle.connection
        try:
            for result in unrecorded:
                self.record_later(handle.run_id, result)
            self.flush_records(handle.run_id, connection)
            counts = {
                name: sum(1 for r in results if r.status == name)
                for name in ("succeeded", "failed", "incomplete", "guarded", "skipped")
            }
            sums = {
                name: sum(getattr(r, name) for r in results)
                for name in ("inserted", "updated", "deleted", "restored", "unchanged")
            }
            finished_at: datetime = connection.execute(
                self._finish_run_sql,
                {
                    "run": handle.run_id,
                    "status": status,
                    "vdns": len(results),
                    "error": error,
                    **counts,
                    **sums,
                },
            ).scalar_one()
            connection.execute(
                text("SELECT pg_advisory_unlock(:cls, :key)"),
                {"cls": self.run_lock, "key": handle.run_id % _INT4},
            )
            connection.commit()
        finally:
            connection.close()
        return finished_at

    # -------------------------------------------------------------------------- VDNs

    def tables_exist(self) -> bool:
        with self.engine.connect() as connection:
            return bool(connection.execute(self._tables_exist_sql).scalar())

    def read_codes(self, vdn_id: int) -> dict[str, StoredCode]:
        """The VDN's stored codes (present and deleted), unlocked, in one round trip."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            rows = conn.execute(self._read_sql, {"vdn": vdn_id}).all()
        return {code: StoredCode(code, desc, deleted) for code, desc, deleted in rows}

    def record_later(self, run_id: int, result: VdnResult) -> VdnResult:
        """Queue the ``sync_run_vdn`` row of a VDN that wrote no data; flushed in batches."""
        if result.finished_at is None:
            result = replace(result, finished_at=self.now())
        with self._pending_lock:
            self._pending.append(result)
            full = len(self._pending) >= RECORD_BATCH
        if full:
            try:
                self.flush_records(run_id)
            except Exception:  # kept queued: the run's finish tries again
                log.warning("cannot write run records yet (will retry)", exc_info=True)
        return result

    def flush_records(self, run_id: int, connection: Connection | None = None) -> None:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            if connection is None:
                with self.engine.begin() as own:
                    self._insert_records(own, run_id, batch)
            else:
                self._insert_records(connection, run_id, batch)
        except BaseException:
            with self._pending_lock:
                self._pending[:0] = batch
            raise

    def _insert_records(
        self, connection: Connection, run_id: int, results: Sequence[VdnResult]
    ) -> None:
        params: dict[str, Any] = {"run": run_id}
        for name, _ in _RECORD_COLUMNS:
            params[name] = [getattr(r, "vdn_id" if name == "vdn" else name) for r in results]
        connection.execute(self._record_sql, params)

    def apply_vdn(
        self,
        run_id: int,
        fetched: VdnResult,
        codes: Mapping[str, str],
        *,
        complete: bool,
        incomplete_reason: str | None,
        max_delete_fraction: float,
    ) -> VdnResult:
        """Apply one VDN's snapshot in one transaction and record it; never raises for data.

        ``fetched`` carries the fetch statistics; the returned result has the status,
        counts and finish time. A value PostgreSQL cannot store, or a database error,
        makes the VDN ``failed`` with its rows untouched.

        Fast path: an unlocked read first. When it shows nothing to write (the common
        re-sync), the VDN is done: no lock, no transaction, its record batched. Otherwise
        the VDN is re-read and applied under its lock.
        """
        problems = find_unstorable(codes)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return self._failed(run_id, fetched, f"data error: {problems[0]}{more}")
        incomplete_reason = None if complete else (incomplete_reason or "reason unknown")
        for attempt in (1, 2):
            try:
                stored = self.read_codes(fetched.vdn_id)
                changes = compute_changes(
                    stored, codes, complete=complete, max_delete_fraction=max_delete_fraction
                )
                if changes.is_empty:
                    result = outcome(
                        fetched, stored, changes, incomplete_reason, max_delete_fraction
                    )
                    return self.record_later(run_id, result)
                with self.engine.begin() as connection:
                    applied = self._apply(
                        connection,
                        run_id,
                        fetched,
                        codes,
                        complete=complete,
                        incomplete_reason=incomplete_reason,
                        max_delete_fraction=max_delete_fraction,
                    )
                if applied.skip_reason == "locked":
                    return self.record_later(run_id, applied)
                return applied
            except DBAPIError as error:
                # A pooled connection found dead (database restarted): once more, fresh.
                if error.connection_invalidated and attempt == 1:
                    continue
                return self._failed(run_id, fetched, f"database error: {_db_message(error)}")
            except StoreError as error:
                return self._failed(run_id, fetched, str(error))
        raise AssertionError("unreachable")

    def _failed(self, run_id: int, fetched: VdnResult, error: str) -> VdnResult:
        return self.record_later(run_id, replace(fetched, status="failed", error=error))

    def _apply(
        self,
        connection: Connection,
        run_id: int,
        fetched: VdnResult,
        codes: Mapping[str, str],
        *,
        complete: bool,
        incomplete_reason: str | None,
        max_delete_fraction: float,
    ) -> VdnResult:
        vdn = fetched.vdn_id
        got, now = connection.execute(self._lock_sql, {"cls": self.vdn_lock, "vdn": vdn}).one()
        if not got:
            return replace(fetched, status="skipped", error=LOCKED_ERROR, skip_reason="locked")
        stored: dict[str, StoredCode] = {}
        latest: datetime = now
        rows = connection.execute(self._read_locked_sql, {"vdn": vdn}).all()
        for code, desc, deleted, changed_at in rows:
            stored[code] = StoredCode(code, desc, deleted)
            if changed_at >= latest:
                latest = changed_at + _MICROSECOND
        changes = compute_changes(
            stored, codes, complete=complete, max_delete_fraction=max_delete_fraction
        )
        if not changes.is_empty:
            self._write(connection, run_id, vdn, changes, latest)
        result = outcome(fetched, stored, changes, incomplete_reason, max_delete_fraction)
        result = replace(result, finished_at=self.now())
        # In the VDN's transaction: its changes and its record commit together.
        self._insert_records(connection, run_id, [result])
        return result

    def _write(
        self, connection: Connection, run_id: int, vdn: int, changes: Changes, ts: datetime
    ) -> None:
        """The set-based statements for one VDN's changes; row counts are verified."""

        def run(statement: TextClause, expected: int, **params: Any) -> None:
            count = connection.execute(statement, {"vdn": vdn, "ts": ts, **params}).rowcount
            if count != expected:
                raise StoreError(
                    f"stored data inconsistent for VDN {vdn}: a statement changed {count} rows, "
                    f"expected {expected}; nothing applied for this VDN"
                )

        closed = [c for c, _, _ in changes.updates] + list(changes.deletes)
        if closed:
            run(self._close_versions_sql, len(closed), codes=closed, run=run_id)
        if changes.deletes:
            run(self._delete_codes_sql, len(changes.deletes), codes=list(changes.deletes))
        if changes.inserts:
            run(
                self._insert_codes_sql,
                len(changes.inserts),
                codes=[c for c, _ in changes.inserts],
                descs=[d for _, d in changes.inserts],
                run=run_id,
            )
        rewritten = [(c, new) for c, _, new in changes.updates] + list(changes.restores)
        if rewritten:
            run(
                self._update_codes_sql,
                len(rewritten),
                codes=[c for c, _ in rewritten],
                descs=[d for _, d in rewritten],
                run=run_id,
            )


def outcome(
    fetched: VdnResult,
    stored: Mapping[str, StoredCode],
    changes: Changes,
    incomplete_reason: str | None,
    max_delete_fraction: float,
) -> VdnResult:
    """The VDN's status, counts and error once ``changes`` are applied (or would be)."""
    status: VdnStatus = "succeeded"
    error = None
    if incomplete_reason is not None:
        status, error = "incomplete", f"incomplete snapshot, nothing deleted: {incomplete_reason}"
    elif changes.guarded:
        status = "guarded"
        present = sum(1 for row in stored.values() if not row.deleted)
        error = (
            f"mass-deletion guard: {len(changes.withheld_deletes)} of {present} present codes "
            f"are missing from a complete snapshot, more than sync.max_delete_fraction = "
            f"{max_delete_fraction}; deletions withheld (inserts/updates applied). If the "
            "deletion is real, run once with a higher sync.max_delete_fraction"
        )
    return replace(
        fetched,
        status=status,
        error=error,
        inserted=len(changes.inserts),
        updated=len(changes.updates),
        deleted=len(changes.deletes),
        restored=len(changes.restores),
        unchanged=changes.unchanged,
        withheld=len(changes.withheld_deletes),
    )


def _db_message(error: DBAPIError) -> str:
    """The database's own message, one line, without SQL or parameters (they may be huge)."""
    cause = error.orig if error.orig is not None else error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__
