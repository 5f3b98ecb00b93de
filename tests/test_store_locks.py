"""Locks held by other sessions (issue 11, item 4): a VDN never goes stale silently, and no
lock or hung peer blocks a run forever.

Real PostgreSQL: the other sessions are real connections holding real locks; the syncs use
obs-sync's own connections (own pool), which carry the configured session bounds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.config import Config
from obs_sync.config.database_url import connect_params
from obs_sync.daemon.metrics import Metrics
from obs_sync.db.engine import make_engine
from obs_sync.db.url import database_url, session_args
from obs_sync.engine.run import run_sync
from obs_sync.health import HealthTracker
from obs_sync.results import LOCKED_ERROR, RunResult
from obs_sync.simulator import Simulator
from obs_sync.store.status_query import read_status
from tests.fixtures_db import TEST_SCHEMA, make_config, present_codes

S = TEST_SCHEMA
# What holds a VDN's lock: its vdn_state row, locked in an open transaction (a writer's).
HOLD = "SELECT 1 FROM {s}.vdn_state WHERE vdn_id = {v} FOR NO KEY UPDATE"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, pool_size=4)
    yield engine
    engine.dispose()


def obs_sync_connection(config: Config) -> psycopg.Connection[Any]:
    """A session opened as obs-sync opens its own (same parameters and bounds)."""
    params = connect_params(database_url(config))
    params.update(session_args(config, params.get("options")))
    return psycopg.connect(**params, autocommit=True)


def sync(config: Config) -> RunResult:
    return run_sync(config, trigger="test")  # one-shot: obs-sync's own pool


def vdn(result: RunResult, vdn_id: int) -> Any:
    return next(v for v in result.vdns if v.vdn_id == vdn_id)


def test_sessions_carry_the_configured_bounds(simulator: Simulator, database_url: str) -> None:
    config = make_config(
        simulator,
        database_url,
        database={
            "lock_timeout_seconds": 1.5,
            "statement_timeout_seconds": 0.01,
            "idle_in_transaction_timeout_seconds": 0,
            "keepalives_idle_seconds": 7,
            "keepalives_interval_seconds": 3,
            "keepalives_count": 2,
        },
    )
    show = (
        "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
        "current_setting('idle_in_transaction_session_timeout'), "
        "current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'), "
        "current_setting('tcp_keepalives_count'), current_setting('application_name')"
    )
    with obs_sync_connection(config) as own:  # the one-shot sync's pool
        # Over a Unix socket PostgreSQL ignores TCP keepalives (and shows 0).
        tcp = ("7", "3", "2") if not own.info.host.startswith("/") else ("0", "0", "0")
        expected = ("1500ms", "10ms", "0", *tcp, "obs-sync")
        assert own.execute(show).fetchone() == expected
        libpq = own.info.get_parameters()
        assert (libpq["keepalives_idle"], libpq["keepalives_count"]) == ("7", "2")
        # At the limit: 10 ms is the bound, a statement longer than it is cancelled.
        with pytest.raises(psycopg.errors.QueryCanceled):
            own.execute("SELECT pg_sleep(0.2)")
    engine = make_engine(config)  # the daemon's and the commands' engines
    try:
        with engine.connect() as connection:
            assert tuple(connection.execute(text(show)).one()) == expected
    finally:
        engine.dispose()


def test_a_held_lock_fails_the_vdn_after_max_lock_skips_runs(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(simulator, database_url, max_retries=0, sync={"max_lock_skips": 2})
    sync(config)
    simulator.data.set_code(2, "NEW", "needs the lock to be written")
    with engine.connect() as holder:  # e.g. a BI tool's session
        holder.execute(text("SET application_name = 'bi-reader'"))
        holder.commit()
        holder.execute(text(HOLD.format(s=S, v=2)))
        pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()
        first = sync(config)
        skipped = vdn(first, 2)
        # Once: left to it (another obs-sync process may be writing it), not a failure.
        assert skipped.status == "skipped" and skipped.skip_reason == "locked"
        assert (skipped.error or "").startswith(LOCKED_ERROR)
        assert f"pid {pid}, application_name 'bi-reader'" in (skipped.error or "")
        assert first.exit_code == 0
        second = sync(config)
        failed = vdn(second, 2)
        # max_lock_skips runs in a row: the VDN is failing, the run exits 1.
        assert failed.status == "failed" and "2 runs in a row" in (failed.error or "")
        assert "sync.max_lock_skips = 2" in (failed.error or "")
        assert f"pid {pid}, application_name 'bi-reader'" in (failed.error or "")
        assert second.exit_code == 1 and second.status == "failed"
        assert all(v.status == "succeeded" for v in second.vdns if v.vdn_id != 2)
        # `status`, /healthz and the metrics read it as any failing VDN.
        status = read_status(engine, S, [2])
        assert status.vdns[0].streak == 1 and "bi-reader" in (status.vdns[0].last_error or "")
        at = failed.finished_at
        health = HealthTracker(
            started_at=at,
            due=lambda t: t + timedelta(days=1),
            max_failing=timedelta(minutes=1),
            clock=lambda: at + timedelta(minutes=2),
        )
        health.record_vdn(failed.key, failed.status, failed.error, at)
        health.record_run_finished(at)
        verdict = health.check()
        assert verdict.status == "unhealthy" and "bi-reader" in verdict.reason
        metrics = Metrics()
        metrics.on_vdn(failed)
        assert (
            metrics.registry.get_sample_value("obs_sync_vdns_failing", {"source": "default"}) == 1
        )
        holder.rollback()
    released = sync(config)
    assert vdn(released, 2).status == "succeeded" and vdn(released, 2).inserted == 1
    assert present_codes(engine)[2]["NEW"] == "needs the lock to be written"
    # The streak ended with that success: a new hold starts counting again.
    simulator.data.set_code(2, "NEWER", "x")
    with engine.connect() as holder:
        holder.execute(text(HOLD.format(s=S, v=2)))
        assert vdn(sync(config), 2).status == "skipped"
        holder.rollback()


def test_a_row_lock_held_elsewhere_fails_only_its_vdn_after_lock_timeout(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(
        simulator, database_url, max_retries=0, database={"lock_timeout_seconds": 0.5}
    )
    sync(config)
    code = next(iter(simulator.data.codes(3)))
    simulator.data.set_code(3, code, "changed")
    for other in (1, 2, 4, 5):
        simulator.data.set_code(other, "NEW", "new")
    with engine.connect() as holder:  # a session that locked a row and never ends
        holder.execute(
            text(f"SELECT * FROM {S}.result_code WHERE vdn_id = 3 AND obs_code = :c FOR UPDATE"),
            {"c": code},
        )
        result = sync(config)
        holder.rollback()
    failed = vdn(result, 3)
    assert failed.status == "failed" and "lock timeout" in (failed.error or "")
    assert "database.lock_timeout_seconds" in (failed.error or "")
    assert all(v.status == "succeeded" and v.inserted == 1 for v in result.vdns if v.vdn_id != 3)
    assert result.status == "failed" and result.run_id is not None
    assert present_codes(engine)[3][code] != "changed"  # nothing of VDN 3 written
    assert vdn(sync(config), 3).updated == 1  # once the lock is gone


def test_a_hung_writer_loses_its_locks_after_the_idle_in_transaction_timeout(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(
        simulator,
        database_url,
        max_retries=0,
        database={"idle_in_transaction_timeout_seconds": 1},
    )
    sync(config)
    simulator.data.set_code(4, "NEW", "new")
    # An obs-sync writer that hangs mid-transaction (stopped, or its host gone): it holds
    # the VDN's lock and a row lock, idle in its transaction.
    hung = obs_sync_connection(config)
    hung.execute("BEGIN")
    hung.execute(HOLD.format(s=S, v=4))
    hung.execute(f"UPDATE {S}.result_code SET obs_code_desc = obs_code_desc WHERE vdn_id = 4")
    pid = hung.info.backend_pid
    blocked = vdn(sync(config), 4)
    assert blocked.status == "skipped" and f"pid {pid}, application_name 'obs-sync'" in (
        blocked.error or ""
    )
    assert "idle in transaction" in (blocked.error or "")
    # The server ends the hung session once it has been idle in its transaction too long.
    give_up = time.monotonic() + 30
    with engine.connect() as probe:
        while probe.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
        ).scalar():
            assert time.monotonic() < give_up, "the hung session was never ended"
            probe.rollback()
            time.sleep(0.1)
    hung.close()
    after = vdn(sync(config), 4)
    assert after.status == "succeeded" and after.inserted == 1
