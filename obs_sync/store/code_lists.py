"""The other code lists' store: one list of one VDN in one transaction, with its record.

The guarantees of :mod:`obs_sync.store.store` for OBS codes, per source, VDN and list
(display results: ``display_result`` + ``display_result_obs_code``; business results:
``business_result``), on the tables of migration 0007:

1. an unlocked read of the list's stored rows decides; when nothing changed (the usual
   re-sync) only the list's ``sync_run_code_list`` record is written: no data row;
2. otherwise, in one transaction: the list's ``code_list_state`` row lock (``FOR NO KEY
   UPDATE NOWAIT``; held elsewhere: skipped as ``locked``), the rows read again, the plan
   made again; a snapshot whose fetch began before the one that wrote the stored rows is
   not applied (skipped as ``superseded``);
3. set-based writes per table (versions closed first, then deletions, inserts, updates
   and restores, each opening its new version), every row of the list at one instant later
   than anything stored for it; the state row and the record in the same transaction.

What changes is decided by the pure core (:mod:`obs_sync.code_list_diff`): only a complete
list deletes, the mass-deletion guard, bad data writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

from obs_sync.code_list_diff import (
    ListPlan,
    ListResult,
    Stored,
    plan_business_results,
    plan_display_results,
)
from obs_sync.code_lists import (
    BUSINESS_RESULTS,
    DISPLAY_RESULTS,
    BusinessResultsSnapshot,
    DisplayResultsSnapshot,
)
from obs_sync.db.pool import Pool
from obs_sync.db.url import quote_identifier
from obs_sync.snapshot import FetchStats
from obs_sync.store.changes import StoreError, db_message
from obs_sync.store.code_list_writes import TABLES, Rows, Table, TableWriter

_MICROSECOND = timedelta(microseconds=1)
INT4_MAX = 2**31 - 1


Snapshot = DisplayResultsSnapshot | BusinessResultsSnapshot


def _code_list(snapshot: Snapshot) -> str:
    return DISPLAY_RESULTS if isinstance(snapshot, DisplayResultsSnapshot) else BUSINESS_RESULTS


class CodeListStore:
    """SQL for the code lists of one schema. Thread-safe: each call takes a connection."""

    def __init__(self, pool: Pool, schema: str) -> None:
        self.pool = pool
        self.s = quote_identifier(schema)

    # -------------------------------------------------------------------------- reads

    def read(
        self,
        source: str,
        vdn_id: int,
        table: Table,
        *,
        locked: bool = False,
        connection: psycopg.Connection[Any] | None = None,
        code_list: str = "",
    ) -> tuple[Rows, datetime | None, bool]:
        """The list table's stored rows of a VDN, its latest change instant, and (given
        its ``code_list``) whether the list's initial load is under way (migration 0009)."""
        columns = ", ".join(f"t.{c}" for c in [*table.keys, *(c for c, _ in table.values)])
        # One row of NULLs when the VDN has none: the flag comes with the rows.
        sql = (
            f"SELECT {columns}, t.deleted_at IS NOT NULL, greatest(t.updated_at, t.deleted_at), "
            f"p.pending FROM (SELECT NOT EXISTS (SELECT FROM {self.s}.code_list_state AS c "
            "WHERE c.source = %(source)s AND c.vdn_id = %(vdn)s AND c.code_list = %(list)s "
            "AND to_jsonb(c) ->> 'baseline_done_at' IS NOT NULL)) AS p(pending) "
            f"LEFT JOIN {self.s}.{table.name} AS t "
            "ON t.source = %(source)s AND t.vdn_id = %(vdn)s"
        )
        params = {"source": source, "vdn": vdn_id, "list": code_list}
        if connection is None:
            with self.pool.connection() as own:
                fetched = own.execute(sql, params).fetchall()
        else:
            fetched = connection.execute(sql, params).fetchall()
        rows: Rows = {}
        latest: datetime | None = None
        n = len(table.keys)
        for row in fetched:
            if row[0] is None:  # the VDN has no rows (keys are NOT NULL)
                continue
            rows[tuple(row[:n])] = Stored(tuple(row[n : n + len(table.values)]), bool(row[-3]))
            if latest is None or row[-2] > latest:
                latest = row[-2]
        return rows, latest, bool(code_list) and bool(fetched[0][-1])

    def _plan(
        self,
        snapshot: Snapshot,
        stored: Sequence[Rows],
        *,
        max_code_bytes: int,
        max_delete_fraction: float,
    ) -> ListPlan:
        if isinstance(snapshot, DisplayResultsSnapshot):
            return plan_display_results(
                snapshot,
                stored[0],
                stored[1],
                max_code_bytes=max_code_bytes,
                max_delete_fraction=max_delete_fraction,
            )
        return plan_business_results(
            snapshot,
            stored[0],
            max_code_bytes=max_code_bytes,
            max_delete_fraction=max_delete_fraction,
        )

    # -------------------------------------------------------------------------- apply

    def apply(
        self,
        run_id: int,
        snapshot: Snapshot,
        *,
        started_at: datetime,
        max_code_bytes: int,
        max_delete_fraction: float,
        baseline: bool = False,
    ) -> ListResult:
        """Apply one fetched list of one VDN and record it; never raises for data.

        ``started_at``: when its fetch began, on the database clock; ``baseline``
        (first_sync_as_baseline): the list's initial load is valid since ever."""
        code_list = _code_list(snapshot)
        tables = TABLES[code_list]
        base = ListResult(
            source=snapshot.source,
            vdn_id=snapshot.vdn_id,
            code_list=code_list,
            status="succeeded",
            started_at=started_at,
            pages=snapshot.stats.pages,
            requests=snapshot.stats.requests,
            total_count=snapshot.stats.total_count,
            unexpected=snapshot.unexpected,
        )
        limits: dict[str, Any] = {
            "max_code_bytes": max_code_bytes,
            "max_delete_fraction": max_delete_fraction,
        }
        try:
            reads = [
                self.read(snapshot.source, snapshot.vdn_id, t, code_list=code_list) for t in tables
            ]
            plan = self._plan(snapshot, [rows for rows, _, _ in reads], **limits)
            ends_load = reads[0][2] and snapshot.complete  # then the state row is written
            if plan.status == "failed" or (plan.is_empty and not ends_load):
                return self._record(run_id, _outcome(base, plan))
            with self.pool.connection() as connection, connection.transaction():
                return self._apply_locked(
                    connection, run_id, snapshot, base, tables, limits, baseline=baseline
                )
        except _Locked:  # rolled back: nothing written
            held = replace(
                base,
                status="skipped",
                skip_reason="locked",
                error="another session holds this list's lock (code_list_state row)",
            )
            return self._record(run_id, held)
        except psycopg.Error as error:
            failed = replace(
                base,
                status="failed",
                error=f"database error: {db_message(error)}",
                error_kind="database",
            )
            return self._record(run_id, failed)
        except StoreError as error:
            return self._record(
                run_id, replace(base, status="failed", error=str(error), error_kind="database")
            )

    def _apply_locked(
        self,
        connection: psycopg.Connection[Any],
        run_id: int,
        snapshot: Snapshot,
        base: ListResult,
        tables: Sequence[Table],
        limits: Mapping[str, Any],
        *,
        baseline: bool,
    ) -> ListResult:
        key = {"source": snapshot.source, "vdn": snapshot.vdn_id, "list": base.code_list}
        try:
            row = connection.execute(
                "SELECT snapshot_started_at, clock_timestamp(), baseline_done_at IS NULL "
                f"FROM {self.s}.code_list_state "
                "WHERE source = %(source)s AND vdn_id = %(vdn)s AND code_list = %(list)s "
                "FOR NO KEY UPDATE NOWAIT",
                key,
            ).fetchone()
        except psycopg.errors.LockNotAvailable:
            raise _Locked from None
        newer: datetime | None = None
        if row is None:
            claimed = connection.execute(
                f"INSERT INTO {self.s}.code_list_state (source, vdn_id, code_list, "
                "snapshot_started_at) VALUES (%(source)s, %(vdn)s, %(list)s, %(at)s) "
                "ON CONFLICT DO NOTHING RETURNING clock_timestamp()",
                {**key, "at": base.started_at},
            ).fetchone()
            if claimed is None:  # another writer claimed it first: it holds the lock
                raise _Locked
            now: datetime = claimed[0]
            pending = True
        else:
            newer, now, pending = row
        stored: list[Rows] = []
        latest = now
        for table in tables:
            rows, changed, _ = self.read(
                snapshot.source, snapshot.vdn_id, table, connection=connection
            )
            stored.append(rows)
            if changed is not None and changed >= latest:
                latest = changed + _MICROSECOND
        plan = self._plan(snapshot, stored, **limits)
        if pending and snapshot.complete and plan.status != "failed":
            # The list's initial load ends with this snapshot: later rows are changes.
            connection.execute(
                f"UPDATE {self.s}.code_list_state SET baseline_done_at = %(at)s "
                "WHERE source = %(source)s AND vdn_id = %(vdn)s AND code_list = %(list)s",
                {**key, "at": latest},
            )
        if plan.is_empty or plan.status == "failed":
            return self._record(run_id, _outcome(base, plan), connection)
        if newer is not None and newer > base.started_at:
            return self._record(
                run_id,
                replace(
                    base,
                    status="skipped",
                    skip_reason="superseded",
                    error=(
                        "superseded: another obs-sync process applied a snapshot of this list "
                        "fetched after this one began; this older one was not applied"
                    ),
                ),
                connection,
            )
        for table in tables:
            changes = plan.tables[table.name]
            TableWriter(
                connection,
                self.s,
                table,
                snapshot.source,
                snapshot.vdn_id,
                run_id,
                latest,
                initial=pending,
                baseline=baseline,
            ).write(changes)
        connection.execute(
            f"UPDATE {self.s}.code_list_state SET snapshot_started_at = "
            "greatest(snapshot_started_at, %(at)s) WHERE source = %(source)s "
            "AND vdn_id = %(vdn)s AND code_list = %(list)s",
            {**key, "at": base.started_at},
        )
        return self._record(run_id, _outcome(base, plan), connection)

    def record_failed(
        self,
        run_id: int,
        source: str,
        vdn_id: int,
        code_list: str,
        *,
        error: str,
        kind: str,
        started_at: datetime,
        stats: FetchStats | None = None,
    ) -> ListResult:
        """The record of a list whose fetch failed (nothing written)."""
        stats = stats or FetchStats()
        result = ListResult(
            source=source,
            vdn_id=vdn_id,
            code_list=code_list,
            status="failed",
            started_at=started_at,
            pages=stats.pages,
            requests=stats.requests,
            total_count=stats.total_count,
            error=error,
            error_kind=kind,
        )
        return self._record(run_id, result)

    def _record(
        self,
        run_id: int,
        result: ListResult,
        connection: psycopg.Connection[Any] | None = None,
    ) -> ListResult:
        columns = (
            "status",
            "started_at",
            "pages",
            "requests",
            "total_count",
            "inserted",
            "updated",
            "deleted",
            "restored",
            "unchanged",
            "withheld",
            "error",
            "skip_reason",
        )
        params: dict[str, Any] = {c: getattr(result, c) for c in columns}
        for c in (
            "pages",
            "requests",
            "inserted",
            "updated",
            "deleted",
            "restored",
            "unchanged",
            "withheld",
        ):
            params[c] = min(params[c], INT4_MAX)
        params.update(
            run=run_id,
            source=result.source,
            vdn=result.vdn_id,
            list=result.code_list,
            unexpected="\n".join(result.unexpected) or None,
        )
        sql = (
            f"INSERT INTO {self.s}.sync_run_code_list (sync_run_id, source, vdn_id, code_list, "
            f"{', '.join(columns)}, finished_at, unexpected) VALUES (%(run)s, %(source)s, "
            f"%(vdn)s, %(list)s, {', '.join(f'%({c})s' for c in columns)}, "
            "greatest(clock_timestamp(), %(started_at)s), %(unexpected)s) RETURNING finished_at"
        )
        if connection is None:
            with self.pool.connection() as own:
                row = own.execute(sql, params).fetchone()
        else:
            row = connection.execute(sql, params).fetchone()
        assert row is not None
        return replace(result, finished_at=row[0])


class _Locked(Exception):
    """The list's state row is locked by another transaction."""


def _outcome(base: ListResult, plan: ListPlan) -> ListResult:
    if plan.status == "failed":
        return replace(base, status="failed", error=plan.error, error_kind="data")
    return replace(
        base,
        status=plan.status,
        inserted=plan.count("inserts"),
        updated=plan.count("updates"),
        deleted=plan.count("deletes"),
        restored=plan.count("restores"),
        unchanged=plan.unchanged,
        withheld=plan.count("withheld"),
        error=plan.error,
    )
