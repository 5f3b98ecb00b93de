"""Nothing of a run outlives it: no session lock on a pooled connection, no worker thread,
no VDN without a record saying why (issue 17, item 12). Real PostgreSQL, the simulator.

Each leak path is provoked for real: a lease lost to the garbage collector, an interrupt
of the thread waiting for the workers (a real signal), a failure right after the run's
row is inserted, a worker that dies, a pooled connection the server has ended.
"""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync import logcontext
from obs_sync.db.pool import EnginePool, OwnPool
from obs_sync.db.url import connect_params
from obs_sync.engine.run import run_sync
from obs_sync.engine.workers import Workers
from obs_sync.results import NOT_REACHED_ERROR
from obs_sync.simulator import Fault, Simulator
from tests.fixtures_db import TEST_SCHEMA, make_config

S = TEST_SCHEMA


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    # One connection, no pre-ping: what goes back to the pool is what comes out next.
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture
def run_engine(database_url: str) -> Iterator[Engine]:
    """An engine with room for a run (its own connection and its workers'), no pre-ping."""
    engine = create_engine(database_url, pool_size=4, max_overflow=6)
    yield engine
    engine.dispose()


def advisory_locks(engine: Engine) -> int:
    """Advisory locks held in this database by any session (this one holds none)."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                )
            ).scalar_one()
        )


def rows(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text(sql.format(s=S))))


def vdn_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("obs-sync-vdn-")]


def test_a_lost_lease_goes_back_to_the_engines_pool_reset(engine: Engine) -> None:
    pool = EnginePool(engine)
    lease = pool.acquire()
    lease.hold_session_state()
    lease.connection.execute("SELECT pg_advisory_lock(1, 2)")
    pid = lease.connection.info.backend_pid
    del lease  # never released: what an interrupt between acquire and release leaves
    gc.collect()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar() == pid  # reused
        raw = connection.connection.driver_connection
        assert isinstance(raw, psycopg.Connection) and raw.autocommit is False
        # A transaction again: the migration's lock would serialize something.
        connection.execute(text("SELECT 1"))
        assert raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        locks = connection.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = :p"),
            {"p": pid},
        ).scalar()
    assert locks == 0


def test_a_lost_unmarked_lease_in_autocommit_is_reset_too(engine: Engine) -> None:
    lease = EnginePool(engine).acquire()  # autocommit, no session state declared
    lease.connection.execute("SELECT pg_advisory_lock(3, 4)")
    del lease
    gc.collect()
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert isinstance(raw, psycopg.Connection) and raw.autocommit is False
    assert advisory_locks(engine) == 0


def test_the_own_pool_resets_a_lease_with_session_state(database_url: str) -> None:
    params = connect_params(database_url.replace("+psycopg", ""))
    pool = OwnPool(params, 1)
    try:
        lease = pool.acquire()
        lease.hold_session_state()
        lease.connection.execute("SELECT pg_advisory_lock(5, 6)")
        pid = lease.connection.info.backend_pid
        lease.release()
        with pool.connection() as connection:
            assert connection.info.backend_pid == pid
            row = connection.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)
            ).fetchone()
            assert row == (0,)
    finally:
        pool.close()


def test_an_interrupt_while_waiting_for_the_workers_closes_the_run(
    simulator: Simulator, database_url: str, run_engine: Engine
) -> None:
    config = make_config(simulator, database_url, max_retries=0, max_concurrency=1)
    run_sync(config)  # the schema
    simulator.faults.add(Fault(kind="slow", delay_seconds=0.4, times=None))

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.6)  # while the main thread joins the workers
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sync(config, engine=run_engine)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert vdn_threads() == []  # no worker outlives its run
    assert advisory_locks(run_engine) == 0  # the run lock went with the run
    ((status, vdns, error),) = rows(
        run_engine, "SELECT status, vdns, error FROM {s}.sync_run WHERE id = 2"
    )
    assert (status, vdns, error) == ("stopped", 5, None)
    records = rows(
        run_engine, "SELECT status, skip_reason, error FROM {s}.sync_run_vdn WHERE sync_run_id = 2"
    )
    assert len(records) == 5  # every VDN has its record, saying why
    skipped = [r for r in records if r[0] == "skipped"]
    assert skipped and all(r[1] == "stopped" for r in skipped)
    assert {r[2] for r in skipped} <= {
        "not started: the run was interrupted (KeyboardInterrupt)",
        "stopped while fetching: not applied",
    }
    # The pooled connection is usable and reset: the next run starts and abandons nothing.
    simulator.faults.clear()
    assert run_sync(config, engine=run_engine).exit_code == 0
    assert [r[0] for r in rows(run_engine, "SELECT status FROM {s}.sync_run ORDER BY id")] == [
        "succeeded",
        "stopped",
        "succeeded",
    ]


class _FailingRun(logcontext.PendingRun):
    """Raises when the run's id is known: right after start_run, before the store is set."""

    def resolve(self, run: int | str | None) -> None:
        if isinstance(run, int):
            raise RuntimeError("log handler broke")
        super().resolve(run)


def test_a_failure_right_after_the_run_starts_closes_it(
    simulator: Simulator, database_url: str, run_engine: Engine
) -> None:
    config = make_config(simulator, database_url, max_retries=0)
    with pytest.raises(RuntimeError, match="log handler broke"):
        run_sync(config, engine=run_engine, log_run=_FailingRun())
    ((status, error),) = rows(run_engine, "SELECT status, error FROM {s}.sync_run")
    assert (status, error) == ("failed", "run aborted by an error")
    assert advisory_locks(run_engine) == 0 and vdn_threads() == []
    assert run_sync(config, engine=run_engine).exit_code == 0


def test_a_worker_that_dies_leaves_its_vdn_recorded_as_such(
    simulator: Simulator, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(simulator, database_url, max_retries=0)
    settle = Workers.settle

    def dies_on_3(self: Workers, fetched: Any) -> Any:
        if fetched.vdn_id == 3:
            raise SystemExit("worker gone")  # not an Exception: the thread ends
        return settle(self, fetched)

    monkeypatch.setattr(Workers, "settle", dies_on_3)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # expected, quiet
    result = run_sync(config)
    three = next(v for v in result.vdns if v.vdn_id == 3)
    assert three.status == "failed" and three.error == NOT_REACHED_ERROR
    assert three.skip_reason is None  # not a "stop requested": nothing asked to stop
    assert all(v.status == "succeeded" for v in result.vdns if v.vdn_id != 3)
    assert result.exit_code == 1


def test_a_dry_run_survives_pooled_connections_the_server_ended(
    simulator: Simulator, database_url: str, run_engine: Engine
) -> None:
    config = make_config(simulator, database_url, max_retries=0)
    assert run_sync(config, engine=run_engine).exit_code == 0
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert ended is not None and ended[0] >= 1  # the pooled connections are dead now
    result = run_sync(config, engine=run_engine, dry_run=True)
    assert [v.status for v in result.vdns] == ["succeeded"] * 5, [v.error for v in result.vdns]


def test_a_run_that_loses_its_connections_is_never_taken_for_dead(
    simulator: Simulator, database_url: str, run_engine: Engine
) -> None:
    """What a database restart does to a live run: every session ended. The run takes its
    liveness lock again at its next heartbeat and closes its own record; meanwhile another
    process looking for dead runs never marks it abandoned."""
    from obs_sync.store.store import Store

    config = make_config(
        simulator, database_url, max_retries=2, max_concurrency=1, sync={"heartbeat_seconds": 0.5}
    )
    run_sync(config)  # the schema
    simulator.faults.add(Fault(kind="slow", delay_seconds=0.3, times=None))
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(run_sync(config)))
    thread.start()
    watcher = Store(run_engine, S)
    plain = database_url.replace("+psycopg", "")
    try:
        while not rows(run_engine, "SELECT 1 FROM {s}.sync_run WHERE id = 2"):
            pass
        with psycopg.connect(plain, autocommit=True) as admin:  # the "restart"
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = 'obs-sync'"
            )
        marked: list[int] = []
        while thread.is_alive():
            marked += watcher.abandon_dead_runs(hostname="other", pid=1, heartbeat_seconds=0.5)
    finally:
        thread.join(60)
    assert 2 not in marked
    ((status, finished),) = rows(
        run_engine, "SELECT status, finished_at IS NOT NULL FROM {s}.sync_run WHERE id = 2"
    )
    assert status != "abandoned" and finished
    assert outcome and outcome[0].record_error is None
