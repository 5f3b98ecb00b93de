"""Migration 0002, the BI interface: views, the as-of function, the VDN registry, comments.

Against real PostgreSQL, with data from real syncs against the simulator (or, for the
upgrade of an existing 0001 schema, rows as 0001-era obs-sync wrote them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url

from obs_sync.db import migrate
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Fault, Simulator
from obs_sync.store.grants import grant_reader
from tests.fixtures_db import TEST_SCHEMA, make_config

S = TEST_SCHEMA


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(sql), params)]


def now(engine: Engine) -> datetime:
    value: datetime = rows(engine, "SELECT clock_timestamp()")[0][0]
    return value


# ----------------------------------------------------------------------------- comments

UNCOMMENTED_COLUMNS = """
SELECT c.relname || '.' || a.attname
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND c.relname <> 'alembic_version'
  AND a.attnum > 0 AND NOT a.attisdropped
  AND col_description(c.oid, a.attnum) IS NULL
ORDER BY 1"""


# Migration 0007: the other code lists, their state and run records.
CODE_LIST_RELATIONS = {
    f"{table}{suffix}"
    for table in ("display_result", "display_result_obs_code", "business_result")
    for suffix in ("", "_history", "_current", "_change")
} | {"code_list_state", "sync_run_code_list"}


def test_every_column_of_every_table_and_view_has_a_comment(db_engine: Engine) -> None:
    migrate.upgrade(db_engine, S)
    assert rows(db_engine, UNCOMMENTED_COLUMNS, schema=S) == []
    relations = rows(
        db_engine,
        "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s "
        "AND c.relkind IN ('r', 'v') AND c.relname <> 'alembic_version' ORDER BY 1",
        s=S,
    )
    assert {name for name, _ in relations} == {
        "result_code",
        "result_code_history",
        "sync_run",
        "sync_run_vdn",
        "vdn",
        "vdn_state",
        "result_code_current",
        "result_code_change",
        "source",  # 0006
        "locale_switch",  # 0006
        *CODE_LIST_RELATIONS,  # 0007
    }
    assert all(comment for _, comment in relations)
    (function_comment,) = rows(
        db_engine,
        f"SELECT obj_description('{S}.result_code_desc_at(integer, text, timestamptz)'"
        "::regprocedure, 'pg_proc')",
    )[0]
    assert function_comment and "at" in function_comment
    # What a time column's comment says: its time zone / clock, and what NULL means.
    comments = dict(
        rows(
            db_engine,
            "SELECT c.relname || '.' || a.attname, col_description(c.oid, a.attnum) "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = :s AND a.attnum > 0",
            s=S,
        )
    )
    assert "NULL" in comments["result_code_history.valid_to"]
    assert "database clock" in comments["result_code_history.valid_from"]
    assert "NULL = never succeeded" in comments["vdn.last_succeeded_at"]


def test_a_column_without_comment_is_caught(db_engine: Engine) -> None:
    """The comment check itself works: a later migration forgetting one fails it."""
    migrate.upgrade(db_engine, S)
    with db_engine.begin() as connection:
        connection.execute(text(f"ALTER TABLE {S}.vdn ADD COLUMN forgotten text"))
    assert rows(db_engine, UNCOMMENTED_COLUMNS, schema=S) == [("vdn.forgotten",)]


# --------------------------------------------------------------- change log and as-of


@pytest.fixture
def history(simulator: Simulator, database_url: str, db_engine: Engine) -> dict[str, Any]:
    """VDN 1 through every kind of change, one sync each: new, changed, removed, restored."""
    config = make_config(simulator, database_url, vdn_ids=[1, 2], max_retries=0)
    data = simulator.data
    code, other = sorted(data.codes(1))[:2]
    first_desc = data.codes(1)[code]
    marks: dict[str, Any] = {"code": code, "other": other, "first_desc": first_desc}
    marks["before"] = now(db_engine)
    marks["runs"] = [run_sync(config, engine=db_engine).run_id]
    marks["t1"] = now(db_engine)
    data.set_code(1, code, "second text")
    marks["runs"].append(run_sync(config, engine=db_engine).run_id)
    marks["t2"] = now(db_engine)
    data.remove_code(1, code)
    marks["runs"].append(run_sync(config, engine=db_engine).run_id)
    marks["t3"] = now(db_engine)
    data.set_code(1, code, "second text")  # back with the text it had when removed
    marks["runs"].append(run_sync(config, engine=db_engine).run_id)
    marks["t4"] = now(db_engine)
    return marks


def test_change_log_has_one_row_per_change_of_each_kind(
    history: dict[str, Any], db_engine: Engine
) -> None:
    code, first_desc, runs = history["code"], history["first_desc"], history["runs"]
    changes = rows(
        db_engine,
        f"SELECT kind, old_desc, new_desc, sync_run_id, changed_at FROM {S}.result_code_change "
        "WHERE vdn_id = 1 AND obs_code = :c ORDER BY changed_at",
        c=code,
    )
    assert [row[:4] for row in changes] == [
        ("new", None, first_desc, runs[0]),
        ("changed", first_desc, "second text", runs[1]),
        ("removed", "second text", None, runs[2]),
        ("restored", "second text", "second text", runs[3]),
    ]
    windows = [
        (history["before"], history["t1"]),
        (history["t1"], history["t2"]),
        (history["t2"], history["t3"]),
        (history["t3"], history["t4"]),
    ]
    assert all(lo < row[4] < hi for row, (lo, hi) in zip(changes, windows, strict=True))
    # The change log agrees with the run records, kind by kind.
    per_run = rows(
        db_engine,
        f"SELECT c.sync_run_id, c.kind, count(*) FROM {S}.result_code_change c "
        "GROUP BY 1, 2 ORDER BY 1, 2",
    )
    recorded = rows(
        db_engine,
        f"SELECT sync_run_id, sum(inserted), sum(updated), sum(deleted), sum(restored) "
        f"FROM {S}.sync_run_vdn GROUP BY 1 ORDER BY 1",
    )
    kinds = ("new", "changed", "removed", "restored")
    for run_id, *counts in recorded:
        got = {kind: n for r, kind, n in per_run if r == run_id}
        assert [got.get(kind, 0) for kind in kinds] == counts
    # Unique per (vdn_id, obs_code, changed_at), as its comment promises.
    assert (
        rows(
            db_engine,
            f"SELECT vdn_id, obs_code, changed_at FROM {S}.result_code_change "
            "GROUP BY 1, 2, 3 HAVING count(*) > 1",
        )
        == []
    )


def test_as_of_function_gives_the_description_valid_at_each_instant(
    history: dict[str, Any], db_engine: Engine
) -> None:
    code = history["code"]

    def at(instant: datetime, vdn: int = 1, c: str = code) -> list[tuple[Any, ...]]:
        return rows(
            db_engine,
            f"SELECT * FROM {S}.result_code_desc_at(:v, :c, :t)",
            v=vdn,
            c=c,
            t=instant,
        )

    assert at(history["before"] - timedelta(days=1)) == []  # before the first sync
    assert at(history["t1"]) == [(history["first_desc"],)]
    assert at(history["t2"]) == [("second text",)]
    assert at(history["t3"]) == []  # removed upstream then: no description
    assert at(history["t4"]) == [("second text",)]
    assert at(history["t4"], c="NO-SUCH") == []
    # The same as a scalar in a select list (NULL-free: an SRF there drops the row).
    scalar = rows(db_engine, f"SELECT {S}.result_code_desc_at(1, :c, :t)", c=code, t=history["t1"])
    assert scalar == [(history["first_desc"],)]


def test_as_of_function_is_inlined_by_the_planner(
    history: dict[str, Any], db_engine: Engine
) -> None:
    (flags,) = rows(
        db_engine,
        "SELECT provolatile, prosecdef, proisstrict, proretset, proconfig IS NULL, prolang = "
        "(SELECT oid FROM pg_language WHERE lanname = 'sql') FROM pg_proc "
        f"WHERE oid = '{S}.result_code_desc_at(integer, text, timestamptz)'::regprocedure",
    )
    assert flags == ("s", False, False, True, True, True)
    with db_engine.begin() as connection:
        connection.execute(
            text("CREATE TEMP TABLE calls AS SELECT 1 AS vdn_id, :c AS obs_code, now() AS t"),
            {"c": history["code"]},
        )
        plan = "\n".join(
            r[0]
            for r in connection.execute(
                text(
                    "EXPLAIN (COSTS OFF) SELECT d.obs_code_desc FROM calls c LEFT JOIN LATERAL "
                    f"{S}.result_code_desc_at(c.vdn_id, c.obs_code, c.t) AS d ON true"
                )
            )
        )
    assert "Function Scan" not in plan, plan
    assert "result_code_history" in plan, plan


def test_current_view_is_the_present_codes(history: dict[str, Any], db_engine: Engine) -> None:
    current = rows(
        db_engine, f"SELECT vdn_id, obs_code, obs_code_desc FROM {S}.result_code_current"
    )
    present = rows(
        db_engine,
        f"SELECT vdn_id, obs_code, obs_code_desc FROM {S}.result_code WHERE deleted_at IS NULL",
    )
    assert sorted(current) == sorted(present) and len(current) == 240


# ---------------------------------------------------------------------------- registry


def registry(engine: Engine) -> dict[int, tuple[Any, ...]]:
    return {
        r[0]: r[1:]
        for r in rows(
            engine,
            f"SELECT vdn_id, configured, last_status, last_attempted_at IS NOT NULL, "
            f"last_succeeded_at IS NOT NULL, last_error IS NOT NULL FROM {S}.vdn",
        )
    }


def test_registry_is_maintained_by_every_run(
    simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    simulator.faults.add(Fault(kind="http_status", status=500, vdn_id=3, times=None))
    config = make_config(simulator, database_url, vdn_ids=[1, 2, 3], max_retries=0)
    # The one-shot path (its own psycopg pool) ...
    assert run_sync(config).exit_code == 1
    assert registry(db_engine) == {
        1: (True, "succeeded", True, True, False),
        2: (True, "succeeded", True, True, False),
        3: (True, "failed", True, False, True),  # attempted, never succeeded
    }
    # ... and the daemon's (a SQLAlchemy engine), with VDN 2 no longer configured.
    fewer = make_config(simulator, database_url, vdn_ids=[1, 3, 4], max_retries=0)
    run_sync(fewer, engine=db_engine, trigger="schedule")
    assert registry(db_engine) == {
        1: (True, "succeeded", True, True, False),
        2: (False, "succeeded", True, True, False),  # kept, flagged not configured
        3: (True, "failed", True, False, True),
        4: (True, "succeeded", True, True, False),
    }
    # A --vdn run changes no other VDN's flag, and marks its own configured.
    with db_engine.begin() as connection:
        connection.execute(text(f"UPDATE {S}.vdn SET configured = false WHERE vdn_id = 4"))
    run_sync(make_config(simulator, database_url, vdn_ids=[1], max_retries=0), vdn_ids=[1])
    run_sync(fewer, vdn_ids=[4])
    flags = {vdn: row[0] for vdn, row in registry(db_engine).items()}
    assert flags == {1: True, 2: False, 3: True, 4: True}
    # The VDN that never succeeded is in the freshness answer, not missing from it.
    stale = rows(
        db_engine,
        f"SELECT vdn_id FROM {S}.vdn WHERE configured AND (last_succeeded_at IS NULL "
        "OR last_succeeded_at < now() - interval '1 hour') ORDER BY vdn_id",
    )
    assert stale == [(3,)]


def test_registry_keeps_the_newest_attempt_when_records_arrive_late(
    simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    """Records are batched: an older record inserted later does not overwrite a newer one;
    skipped records are not attempts; pruning records loses nothing."""
    config = make_config(simulator, database_url, vdn_ids=[1], max_retries=0)
    run_sync(config, engine=db_engine)
    (latest,) = rows(db_engine, f"SELECT last_attempted_at FROM {S}.vdn WHERE vdn_id = 1")[0]
    with db_engine.begin() as connection:
        run_id = connection.execute(
            text(
                f"INSERT INTO {S}.sync_run (started_at, finished_at, status, trigger) VALUES "
                "(now() - interval '2 days', now() - interval '2 days', 'failed', 't') "
                "RETURNING id"
            )
        ).scalar_one()
        connection.execute(
            text(
                f"INSERT INTO {S}.sync_run_vdn (sync_run_id, vdn_id, status, started_at, "
                "finished_at, error) VALUES (:r, 1, 'failed', now() - interval '2 days', "
                "now() - interval '2 days', 'old'), (:r, 9, 'skipped', now(), now(), 'locked')"
            ),
            {"r": run_id},
        )
        connection.execute(text(f"DELETE FROM {S}.sync_run_vdn WHERE vdn_id = 1"))
    got = rows(
        db_engine,
        f"SELECT vdn_id, last_attempted_at, last_status, last_error, configured FROM {S}.vdn "
        "ORDER BY vdn_id",
    )
    assert got[0] == (1, latest, "succeeded", None, True)
    assert got[1][0] == 9 and got[1][1:4] == (None, None, None)  # skipped: not an attempt
    assert got[1][4] is False  # seen in a record, never configured


# ------------------------------------------------------------------------------ grants


@pytest.fixture
def reader(db_engine: Engine, database_url: str) -> Iterator[tuple[str, str]]:
    role = f"bi_{uuid.uuid4().hex[:8]}"
    with db_engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
    url = make_url(database_url).set(username=role, password="pw")
    try:
        yield role, url.render_as_string(hide_password=False)
    finally:
        with db_engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))


def test_grant_reader_covers_views_function_and_registry(
    history: dict[str, Any], db_engine: Engine, reader: tuple[str, str]
) -> None:
    role, url = reader
    engine = create_engine(url)
    try:
        with pytest.raises(Exception, match="permission denied"), engine.connect() as c:
            c.execute(text(f"SELECT 1 FROM {S}.result_code_change LIMIT 1"))
        statements = grant_reader(db_engine, S, role)
        assert any("result_code_desc_at" in s for s in statements)
        with engine.connect() as connection:
            for relation in ("result_code_current", "result_code_change", "vdn"):
                assert connection.execute(text(f"SELECT count(*) FROM {S}.{relation}")).scalar()
            assert connection.execute(
                text(f"SELECT * FROM {S}.result_code_desc_at(1, :c, now())"),
                {"c": history["code"]},
            ).all() == [("second text",)]
            # Migration 0006's objects: the source-taking form, the sources and switches.
            assert connection.execute(
                text(f"SELECT * FROM {S}.result_code_desc_at('default', 1, :c, now())"),
                {"c": history["code"]},
            ).all() == [("second text",)]
            for relation in ("source", "locale_switch"):
                connection.execute(text(f"SELECT count(*) FROM {S}.{relation}")).scalar()
    finally:
        engine.dispose()


# ------------------------------------------------------------- upgrade and downgrade


def _seed_0001(connection: Connection) -> None:
    """Rows as obs-sync 0001 wrote them: VDN 5 synced twice (a change, a removal), VDN 6
    failed once and never succeeded."""
    s = S
    connection.execute(
        text(
            f"""
        INSERT INTO {s}.sync_run (id, started_at, finished_at, status, trigger, vdns)
        OVERRIDING SYSTEM VALUE VALUES
          (1, '2026-01-01 10:00Z', '2026-01-01 10:01Z', 'failed', 'cli', 2),
          (2, '2026-01-02 10:00Z', '2026-01-02 10:01Z', 'succeeded', 'cli', 1);
        INSERT INTO {s}.sync_run_vdn (sync_run_id, vdn_id, status, started_at, finished_at,
            inserted, updated, deleted, error) VALUES
          (1, 5, 'succeeded', '2026-01-01 10:00Z', '2026-01-01 10:00:30Z', 2, 0, 0, NULL),
          (1, 6, 'failed', '2026-01-01 10:00Z', '2026-01-01 10:00:40Z', 0, 0, 0, 'HTTP 500'),
          (2, 5, 'succeeded', '2026-01-02 10:00Z', '2026-01-02 10:00:30Z', 0, 1, 1, NULL);
        INSERT INTO {s}.result_code VALUES
          (5, 'A', 'a2', '2026-01-01 10:00:20Z', '2026-01-02 10:00:20Z', NULL),
          (5, 'B', 'b1', '2026-01-01 10:00:20Z', '2026-01-01 10:00:20Z', '2026-01-02 10:00:20Z');
        INSERT INTO {s}.result_code_history (vdn_id, obs_code, obs_code_desc, valid_from,
            valid_to, sync_run_id, closed_by_sync_run_id) VALUES
          (5, 'A', 'a1', '2026-01-01 10:00:20Z', '2026-01-02 10:00:20Z', 1, 2),
          (5, 'A', 'a2', '2026-01-02 10:00:20Z', NULL, 2, NULL),
          (5, 'B', 'b1', '2026-01-01 10:00:20Z', '2026-01-02 10:00:20Z', 1, 2)"""
        )
    )


def test_upgrade_an_existing_0001_schema_with_data_and_downgrade(db_engine: Engine) -> None:
    from obs_sync.store.integrity import verify_database

    assert migrate.upgrade(db_engine, S, "0001") == (None, "0001")
    with db_engine.begin() as connection:
        _seed_0001(connection)
    counts_sql = (
        f"SELECT (SELECT count(*) FROM {S}.sync_run), (SELECT count(*) FROM {S}.sync_run_vdn), "
        f"(SELECT count(*) FROM {S}.result_code), (SELECT count(*) FROM {S}.result_code_history)"
    )
    before = rows(db_engine, counts_sql)
    assert migrate.upgrade(db_engine, S) == ("0001", migrate.head_revision())
    assert rows(db_engine, counts_sql) == before
    # The registry is backfilled from the records: VDN 6 failed and never succeeded.
    assert rows(
        db_engine,
        f"SELECT vdn_id, configured, first_seen_at, last_status, last_sync_run_id, "
        f"last_succeeded_at, last_error FROM {S}.vdn ORDER BY vdn_id",
    ) == [
        (5, True, _ts("2026-01-01 10:00Z"), "succeeded", 2, _ts("2026-01-02 10:00:30Z"), None),
        (6, True, _ts("2026-01-01 10:00Z"), "failed", 1, None, "HTTP 500"),
    ]
    assert rows(
        db_engine,
        f"SELECT obs_code, kind, old_desc, new_desc, sync_run_id FROM {S}.result_code_change "
        "ORDER BY obs_code, changed_at, kind",
    ) == [
        ("A", "new", None, "a1", 1),
        ("A", "changed", "a1", "a2", 2),
        ("B", "new", None, "b1", 1),
        ("B", "removed", "b1", None, 2),
    ]
    assert verify_database(db_engine, S, keep_days=0) == []
    assert rows(db_engine, UNCOMMENTED_COLUMNS, schema=S) == []

    assert migrate.downgrade(db_engine, S, "0001") == (migrate.head_revision(), "0001")
    assert rows(db_engine, counts_sql) == before  # 0001's data untouched
    leftovers = rows(
        db_engine,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relkind IN ('r', 'v') ORDER BY 1",
        s=S,
    )
    assert leftovers == [
        ("alembic_version",),
        ("result_code",),
        ("result_code_history",),
        ("sync_run",),
        ("sync_run_vdn",),
    ]
    assert (
        rows(
            db_engine,
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = :s",
            s=S,
        )
        == []
    )
    # Back to 0001's comments: its tables', none on columns.
    uncommented = rows(db_engine, UNCOMMENTED_COLUMNS, schema=S)
    assert len(uncommented) > 30
    # And up again: the same interface, backfilled again.
    assert migrate.upgrade(db_engine, S) == ("0001", migrate.head_revision())
    assert len(rows(db_engine, f"SELECT * FROM {S}.vdn")) == 2


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_migration_honours_the_configured_schema(db_engine: Engine) -> None:
    schema = "BI Schema"
    migrate.upgrade(db_engine, schema)
    names = rows(
        db_engine,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relkind = 'v' ORDER BY 1",
        s=schema,
    )
    views = {"result_code_change", "result_code_current"} | {
        name for name in CODE_LIST_RELATIONS if name.endswith(("_change", "_current"))
    }
    assert names == [(name,) for name in sorted(views)]
    # The function and the trigger read the configured schema, not a search_path.
    with db_engine.begin() as connection:
        run = connection.execute(
            text(
                f'INSERT INTO "{schema}".sync_run (started_at, status, trigger) '
                "VALUES (now(), 'running', 't') RETURNING id"
            )
        ).scalar_one()
        connection.execute(
            text(
                f'INSERT INTO "{schema}".sync_run_vdn (sync_run_id, vdn_id, status, started_at, '
                "finished_at) VALUES (:r, 7, 'succeeded', now(), now())"
            ),
            {"r": run},
        )
    assert rows(db_engine, f'SELECT vdn_id, last_status FROM "{schema}".vdn') == [(7, "succeeded")]
    assert rows(db_engine, f"SELECT * FROM \"{schema}\".result_code_desc_at(7, 'x', now())") == []
    migrate.downgrade(db_engine, schema, "base")
