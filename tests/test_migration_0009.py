"""Migration 0009 on a populated database of revision 0008: every row the change views
returned before is returned after (plus ``initial_load``), the initial load is recognised
in the data already stored, and a downgrade keeps the views' comments and readers."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from obs_sync.db import migrate
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Simulator
from obs_sync.store.integrity import verify_database
from tests.fixtures_db import TEST_SCHEMA, make_config
from tests.fixtures_db import query as q

S = TEST_SCHEMA
ALL = ["obs_result_codes", "display_results", "business_results"]
VIEWS = (
    "result_code_change",
    "display_result_change",
    "display_result_obs_code_change",
    "business_result_change",
)


def view_rows(db_engine: Engine, view: str, columns: str = "*") -> list[tuple[Any, ...]]:
    rows = q(db_engine, f"SELECT {columns} FROM {{s}}.{view}")
    return sorted(rows, key=repr)


def old_columns(db_engine: Engine, view: str) -> str:
    names = q(
        db_engine,
        "SELECT attname FROM pg_attribute WHERE attrelid = "
        f"'{{s}}.{view}'::regclass AND attnum > 0 AND attname <> 'initial_load' ORDER BY attnum",
    )
    return ", ".join(name for (name,) in names)


def test_upgrade_keeps_every_row_and_marks_the_stored_initial_load(
    simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1, 2], code_lists=ALL)
    assert run_sync(config, engine=db_engine, trigger="test").exit_code == 0
    code = next(iter(simulator.data.codes(1)))
    simulator.data.set_code(1, code, "edited upstream")
    simulator.data.set_code(2, "77777", "added upstream")
    assert run_sync(config, engine=db_engine, trigger="test").exit_code == 0
    written = {view: view_rows(db_engine, view) for view in VIEWS}  # as 0009's writer wrote them

    # Revision 0008 with its data, and a reader of one view.
    reader = f"obs_reader_{uuid.uuid4().hex[:8]}"
    with db_engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {reader}"))
        connection.execute(text(f"GRANT USAGE ON SCHEMA {S} TO {reader}"))
        connection.execute(text(f"GRANT SELECT ON {S}.result_code_change TO {reader}"))
    try:
        migrate.downgrade(db_engine, S, "0008")
        assert q(db_engine, "SELECT version_num FROM {s}.alembic_version") == [("0008",)]
        before = {view: view_rows(db_engine, view) for view in VIEWS}
        assert all("initial_load" not in old_columns(db_engine, v) for v in VIEWS)
        comment = q(db_engine, "SELECT obj_description('{s}.result_code_change'::regclass)")
        assert comment[0][0] and comment[0][0].startswith("obs-sync:")
        assert q(
            db_engine,
            f"SELECT has_table_privilege('{reader}', '{{s}}.result_code_change', 'SELECT')",
        ) == [(True,)]
        column_comment = q(
            db_engine,
            "SELECT col_description('{s}.result_code_change'::regclass, 3)",  # kind
        )
        assert column_comment[0][0]

        migrate.upgrade(db_engine, S)
        for view in VIEWS:
            # The same rows in the columns a query of 0008 names.
            assert view_rows(db_engine, view, old_columns(db_engine, view)) == before[view], view
            # And the initial load recognised as 0009's writer marks it.
            assert view_rows(db_engine, view) == written[view], view
        assert q(
            db_engine, "SELECT count(*) FILTER (WHERE NOT initial_load) FROM {s}.result_code_change"
        ) == [(2,)]
        assert q(db_engine, "SELECT bool_and(baseline_done_at IS NOT NULL) FROM {s}.vdn_state") == [
            (True,)
        ]
        assert verify_database(db_engine, S) == []
        # A later sync goes on from there: nothing stored is taken for an initial load.
        simulator.data.set_code(2, "88888", "added after the upgrade")
        assert run_sync(config, engine=db_engine, trigger="test").exit_code == 0
        assert q(
            db_engine,
            "SELECT initial_load FROM {s}.result_code_change WHERE obs_code = '88888'",
        ) == [(False,)]

        # Down again: the views as 0008 had them, their comments and readers kept.
        migrate.downgrade(db_engine, S, "0008")
        assert q(db_engine, "SELECT obj_description('{s}.result_code_change'::regclass)") == comment
        assert (
            q(db_engine, "SELECT col_description('{s}.result_code_change'::regclass, 3)")
            == column_comment
        )
        assert q(
            db_engine,
            f"SELECT has_table_privilege('{reader}', '{{s}}.result_code_change', 'SELECT')",
        ) == [(True,)]
        assert all("initial_load" not in old_columns(db_engine, v) for v in VIEWS)
        assert q(
            db_engine,
            "SELECT count(*) FROM pg_attribute "
            "WHERE attrelid = '{s}.result_code_history'::regclass AND attname = 'initial'",
        ) == [(0,)]
    finally:
        with db_engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {reader}"))
            connection.execute(text(f"DROP ROLE {reader}"))
