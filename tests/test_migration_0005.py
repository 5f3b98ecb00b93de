"""Migration 0005 (a run's heartbeat, the fail-fast skip reasons) on a populated database
of the previous revision: rows kept, BI queries unchanged, reversible."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from obs_sync.db import migrate

S = "obs_sync_m5"

POPULATE = """
INSERT INTO {s}.sync_run (id, started_at, finished_at, status, trigger, dry_run, vdns,
    succeeded, failed, incomplete, guarded, skipped, inserted, updated, deleted, restored,
    unchanged) OVERRIDING SYSTEM VALUE
VALUES (1, '2026-12-01T10:00Z', '2026-12-01T10:01Z', 'stopped', 'cli', false, 2, 1, 0, 0, 0,
        1, 3, 0, 0, 0, 0),
       (2, '2026-12-01T11:00Z', NULL, 'running', 'schedule', false, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0);
INSERT INTO {s}.sync_run_vdn (sync_run_id, vdn_id, status, started_at, finished_at, pages,
    requests, inserted, updated, deleted, restored, unchanged, withheld, error, skip_reason)
VALUES (1, 1, 'succeeded', '2026-12-01T10:00Z', '2026-12-01T10:00:30Z', 1, 1, 3, 0, 0, 0, 0,
        0, NULL, NULL),
       (1, 2, 'skipped', '2026-12-01T10:01Z', '2026-12-01T10:01Z', 0, 0, 0, 0, 0, 0, 0, 0,
        'not started: stop requested', 'stopped');
"""

RECORDS = (
    "SELECT sync_run_id, vdn_id, status, skip_reason, error FROM {s}.sync_run_vdn ORDER BY 1, 2"
)


def run(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.begin() as connection:
        result = connection.execute(text(sql.format(s=S)))
        return [tuple(row) for row in result] if result.returns_rows else []


def test_0005_on_a_populated_0003_database_round_trips(db_engine: Engine) -> None:
    assert migrate.upgrade(db_engine, S, "0003") == (None, "0003")
    for statement in POPULATE.split(";\n"):
        if statement.strip():
            run(db_engine, statement)
    before = run(db_engine, RECORDS)
    runs = run(db_engine, "SELECT id, status, finished_at FROM {s}.sync_run ORDER BY id")

    assert migrate.upgrade(db_engine, S, "0005") == ("0003", "0005")
    assert run(db_engine, RECORDS) == before  # what BI read is unchanged
    assert run(db_engine, "SELECT id, status, finished_at FROM {s}.sync_run ORDER BY id") == runs
    assert run(db_engine, "SELECT heartbeat_at FROM {s}.sync_run ORDER BY id") == [(None,), (None,)]
    comment = run(
        db_engine,
        "SELECT col_description('{s}.sync_run'::regclass, "
        "(SELECT attnum FROM pg_attribute WHERE attrelid = '{s}.sync_run'::regclass "
        "AND attname = 'heartbeat_at'))",
    )
    assert comment[0][0] and "last said it was alive" in str(comment[0][0])
    # The new reasons are accepted; an unknown one still is not.
    run(
        db_engine,
        "INSERT INTO {s}.sync_run_vdn (sync_run_id, vdn_id, status, started_at, finished_at, "
        "pages, requests, inserted, updated, deleted, restored, unchanged, withheld, error, "
        "skip_reason) VALUES (1, 3, 'skipped', now(), now(), 0, 0, 0, 0, 0, 0, 0, 0, "
        "'not attempted: credentials rejected', 'auth_rejected')",
    )
    with pytest.raises(IntegrityError):
        run(
            db_engine,
            "UPDATE {s}.sync_run_vdn SET skip_reason = 'whatever' WHERE vdn_id = 3",
        )

    assert migrate.downgrade(db_engine, S, "0003") == ("0005", "0003")
    after = run(db_engine, RECORDS)
    assert after[:2] == before
    # The new reason is recorded as a stop; its error text, which says why, is kept.
    assert after[2] == (1, 3, "skipped", "stopped", "not attempted: credentials rejected")
    columns = run(
        db_engine,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = '" + S + "' "
        "AND table_name = 'sync_run' AND column_name = 'heartbeat_at'",
    )
    assert columns == []
    assert migrate.upgrade(db_engine, S, "0005") == ("0003", "0005")
