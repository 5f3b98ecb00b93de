"""A read-only role cannot hold the sync back (issue 17, item 4): a real role made by
`grant-reader`, holding every lock it is allowed to take, leaves the data fresh; the locks
that exclude writers need UPDATE, which it lacks; it cannot make a dead run look alive.
Real PostgreSQL, the simulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from obs_sync.engine.run import run_sync
from obs_sync.simulator import Simulator
from obs_sync.store.grants import grant_reader
from obs_sync.store.locks import lock_class
from obs_sync.store.status_query import read_status
from tests.fixtures_db import TEST_SCHEMA, make_config, present_codes
from tests.fixtures_sim import SIM_VDNS

S = TEST_SCHEMA


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def reader(database_url: str, engine: Engine) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection as a fresh LOGIN role with only what `grant-reader` gives."""
    role = f"obs_reader_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
    url = make_url(database_url).set(drivername="postgresql", username=role, password="pw")
    try:
        yield psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                {"r": role},
            )
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))


def test_a_reader_holding_every_lock_it_can_take_leaves_the_data_fresh(
    simulator: Simulator,
    database_url: str,
    engine: Engine,
    reader: psycopg.Connection[tuple[object, ...]],
) -> None:
    config = make_config(simulator, database_url, max_retries=0, sync={"max_lock_skips": 1})
    assert run_sync(config).exit_code == 0
    role = str(reader.info.user)
    grant_reader(engine, S, role)
    # The advisory keys obs-sync used before, and those of the next run ids (the liveness
    # lock of a run to come), held for the whole session.
    for vdn in SIM_VDNS:
        reader.execute("SELECT pg_advisory_lock(%s, %s)", (lock_class(S, "vdn"), vdn))
    for run_id in range(1, 40):
        reader.execute("SELECT pg_advisory_lock(%s, %s)", (lock_class(S, "run"), run_id))
    # The row locks that exclude writers need UPDATE: refused.
    for statement in (
        f"SELECT * FROM {S}.vdn_state FOR NO KEY UPDATE NOWAIT",
        f"SELECT * FROM {S}.vdn_state FOR KEY SHARE",
        f"LOCK TABLE {S}.vdn_state IN ROW EXCLUSIVE MODE",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), reader.transaction():
            reader.execute(statement)
    # And what it may take, held in an open transaction while the sync runs.
    reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    for table in ("vdn_state", "result_code", "result_code_history", "sync_run", "vdn"):
        reader.execute(f"LOCK TABLE {S}.{table} IN ACCESS SHARE MODE")
    reader.execute(f"SELECT count(*) FROM {S}.result_code").fetchone()

    for vdn in SIM_VDNS:
        simulator.data.set_code(vdn, "NEW", f"fresh {vdn}")
    result = run_sync(config)
    reader.execute("ROLLBACK")
    assert result.exit_code == 0 and result.status == "succeeded"
    assert [(v.status, v.inserted, v.skip_reason) for v in result.vdns] == [
        ("succeeded", 1, None)
    ] * len(SIM_VDNS)
    assert {vdn: codes["NEW"] for vdn, codes in present_codes(engine).items()} == {
        vdn: f"fresh {vdn}" for vdn in SIM_VDNS
    }
    assert result.run_id is not None and result.run_id >= 40  # squatted ids were skipped


def test_a_reader_cannot_make_a_dead_run_look_alive(
    simulator: Simulator,
    database_url: str,
    engine: Engine,
    reader: psycopg.Connection[tuple[object, ...]],
) -> None:
    config = make_config(simulator, database_url, max_retries=0)
    assert run_sync(config).exit_code == 0
    grant_reader(engine, S, str(reader.info.user))
    with engine.begin() as connection:  # a killed process's run
        dead = connection.execute(
            text(
                f"INSERT INTO {S}.sync_run (started_at, heartbeat_at, status, trigger) "
                "VALUES (now() - interval '1 hour', now() - interval '1 hour', 'running', "
                "'schedule') RETURNING id"
            )
        ).scalar_one()
    reader.execute("SELECT pg_advisory_lock(%s, %s)", (lock_class(S, "run"), dead))
    shown = read_status(engine, S, list(SIM_VDNS)).runs[0]
    assert (shown.run_id, shown.status) == (dead, "abandoned")
    assert run_sync(config).exit_code == 0  # the next run marks it, lock or not
    with engine.connect() as connection:
        status = connection.execute(
            text(f"SELECT status FROM {S}.sync_run WHERE id = :id"), {"id": dead}
        ).scalar()
    assert status == "abandoned"
