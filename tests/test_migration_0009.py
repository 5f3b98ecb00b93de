"""Migration 0009 on a populated database of revision 0008: every row the change views
returned before is returned after (plus ``initial_load``), the initial load is recognised
in the data already stored, and a downgrade keeps the views' comments and readers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.db import migrate
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Simulator
from obs_sync.store.integrity import verify_database
from tests.fixtures_db import TEST_SCHEMA, make_config

S = TEST_SCHEMA
ALL = ["obs_result_codes", "display_results", "business_results"]
VIEWS = (
    "result_code_change",
    "display_result_change",
    "display_result_obs_code_change",
    "business_result_change",
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = create_engine(database_url)
    yield made
    made.dispose()


def q(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(sql.format(s=S)))]


def view_rows(engine: Engine, view: str, columns: str = "*") -> list[tuple[Any, ...]]:
    rows = q(engine, f"SELECT {columns} FROM {{s}}.{view}")
    return sorted(rows, key=repr)


def old_columns(engine: Engine, view: str) -> str:
    names = q(
        engine,
        "SELECT attname FROM pg_attribute WHERE attrelid = "
        f"'{{s}}.{view}'::regclass AND attnum > 0 AND attname <> 'initial_load' ORDER BY attnum",
    )
    return ", ".join(name for (name,) in names)


def test_upgrade_keeps_every_row_and_marks_the_stored_initial_load(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1, 2], code_lists=ALL)
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    code = next(iter(simulator.data.codes(1)))
    simulator.data.set_code(1, code, "edited upstream")
    simulator.data.set_code(2, "77777", "added upstream")
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    written = {view: view_rows(engine, view) for view in VIEWS}  # as 0009's writer wrote them

    # Revision 0008 with its data, and a reader of one view.
    reader = f"obs_reader_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {reader}"))
        connection.execute(text(f"GRANT USAGE ON SCHEMA {S} TO {reader}"))
        connection.execute(text(f"GRANT SELECT ON {S}.result_code_change TO {reader}"))
    try:
        migrate.downgrade(engine, S, "0008")
        assert q(engine, "SELECT version_num FROM {s}.alembic_version") == [("0008",)]
        before = {view: view_rows(engine, view) for view in VIEWS}
        assert all("initial_load" not in old_columns(engine, v) for v in VIEWS)
        comment = q(engine, "SELECT obj_description('{s}.result_code_change'::regclass)")
        assert comment[0][0] and comment[0][0].startswith("obs-sync:")
        assert q(
            engine,
            f"SELECT has_table_privilege('{reader}', '{{s}}.result_code_change', 'SELECT')",
        ) == [(True,)]
        column_comment = q(
            engine,
            "SELECT col_description('{s}.result_code_change'::regclass, 3)",  # kind
        )
        assert column_comment[0][0]

        migrate.upgrade(engine, S)
        for view in VIEWS:
            # The same rows in the columns a query of 0008 names.
            assert view_rows(engine, view, old_columns(engine, view)) == before[view], view
            # And the initial load recognised as 0009's writer marks it.
            assert view_rows(engine, view) == written[view], view
        assert q(
            engine, "SELECT count(*) FILTER (WHERE NOT initial_load) FROM {s}.result_code_change"
        ) == [(2,)]
        assert q(engine, "SELECT bool_and(baseline_done_at IS NOT NULL) FROM {s}.vdn_state") == [
            (True,)
        ]
        assert verify_database(engine, S) == []
        # A later sync goes on from there: nothing stored is taken for an initial load.
        simulator.data.set_code(2, "88888", "added after the upgrade")
        assert run_sync(config, engine=engine, trigger="test").exit_code == 0
        assert q(
            engine,
            "SELECT initial_load FROM {s}.result_code_change WHERE obs_code = '88888'",
        ) == [(False,)]

        # Down again: the views as 0008 had them, their comments and readers kept.
        migrate.downgrade(engine, S, "0008")
        assert q(engine, "SELECT obj_description('{s}.result_code_change'::regclass)") == comment
        assert (
            q(engine, "SELECT col_description('{s}.result_code_change'::regclass, 3)")
            == column_comment
        )
        assert q(
            engine,
            f"SELECT has_table_privilege('{reader}', '{{s}}.result_code_change', 'SELECT')",
        ) == [(True,)]
        assert all("initial_load" not in old_columns(engine, v) for v in VIEWS)
        assert q(
            engine,
            "SELECT count(*) FROM pg_attribute "
            "WHERE attrelid = '{s}.result_code_history'::regclass AND attname = 'initial'",
        ) == [(0,)]
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {reader}"))
            connection.execute(text(f"DROP ROLE {reader}"))
