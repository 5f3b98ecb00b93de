"""Retention of sync_run_vdn on real PostgreSQL: old rows go, each VDN's last success stays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from obs_sync.db.migrate import upgrade
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Simulator
from obs_sync.store import retention
from obs_sync.store.retention import prune_run_records
from tests.fixtures_db import TEST_SCHEMA, make_config

S = TEST_SCHEMA


def add_run(engine: Engine, days_ago: float, results: Mapping[int, str]) -> int:
    """A finished run started ``days_ago`` with one sync_run_vdn row per (vdn, status)."""
    with engine.begin() as connection:
        run_id = connection.execute(
            text(
                f"INSERT INTO {S}.sync_run (started_at, finished_at, status, trigger) "
                "VALUES (now() - make_interval(days => :d), "
                "now() - make_interval(days => :d), 'succeeded', 'test') RETURNING id"
            ),
            {"d": days_ago},
        ).scalar_one()
        for vdn, status in results.items():
            connection.execute(
                text(
                    f"INSERT INTO {S}.sync_run_vdn (sync_run_id, vdn_id, status, started_at, "
                    "finished_at) VALUES (:r, :v, :s, now() - make_interval(days => :d), "
                    "now() - make_interval(days => :d))"
                ),
                {"r": run_id, "v": vdn, "s": status, "d": days_ago},
            )
    return int(run_id)


def execute_on(engine: Engine) -> retention.Execute:
    def execute(sql: str, params: Mapping[str, Any]) -> int:
        with engine.begin() as connection:
            return int(connection.exec_driver_sql(sql, dict(params)).rowcount)

    return execute


def remaining(engine: Engine) -> set[tuple[int, int, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT sync_run_id, vdn_id, status FROM {S}.sync_run_vdn")
        ).all()
    return {(r[0], r[1], r[2]) for r in rows}


def test_old_records_are_pruned_but_each_vdns_last_success_is_kept(db_engine: Engine) -> None:
    upgrade(db_engine, S)
    old_ok = add_run(db_engine, 200, {1: "succeeded", 2: "succeeded", 3: "failed"})
    old_failed = add_run(db_engine, 150, {1: "succeeded", 2: "failed", 3: "skipped"})
    recent = add_run(db_engine, 10, {1: "failed", 2: "failed", 3: "guarded"})

    deleted = prune_run_records(execute_on(db_engine), S, 90)

    assert remaining(db_engine) == {
        (old_failed, 1, "succeeded"),  # VDN 1's newest success
        (old_ok, 2, "succeeded"),  # VDN 2 has failed ever since: its last success stays
        (recent, 1, "failed"),
        (recent, 2, "failed"),
        (recent, 3, "guarded"),  # VDN 3 never succeeded: only recent rows stay
    }
    assert deleted == 4
    with db_engine.connect() as connection:  # one sync_run row per run is always kept
        runs = connection.execute(text(f"SELECT count(*) FROM {S}.sync_run")).scalar_one()
    assert runs == 3
    assert prune_run_records(execute_on(db_engine), S, 90) == 0  # nothing left to do


def test_zero_days_keeps_everything_and_batches_drain_a_backlog(
    db_engine: Engine, monkeypatch: Any
) -> None:
    upgrade(db_engine, S)
    for days in (300, 250, 200):
        add_run(db_engine, days, {vdn: "failed" for vdn in range(1, 6)})
    assert prune_run_records(execute_on(db_engine), S, 0) == 0
    assert len(remaining(db_engine)) == 15

    monkeypatch.setattr(retention, "BATCH_ROWS", 4)
    assert prune_run_records(execute_on(db_engine), S, 90, max_batches=2) == 8
    assert prune_run_records(execute_on(db_engine), S, 90) == 7
    assert remaining(db_engine) == set()


def test_every_run_prunes(simulator: Simulator, database_url: str, db_engine: Engine) -> None:
    config = make_config(simulator, database_url, sync={"keep_run_records_days": 30})
    first = run_sync(config, trigger="test")
    with db_engine.begin() as connection:  # the first run happened 40 days ago
        connection.execute(
            text(f"UPDATE {S}.sync_run SET started_at = started_at - interval '40 days'")
        )
    second = run_sync(config, trigger="test")
    assert first.exit_code == 0 and second.exit_code == 0
    kept = remaining(db_engine)
    assert {run for run, _, _ in kept} == {second.run_id}  # newer successes replace them
    assert len(kept) == len(config.isales.vdn_list)
