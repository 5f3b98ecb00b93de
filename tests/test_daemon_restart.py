"""A restarted daemon carries on from the run records: failure streaks and last successes
are read back at start, so a restart (or a crash loop) neither resets /healthz to healthy
nor makes the per-VDN metrics vanish. Real PostgreSQL, real simulator, in-process daemon."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from obs_sync.config import parse_config
from obs_sync.daemon.daemon import Daemon
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Fault, Simulator
from tests.fixtures_db import TEST_SCHEMA, config_dict


def test_restart_keeps_failure_streaks_and_last_successes(
    simulator: Simulator, database_url: str
) -> None:
    data = config_dict(simulator, database_url, vdn_ids=[1, 2, 3], max_retries=0)
    simulator.faults.add(Fault(kind="http_status", status=503, vdn_id=3, times=None))
    first = run_sync(parse_config(data, env={}))  # an earlier process: VDN 3 fails
    assert {v.vdn_id: v.status for v in first.vdns} == {1: "succeeded", 2: "succeeded", 3: "failed"}
    time.sleep(0.1)  # the failure is now older than max_failing_minutes below (60 ms)

    data["schedule"] = {"interval_minutes": 60, "run_at_start": False}
    data["metrics"] = {"host": "127.0.0.1", "port": 0, "max_failing_minutes": 0.001}
    daemon = Daemon(parse_config(data, env={}))
    thread = threading.Thread(target=lambda: daemon.serve(install_signals=False), daemon=True)
    thread.start()
    try:
        limit = time.monotonic() + 30
        # seeded is set once health and metrics both hold the records (health is seeded
        # first: waiting for its streak alone raced the metrics).
        while not daemon.seeded and time.monotonic() < limit:
            time.sleep(0.02)
        # No run has happened in this process, yet the streak recorded earlier counts.
        failing = daemon.health.failing()
        assert list(failing) == [("default", 3)]
        assert "503" in (failing["default", 3].error or "")
        health = daemon.health.check()
        assert health.status == "unhealthy" and health.reason.startswith("VDN 3 failing for")
        assert daemon.metrics is not None
        registry = daemon.metrics.registry
        last = {
            vdn: registry.get_sample_value(
                "obs_sync_vdn_last_success_timestamp_seconds",
                {"source": "default", "vdn": str(vdn)},
            )
            for vdn in (1, 2, 3)
        }
        finished = {v.vdn_id: v.finished_at.timestamp() for v in first.vdns if v.finished_at}
        assert last == {1: finished[1], 2: finished[2], 3: None}
        assert registry.get_sample_value("obs_sync_vdns_failing", {"source": "default"}) == 1
    finally:
        daemon.request_shutdown("test over")
        thread.join(30)
    assert not thread.is_alive()


def test_records_are_read_once_the_database_is_reachable(
    simulator: Simulator, database_url: str
) -> None:
    data = config_dict(simulator, database_url, vdn_ids=[1, 3], max_retries=0)
    simulator.faults.add(Fault(kind="http_status", status=503, vdn_id=3, times=None))
    earlier = run_sync(parse_config(data, env={}))
    failed_at = by_vdn(earlier)[3].finished_at
    data["schedule"] = {"interval_minutes": 60, "run_at_start": True}
    data["metrics"] = {"host": "127.0.0.1", "port": 0}
    daemon = Daemon(parse_config(data, env={}))

    def database_down_at_start() -> None:
        raise ConnectionError("database not reachable")

    daemon.job.prepare = database_down_at_start  # type: ignore[attr-defined]
    thread = threading.Thread(target=lambda: daemon.serve(install_signals=False), daemon=True)
    thread.start()
    try:
        limit = time.monotonic() + 30
        while daemon.runs_finished < 1 and time.monotonic() < limit:
            time.sleep(0.02)
        assert daemon.seeded
        # The streak started before this process, not at its first run.
        assert daemon.health.failing()["default", 3].since == failed_at
    finally:
        daemon.request_shutdown("test over")
        thread.join(30)


def by_vdn(result: Any) -> dict[int, Any]:
    return {vdn.vdn_id: vdn for vdn in result.vdns}


def test_restart_restores_the_empty_and_last_run_success_gauges(
    simulator: Simulator, database_url: str
) -> None:
    data = config_dict(simulator, database_url, vdn_ids=[1, 2, 3], max_retries=0)
    simulator.data.set_codes(2, {})  # VDN 2 is empty upstream (totalCount 0)
    first = run_sync(parse_config(data, env={}))  # an earlier process: all succeed
    assert first.status == "succeeded" and [v.empty for v in first.vdns] == [False, True, False]

    data["schedule"] = {"interval_minutes": 60, "run_at_start": False}
    data["metrics"] = {"host": "127.0.0.1", "port": 0}
    daemon = Daemon(parse_config(data, env={}))
    thread = threading.Thread(target=lambda: daemon.serve(install_signals=False), daemon=True)
    thread.start()
    try:
        limit = time.monotonic() + 30
        while not daemon.seeded and time.monotonic() < limit:
            time.sleep(0.02)
        assert daemon.metrics is not None
        registry = daemon.metrics.registry
        # No run in this process: both come from the run records.
        assert registry.get_sample_value("obs_sync_vdns_empty", {"source": "default"}) == 1
        assert registry.get_sample_value(
            "obs_sync_last_run_success_timestamp_seconds"
        ) == pytest.approx(first.finished_at.timestamp())
    finally:
        daemon.request_shutdown("test over")
        thread.join(30)
    assert not thread.is_alive()


def test_a_dead_replicas_run_is_marked_abandoned_without_waiting_for_a_run(
    simulator: Simulator, database_url: str
) -> None:
    data = config_dict(
        simulator, database_url, vdn_ids=[1], max_retries=0, sync={"heartbeat_seconds": 0.5}
    )
    run_sync(parse_config(data, env={}))  # the schema
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:  # what a killed replica leaves behind
            dead = connection.execute(
                text(
                    f"INSERT INTO {TEST_SCHEMA}.sync_run (started_at, heartbeat_at, status, "
                    "trigger, hostname, pid) VALUES (now() - interval '1 minute', "
                    "now() - interval '30 seconds', 'running', 'schedule', 'replica-b', 77) "
                    "RETURNING id"
                )
            ).scalar_one()
        data["schedule"] = {"interval_minutes": 60, "run_at_start": False}
        data["metrics"] = {"host": "127.0.0.1", "port": 0}
        daemon = Daemon(parse_config(data, env={}))
        thread = threading.Thread(target=lambda: daemon.serve(install_signals=False), daemon=True)
        thread.start()
        try:
            limit = time.monotonic() + 30
            while daemon.metrics is None:  # serve() builds them on its own thread
                assert time.monotonic() < limit, "the daemon never started its metrics"
                time.sleep(0.02)
            registry = daemon.metrics.registry
            while not registry.get_sample_value("obs_sync_runs_total", {"status": "abandoned"}):
                assert time.monotonic() < limit, "the dead run was never marked"
                time.sleep(0.05)
            assert f"run {dead} abandoned" in daemon.health.check().reason
            with engine.connect() as connection:
                status, ended = connection.execute(
                    text(
                        f"SELECT status, finished_at = heartbeat_at FROM {TEST_SCHEMA}.sync_run "
                        "WHERE id = :id"
                    ),
                    {"id": dead},
                ).one()
            assert (status, ended) == ("abandoned", True)
        finally:
            daemon.request_shutdown("test over")
            thread.join(30)
    finally:
        engine.dispose()
