"""One VDN's writes under its lock: the set-based change statements, its record, and how
a database error that failed it is worded.

Called by :class:`obs_sync.store.store.Store` inside the VDN's transaction; plain
functions over a psycopg connection and the schema's :class:`~obs_sync.store.sql.Statements`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg

from obs_sync.diff import Changes
from obs_sync.errors import ObsSyncError
from obs_sync.results import DEFAULT_SOURCE, VdnResult
from obs_sync.store.sql import RECORD_COLUMNS, Statements


class StoreError(ObsSyncError):
    """The stored data contradicts its own invariants; the VDN is not applied."""


def write_changes(
    connection: psycopg.Connection[Any],
    sql: Statements,
    run_id: int,
    key: tuple[str, int],
    changes: Changes,
    ts: datetime,
    *,
    relabel: bool = False,
    initial: bool = False,
    baseline: bool = False,
) -> None:
    """The set-based statements for one VDN's changes; row counts are verified.

    ``relabel``: the changed descriptions are the source's switch of language: their new
    versions are marked ``relabelled`` (restored codes are not: they came back).
    ``initial``: the VDN's initial load is under way: new codes' versions are marked
    ``initial``, and with ``baseline`` (first_sync_as_baseline) valid since ``-infinity``."""
    source, vdn = key

    def run(statement: str, expected: int, **params: Any) -> None:
        values = {"source": source, "vdn": vdn, "ts": ts, "relabelled": False, **params}
        values.update(initial=initial, baseline=initial and baseline)
        count = connection.execute(statement, values).rowcount
        if count != expected:
            where = f"VDN {vdn}" if source == DEFAULT_SOURCE else f"VDN {vdn} of {source}"
            raise StoreError(
                f"stored data inconsistent for {where}: a statement changed {count} rows, "
                f"expected {expected}; nothing applied for this VDN"
            )

    closed = [c for c, _, _ in changes.updates] + list(changes.deletes)
    if closed:
        run(sql.close_versions, len(closed), codes=closed, run=run_id)
    if changes.deletes:
        run(sql.delete_codes, len(changes.deletes), codes=list(changes.deletes))
    if changes.inserts:
        run(
            sql.insert_codes,
            len(changes.inserts),
            codes=[c for c, _ in changes.inserts],
            descs=[d for _, d in changes.inserts],
            run=run_id,
        )
    updated = [(c, new) for c, _, new in changes.updates]
    restored = list(changes.restores)
    groups = [(updated, True), (restored, False)] if relabel else [(updated + restored, False)]
    for rewritten, relabelled in groups:
        if rewritten:
            run(
                sql.update_codes,
                len(rewritten),
                codes=[c for c, _ in rewritten],
                descs=[d for _, d in rewritten],
                run=run_id,
                relabelled=relabelled,
            )


def insert_applied(
    connection: psycopg.Connection[Any],
    sql: Statements,
    run_id: int,
    result: VdnResult,
    ts: datetime,
    *,
    wrote: bool,
    locale: str,
) -> VdnResult:
    """The record of a VDN applied under its lock, with its times read back: both from the
    database clock, around the change instant ``ts``. When it ``wrote``, the instant its
    fetch began is kept in ``vdn_state`` (no older snapshot is applied over it)."""
    params: dict[str, Any] = {"run": run_id, "ts": ts, "wrote": wrote, "locale": locale}
    for name, _ in RECORD_COLUMNS:
        params[name] = getattr(result, "vdn_id" if name == "vdn" else name)
    row = connection.execute(sql.record_applied, params).fetchone()
    assert row is not None
    return replace(result, started_at=row[0], finished_at=row[1])


def db_message(error: psycopg.Error) -> str:
    """The database's own message, one line, without SQL or parameters (they may be huge);
    for a bound obs-sync set, the setting that ended the wait."""
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else type(error).__name__
    if isinstance(error, psycopg.errors.LockNotAvailable):
        message += (
            " (another session held a lock on this VDN's rows longer than "
            "database.lock_timeout_seconds)"
        )
    elif isinstance(error, psycopg.errors.QueryCanceled):
        message += (
            " (a statement ran longer than database.statement_timeout_seconds, or was "
            "cancelled by an administrator)"
        )
    return message


def bounded(error: psycopg.Error) -> bool:
    """The statement was ended by one of the configured bounds (retrying would wait again)."""
    return isinstance(error, (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled))
